/* norm.h: RMSNorm (with or without weight) and LayerNorm, forward and backward, over the last
 * dimension of N rows of width C. Backward passes ADD into every gradient they write. */
#ifndef DSC_MODEL_NORM_H
#define DSC_MODEL_NORM_H

/* y[N,C] = x * rstd * w  with rstd[i] = (mean_c x[i,c]^2 + eps)^-1/2 saved for backward.
 * w may be NULL (no weight). y may alias x. */
void rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int N, int C, float eps);
/* dx += ∂L/∂x, dw += ∂L/∂w (dw may be NULL when w is NULL or frozen). x is the forward input. */
void rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                      int N, int C);

/* LayerNorm with weight and bias: y = (x - mean) * rstd * w + b. mean/rstd [N] saved. */
void layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b, int N,
                       int C, float eps);

#endif
