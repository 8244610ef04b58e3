/* mhc.c: Manifold-Constrained Hyper-Connections around one sub-layer (docs/MODEL.md §8): the
 * per-token coefficients (weightless RMSNorm, one projection, sigmoid and Sinkhorn-Knopp), the
 * stream mixing on either side of F, and the exact backward pass through all of it, Sinkhorn
 * iterations unrolled. F itself runs outside (mhc.h shows the call order). */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "base/mem.h"
#include "kernels/kernels.h"
#include "model/mhc.h"

/* Coefficient vector layout, per token: [pre n | post n | res n*n (row-major res[k][j])]. */
static inline int ncoef(int n) { return n * n + 2 * n; }
static inline int sk_iters(const dsc_config *c) { return c->mhc_sinkhorn_iters > 0 ? c->mhc_sinkhorn_iters : 0; }
/* Floats one token needs to keep every Sinkhorn iterate for the backward pass. */
static inline size_t sk_hist_floats(int n, int iters) { return (size_t)(2 * iters + 1) * n * n; }
/* Token loops go parallel only when there is enough work to pay for the threads. */
static inline int par(long work) { return !omp_in_parallel() && work > 32768; }
static inline float sigmoidf(float z) { return 1.0f / (1.0f + expf(-z)); }

/* A dot product of length d (a few hundred): a float reduction the compiler vectorises (the
 * simd reduction lets it keep 16 partial sums), accurate to a few ulp at these lengths. */
static inline double dotf(const float *p, const float *q, int len) {
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < len; i++) s += p[i] * q[i];
    return s;
}

size_t mhc_acts_floats(const dsc_config *c, int N) {
    size_t n = (size_t)c->mhc_expansion_rate, m = (size_t)ncoef((int)n);
    return dsc_round_floats((size_t)N) + 2 * dsc_round_floats((size_t)N * m) + 2 * dsc_round_floats((size_t)N * n) +
           dsc_round_floats((size_t)N * n * n);
}

void mhc_acts_bind(mhc_acts *a, float *mem, const dsc_config *c, int N) {
    size_t n = (size_t)c->mhc_expansion_rate, m = (size_t)ncoef((int)n);
    a->rstd = mem, mem += dsc_round_floats((size_t)N);
    a->a = mem, mem += dsc_round_floats((size_t)N * m);
    a->h_pre = mem, mem += dsc_round_floats((size_t)N * n);
    a->h_post = mem, mem += dsc_round_floats((size_t)N * n);
    a->h_res = mem, mem += dsc_round_floats((size_t)N * n * n);
    a->dcoef = mem;
}

/* Only mhc_backward_pre uses scratch: dz [N, n*n+2n] (gradient of the logits, then of the
 * projection) and the Sinkhorn iterates [N, (2*iters+1)*n*n]. mhc_pre needs none. */
size_t mhc_scratch_floats(const dsc_config *c, int N) {
    int n = c->mhc_expansion_rate;
    return dsc_round_floats((size_t)N * ncoef(n)) + dsc_round_floats((size_t)N * sk_hist_floats(n, sk_iters(c)));
}

/* ---------------------------------------------------------------------------------------------
 * Sinkhorn-Knopp on one n×n matrix.
 * M = exp(z - max z); `iters` times: divide each column by its sum, then each row by its sum.
 * hist [(2*iters+1), n, n] receives every iterate: hist[0] = M0, hist[2t+1] after the column
 * step of iteration t, hist[2t+2] after its row step; the result is hist[2*iters]. z may alias
 * hist (the exp is elementwise, after the max is known).
 * ------------------------------------------------------------------------------------------- */
