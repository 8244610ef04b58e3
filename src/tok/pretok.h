/* pretok.h: the pre-tokenizer of a Hugging Face tokenizer.json: a Sequence of Split steps (Unicode
 * regexes run with PCRE2) ending in ByteLevel. It cuts text into the pieces that BPE encodes one
 * by one. Invalid UTF-8 never reaches the regexes: each maximal run of bytes that are not valid
 * UTF-8 is a piece of its own, and the valid runs between are split as text. */
#ifndef DSC_TOK_PRETOK_H
#define DSC_TOK_PRETOK_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum {
    SPLIT_REMOVED,
    SPLIT_ISOLATED,
    SPLIT_MERGED_WITH_PREVIOUS,
    SPLIT_MERGED_WITH_NEXT,
    SPLIT_CONTIGUOUS,
} split_behavior;

typedef struct {
    pcre2_code *re;
    bool jit;
    split_behavior behavior;
    bool invert;
} pretok_step;

typedef struct {
    pretok_step *steps;
    int n_steps;
    pcre2_match_context *mctx; /* no match limit: a 20 MB run of spaces is text too (read-only) */
    json_t *config;            /* the pre_tokenizer object, kept for saving and hashing */
} dsc_pretok;

/* Reads the pre_tokenizer object j. Errors read "PATH: pre_tokenizer.FIELD: ...". */
int pretok_from_json(const json_t *j, const char *path, dsc_pretok *out);
/* DeepSeek-V3's pre-tokenizer (digits in runs of 1-3, CJK runs, then the word regex), which
 * `dsc tokenizer train` uses. max_digits (1-3) caps the digit runs: 3 is DeepSeek-V3's own; 1
 * makes every digit a piece of its own, so no number is ever a merged token. */
int pretok_deepseek_v3(dsc_pretok *out, int max_digits);
void pretok_free(dsc_pretok *p);

/* Scratch space for one thread's matching. */
pcre2_match_data *pretok_match_data(const dsc_pretok *p);

/* Calls emit for each piece of s[0..n), in order; the pieces are non-empty and cover s exactly.
 * A non-zero return from emit stops the run and is returned. */
typedef int (*pretok_emit)(void *ctx, const char *s, size_t n);
int pretok_run(const dsc_pretok *p, pcre2_match_data *md, const char *s, size_t n, pretok_emit emit, void *ctx);

#endif
