/* prepare.h: corpus files, JSONL and generated problems -> tokenized train/val shards plus
 * meta.json (`dsc data prepare`). Also the document delimiter of corpus text files, which
 * scripts/corpus.sh writes: a line holding a single form feed ("\n\f\n"; docs/DATA.md). */
#ifndef DSC_DATA_PREPARE_H
#define DSC_DATA_PREPARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/data.h"
#include "data/synth.h"

/* Iterates the documents of a text buffer: documents are separated by lines that hold exactly
 * one form feed (optionally followed by '\r'); the newline before and after such a line belongs
 * to the delimiter. Documents that are empty or only white space are skipped. Start with
 * *pos = 0; returns false at the end. A text without delimiter lines is one document. */
bool dsc_next_document(const char *text, size_t len, size_t *pos, const char **doc, size_t *doc_len);

typedef struct {
    const char *source;      /* file being read, or "synthetic:<task>" */
    uint64_t bytes_done;     /* input bytes consumed so far, all sources */
    uint64_t bytes_total;    /* input bytes of all files */
    uint64_t tokens;         /* tokens written so far, both splits */
    double seconds;          /* since the start */
} dsc_prepare_progress;

typedef struct {
    const dsc_tokenizer *tok;       /* encode must be thread-safe (it is: read-only) */
    const char *tokenizer_path;     /* recorded in meta.json */
    const char *out_dir;            /* created if missing; gets train.bin, val.bin, meta.json */
    const char *const *files;       /* text files (form-feed delimited) or .jsonl */
    int n_files;
    double val_fraction;            /* share of documents in val.bin, [0, 0.5] */
    uint64_t seed;                  /* of the document split */
    uint64_t synth_n[2];            /* generated training problems per task (dsc_task order) */
    uint64_t synth_seed;            /* stream of the generated training problems */
    dsc_synth_options synth_opt;
    int threads;                    /* tokenizer threads (0: OpenMP's default) */
    const char *command_line;       /* recorded in meta.json */
    void (*progress)(void *ctx, const dsc_prepare_progress *p); /* may be NULL; called per batch */
    void *progress_ctx;
} dsc_prepare_options;
/* Fills the defaults: val_fraction 0.01, seed 1, synth_seed 1, no files, no problems. */
void dsc_prepare_default_options(dsc_prepare_options *o);

typedef struct {
    uint64_t docs[2], tokens[2], checksum[2]; /* [0] train.bin, [1] val.bin */
    uint64_t bytes_in;
    double seconds;
} dsc_prepare_report;

/* Runs the whole preparation. Text documents go to val when a hash of (seed, document bytes) falls
 * below val_fraction, so identical documents always share a split; JSONL records likewise by line.
 * Generated problems: synth_n[t] training problems (train.bin) and ceil(synth_n[t] * val_fraction)
 * held-out problems of DSC_SYNTH_HELDOUT_SEED (val.bin), disjoint by construction. Every document
 * ends with EOS. Output files are atomic; meta.json is written last. */
dsc_status dsc_data_prepare(const dsc_prepare_options *o, dsc_prepare_report *rep);

#endif