static void sk_forward(float *hist, const float *z, int n, int iters) {
    int nn = n * n;
    float mx = z[0];
    for (int i = 1; i < nn; i++) mx = fmaxf(mx, z[i]);
    for (int i = 0; i < nn; i++) hist[i] = expf(z[i] - mx);
    for (int t = 0; t < iters; t++) {
        const float *A = hist + (size_t)2 * t * nn;
        float *B = hist + (size_t)(2 * t + 1) * nn; /* columns normalised */
        for (int j = 0; j < n; j++) {
            float s = 0;
            for (int k = 0; k < n; k++) s += A[k * n + j];
            float inv = 1.0f / s;
            for (int k = 0; k < n; k++) B[k * n + j] = A[k * n + j] * inv;
        }
        float *R = B + nn; /* rows normalised */
        for (int k = 0; k < n; k++) {
            float s = 0;
            for (int j = 0; j < n; j++) s += B[k * n + j];
            float inv = 1.0f / s;
            for (int j = 0; j < n; j++) R[k * n + j] = B[k * n + j] * inv;
        }
    }
}

/* Backward of sk_forward. dM [n,n] holds ∂L/∂H_res on entry and ∂L/∂z on exit.
 * A normalisation step B = A / s (s = sum of A's column, or row) has
 *   ∂L/∂A = (∂L/∂B − Σ_line ∂L/∂B ⊙ B) / s        (the sum runs over that column, or row).
 * The exp: ∂M0/∂z = M0, with max z held constant — the result is invariant to scaling M0, so
 * the max's own gradient is exactly zero. Sums are recomputed from the stored inputs in the
 * forward order, so they equal the forward's bit for bit. */
static void sk_backward(float *dM, const float *hist, int n, int iters) {
    int nn = n * n;
    for (int t = iters - 1; t >= 0; t--) {
        const float *A = hist + (size_t)(2 * t + 1) * nn, *B = A + nn; /* row step: A -> B */
        for (int k = 0; k < n; k++) {
            float s = 0, dot = 0;
            for (int j = 0; j < n; j++) s += A[k * n + j];
            for (int j = 0; j < n; j++) dot += dM[k * n + j] * B[k * n + j];
            float inv = 1.0f / s;
            for (int j = 0; j < n; j++) dM[k * n + j] = (dM[k * n + j] - dot) * inv;
        }
        B = A, A = hist + (size_t)2 * t * nn; /* column step: A -> B */
        for (int j = 0; j < n; j++) {
            float s = 0, dot = 0;
            for (int k = 0; k < n; k++) s += A[k * n + j];
            for (int k = 0; k < n; k++) dot += dM[k * n + j] * B[k * n + j];
            float inv = 1.0f / s;
            for (int k = 0; k < n; k++) dM[k * n + j] = (dM[k * n + j] - dot) * inv;
        }
    }
    for (int i = 0; i < nn; i++) dM[i] *= hist[i];
}

