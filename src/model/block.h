/* block.h: one decoder block (MLA sub-layer, then dense-MLP or MoE sub-layer), with a plain
 * residual or with mHC around each sub-layer (docs/MODEL.md §4), forward and backward.
 * The residual stream is [N, n, d] with n = 1 for the plain residual. */
#ifndef DSC_MODEL_BLOCK_H
#define DSC_MODEL_BLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "dsc.h"
#include "model/mhc.h"
#include "model/mla.h"
#include "model/moe.h"
#include "model/params.h"
#include "model/rope.h"

/* What one block keeps from its forward pass. */
typedef struct {
    const float *x_in;  /* the block's input stream (caller's buffer)     [N, n, d] */
    float *x_mid;       /* stream after the attention sub-layer            [N, n, d] */
    float *u_a, *u_f;   /* mHC sub-layer inputs H_pre·x                    [N, d] (mHC only) */
    float *an, *fn;     /* normed sub-layer inputs                         [N, d] */
    float *an_rstd, *fn_rstd; /*                                           [N] */
    float *y_a, *y_f;   /* sub-layer outputs                               [N, d] */
    float *h1, *h3;     /* dense MLP pre-activations                       [N, I] */
    mla_acts attn;
    moe_acts moe;
    mhc_acts mhc_a, mhc_f;
} block_acts;

size_t block_acts_floats(const dsc_config *c, int l, int B, int T);
void block_acts_bind(block_acts *a, float *mem, const dsc_config *c, int l, int B, int T);
/* Scratch floats for block_forward and block_backward of any block of this config. */
size_t block_scratch_floats(const dsc_config *c, int B, int T);

/* x_out [N,n,d] = Block_l(x_in). load (MoE blocks, may be NULL) += expert counts; balance
 * (may be NULL) += the block's balance loss. */
void block_forward(const dsc_config *c, int l, const block_weights *w, const rope_table *rope, block_acts *a,
                   float *x_out, const float *x_in, int B, int T, int64_t *load, float *balance, float *scratch);

/* dx_in [N,n,d] = ∂L/∂x_in (overwritten) from dx_out; gradients of the block's weights ADDED to g.
 * dx_out is used as scratch (clobbered). */
void block_backward(const dsc_config *c, int l, const block_weights *w, const block_weights *g,
                    const rope_table *rope, block_acts *a, float *dx_in, float *dx_out, int B, int T,
                    float balance_weight, float *scratch);

#endif
