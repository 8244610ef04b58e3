/* generate.h: text generation over the engine: prefill, then decode token by token with a
 * sampler (temperature, top-k, top-p, min-p, repetition penalty, seed), optionally speculative
 * with the model's own MTP module (DeepSeek-V3's multi-token prediction as the draft model).
 * Speculative decoding here never changes the output distribution: the draft token is kept only
 * when the main model's own sample at that position equals it. */
#ifndef DSC_INFER_GENERATE_H
#define DSC_INFER_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include "infer/engine.h"
#include "infer/sampler.h"

typedef struct {
    sampler_options sampler;
    float repeat_penalty;   /* 1: off; > 1 discourages tokens seen in the last repeat_last_n */
    int repeat_last_n;
    int max_tokens;         /* new tokens at most */
    uint64_t seed;
    bool speculative;       /* draft with the MTP module (needs one loaded) */
} gen_options;

void gen_options_default(gen_options *o);

typedef struct {
    int prompt_tokens, generated;
    double prefill_s, decode_s;
    long drafts, accepted;  /* speculative decoding: drafts proposed and accepted */
    long main_passes;       /* decode passes of the main model */
} gen_stats;

/* Called with each new token; return true to stop (end of sequence, stop string, ...). */
typedef bool (*gen_callback)(int32_t token, void *user);

/* Generates after prompt [n] in a new sequence of the engine (released at the end). */
dsc_status generate(engine *e, const int32_t *prompt, int n, const gen_options *o, gen_callback cb, void *user,
                    gen_stats *stats);

#endif
