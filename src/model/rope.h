/* rope.h: rotary position embedding tables (with YaRN) and their application, forward and
 * backward, in DeepSeek's interleaved layout (pairs 2i, 2i+1) or the half-split layout (pairs
 * i, i + dr/2) that the V3.2 indexer uses. Exact maths: docs/MODEL.md §5. */
#ifndef DSC_MODEL_ROPE_H
#define DSC_MODEL_ROPE_H

#include <stdbool.h>

#include "dsc.h"

typedef struct {
    int max_pos, half;  /* positions 0..max_pos-1, half = dr/2 frequencies */
    float *cos, *sin;   /* [max_pos, half] */
    float *theta;       /* [half] the (YaRN-corrected) frequencies */
} rope_table;

int rope_table_init(rope_table *r, const dsc_config *c, int max_pos);
void rope_table_free(rope_table *r);

/* Rotates x[dr] in place by position pos. inverse=true rotates by −angle (the backward pass: the
 * gradient of a rotation is the opposite rotation). */
void rope_apply(float *x, const rope_table *r, int pos, bool interleaved, bool inverse);

/* The softmax scale of MLA: dqk^-1/2 · m² (YaRN mscale). */
float mla_softmax_scale(const dsc_config *c);

#endif
