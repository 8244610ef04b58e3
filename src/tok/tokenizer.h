/* tokenizer.h: byte-level BPE tokenizers: DeepSeek's own (a Hugging Face tokenizer.json) and the
 * ones `dsc tokenizer train` learns (saved in the same tokenizer.json format). Encoding splits
 * text with the pre-tokenizer's Unicode regexes (PCRE2), maps bytes to the byte-level alphabet and
 * applies the merges by rank; special/added tokens are matched first. Decoding inverts it exactly
 * for every byte string (invalid UTF-8 included). */
#ifndef DSC_TOK_TOKENIZER_H
#define DSC_TOK_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsc.h"

typedef struct dsc_tokenizer dsc_tokenizer;

/* Loads a Hugging Face tokenizer.json (model type BPE, byte-level). Errors name the file and the
 * field. */
dsc_status dsc_tokenizer_load(const char *path, dsc_tokenizer **out);
/* Writes tokenizer.json (atomic). */
dsc_status dsc_tokenizer_save(const dsc_tokenizer *t, const char *path);
void dsc_tokenizer_free(dsc_tokenizer *t);

/* Vocabulary size including added/special tokens (ids are 0 .. size-1). */
int dsc_tokenizer_vocab_size(const dsc_tokenizer *t);
/* A stable 64-bit hash of the vocabulary, merges and special tokens (stored in data shards so a
 * shard is never read with another tokenizer). */
uint64_t dsc_tokenizer_hash(const dsc_tokenizer *t);

/* Id of a special token by its text ("<｜begin▁of▁sentence｜>", "<think>", ...) or -1. */
int32_t dsc_tokenizer_token_id(const dsc_tokenizer *t, const char *text);
/* The ids of the roles the trainer needs (-1 where the tokenizer has none). */
typedef struct {
    int32_t bos, eos, pad, think_begin, think_end, user, assistant;
} dsc_special_ids;
void dsc_tokenizer_specials(const dsc_tokenizer *t, dsc_special_ids *out);

/* For exporters (GGUF): the text of an id as the tokenizer stores it (a BPE token in the byte-level
 * alphabet; an added token's content as is), or NULL for an id nothing uses; *kind (may be NULL)
 * tells which. The merges in rank order: merge i joins the tokens *a and *b. */
typedef enum { DSC_TOKEN_NORMAL, DSC_TOKEN_SPECIAL, DSC_TOKEN_ADDED } dsc_token_kind;
const char *dsc_tokenizer_token_text(const dsc_tokenizer *t, int32_t id, size_t *len, dsc_token_kind *kind);
int32_t dsc_tokenizer_num_merges(const dsc_tokenizer *t);
void dsc_tokenizer_merge_at(const dsc_tokenizer *t, int32_t i, int32_t *a, int32_t *b);

/* Encodes len bytes of text (no BOS added). With parse_special, special-token text in the input
 * becomes the special ids; otherwise it is encoded as ordinary text. *ids is malloc'ed.
 * (dsc: with parse_special false no added token at all is matched. Thread-safe: several threads
 * may encode and decode with one tokenizer at once.) */
dsc_status dsc_tokenizer_encode(const dsc_tokenizer *t, const char *text, size_t len, bool parse_special,
                                int32_t **ids, size_t *n);
/* Decodes ids into malloc'ed bytes (NUL-terminated; *len excludes the NUL). An out-of-range id is
 * an error. */
dsc_status dsc_tokenizer_decode(const dsc_tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len);

/* Learns a byte-level BPE tokenizer from text files (UTF-8 or not). */
typedef struct {
    int vocab_size;        /* total, including the 256 byte tokens and the special tokens */
    int min_frequency;     /* a pair seen fewer times is never merged (default 2) */
    size_t max_bytes;      /* read at most this many bytes of input (0: all) */
    int threads;           /* 0: all cores */
    int max_digits;        /* digits a number piece may hold, 1-3 (0: 3, DeepSeek-V3's) */
} dsc_bpe_options;
dsc_status dsc_tokenizer_train(const char *const *files, int n_files, const dsc_bpe_options *opt,
                               dsc_tokenizer **out);

#endif
