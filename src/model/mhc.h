/* mhc.h: Manifold-Constrained Hyper-Connections around one sub-layer F (attention or FFN):
 *   x'[k] = Σ_j H_res[k][j] x[j] + H_post[k] · F(Σ_j H_pre[j] x[j])
 * with per-token coefficients from the streams themselves and H_res projected onto the doubly
 * stochastic matrices by Sinkhorn-Knopp. Exact maths: docs/MODEL.md §8.
 * Streams are stored [N, n, d] (row-major; one token's n·d values are contiguous).
 *
 * Forward is split around F:    mhc_pre  (coefficients, u = H_pre·x)  -> F(u) = y -> mhc_post
 * Backward mirrors it:          mhc_backward_post (dy, dx from H_res, coefficient grads)
 *                               -> F backward gives du -> mhc_backward_pre (dx, dphi, dbias, dalpha)
 * Backward functions ADD into dx and into the weight gradients. */
#ifndef DSC_MODEL_MHC_H
#define DSC_MODEL_MHC_H

#include <stddef.h>

#include "dsc.h"

typedef struct {
    float *phi;   /* [n*n + 2n, n*d]  (rows: pre(n), post(n), res(n*n) row-major) */
    float *bias;  /* [n*n + 2n] */
    float *alpha; /* [3]: alpha_pre, alpha_post, alpha_res */
} mhc_weights;

/* Kept by the forward pass for the backward pass. */
typedef struct {
    float *rstd;   /* weightless RMSNorm of vec(x)                [N] */
    float *a;      /* v·phiᵀ (before alpha and bias)              [N, n*n+2n] */
    float *h_pre;  /* sigmoid(pre)                                [N, n] */
    float *h_post; /* 2*sigmoid(post)                             [N, n] */
    float *h_res;  /* Sinkhorn-Knopp result                       [N, n, n] */
    float *dcoef;  /* filled by mhc_backward_post, read by _pre   [N, n*n+2n] */
} mhc_acts;

size_t mhc_acts_floats(const dsc_config *c, int N);
void mhc_acts_bind(mhc_acts *a, float *mem, const dsc_config *c, int N);
size_t mhc_scratch_floats(const dsc_config *c, int N);

/* Coefficients for x [N,n,d]; writes u [N,d] = Σ_j H_pre[j] x[j]. */
void mhc_pre(const dsc_config *c, const mhc_weights *w, mhc_acts *a, float *u, const float *x, int N, float *scratch);
/* x_out [N,n,d] = H_res x + H_post ⊗ y. x_out must not alias x. */
void mhc_post(const dsc_config *c, const mhc_acts *a, float *x_out, const float *x, const float *y, int N);

/* From dx_out: writes dy [N,d] (overwritten), dx += H_resᵀ dx_out, and keeps the gradients of
 * H_post and H_res in a->dcoef. dx must not alias dx_out. */
void mhc_backward_post(const dsc_config *c, mhc_acts *a, float *dx, float *dy, const float *dx_out, const float *x,
                       const float *y, int N);
/* From du (gradient of u): dx += H_pre ⊗ du + (coefficient path); g->phi, g->bias, g->alpha +=. */
void mhc_backward_pre(const dsc_config *c, const mhc_weights *w, const mhc_weights *g, mhc_acts *a, float *dx,
                      const float *du, const float *x, int N, float *scratch);

/* Sinkhorn-Knopp on one n×n matrix, exposed for tests: out = SK(exp(logits - max)). */
void mhc_sinkhorn(float *out, const float *logits, int n, int iters);

/* Expand [N,d] into n equal streams [N,n,d]; reduce [N,n,d] to [N,d] by summing; and their
 * backward passes (ADD into the gradient). */
void mhc_expand(float *x, const float *h, int N, int n, int d);
void mhc_reduce(float *h, const float *x, int N, int n, int d);
void mhc_expand_backward(float *dh, const float *dx, int N, int n, int d);
void mhc_reduce_backward(float *dx, const float *dh, int N, int n, int d);

#endif
