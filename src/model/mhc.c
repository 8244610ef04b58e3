/* mhc.c: Manifold-Constrained Hyper-Connections around one sub-layer (docs/MODEL.md §8): the
 * per-token coefficients (weightless RMSNorm, one projection, sigmoid and Sinkhorn-Knopp), the
 * stream mixing on either side of F, and the exact backward pass through all of it, Sinkhorn
 * iterations unrolled. F itself runs outside (mhc.h shows the call order). */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "base/mem.h"
#include "kernels/kernels.h"
#include "kernels/vmath.h"
#include "model/mhc.h"

/* Coefficient vector layout, per token: [pre n | post n | res n*n (row-major res[k][j])]. */
static inline int ncoef(int n) { return n * n + 2 * n; }
static inline int sk_iters(const dsc_config *c) { return c->mhc_sinkhorn_iters > 0 ? c->mhc_sinkhorn_iters : 0; }
/* Token loops go parallel only when there is enough work to pay for the threads. */
static inline int par(long work) { return !omp_in_parallel() && work > 32768; }
#define INLINE static inline __attribute__((always_inline))

/* The per-token coefficient maths (sigmoids, Sinkhorn-Knopp and their backward passes) runs on
 * blocks of SKL tokens at once, in structure-of-arrays layout: Z[i*SKL + l] is coefficient i of
 * the block's token l. Every operation is then an elementwise loop over the SKL lanes, which the
 * compiler vectorises; per lane, the arithmetic is exactly the one-matrix-at-a-time arithmetic
 * (same operations, same order), so results do not depend on a token's block or lane. */
#define SKL 16
#define MAX_N 16 /* largest expansion rate (config.c checks it): sizes the stack buffers */
#define MAX_COEF (MAX_N * MAX_N + 2 * MAX_N)
static inline int nblocks(int N) { return (N + SKL - 1) / SKL; }
/* mhc_pre runs the projection per chunk of tokens (one thread's dsc_sgemm), so that the chunk's
 * rows of x are still in cache for the per-token work that follows: at most CHUNK tokens (512 KiB
 * of x for n·d = 1024), fewer when that leaves threads idle. A multiple of SKL. */
#define CHUNK 128
static inline int pre_chunk(int N) {
    int per = (N + 2 * omp_get_max_threads() - 1) / (2 * omp_get_max_threads()); /* two chunks a thread */
    per = (per + SKL - 1) / SKL * SKL;
    return per < SKL ? SKL : per > CHUNK ? CHUNK : per;
}
/* Floats of one block's Sinkhorn iterates, kept for the backward pass: (2*iters+1) n×n SoA. */
static inline size_t sk_hist_floats(int n, int iters) { return (size_t)(2 * iters + 1) * n * n * SKL; }

/* A dot product of length d (a few hundred): a float reduction the compiler vectorises (the
 * simd reduction lets it keep 16 partial sums), accurate to a few ulp at these lengths. */
