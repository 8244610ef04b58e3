/* fuzz_gguf.c: libFuzzer target for the GGUF reader. Opens the input from memory, checks the
 * invariants every accepted file must satisfy, reads every value and tensor byte and views every
 * tensor, and reads the deepseek2 configuration from the metadata; any crash, sanitizer report or
 * broken invariant is a bug. Build: cmake -DDSC_FUZZ=ON with clang. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"

#define REQUIRE(c)                                                                                \
    do {                                                                                          \
        if (!(c)) __builtin_trap();                                                               \
    } while (0)

static void check_error(const char *name) {
    const char *msg = dsc_last_error();
    REQUIRE(strchr(msg, '\n') == NULL && (strncmp(msg, name, strlen(name)) == 0 || strstr(msg, "out of memory")));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file *f = NULL;
    if (gguf_open_memory(data, size, "fuzz", &f) != DSC_OK) {
        REQUIRE(f == NULL);
        check_error("fuzz: ");
        return 0;
    }
    const uint8_t *end = data + size;
    volatile uint64_t sink = 0;
    size_t al = gguf_alignment(f);
    REQUIRE(al && !(al & (al - 1)));
    for (int i = 0; i < gguf_kv_count(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        REQUIRE(kv && kv->key && gguf_kv_find(f, kv->key) == kv);
        REQUIRE((const uint8_t *)kv->data >= data && (const uint8_t *)kv->data <= end);
        int64_t v;
        double d;
        bool b;
        const char *s;
        size_t len;
        if (kv->type == GGUF_V_STRING) {
            REQUIRE(gguf_get_string(f, kv->key, &s, &len) == DSC_OK);
            REQUIRE((const uint8_t *)s + len <= end);
            for (size_t k = 0; k < len; k++) sink += (uint8_t)s[k];
        } else if (kv->type == GGUF_V_ARRAY) {
            uint64_t n = kv->n < 4096 ? kv->n : 4096;
            for (uint64_t k = 0; k < n; k++) {
                if (kv->elem == GGUF_V_STRING) {
                    gguf_arr_string(kv, k, &s, &len);
                    REQUIRE((const uint8_t *)s + len <= end);
                    if (len) sink += (uint8_t)s[len - 1];
                } else if (kv->elem == GGUF_V_FLOAT32 || kv->elem == GGUF_V_FLOAT64) {
                    sink += (uint64_t)(gguf_arr_float(kv, k) != 0);
                } else {
                    sink += (uint64_t)gguf_arr_int(kv, k);
                }
            }
        } else {
            if (gguf_get_int(f, kv->key, &v) == DSC_OK) sink += (uint64_t)v;
            else check_error("fuzz: ");
            if (gguf_get_float(f, kv->key, &d) == DSC_OK) sink += (uint64_t)(d != 0);
            if (gguf_get_bool(f, kv->key, &b) == DSC_OK) sink += b;
        }
    }
    for (int i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        REQUIRE(t && t->name && strlen(t->name) < GGUF_MAX_NAME && gguf_tensor_find(f, t->name) == t);
        REQUIRE(t->n_dims >= 1 && t->n_dims <= GGUF_MAX_DIMS && t->offset % al == 0);
        int64_t rows = 1;
        for (int k = 1; k < GGUF_MAX_DIMS; k++) rows *= t->ne[k];
        REQUIRE(t->nbytes == gguf_row_bytes(t->type, t->ne[0]) * (size_t)rows);
        const uint8_t *p = t->data;
        REQUIRE(p >= data && p <= end && t->nbytes <= (size_t)(end - p));
        for (size_t k = 0; k < t->nbytes; k++) sink += p[k];
        qtensor q;
        if (gguf_tensor_view(f, t, 0, rows, &q) == DSC_OK)
            REQUIRE(q.rows == rows && q.cols == t->ne[0] && (const uint8_t *)q.data == p);
        else
            check_error("fuzz: ");
    }
    dsc_config cfg;
    if (gguf_deepseek_config(f, sink & 1, &cfg) == DSC_OK) REQUIRE(dsc_config_validate(&cfg) == DSC_OK);
    else check_error("fuzz");
    gguf_close(f);
    return 0;
}
