/* hfindex.h: model.safetensors.index.json, the map from tensor name to shard file of a sharded
 * Hugging Face checkpoint, parsed and validated from memory (no file is touched, so a fuzzer can
 * drive it). Opening the shards it names is hfdir.c's job. */
#ifndef DSC_IO_HFINDEX_H
#define DSC_IO_HFINDEX_H

#include <stddef.h>
#include <stdint.h>

#include "dsc.h"

typedef struct {
    const char *name;            /* tensor name (owned by the hfindex) */
    int file;                    /* index into hfindex.files */
} hfindex_entry;

typedef struct {
    char **files;                /* distinct shard file names, sorted; plain names inside the directory */
    int n_files;
    hfindex_entry *entries;      /* sorted by name, every name once */
    int n_entries;
    int64_t total_size;          /* metadata.total_size; -1 when absent */
    char *names;                 /* storage of every name above */
} hfindex;

/* Parses index JSON text of len bytes; name (the file's path) starts every error message. The
 * root must be an object with "weight_map": an object of tensor name -> shard file name, each file
 * name plain (no '/', '\\', control characters, not "." or ".."), no tensor listed twice, at least
 * one tensor. "metadata", when present, must be an object; its total_size, when present, a
 * non-negative integer. Other fields are ignored. */
dsc_status hfdir_parse_index(const char *text, size_t len, const char *name, hfindex **out);
void hfindex_free(hfindex *ix);
/* The entry of a tensor, or -1. */
int hfindex_find(const hfindex *ix, const char *tensor);

#endif