static inline float dotf(const float *p, const float *q, int len) {
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

/* Only mhc_backward_pre uses scratch: dz [N, m] (gradient of the logits, then of the projection),
 * per-block partial sums for the bias and alpha gradients [nblocks, 2m] (doubles), with the
 * fused projection products (tiles_ok) a packed copy of phi [m, n*d], and one work area per
 * thread (bwd_slots of them: the thread count is capped there): two SoA coefficient blocks, a
 * block's Sinkhorn iterates and (tiles_ok) the thread's packed partial dphi [m, n*d].
 * mhc_pre needs none. */
#define MAX_SLOTS 16
static inline int bwd_slots(int N) { return nblocks(N) < MAX_SLOTS ? nblocks(N) : MAX_SLOTS; }
static inline int tiles_ok(int n, int d);
static inline size_t bwd_work_floats(const dsc_config *c) {
    int n = c->mhc_expansion_rate, m = ncoef(n);
    return 2 * dsc_round_floats((size_t)m * SKL) + dsc_round_floats(sk_hist_floats(n, sk_iters(c))) +
           (tiles_ok(n, c->hidden_size) ? dsc_round_floats((size_t)m * n * c->hidden_size) : 0);
}
size_t mhc_scratch_floats(const dsc_config *c, int N) {
    int n = c->mhc_expansion_rate, m = ncoef(n);
    size_t phiP = tiles_ok(n, c->hidden_size) ? dsc_round_floats((size_t)m * n * c->hidden_size) : 0;
    return dsc_round_floats((size_t)N * m) + dsc_round_floats((size_t)nblocks(N) * 4 * m) + phiP +
           (size_t)bwd_slots(N) * bwd_work_floats(c);
}

/* ---------------------------------------------------------------------------------------------
 * Sinkhorn-Knopp on SKL n×n matrices at once (SoA: H[i*SKL + l] is entry i of lane l's matrix).
 * On entry H holds the logits z. M = exp(z - max z); `iters` times: divide each column by its
 * sum, then each row by its sum. Iterate s goes to H + s*step: s = 0 the exp, 2t+1 after the
 * column step of iteration t, 2t+2 after its row step; the result is iterate 2*iters.
 * step = n*n*SKL keeps every iterate (the backward pass needs them), step = 0 works in place:
 * the same operations either way, so the forward pass and the backward pass's recomputation
 * agree bit for bit (the arithmetic has no mul-add pair the compiler could contract).
 * n is a parameter of inline functions so that the common case (n = 4) unrolls.
 * ------------------------------------------------------------------------------------------- */
INLINE void sk_forward(float *H, size_t step, int n, int iters) {
    const int nn = n * n;
    float mx[SKL];
#pragma omp simd
    for (int l = 0; l < SKL; l++) {
        float v = H[l];
        for (int i = 1; i < nn; i++) v = H[i * SKL + l] > v ? H[i * SKL + l] : v;
        mx[l] = v;
    }
    for (int i = 0; i < nn; i++)
#pragma omp simd
        for (int l = 0; l < SKL; l++) H[i * SKL + l] = dsc_expf(H[i * SKL + l] - mx[l]);
    for (int t = 0; t < iters; t++) {
        const float *A = H + (size_t)2 * t * step;
        float *B = H + (size_t)(2 * t + 1) * step; /* columns normalised */
        for (int j = 0; j < n; j++)
#pragma omp simd
            for (int l = 0; l < SKL; l++) {
                float s = A[j * SKL + l];
                for (int k = 1; k < n; k++) s += A[(k * n + j) * SKL + l];
                float inv = 1.0f / s;
                for (int k = 0; k < n; k++) B[(k * n + j) * SKL + l] = A[(k * n + j) * SKL + l] * inv;
            }
        float *R = B + step; /* rows normalised */
        for (int k = 0; k < n; k++)
#pragma omp simd
            for (int l = 0; l < SKL; l++) {
                float s = B[k * n * SKL + l];
                for (int j = 1; j < n; j++) s += B[(k * n + j) * SKL + l];
                float inv = 1.0f / s;
                for (int j = 0; j < n; j++) R[(k * n + j) * SKL + l] = B[(k * n + j) * SKL + l] * inv;
            }
    }
}

/* Backward of sk_forward with the full history H (step n*n*SKL). dM holds ∂L/∂H_res on entry and
 * ∂L/∂z on exit. A normalisation step B = A / s (s = sum of A's column, or row) has
 *   ∂L/∂A = (∂L/∂B − Σ_line ∂L/∂B ⊙ B) / s        (the sum runs over that column, or row).
 * The exp: ∂M0/∂z = M0, with max z held constant — the result is invariant to scaling M0, so
 * the max's own gradient is exactly zero. Sums are recomputed from the stored inputs in the
 * forward order, so they equal the forward's bit for bit. */
INLINE void sk_backward(float *dM, const float *H, int n, int iters) {
    const size_t S = (size_t)n * n * SKL;
    for (int t = iters - 1; t >= 0; t--) {
        const float *A = H + (size_t)(2 * t + 1) * S, *B = A + S; /* row step: A -> B */
        for (int k = 0; k < n; k++)
#pragma omp simd
            for (int l = 0; l < SKL; l++) {
                const int r0 = k * n * SKL + l;
                float s = A[r0], dot = dM[r0] * B[r0];
                for (int j = 1; j < n; j++) s += A[r0 + j * SKL], dot += dM[r0 + j * SKL] * B[r0 + j * SKL];
                float inv = 1.0f / s;
                for (int j = 0; j < n; j++) dM[r0 + j * SKL] = (dM[r0 + j * SKL] - dot) * inv;
            }
        B = A, A = H + (size_t)2 * t * S; /* column step: A -> B */
        for (int j = 0; j < n; j++)
#pragma omp simd
            for (int l = 0; l < SKL; l++) {
                const int c0 = j * SKL + l, cs = n * SKL;
                float s = A[c0], dot = dM[c0] * B[c0];
                for (int k = 1; k < n; k++) s += A[c0 + k * cs], dot += dM[c0 + k * cs] * B[c0 + k * cs];
                float inv = 1.0f / s;
                for (int k = 0; k < n; k++) dM[c0 + k * cs] = (dM[c0 + k * cs] - dot) * inv;
            }
    }
    for (int i = 0; i < n * n; i++)
#pragma omp simd
        for (int l = 0; l < SKL; l++) dM[i * SKL + l] *= H[i * SKL + l];
}

static void sk_forward_any(float *H, size_t step, int n, int iters) {
    if (n == 4) sk_forward(H, step, 4, iters);
    else sk_forward(H, step, n, iters);
}

static void sk_backward_any(float *dM, const float *H, int n, int iters) {
    if (n == 4) sk_backward(dM, H, 4, iters);
    else sk_backward(dM, H, n, iters);
}

/* The Sinkhorn logits of a block from the (rstd-scaled) projections Za [m][SKL]: one helper, so
 * the forward pass and the backward pass's recomputation use the same (explicit) fma. */
static void res_logits(float *z, const float *Za, const float *b, float al, int n) {
    for (int i = 0; i < n * n; i++)
#pragma omp simd
        for (int l = 0; l < SKL; l++) z[i * SKL + l] = fmaf(al, Za[(2 * n + i) * SKL + l], b[2 * n + i]);
}

void mhc_sinkhorn(float *out, const float *logits, int n, int iters) {
    /* Lane 0 of a block (the other lanes hold zeros), so the result is the forward pass's bit for
     * bit. out may alias logits. */
    float buf[MAX_N * MAX_N * SKL];
    if (n < 1) return;
    float *H = n <= MAX_N ? buf : dsc_alloc(sizeof(float) * n * n * SKL);
    if (!H) return;
    for (int i = 0; i < n * n; i++)
        for (int l = 0; l < SKL; l++) H[i * SKL + l] = l ? 0.0f : logits[i];
    sk_forward_any(H, 0, n, iters > 0 ? iters : 0);
    for (int i = 0; i < n * n; i++) out[i] = H[i * SKL];
    if (H != buf) dsc_free(H);
}

/* ---------------------------------------------------------------------------------------------
 * Forward.
 * ------------------------------------------------------------------------------------------- */

/* u = Σ_j H_pre[j] x[j] for one token: one pass, the sum in registers. */
INLINE void pre_mix(float *ut, const float *xt, const float *hp, int n, int d) {
#pragma omp simd
    for (int e = 0; e < d; e++) {
        float s = hp[0] * xt[e];
        for (int j = 1; j < n; j++) s += hp[j] * xt[(size_t)j * d + e];
        ut[e] = s;
    }
}

/* One block of tokens [t0, t0+nt): rstd, the scaled projections, the coefficients and u. */
INLINE void pre_block(const dsc_config *c, const mhc_weights *w, mhc_acts *a, float *u, const float *x, int t0,
                      int nt, int n) {
    const int d = c->hidden_size, C = n * d, m = ncoef(n), iters = sk_iters(c);
    const double eps = c->mhc_rms_eps;
    const float al0 = w->alpha[0], al1 = w->alpha[1], *b = w->bias;
    float Z[MAX_COEF * SKL];
    for (int l = 0; l < SKL; l++) {
        if (l < nt) {
            const int t = t0 + l;
            const float *xt = x + (size_t)t * C;
            float r = (float)(1.0 / sqrt((double)dotf(xt, xt, C) / C + eps));
            a->rstd[t] = r;
            float *at = a->a + (size_t)t * m;
            for (int i = 0; i < m; i++) at[i] *= r, Z[i * SKL + l] = at[i];
        } else {
            for (int i = 0; i < m; i++) Z[i * SKL + l] = 0; /* padding lanes: harmless values */
        }
    }
    float *z = Z + 2 * n * SKL; /* the Sinkhorn block, in place over the projections */
    res_logits(z, Z, b, w->alpha[2], n);
    for (int j = 0; j < n; j++)
#pragma omp simd
        for (int l = 0; l < SKL; l++) Z[j * SKL + l] = dsc_sigmoidf(fmaf(al0, Z[j * SKL + l], b[j]));
    for (int k = n; k < 2 * n; k++)
#pragma omp simd
        for (int l = 0; l < SKL; l++) Z[k * SKL + l] = 2.0f * dsc_sigmoidf(fmaf(al1, Z[k * SKL + l], b[k]));
    sk_forward_any(z, 0, n, iters);
    for (int l = 0; l < nt; l++) {
        const int t = t0 + l;
        float *hp = a->h_pre + (size_t)t * n, *hq = a->h_post + (size_t)t * n, *hr = a->h_res + (size_t)t * n * n;
        for (int j = 0; j < n; j++) hp[j] = Z[j * SKL + l], hq[j] = Z[(n + j) * SKL + l];
        for (int i = 0; i < n * n; i++) hr[i] = z[i * SKL + l];
        pre_mix(u + (size_t)t * d, x + (size_t)t * C, hp, n, d);
    }
}

/* x [N,n,d] -> a->{rstd,a,h_pre,h_post,h_res}, u [N,d].
 * v·phiᵀ = rstd·(vec(x)·phiᵀ), so the projection runs on x directly and v is never stored. */
void mhc_pre(const dsc_config *c, const mhc_weights *w, mhc_acts *a, float *u, const float *x, int N, float *scratch) {
    (void)scratch;
    const int n = c->mhc_expansion_rate, C = n * c->hidden_size, m = ncoef(n), cs = pre_chunk(N);
    const int nch = (N + cs - 1) / cs;
#pragma omp parallel for schedule(static) if (par((long)N * C))
    for (int ch = 0; ch < nch; ch++) {
        const int c0 = ch * cs, rows = N - c0 < cs ? N - c0 : cs;
        /* a [rows,m] = x[rows,C] · phiᵀ (on this thread), then the blocks while x is in cache */
        dsc_linear_forward(a->a + (size_t)c0 * m, x + (size_t)c0 * C, w->phi, rows, C, m, false);
        for (int t0 = c0; t0 < c0 + rows; t0 += SKL) {
            int nt = c0 + rows - t0 < SKL ? c0 + rows - t0 : SKL;
            if (n == 4) pre_block(c, w, a, u, x, t0, nt, 4);
            else pre_block(c, w, a, u, x, t0, nt, n);
        }
    }
}

/* x_out[k] = Σ_j H_res[k][j] x[j] + H_post[k] y for one token. */
INLINE void post_token(float *o, const float *xt, const float *yt, const float *hq, const float *hr, int n, int d) {
    for (int k = 0; k < n; k++) {
        float *ok = o + (size_t)k * d;
        const float *hk = hr + k * n, q = hq[k];
#pragma omp simd
        for (int e = 0; e < d; e++) {
            float s = q * yt[e];
            for (int j = 0; j < n; j++) s += hk[j] * xt[(size_t)j * d + e];
            ok[e] = s;
        }
    }
}

/* x_out[k] = Σ_j H_res[k][j] x[j] + H_post[k] y;  x, x_out [N,n,d], y [N,d]. */
void mhc_post(const dsc_config *c, const mhc_acts *a, float *x_out, const float *x, const float *y, int N) {
    const int n = c->mhc_expansion_rate, d = c->hidden_size, C = n * d;
#pragma omp parallel for schedule(static) if (par((long)N * C))
    for (int t = 0; t < N; t++) {
        const float *xt = x + (size_t)t * C, *yt = y + (size_t)t * d;
        const float *hq = a->h_post + (size_t)t * n, *hr = a->h_res + (size_t)t * n * n;
        if (n == 4) post_token(x_out + (size_t)t * C, xt, yt, hq, hr, 4, d);
        else post_token(x_out + (size_t)t * C, xt, yt, hq, hr, n, d);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Backward.
 * ------------------------------------------------------------------------------------------- */

/* One token of mhc_backward_post: dy = Σ_k H_post[k] g[k]; dx[j] += Σ_k H_res[k][j] g[k], in
 * one pass over g; then the coefficient gradients dc (post, res). */
INLINE void bpost_token(float *dyt, float *dxt, float *dc, const float *g, const float *xt, const float *yt,
                        const float *hq, const float *hr, int n, int d) {
#pragma omp simd
    for (int e = 0; e < d; e++) {
        float s = hq[0] * g[e];
        for (int k = 1; k < n; k++) s += hq[k] * g[(size_t)k * d + e];
        dyt[e] = s;
        for (int j = 0; j < n; j++) {
            float v = dxt[(size_t)j * d + e];
            for (int k = 0; k < n; k++) v += hr[k * n + j] * g[(size_t)k * d + e];
            dxt[(size_t)j * d + e] = v;
        }
    }
    for (int j = 0; j < n; j++) dc[j] = 0;
    for (int k = 0; k < n; k++) {
        const float *gk = g + (size_t)k * d;
        if (n == 4) { /* the five dots of g[k] in one pass: five independent chains */
            float sy = 0, s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            const float *x0 = xt, *x1 = xt + d, *x2 = xt + 2 * d, *x3 = xt + 3 * d;
#pragma omp simd reduction(+ : sy, s0, s1, s2, s3)
            for (int e = 0; e < d; e++) {
                float ge = gk[e];
                sy += ge * yt[e], s0 += ge * x0[e], s1 += ge * x1[e], s2 += ge * x2[e], s3 += ge * x3[e];
            }
            dc[n + k] = sy;
            dc[2 * n + k * n + 0] = s0, dc[2 * n + k * n + 1] = s1;
            dc[2 * n + k * n + 2] = s2, dc[2 * n + k * n + 3] = s3;
        } else {
            dc[n + k] = dotf(gk, yt, d);
            for (int j = 0; j < n; j++) dc[2 * n + k * n + j] = dotf(gk, xt + (size_t)j * d, d);
        }
    }
}

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
        if (n == 4) bpost_token(dyt, dxt, dc, g, xt, yt, hq, hr, 4, d);
        else bpost_token(dyt, dxt, dc, g, xt, yt, hq, hr, n, d);
    }
}

/* dc[j] = du·x[j] for one token's n streams. */
INLINE void pre_dots(float *dc, const float *dut, const float *xt, int n, int d) {
    if (n == 4) {
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        const float *x0 = xt, *x1 = xt + d, *x2 = xt + 2 * d, *x3 = xt + 3 * d;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
        for (int e = 0; e < d; e++) {
            float g = dut[e];
            s0 += g * x0[e], s1 += g * x1[e], s2 += g * x2[e], s3 += g * x3[e];
        }
        dc[0] = s0, dc[1] = s1, dc[2] = s2, dc[3] = s3;
    } else {
        for (int j = 0; j < n; j++) dc[j] = dotf(dut, xt + (size_t)j * d, d);
    }
}

/* dx[j] += H_pre[j] du − x[j]·coef for one token (the u path and the RMSNorm term), one pass. */
INLINE void pre_dx(float *dxt, const float *dut, const float *xt, const float *hp, float coef, int n, int d) {
#pragma omp simd
    for (int e = 0; e < d; e++) {
        float g = dut[e];
        for (int j = 0; j < n; j++) {
            float v = dxt[(size_t)j * d + e] + hp[j] * g;
            v -= xt[(size_t)j * d + e] * coef;
            dxt[(size_t)j * d + e] = v;
        }
    }
}

/* ---- n = 4 (m = 24) with d a multiple of PW: the projection's two products in the block loop ----
 * Both run vectorised over c, PW columns (one vector) at a time, with the token and coefficient
 * loops unrolled so that the running sums stay in registers. phi is read from a packed copy
 * phiP [C/PW][m][PW] and the dphi partial is kept packed the same way: the m values a column
 * vector needs are then contiguous (m rows of phi are 4·C bytes apart, which for C = 1024 puts
 * all of them in one L1 set). */
#define PW 16
#define DX_TT 8 /* tokens per dx tile */
static inline int tiles_ok(int n, int d) {
#if defined(__clang__)
    /* the tiles need the token and coefficient loops unrolled before vectorisation, which GCC
     * does (#pragma GCC unroll) and clang does not: there they would run scalar */
    (void)n, (void)d;
    return 0;
#else
    return n == 4 && d % PW == 0;
#endif
}

/* For TT tokens from t0, one pass over their dx rows adds the u path, the RMSNorm term and the
 * projection's input gradient (what pre_dx and dsc_linear_backward_input do in two passes):
 *   dx[t][c] += H_pre[t][j] du[t][e] − x[t][c]·coef[t] + Σ_i dz[t][i] phi[i][c]      (c = j·d + e) */
INLINE void bpre_dx_tile(const mhc_acts *a, float *dx, const float *du, const float *x, const float *dz,
                         const float *phiP, const float *coef, int t0, int d, int TT) {
    enum { n = 4, m = 24 };
    const size_t C = (size_t)n * d;
    /* one base pointer per array (rows at constant offsets): few registers for addresses */
    float *o = dx + t0 * C;
    const float *xs = x + t0 * C, *us = du + (size_t)t0 * d, *zs = dz + (size_t)t0 * m, *hs = a->h_pre + (size_t)t0 * n;
    for (int j = 0; j < n; j++)
        for (int eb = 0; eb < d; eb += PW) {
            const size_t cb = (size_t)j * d + eb;
            const float *pp = phiP + cb * m;
#pragma omp simd simdlen(PW)
            for (int l = 0; l < PW; l++) {
                float s[DX_TT];
#pragma GCC unroll 16
                for (int t = 0; t < TT; t++) {
                    s[t] = o[t * C + cb + l] + hs[t * n + j] * us[(size_t)t * d + eb + l];
                    s[t] -= xs[t * C + cb + l] * coef[t];
                }
#pragma GCC unroll 32
                for (int i = 0; i < m; i++) {
                    const float p = pp[i * PW + l];
#pragma GCC unroll 16
                    for (int t = 0; t < TT; t++) s[t] += zs[t * m + i] * p;
                }
#pragma GCC unroll 16
                for (int t = 0; t < TT; t++) o[t * C + cb + l] = s[t];
            }
        }
}

/* P += Σ_t dz[t] ⊗ x[t] over TT tokens from t0 (P: this thread's packed partial of dphi). The TT x
 * vectors stay in registers; each P vector is loaded and stored once for TT tokens. */
INLINE void bpre_dphi_tile(float *P, const float *x, const float *dz, int t0, int C, int TT) {
    enum { m = 24 };
    const float *xs = x + (size_t)t0 * C, *zs = dz + (size_t)t0 * m;
    for (int cb = 0; cb < C; cb += PW) {
        float *pp = P + (size_t)cb * m;
#pragma omp simd simdlen(PW)
        for (int l = 0; l < PW; l++) {
            float xv[SKL];
#pragma GCC unroll 16
            for (int t = 0; t < TT; t++) xv[t] = xs[(size_t)t * C + cb + l];
#pragma GCC unroll 32
            for (int i = 0; i < m; i++) {
                float s = zs[i] * xv[0];
#pragma GCC unroll 16
                for (int t = 1; t < TT; t++) s += zs[t * m + i] * xv[t];
                pp[i * PW + l] += s;
            }
        }
    }
}

/* One block of tokens [t0, t0+nt) of mhc_backward_pre, up to the projection's products:
 * dH_pre (dots with du), the logits' gradient through the sigmoids and Sinkhorn-Knopp (SoA), this
 * block's share of the bias and alpha gradients (psum: [m] Σ dz, [m] Σ dz·a, in double), dz
 * [rows t0.., m] = r·alpha·dz for the products, and dx += H_pre du − x·(r²/C)(da·a). */
INLINE void bpre_block(const dsc_config *c, const mhc_weights *w, mhc_acts *a, float *dx, const float *du,
                       const float *x, float *dz, double *psum, float *work, float *P, const float *phiP, int t0,
                       int nt, int n, int fuse) {
    const int d = c->hidden_size, C = n * d, m = ncoef(n), iters = sk_iters(c);
    const float al[3] = {w->alpha[0], w->alpha[1], w->alpha[2]};
    float *Zd = work, *Za = Zd + dsc_round_floats((size_t)m * SKL); /* dc -> dz, and a, SoA */
    float *H = Za + dsc_round_floats((size_t)m * SKL);               /* Sinkhorn iterates */
    for (int l = 0; l < SKL; l++) {
        if (l < nt) {
            const int t = t0 + l;
            const float *at = a->a + (size_t)t * m;
            float *dc = a->dcoef + (size_t)t * m;
            pre_dots(dc, du + (size_t)t * d, x + (size_t)t * C, n, d);
            for (int i = 0; i < m; i++) Zd[i * SKL + l] = dc[i], Za[i * SKL + l] = at[i];
        } else {
            for (int i = 0; i < m; i++) Zd[i * SKL + l] = 0, Za[i * SKL + l] = 0; /* padding: all gradients 0 */
        }
    }
    /* sigmoids: σ' = σ(1−σ), (2σ)' = 2σ(1−σ) = h(1 − h/2); h from the forward pass */
    for (int l = 0; l < nt; l++) {
        const int t = t0 + l;
        const float *hp = a->h_pre + (size_t)t * n, *hq = a->h_post + (size_t)t * n;
        for (int j = 0; j < n; j++) Zd[j * SKL + l] *= hp[j] * (1.0f - hp[j]);
        for (int k = 0; k < n; k++) Zd[(n + k) * SKL + l] *= hq[k] * (1.0f - 0.5f * hq[k]);
    }
    /* Sinkhorn: recompute the iterates from the logits, then go back through them */
    res_logits(H, Za, w->bias, al[2], n);
    sk_forward_any(H, (size_t)n * n * SKL, n, iters);
    sk_backward_any(Zd + 2 * n * SKL, H, n, iters);
    for (int i = 0; i < m; i++) {
        double sb = 0, sa = 0;
        for (int l = 0; l < nt; l++) sb += Zd[i * SKL + l], sa += (double)Zd[i * SKL + l] * Za[i * SKL + l];
        psum[i] = sb, psum[m + i] = sa;
    }
    float coef[SKL];
    for (int l = 0; l < nt; l++) {
        const int t = t0 + l;
        const float r = a->rstd[t];
        float *dzt = dz + (size_t)t * m;
        double dot = 0;
        for (int i = 0; i < m; i++) {
            float da = al[i < n ? 0 : i < 2 * n ? 1 : 2] * Zd[i * SKL + l];
            dot += (double)da * Za[i * SKL + l];
            dzt[i] = da * r;
        }
        coef[l] = (float)(dot * r * r / C);
    }
    if (fuse) { /* the projection's products too, a tile of tokens at a time */
        int l = 0;
        for (; l + DX_TT <= nt; l += DX_TT) bpre_dx_tile(a, dx, du, x, dz, phiP, coef + l, t0 + l, d, DX_TT);
        for (; l < nt; l++) bpre_dx_tile(a, dx, du, x, dz, phiP, coef + l, t0 + l, d, 1);
        if (nt == SKL) bpre_dphi_tile(P, x, dz, t0, C, SKL);
        else
            for (l = 0; l < nt; l++) bpre_dphi_tile(P, x, dz, t0 + l, C, 1);
    } else {
        for (int l = 0; l < nt; l++) {
            const int t = t0 + l;
            pre_dx(dx + (size_t)t * C, du + (size_t)t * d, x + (size_t)t * C, a->h_pre + (size_t)t * n, coef[l], n,
                   d);
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
    if (N <= 0) return;
    const int n = c->mhc_expansion_rate, C = n * c->hidden_size, m = ncoef(n), nb = nblocks(N);
    const int fuse = tiles_ok(n, c->hidden_size); /* the projection's products inside the block loop */
    float *dz = scratch;                                                   /* [N,m] */
    double *psum = (double *)(scratch + dsc_round_floats((size_t)N * m)); /* [nb, 2m] */
    float *phiP = scratch + dsc_round_floats((size_t)N * m) + dsc_round_floats((size_t)nb * 4 * m); /* [C/PW,m,PW] */
    float *work = phiP + (fuse ? dsc_round_floats((size_t)m * C) : 0);
    const size_t work_f = bwd_work_floats(c), pofs = work_f - (fuse ? dsc_round_floats((size_t)m * C) : 0);
    int nthr = omp_get_max_threads();
    if (nthr > bwd_slots(N)) nthr = bwd_slots(N);

    /* 1. per block: everything per token, the per-block sums for bias and alpha, and (tiles) dx
     * and the thread's share of dphi from the projection */
#pragma omp parallel num_threads(nthr) if (par((long)N * C))
    {
        float *wk = work + (size_t)omp_get_thread_num() * work_f, *P = wk + pofs;
        if (fuse) {
            memset(P, 0, sizeof(float) * m * C);
#pragma omp for schedule(static)
            for (int cb = 0; cb < C; cb += PW)
                for (int i = 0; i < m; i++)
                    for (int l = 0; l < PW; l++) phiP[(size_t)cb * m + i * PW + l] = w->phi[(size_t)i * C + cb + l];
        }
#pragma omp for schedule(static)
        for (int blk = 0; blk < nb; blk++) {
            int t0 = blk * SKL, nt = N - t0 < SKL ? N - t0 : SKL;
            double *ps = psum + (size_t)blk * 2 * m;
            if (fuse) bpre_block(c, w, a, dx, du, x, dz, ps, wk, P, phiP, t0, nt, 4, 1);
            else bpre_block(c, w, a, dx, du, x, dz, ps, wk, P, phiP, t0, nt, n, 0);
        }
        /* (implicit barrier) dphi += the threads' partials, in thread order */
        if (fuse) {
            const int nth = omp_get_num_threads();
#pragma omp for schedule(static)
            for (int cb = 0; cb < C; cb += PW)
                for (int q = 0; q < nth; q++) {
                    const float *Pq = work + (size_t)q * work_f + pofs + (size_t)cb * m;
                    for (int i = 0; i < m; i++)
#pragma omp simd
                        for (int l = 0; l < PW; l++) g->phi[(size_t)i * C + cb + l] += Pq[i * PW + l];
                }
        }
    }

    /* 2. bias and alpha: the block sums, added in block order (independent of the thread count) */
    double dal[3] = {0, 0, 0};
    for (int i = 0; i < m; i++) {
        double sb = 0, sa = 0;
        for (int blk = 0; blk < nb; blk++) sb += psum[(size_t)blk * 2 * m + i], sa += psum[(size_t)blk * 2 * m + m + i];
        g->bias[i] += (float)sb;
        dal[i < n ? 0 : i < 2 * n ? 1 : 2] += sa;
    }
    for (int q = 0; q < 3; q++) g->alpha[q] += (float)dal[q];

    /* 3. otherwise, the projection's products: phi [m,C] += dzᵀ·x;  dx [N,C] += dz·phi */
    if (!fuse) {
        dsc_linear_backward_weight(g->phi, dz, x, N, C, m);
        dsc_linear_backward_input(dx, dz, w->phi, N, C, m, true);
    }
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
