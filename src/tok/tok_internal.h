/* tok_internal.h: the inside of a dsc_tokenizer, shared by the files of src/tok (loading and
 * saving, encoding and decoding, training). Nothing outside src/tok includes it. */
#ifndef DSC_TOK_INTERNAL_H
#define DSC_TOK_INTERNAL_H

#include "tok/pretok.h"
#include "tok/strmap.h"
#include "tok/tokenizer.h"

/* An added token: matched in the raw text before pre-tokenization (see tokenizer.c). */
typedef struct {
    char *content;
    size_t len;
    int32_t id;
    bool special, normalized, lstrip, rstrip;
} tok_added;

/* A byte trie over the added tokens' contents, for leftmost-longest matching. */
typedef struct {
    int32_t child, sibling; /* node indices, -1 for none */
    int32_t added;          /* index into added[] of the token ending here, or -1 */
    uint8_t byte;
} trie_node;

typedef struct {
    int32_t a, b; /* the pair of token ids merged, in rank order */
} tok_merge;

struct dsc_tokenizer {
    int32_t n_ids;           /* ids are 0 .. n_ids-1 (some may be unused) */
    /* the BPE model */
    dsc_strmap vocab;        /* byte-level token string -> id, in the file's order */
    tok_merge *merges;
    int32_t n_merges;
    bool ignore_merges;      /* a piece that is itself a token is not split */
    json_t *unk_token;       /* kept for saving only: with the full byte alphabet it is never used */
    bool fuse_unk, byte_fallback;
    /* added tokens and the parts of tokenizer.json dsc keeps but does not interpret */
    tok_added *added;
    int n_added;
    json_t *normalizer, *post_processor, *decoder;
    dsc_pretok pretok;

    /* derived by tok_build() */
    int64_t *vocab_of_id;    /* [n_ids] vocab entry index of each id, -1 if the model has none */
    dsc_u64map pair;         /* (a << 32 | b) -> (rank << 32 | merged id) */
    int32_t byte_id[256];    /* the token of each single byte */
    size_t *dec_off;         /* [n_ids + 1] decoded bytes of id i: dec[dec_off[i] .. dec_off[i+1]) */
    char *dec;
    bool *id_used;           /* [n_ids] */
    trie_node *trie;
    int32_t n_trie, trie_root[256];
    uint64_t hash;
};

/* Builds the derived tables after the vocabulary, merges and added tokens are set; checks the
 * byte alphabet is complete and every merge is in the vocabulary. Callable again after changes. */
int tok_build(dsc_tokenizer *t, const char *path);
/* Frees everything (t itself too). */
void tok_destroy(dsc_tokenizer *t);

/* Splits text at added tokens (leftmost-longest, non-normalized tokens first as Hugging Face
 * does) and calls gap() for each stretch of ordinary text and token() for each added token. */
typedef struct {
    int (*gap)(void *ctx, const char *s, size_t n);
    int (*token)(void *ctx, int32_t id);
    void *ctx;
} tok_split_cb;
int tok_split_added(const dsc_tokenizer *t, const char *s, size_t n, const tok_split_cb *cb);

/* Applies the merges to one piece: sym[0..n) are its byte tokens on entry; returns the number of
 * tokens left in sym. heap forces the priority-queue path (otherwise used for long pieces only). */
size_t tok_bpe_merge(const dsc_tokenizer *t, int32_t *sym, size_t n, bool heap, void **scratch, size_t *scratch_cap);

/* DeepSeek-V3's special-token strings, which trained tokenizers use. */
#define TOK_BOS "<｜begin▁of▁sentence｜>"
#define TOK_EOS "<｜end▁of▁sentence｜>"
#define TOK_PAD "<｜▁pad▁｜>"
#define TOK_USER "<｜User｜>"
#define TOK_ASSISTANT "<｜Assistant｜>"
#define TOK_THINK "<think>"
#define TOK_THINK_END "</think>"

#endif
