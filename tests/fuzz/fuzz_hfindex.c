/* fuzz_hfindex.c: libFuzzer target for the parser of model.safetensors.index.json (sharded
 * Hugging Face checkpoints). Parses the input from memory and checks the invariants every accepted
 * index must satisfy: entries sorted and unique, every shard a plain file name used by some
 * tensor, lookups consistent. Any crash, sanitizer report or broken invariant is a bug. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/hfindex.h"

#define REQUIRE(c)                                                                                \
    do {                                                                                          \
        if (!(c)) __builtin_trap();                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hfindex *ix = NULL;
    if (hfdir_parse_index((const char *)data, size, "fuzz", &ix) != DSC_OK) {
        const char *msg = dsc_last_error();
        REQUIRE(ix == NULL && strncmp(msg, "fuzz: ", 6) == 0 && strchr(msg, '\n') == NULL);
        return 0;
    }
    REQUIRE(ix && ix->n_entries >= 1 && ix->n_files >= 1 && ix->n_files <= ix->n_entries && ix->total_size >= -1);
    int *used = calloc((size_t)ix->n_files, sizeof *used);
    for (int i = 0; i < ix->n_entries; i++) {
        const hfindex_entry *e = &ix->entries[i];
        REQUIRE(e->name && e->name[0] && e->file >= 0 && e->file < ix->n_files);
        REQUIRE(i == 0 || strcmp(ix->entries[i - 1].name, e->name) < 0);
        REQUIRE(hfindex_find(ix, e->name) == i);
        used[e->file]++;
    }
    for (int f = 0; f < ix->n_files; f++) {
        const char *n = ix->files[f];
        REQUIRE(used[f] > 0 && n[0] && strcmp(n, ".") && strcmp(n, "..") && !strchr(n, '/') && !strchr(n, '\\'));
        REQUIRE(f == 0 || strcmp(ix->files[f - 1], n) < 0);
    }
    free(used);
    REQUIRE(hfindex_find(ix, "") == -1);
    hfindex_free(ix);
    return 0;
}