void mhc_sinkhorn(float *out, const float *logits, int n, int iters) {
    /* The same arithmetic as sk_forward (so the backward's recomputation matches bit for bit),
     * in place in `out` instead of keeping every iterate. out may alias logits. */
    int nn = n * n;
    float mx = logits[0];
    for (int i = 1; i < nn; i++) mx = fmaxf(mx, logits[i]);
    for (int i = 0; i < nn; i++) out[i] = expf(logits[i] - mx);
    for (int t = 0; t < iters; t++) {
        for (int j = 0; j < n; j++) {
            float s = 0;
            for (int k = 0; k < n; k++) s += out[k * n + j];
            float inv = 1.0f / s;
            for (int k = 0; k < n; k++) out[k * n + j] *= inv;
        }
        for (int k = 0; k < n; k++) {
            float s = 0;
            for (int j = 0; j < n; j++) s += out[k * n + j];
            float inv = 1.0f / s;
            for (int j = 0; j < n; j++) out[k * n + j] *= inv;
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Forward.
 * ------------------------------------------------------------------------------------------- */

/* x [N,n,d] -> a->{rstd,a,h_pre,h_post,h_res}, u [N,d].
 * v·phiᵀ = rstd·(vec(x)·phiᵀ), so the projection runs on x directly and v is never stored. */
void mhc_pre(const dsc_config *c, const mhc_weights *w, mhc_acts *a, float *u, const float *x, int N, float *scratch) {
    (void)scratch;
    const int n = c->mhc_expansion_rate, d = c->hidden_size, C = n * d, m = ncoef(n), iters = sk_iters(c);
    const double eps = c->mhc_rms_eps;
    dsc_linear_forward(a->a, x, w->phi, N, C, m, false); /* [N,m] = x[N,C] · phiᵀ */
    const float al_pre = w->alpha[0], al_post = w->alpha[1], al_res = w->alpha[2];
    const float *b = w->bias;
#pragma omp parallel for schedule(static) if (par((long)N * C))
    for (int t = 0; t < N; t++) {
        const float *xt = x + (size_t)t * C;
        float r = (float)(1.0 / sqrt(dotf(xt, xt, C) / C + eps));
        a->rstd[t] = r;
        float *at = a->a + (size_t)t * m;
        for (int i = 0; i < m; i++) at[i] *= r;
        float *hp = a->h_pre + (size_t)t * n, *hq = a->h_post + (size_t)t * n, *hr = a->h_res + (size_t)t * n * n;
        for (int j = 0; j < n; j++) hp[j] = sigmoidf(al_pre * at[j] + b[j]);
        for (int k = 0; k < n; k++) hq[k] = 2.0f * sigmoidf(al_post * at[n + k] + b[n + k]);
        for (int i = 0; i < n * n; i++) hr[i] = al_res * at[2 * n + i] + b[2 * n + i];
        mhc_sinkhorn(hr, hr, n, iters);
        /* u = Σ_j H_pre[j] x[j] */
        float *ut = u + (size_t)t * d;
        for (int e = 0; e < d; e++) ut[e] = hp[0] * xt[e];
        for (int j = 1; j < n; j++)
            for (int e = 0; e < d; e++) ut[e] += hp[j] * xt[(size_t)j * d + e];
    }
}

/* x_out[k] = Σ_j H_res[k][j] x[j] + H_post[k] y;  x, x_out [N,n,d], y [N,d]. */
void mhc_post(const dsc_config *c, const mhc_acts *a, float *x_out, const float *x, const float *y, int N) {
    const int n = c->mhc_expansion_rate, d = c->hidden_size, C = n * d;
#pragma omp parallel for schedule(static) if (par((long)N * C))
    for (int t = 0; t < N; t++) {
        const float *xt = x + (size_t)t * C, *yt = y + (size_t)t * d;
        const float *hq = a->h_post + (size_t)t * n, *hr = a->h_res + (size_t)t * n * n;
        for (int k = 0; k < n; k++) {
            float *o = x_out + (size_t)t * C + (size_t)k * d;
            for (int e = 0; e < d; e++) o[e] = hq[k] * yt[e];
            for (int j = 0; j < n; j++)
                for (int e = 0; e < d; e++) o[e] += hr[k * n + j] * xt[(size_t)j * d + e];
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Backward.
 * ------------------------------------------------------------------------------------------- */

/* g = dx_out [N,n,d] -> dy [N,d] = Σ_k H_post[k] g[k] (overwritten); dx [N,n,d] += H_resᵀ g;
 * dcoef[post k] = g[k]·y, dcoef[res k,j] = g[k]·x[j] (pre part zeroed; mhc_backward_pre fills it).
 * dx must not alias dx_out. */
void mhc_backward_post(const dsc_config *c, mhc_acts *a, float *dx, float *dy, const float *dx_out, const float *x,
                       const float *y, int N) {
    const int n = c->mhc_expansion_rate, d = c->hidden_size, C = n * d, m = ncoef(n);
#pragma omp parallel for schedule(static) if (par((long)N * C))
    for (int t = 0; t < N; t++) {
        const float *g = dx_out + (size_t)t * C, *xt = x + (size_t)t * C, *yt = y + (size_t)t * d;
        const float *hq = a->h_post + (size_t)t * n, *hr = a->h_res + (size_t)t * n * n;
        float *dyt = dy + (size_t)t * d, *dxt = dx + (size_t)t * C, *dc = a->dcoef + (size_t)t * m;
        for (int e = 0; e < d; e++) dyt[e] = hq[0] * g[e];
        for (int k = 1; k < n; k++)
            for (int e = 0; e < d; e++) dyt[e] += hq[k] * g[(size_t)k * d + e];
        for (int j = 0; j < n; j++) {
            float *dxj = dxt + (size_t)j * d;
            for (int k = 0; k < n; k++)
                for (int e = 0; e < d; e++) dxj[e] += hr[k * n + j] * g[(size_t)k * d + e];
        }
        for (int j = 0; j < n; j++) dc[j] = 0;
        for (int k = 0; k < n; k++) {
            dc[n + k] = (float)dotf(g + (size_t)k * d, yt, d);
            for (int j = 0; j < n; j++) dc[2 * n + k * n + j] = (float)dotf(g + (size_t)k * d, xt + (size_t)j * d, d);
        }
    }
}

/* du [N,d] and a->dcoef -> dx [N,n,d] +=, g->phi, g->bias, g->alpha +=.
 * Chain: dH -> logits z (sigmoid, 2·sigmoid, Sinkhorn) -> a = v·phiᵀ (alpha, bias) -> phi, v
 * -> weightless RMSNorm -> x. With r = rstd and a = r·(phi·x):
 *   dphi  += (r·da) ⊗ x
 *   dx    += phiᵀ(r·da) − x · (r²/C) · (da·a)          (the second term is the RMSNorm's) */
void mhc_backward_pre(const dsc_config *c, const mhc_weights *w, const mhc_weights *g, mhc_acts *a, float *dx,
                      const float *du, const float *x, int N, float *scratch) {
    const int n = c->mhc_expansion_rate, d = c->hidden_size, C = n * d, m = ncoef(n), iters = sk_iters(c);
    const size_t hist_f = sk_hist_floats(n, iters);
    float *dz = scratch;                                    /* [N,m] */
    float *hist = scratch + dsc_round_floats((size_t)N * m); /* [N, hist_f] */
    const float al[3] = {w->alpha[0], w->alpha[1], w->alpha[2]};
    const float *b = w->bias;

    /* 1. per token: dH_pre, dx through u, and the gradient of the logits dz. */
#pragma omp parallel for schedule(static) if (par((long)N * C))
    for (int t = 0; t < N; t++) {
        const float *xt = x + (size_t)t * C, *dut = du + (size_t)t * d, *at = a->a + (size_t)t * m;
        const float *hp = a->h_pre + (size_t)t * n, *hq = a->h_post + (size_t)t * n;
        float *dxt = dx + (size_t)t * C, *dc = a->dcoef + (size_t)t * m, *dzt = dz + (size_t)t * m;
        float *ht = hist + (size_t)t * hist_f;
        for (int j = 0; j < n; j++) {
            const float *xj = xt + (size_t)j * d;
            float *dxj = dxt + (size_t)j * d;
            dc[j] = (float)dotf(dut, xj, d);
            for (int e = 0; e < d; e++) dxj[e] += hp[j] * dut[e];
        }
        for (int j = 0; j < n; j++) dzt[j] = dc[j] * hp[j] * (1.0f - hp[j]);              /* σ' = σ(1−σ) */
        for (int k = 0; k < n; k++) dzt[n + k] = dc[n + k] * hq[k] * (1.0f - 0.5f * hq[k]); /* (2σ)' = 2σ(1−σ) */
        /* recompute the Sinkhorn iterates from the logits, then go back through them */
        for (int i = 0; i < n * n; i++) ht[i] = al[2] * at[2 * n + i] + b[2 * n + i];
        sk_forward(ht, ht, n, iters);
        memcpy(dzt + 2 * n, dc + 2 * n, sizeof(float) * n * n);
        sk_backward(dzt + 2 * n, ht, n, iters);
    }

    /* 2. bias and alpha: sums over tokens (serial in double: N·m is small, the order is fixed). */
    double dal[3] = {0, 0, 0};
    for (int i = 0; i < m; i++) {
        double sb = 0, sa = 0;
        for (int t = 0; t < N; t++) {
            sb += dz[(size_t)t * m + i];
            sa += (double)dz[(size_t)t * m + i] * a->a[(size_t)t * m + i];
        }
        g->bias[i] += (float)sb;
        dal[i < n ? 0 : i < 2 * n ? 1 : 2] += sa;
    }
    for (int q = 0; q < 3; q++) g->alpha[q] += (float)dal[q];

    /* 3. per token: da = alpha·dz; the RMSNorm term of dx; dz <- r·da for the two products. */
#pragma omp parallel for schedule(static) if (par((long)N * C))
    for (int t = 0; t < N; t++) {
        const float *xt = x + (size_t)t * C, *at = a->a + (size_t)t * m;
        float *dzt = dz + (size_t)t * m, *dxt = dx + (size_t)t * C;
        float r = a->rstd[t];
        double dot = 0;
        for (int i = 0; i < m; i++) {
            float da = al[i < n ? 0 : i < 2 * n ? 1 : 2] * dzt[i];
            dot += (double)da * at[i];
            dzt[i] = da * r;
        }
        float coef = (float)(dot * r * r / C);
        for (int e = 0; e < C; e++) dxt[e] -= xt[e] * coef;
    }

    /* 4. the projection: phi [m,C] += dzᵀ·x;  dx [N,C] += dz·phi. */
    dsc_linear_backward_weight(g->phi, dz, x, N, C, m);
    dsc_linear_backward_input(dx, dz, w->phi, N, C, m, true);
}

/* ---------------------------------------------------------------------------------------------
 * Expand / reduce (whole model: embedding -> n streams, n streams -> final norm).
 * ------------------------------------------------------------------------------------------- */

/* x [N,n,d] = n copies of h [N,d]. */
void mhc_expand(float *x, const float *h, int N, int n, int d) {
#pragma omp parallel for schedule(static) if (par((long)N * n * d))
    for (int t = 0; t < N; t++)
        for (int k = 0; k < n; k++) memcpy(x + ((size_t)t * n + k) * d, h + (size_t)t * d, sizeof(float) * d);
}

/* h [N,d] = Σ_k x[k]. */
void mhc_reduce(float *h, const float *x, int N, int n, int d) {
#pragma omp parallel for schedule(static) if (par((long)N * n * d))
    for (int t = 0; t < N; t++) {
        float *ht = h + (size_t)t * d;
        const float *xt = x + (size_t)t * n * d;
        for (int e = 0; e < d; e++) ht[e] = xt[e];
        for (int k = 1; k < n; k++)
            for (int e = 0; e < d; e++) ht[e] += xt[(size_t)k * d + e];
    }
}

/* dh [N,d] += Σ_k dx[k]. */
void mhc_expand_backward(float *dh, const float *dx, int N, int n, int d) {
#pragma omp parallel for schedule(static) if (par((long)N * n * d))
    for (int t = 0; t < N; t++)
        for (int k = 0; k < n; k++)
            for (int e = 0; e < d; e++) dh[(size_t)t * d + e] += dx[((size_t)t * n + k) * d + e];
}

/* dx [N,n,d] += dh in every stream. */
void mhc_reduce_backward(float *dx, const float *dh, int N, int n, int d) {
#pragma omp parallel for schedule(static) if (par((long)N * n * d))
    for (int t = 0; t < N; t++)
        for (int k = 0; k < n; k++)
            for (int e = 0; e < d; e++) dx[((size_t)t * n + k) * d + e] += dh[(size_t)t * d + e];
}
