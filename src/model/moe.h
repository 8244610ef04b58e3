/* moe.h: DeepSeekMoE: the router (softmax or sigmoid scores, selection-only correction bias,
 * group-limited top-k, normalised weights x routed_scaling_factor), the routed experts, the
 * shared experts, the per-expert load counts for the aux-loss-free bias update, and the
 * sequence-wise balance loss. Exact maths: docs/MODEL.md §6.
 * Backward ADDS into dx and into every weight gradient. */
#ifndef DSC_MODEL_MOE_H
#define DSC_MODEL_MOE_H

#include <stddef.h>
#include <stdint.h>

#include "dsc.h"
#include "model/ffn.h"

typedef struct {
    float *gate;   /* mlp.gate.weight                    [E, d] */
    float *bias;   /* mlp.gate.e_score_correction_bias   [E]  (NULL unless cfg->expert_bias) */
    float *w1;     /* experts' gate_proj, stacked        [E, Ie, d] */
    float *w3;     /* experts' up_proj, stacked          [E, Ie, d] */
    float *w2;     /* experts' down_proj, stacked        [E, d, Ie] */
    ffn_weights shared; /* width S*Ie; all NULL when n_shared_experts == 0 */
} moe_weights;

/* What the forward pass keeps for the backward pass (N = B*T rows). Bound onto one float buffer
 * of moe_acts_floats() floats by moe_acts_bind (int arrays are stored in float-sized slots). */
typedef struct {
    const float *x;     /* the input rows (caller's buffer, must stay valid)  [N, d] */
    float *scores;      /* s: softmax/sigmoid router scores (un-biased)      [N, E] */
    int32_t *idx;       /* selected experts per row                          [N, K] */
    float *weights;     /* their final weights                               [N, K] */
    int32_t *order;     /* (row*K + slot) pairs grouped by expert            [N*K] */
    int32_t *offsets;   /* expert e owns order[offsets[e] .. offsets[e+1])   [E+1] */
    float *h1, *h3;     /* expert pre-activations, in `order` order          [N*K, Ie] */
    float *eout;        /* expert outputs before weighting, in `order` order [N*K, d] */
    float *sh1, *sh3;   /* shared-expert pre-activations                     [N, S*Ie] */
    float *f;           /* balance-loss f_i per sequence (constant)          [B, E] */
} moe_acts;

size_t moe_acts_floats(const dsc_config *c, int B, int T);
void moe_acts_bind(moe_acts *a, float *mem, const dsc_config *c, int B, int T);
/* Scratch floats moe_forward / moe_backward need beyond the acts. */
size_t moe_scratch_floats(const dsc_config *c, int B, int T);

/* out[N,d] = MoE(x). load[E] += tokens routed to each expert (may be NULL). If balance is not
 * NULL, *balance += this block's sequence-wise balance loss, averaged over the B sequences. */
void moe_forward(const dsc_config *c, const moe_weights *w, moe_acts *a, float *out, const float *x, int B, int T,
                 int64_t *load, float *balance, float *scratch);

/* dout[N,d] -> dx[N,d] +=, g->* +=. balance_weight is d(total loss)/d(balance) (aux_loss_alpha;
 * 0 skips the balance-loss gradient). */
void moe_backward(const dsc_config *c, const moe_weights *w, const moe_weights *g, const moe_acts *a, float *dx,
                  const float *dout, int B, int T, float balance_weight, float *scratch);

/* The router alone (exposed for tests and inference): scores [N,E] (un-biased s), idx [N,K],
 * weights [N,K] for rows x [N,d]. */
void moe_route(const dsc_config *c, const moe_weights *w, const float *x, int N, float *scores, int32_t *idx,
               float *weights);

/* The router from precomputed logits z = x W_gᵀ (inference computes them from quantized
 * weights): scores [N,E] holds z on entry and the un-biased s on return. */
void moe_route_logits(const dsc_config *c, const float *bias, float *scores, int N, int32_t *idx, float *weights);

/* Aux-loss-free update of one block's bias from its loads: b_i += gamma*sign(mean c - c_i). */
void moe_update_bias(float *bias, const int64_t *load, int E, float gamma);

#endif
