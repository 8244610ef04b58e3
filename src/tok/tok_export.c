/* tok_export.c: read-only access to a tokenizer's vocabulary, added tokens and merges, for
 * exporters that write them in another format (GGUF's tokenizer.ggml.* keys). */
#include "tok/tok_internal.h"

const char *dsc_tokenizer_token_text(const dsc_tokenizer *t, int32_t id, size_t *len, dsc_token_kind *kind) {
    if (id < 0 || id >= t->n_ids) return NULL;
    for (int i = 0; i < t->n_added; i++) /* an added token wins over a vocabulary entry of the same id */
        if (t->added[i].id == id) {
            *len = t->added[i].len;
            if (kind) *kind = t->added[i].special ? DSC_TOKEN_SPECIAL : DSC_TOKEN_ADDED;
            return t->added[i].content;
        }
    if (t->vocab_of_id[id] < 0) return NULL;
    if (kind) *kind = DSC_TOKEN_NORMAL;
    return strmap_key(&t->vocab, (size_t)t->vocab_of_id[id], len);
}

int32_t dsc_tokenizer_num_merges(const dsc_tokenizer *t) { return t->n_merges; }

void dsc_tokenizer_merge_at(const dsc_tokenizer *t, int32_t i, int32_t *a, int32_t *b) {
    *a = t->merges[i].a;
    *b = t->merges[i].b;
}
