/* fuzz_safetensors.c: libFuzzer target for the safetensors reader. Opens the input from memory,
 * checks the invariants every accepted file must satisfy, and reads every tensor; any crash,
 * sanitizer report or broken invariant is a bug. Build: cmake -DDSC_FUZZ=ON with clang. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

#define REQUIRE(c)                                                                                \
    do {                                                                                          \
        if (!(c)) __builtin_trap();                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file *st = NULL;
    if (st_open_memory(data, size, "fuzz", &st) != DSC_OK) {
        const char *msg = dsc_last_error();
        REQUIRE(st == NULL && strncmp(msg, "fuzz: ", 6) == 0 && strchr(msg, '\n') == NULL);
        return 0;
    }
    const uint8_t *end = data + size;
    volatile unsigned sink = 0;
    const uint8_t *prev_end = NULL;
    for (int i = 0; i < st_count(st); i++) {
        const st_tensor *t = st_tensor_at(st, i);
        REQUIRE(t && t->name && t->ndim >= 0 && t->ndim <= ST_MAX_DIMS);
        REQUIRE(st_find(st, t->name) == t);
        size_t numel = 1;
        for (int k = 0; k < t->ndim; k++) numel *= (size_t)t->shape[k];
        REQUIRE(numel == t->numel && t->nbytes == numel * st_dtype_size(t->dtype));
        const uint8_t *p = t->data;
        REQUIRE(p >= data + 8 && p <= end && t->nbytes <= (size_t)(end - p));
        if (t->nbytes) {
            REQUIRE(!prev_end || p >= prev_end); /* sorted by offset, no overlap */
            prev_end = p + t->nbytes;
        }
        for (size_t b = 0; b < t->nbytes; b++) sink += p[b];
        float *f = malloc((t->numel ? t->numel : 1) * sizeof(float));
        int rc = st_tensor_to_f32(st, t, f, t->numel);
        REQUIRE((rc == DSC_OK) == (t->dtype == ST_F32 || t->dtype == ST_BF16 || t->dtype == ST_F16));
        for (size_t k = 0; rc == DSC_OK && k < t->numel; k++) sink += (unsigned)(f[k] == f[k]);
        free(f);
    }
    const char *fmt = st_metadata(st, "format");
    if (fmt) sink += (unsigned)strlen(fmt);
    REQUIRE(st_tensor_at(st, st_count(st)) == NULL);
    st_close(st);
    (void)sink;
    return 0;
}
