/* batchgen.h: sampling many completions at once over the engine's batched decode (RL rollouts,
 * evaluation, and any caller with several prompts). Each prompt is prefilled once and its cache
 * forked for its copies; then every unfinished sequence advances one token per engine pass. Each
 * completion draws from its own generator seeded by (seed, its index), so the samples do not
 * depend on how many sequences ran side by side. */
#ifndef DSC_INFER_BATCHGEN_H
#define DSC_INFER_BATCHGEN_H

#include <stdbool.h>
#include <stdint.h>

#include "infer/engine.h"
#include "infer/sampler.h"

typedef struct {
    sampler_options sampler;  /* temperature 0: greedy */
    int max_tokens;           /* new tokens per completion at most */
    int32_t eos;              /* the completion ends after this token (-1: none) */
    uint64_t seed;
    uint64_t first_index;     /* completion i draws from generator (seed, first_index + i) */
} batchgen_options;

typedef struct {
    int32_t *tokens;          /* [max_tokens], malloc'ed by generate_batch (free with batchgen_free) */
    int n;                    /* tokens generated (the EOS included when finished) */
    bool finished;            /* ended with EOS (false: cut at max_tokens) */
} batchgen_completion;

typedef struct {
    long prompt_tokens;       /* prefilled (once per prompt) */
    long generated;           /* tokens sampled */
    double prefill_s, decode_s;
    long passes;              /* engine decode passes */
    double mean_rows;         /* sequences per decode pass, on average */
} batchgen_stats;

/* Samples `copies` completions for each of n_prompts prompts: out [n_prompts * copies],
 * prompt-major. Runs as many sequences at once as the engine holds (max_seqs; passes of at most
 * max_rows rows). stats may be NULL. */
dsc_status generate_batch(engine *e, const int32_t *const *prompts, const int *prompt_len, int n_prompts, int copies,
                          const batchgen_options *o, batchgen_completion *out, batchgen_stats *stats);
/* generate_batch over n_engines engines at once, one thread each: the prompts are split into
 * n_engines contiguous parts. The completions are those of one engine (each keeps its own
 * generator), so the split changes the speed, never the samples. Small models decode fastest on
 * one thread a pass (engine.c), so this is how a batch uses several cores. stats: prompt and
 * generated tokens and passes summed; prefill_s / decode_s the wall time of the whole call. */
dsc_status generate_batch_parallel(engine *const *engines, int n_engines, const int32_t *const *prompts,
                                   const int *prompt_len, int n_prompts, int copies, const batchgen_options *o,
                                   batchgen_completion *out, batchgen_stats *stats);
void batchgen_free(batchgen_completion *c, int n);

#endif
