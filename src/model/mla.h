/* mla.h: Multi-head Latent Attention, training/prefill form (causal, every position), forward and
 * backward. Low-rank (or plain) queries, compressed latent KV, decoupled RoPE with YaRN scale.
 * Exact maths: docs/MODEL.md §5. Backward ADDS into dx and into every weight gradient. */
#ifndef DSC_MODEL_MLA_H
#define DSC_MODEL_MLA_H

#include <stddef.h>
#include <stdint.h>

#include "dsc.h"
#include "model/dsa.h"
#include "model/rope.h"

typedef struct {
    float *wq_a;    /* q_a_proj             [rq, d]        (rq > 0) */
    float *q_norm;  /* q_a_layernorm        [rq]           (rq > 0) */
    float *wq_b;    /* q_b_proj [H*dqk, rq], or q_proj [H*dqk, d] when rq == 0 */
    float *wkv_a;   /* kv_a_proj_with_mqa   [rkv+dr, d] */
    float *kv_norm; /* kv_a_layernorm       [rkv] */
    float *wkv_b;   /* kv_b_proj            [H*(dn+dv), rkv] */
    float *wo;      /* o_proj               [d, H*dv] */
    dsa_weights idx;/* the indexer (all NULL without one) */
} mla_weights;

/* Saved by the forward pass (N = B*T rows). */
typedef struct {
    const float *x;  /* input rows (caller's buffer)             [N, d] */
    float *cq_raw;   /* x wq_aᵀ                                  [N, rq] */
    float *cq_rstd;  /*                                          [N] */
    float *cq;       /* normed query latent                      [N, rq] */
    float *q;        /* queries, rope applied to the last dr     [N, H, dqk] */
    float *kva;      /* x wkv_aᵀ (raw)                           [N, rkv+dr] */
    float *ckv_rstd; /*                                          [N] */
    float *ckv;      /* normed latent                            [N, rkv] */
    float *kpe;      /* rotated shared rope key                  [N, dr] */
    float *kvb;      /* ckv wkv_bᵀ = (k_nope, v) per head        [N, H, dn+dv] */
    float *att;      /* softmax probabilities                    [B, H, T, T] */
    float *o;        /* attention output per head                [N, H, dv] */
    int32_t *sel;    /* DSA selection, when used                 [B, T, index_topk] */
    int use_sel;     /* 1 when the forward pass masked by sel */
} mla_acts;

size_t mla_acts_floats(const dsc_config *c, int B, int T);
void mla_acts_bind(mla_acts *a, float *mem, const dsc_config *c, int B, int T);
size_t mla_scratch_floats(const dsc_config *c, int B, int T);

void mla_forward(const dsc_config *c, const mla_weights *w, const rope_table *rope, mla_acts *a, float *out,
                 const float *x, int B, int T, float *scratch);
void mla_backward(const dsc_config *c, const mla_weights *w, const mla_weights *g, const rope_table *rope,
                  const mla_acts *a, float *dx, const float *dout, int B, int T, float *scratch);

#endif
