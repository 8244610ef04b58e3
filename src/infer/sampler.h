/* sampler.h: choosing the next token from logits: greedy, or temperature with top-k, top-p
 * (nucleus) and min-p filtering, from a seeded generator. */
#ifndef DSC_INFER_SAMPLER_H
#define DSC_INFER_SAMPLER_H

#include <stdint.h>

#include "base/rng.h"

typedef struct {
    float temperature;   /* 0: greedy (argmax) */
    int top_k;           /* keep the k most likely (0: all) */
    float top_p;         /* keep the smallest set with this much probability (1: all) */
    float min_p;         /* drop tokens below min_p x the top probability (0: none) */
} sampler_options;

/* Picks a token from logits [V]. scratch must hold V floats and V int32 (2·V·4 bytes). */
int32_t sampler_pick(const float *logits, int V, const sampler_options *o, dsc_rng *rng, void *scratch);

#endif
