/* test_mhc.c: the mHC sub-layer (src/model/mhc.c). Sinkhorn properties; the forward pass against a
 * plain double-precision transcription of docs/MODEL.md §8 (and mhc_sinkhorn against the forward
 * pass, bit for bit); the initialisation claim (the block starts as a plain residual);
 * finite-difference checks of every gradient through a toy F; batch runs (parallel paths, partial
 * blocks, several thread counts) against one token at a time; expand/reduce and their adjoints. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsc.h"
#include "model/mhc.h"
#include "testutil.h"

static dsc_config make_cfg(int n, int d, int iters) {
    dsc_config c;
    memset(&c, 0, sizeof c);
    c.hidden_size = d;
    c.mhc_expansion_rate = n;
    c.mhc_sinkhorn_iters = iters;
    c.mhc_rms_eps = 1e-20f;
    return c;
}

static float *fvec(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

/* ---------------------------------------------------------------------------------------------
 * A sub-layer under test: weights, activations, a toy F and a linear loss.
 *   F(u) = tanh(u ⊙ cf)   (cf [d] fixed)          L = Σ rw ⊙ x'   (rw [N,n,d] fixed)
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    dsc_config cfg;
    int N, n, d, m;
    mhc_weights w, g;     /* weights and their gradients */
    float *g0_phi, *g0_bias, *g0_alpha, *g0_x; /* initial contents of the gradients (checks +=) */
    mhc_acts acts;
    float *acts_mem, *scratch;
    float *x, *cf, *rw, *u, *y, *xo; /* [N,n,d] [d] [N,n,d] [N,d] [N,d] [N,n,d] */
    float *dx, *dy, *du;             /* [N,n,d] [N,d] [N,d] */
} fixture;

static void fx_init(fixture *f, int N, int n, int d, int iters, dsc_rng *r) {
    memset(f, 0, sizeof *f);
    f->cfg = make_cfg(n, d, iters);
    f->N = N, f->n = n, f->d = d, f->m = n * n + 2 * n;
    size_t C = (size_t)n * d, m = f->m;
    f->w.phi = fvec(m * C), f->w.bias = fvec(m), f->w.alpha = fvec(3);
    f->g.phi = fvec(m * C), f->g.bias = fvec(m), f->g.alpha = fvec(3);
    f->g0_phi = fvec(m * C), f->g0_bias = fvec(m), f->g0_alpha = fvec(3), f->g0_x = fvec(N * C);
    f->acts_mem = fvec(mhc_acts_floats(&f->cfg, N));
    mhc_acts_bind(&f->acts, f->acts_mem, &f->cfg, N);
    f->scratch = fvec(mhc_scratch_floats(&f->cfg, N));
    f->x = fvec(N * C), f->cf = fvec(d), f->rw = fvec(N * C), f->u = fvec((size_t)N * d), f->y = fvec((size_t)N * d);
    f->xo = fvec(N * C), f->dx = fvec(N * C), f->dy = fvec((size_t)N * d), f->du = fvec((size_t)N * d);
    /* far from init, so that every coefficient and the Sinkhorn iterations matter */
    tu_fill_normal(r, f->w.phi, m * C, 0.3f);
    tu_fill_normal(r, f->w.bias, m, 0.5f);
    for (int q = 0; q < 3; q++) f->w.alpha[q] = 0.7f + 0.6f * dsc_rng_uniform(r);
    /* tokens of different scales, so that rstd is far from 1 and its terms are visible */
    for (int t = 0; t < N; t++) tu_fill_normal(r, f->x + t * C, C, 0.4f + 0.7f * (t % 5));
    tu_fill_normal(r, f->cf, d, 1.0f);
    tu_fill_normal(r, f->rw, N * C, 1.0f);
    tu_fill_normal(r, f->g0_phi, m * C, 1.0f);
    tu_fill_normal(r, f->g0_bias, m, 1.0f);
    tu_fill_normal(r, f->g0_alpha, 3, 1.0f);
    tu_fill_normal(r, f->g0_x, N * C, 1.0f);
}

static void fx_free(fixture *f) {
    float *p[] = {f->w.phi, f->w.bias, f->w.alpha, f->g.phi, f->g.bias, f->g.alpha, f->g0_phi, f->g0_bias,
                  f->g0_alpha, f->g0_x, f->acts_mem, f->scratch, f->x, f->cf, f->rw, f->u, f->y, f->xo, f->dx,
                  f->dy, f->du};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
}

static double fx_forward(void *ctx) {
    fixture *f = ctx;
    int N = f->N, d = f->d;
    mhc_pre(&f->cfg, &f->w, &f->acts, f->u, f->x, N, f->scratch);
    for (int t = 0; t < N; t++)
        for (int e = 0; e < d; e++) f->y[(size_t)t * d + e] = tanhf(f->u[(size_t)t * d + e] * f->cf[e]);
    mhc_post(&f->cfg, &f->acts, f->xo, f->x, f->y, N);
    double L = 0;
    for (size_t i = 0; i < (size_t)N * f->n * d; i++) L += (double)f->rw[i] * f->xo[i];
    return L;
}

/* Gradients of L into f->dx and f->g, which start from the g0 patterns (the backward adds);
 * afterwards the g0 patterns are subtracted so f->dx and f->g hold the gradient alone. */
static void fx_backward(fixture *f) {
    int N = f->N, d = f->d;
    size_t C = (size_t)f->n * d, m = f->m;
    fx_forward(f);
    memcpy(f->dx, f->g0_x, sizeof(float) * N * C);
    memcpy(f->g.phi, f->g0_phi, sizeof(float) * m * C);
    memcpy(f->g.bias, f->g0_bias, sizeof(float) * m);
    memcpy(f->g.alpha, f->g0_alpha, sizeof(float) * 3);
    for (size_t i = 0; i < (size_t)N * d; i++) f->dy[i] = 1e30f; /* must be overwritten */
    mhc_backward_post(&f->cfg, &f->acts, f->dx, f->dy, f->rw, f->x, f->y, N);
    for (int t = 0; t < N; t++)
        for (int e = 0; e < d; e++) {
            size_t i = (size_t)t * d + e;
            f->du[i] = f->dy[i] * f->cf[e] * (1.0f - f->y[i] * f->y[i]);
        }
    mhc_backward_pre(&f->cfg, &f->w, &f->g, &f->acts, f->dx, f->du, f->x, N, f->scratch);
    for (size_t i = 0; i < N * C; i++) f->dx[i] -= f->g0_x[i];
    for (size_t i = 0; i < m * C; i++) f->g.phi[i] -= f->g0_phi[i];
    for (size_t i = 0; i < m; i++) f->g.bias[i] -= f->g0_bias[i];
    for (int q = 0; q < 3; q++) f->g.alpha[q] -= f->g0_alpha[q];
}

/* ---------------------------------------------------------------------------------------------
 * Reference forward: docs/MODEL.md §8 written out in double, token by token.
 * ------------------------------------------------------------------------------------------- */
static void ref_forward(const fixture *f, double *u, double *hpre, double *hpost, double *hres, double *xo) {
    int n = f->n, d = f->d, C = n * d, m = f->m, T = f->cfg.mhc_sinkhorn_iters;
    double *v = malloc(sizeof(double) * C), *a = malloc(sizeof(double) * m), *M = malloc(sizeof(double) * n * n);
    for (int t = 0; t < f->N; t++) {
        const float *xt = f->x + (size_t)t * C;
        double ss = 0;
        for (int i = 0; i < C; i++) ss += (double)xt[i] * xt[i];
        double r = 1.0 / sqrt(ss / C + f->cfg.mhc_rms_eps);
        for (int i = 0; i < C; i++) v[i] = xt[i] * r;
        for (int o = 0; o < m; o++) {
            a[o] = 0;
            for (int i = 0; i < C; i++) a[o] += v[i] * f->w.phi[(size_t)o * C + i];
        }
        double *hp = hpre + (size_t)t * n, *hq = hpost + (size_t)t * n, *hr = hres + (size_t)t * n * n;
        for (int j = 0; j < n; j++) hp[j] = 1 / (1 + exp(-(f->w.alpha[0] * a[j] + f->w.bias[j])));
        for (int k = 0; k < n; k++) hq[k] = 2 / (1 + exp(-(f->w.alpha[1] * a[n + k] + f->w.bias[n + k])));
        double mx = -INFINITY;
        for (int i = 0; i < n * n; i++) {
            M[i] = f->w.alpha[2] * a[2 * n + i] + f->w.bias[2 * n + i];
            mx = fmax(mx, M[i]);
        }
        for (int i = 0; i < n * n; i++) M[i] = exp(M[i] - mx);
        for (int it = 0; it < T; it++) {
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int k = 0; k < n; k++) s += M[k * n + j];
                for (int k = 0; k < n; k++) M[k * n + j] /= s;
            }
            for (int k = 0; k < n; k++) {
                double s = 0;
                for (int j = 0; j < n; j++) s += M[k * n + j];
                for (int j = 0; j < n; j++) M[k * n + j] /= s;
            }
        }
        memcpy(hr, M, sizeof(double) * n * n);
        for (int e = 0; e < d; e++) {
            double s = 0;
            for (int j = 0; j < n; j++) s += hp[j] * xt[j * d + e];
            u[(size_t)t * d + e] = s;
        }
        for (int k = 0; k < n; k++)
            for (int e = 0; e < d; e++) {
                double yv = tanh((float)u[(size_t)t * d + e] * f->cf[e]), s = hq[k] * yv;
                for (int j = 0; j < n; j++) s += hr[k * n + j] * xt[j * d + e];
                xo[(size_t)t * C + k * d + e] = s;
            }
    }
    free(v), free(a), free(M);
}

static void check_vs_double(const char *what, const float *got, const double *ref, size_t len, double tol) {
    float *rf = malloc(sizeof(float) * len);
    for (size_t i = 0; i < len; i++) rf[i] = (float)ref[i];
    tu_check_close(what, got, rf, len, tol);
    free(rf);
}

/* ---------------------------------------------------------------------------------------------
 * 1. Sinkhorn-Knopp
 * ------------------------------------------------------------------------------------------- */
static void test_sinkhorn(dsc_rng *r) {
    /* Columns converge geometrically, slower the more spread the logits are: at std 1 they are
     * ≈ 1 after 20 iterations; at std 3 only rows (exact by construction) and signs are checked. */
    double worst_row = 0, worst_col = 0, worst_col3 = 0;
    for (int n = 2; n <= 6; n++)
        for (int rep = 0; rep < 20; rep++) {
            float z[36], M[36];
            tu_fill_normal(r, z, (size_t)n * n, rep < 10 ? 1.0f : 3.0f);
            mhc_sinkhorn(M, z, n, 20);
            int nonneg = 1;
            for (int i = 0; i < n * n; i++) nonneg &= M[i] >= 0 && isfinite(M[i]);
            CHECK(nonneg, "sinkhorn n=%d: negative or non-finite entry", n);
            for (int k = 0; k < n; k++) {
                double s = 0, sc = 0;
                for (int j = 0; j < n; j++) s += M[k * n + j], sc += M[j * n + k];
                worst_row = fmax(worst_row, fabs(s - 1));
                if (rep < 10)
                    worst_col = fmax(worst_col, fabs(sc - 1));
                else
                    worst_col3 = fmax(worst_col3, fabs(sc - 1));
            }
        }
    CHECK(worst_row <= 1e-6, "sinkhorn: row sums off by %.3g", worst_row);
    CHECK(worst_col <= 1e-4, "sinkhorn: column sums off by %.3g", worst_col);
    /* in-place use (out aliases logits) gives the same result; a huge shift changes nothing */
    float z[16], z2[16], M[16], M2[16];
    tu_fill_normal(r, z, 16, 1.0f);
    memcpy(M2, z, sizeof z);
    mhc_sinkhorn(M, z, 4, 20);
    mhc_sinkhorn(M2, M2, 4, 20);
    tu_check_close("sinkhorn in place", M2, M, 16, 0);
    for (int i = 0; i < 16; i++) z2[i] = z[i] + 500.0f;
    mhc_sinkhorn(M2, z2, 4, 20);
    tu_check_close("sinkhorn shift", M2, M, 16, 1e-4);
    printf("sinkhorn: worst |row sum - 1| %.3g, worst |col sum - 1| %.3g (logits std 1), %.3g (std 3)\n",
           worst_row, worst_col, worst_col3);
}

/* ---------------------------------------------------------------------------------------------
 * 2. Forward vs. the double transcription; 3. the initialisation claim
 * ------------------------------------------------------------------------------------------- */
static void test_forward(int n, int d, dsc_rng *r) {
    fixture f;
    fx_init(&f, 5, n, d, 20, r);
    fx_forward(&f);
    size_t N = 5, C = (size_t)n * d;
    double *u = malloc(sizeof(double) * N * d), *hp = malloc(sizeof(double) * N * n);
    double *hq = malloc(sizeof(double) * N * n), *hr = malloc(sizeof(double) * N * n * n);
    double *xo = malloc(sizeof(double) * N * C);
    ref_forward(&f, u, hp, hq, hr, xo);
    char what[64];
    snprintf(what, sizeof what, "forward n=%d: u", n), check_vs_double(what, f.u, u, N * d, 1e-5);
    snprintf(what, sizeof what, "forward n=%d: H_pre", n), check_vs_double(what, f.acts.h_pre, hp, N * n, 1e-5);
    snprintf(what, sizeof what, "forward n=%d: H_post", n), check_vs_double(what, f.acts.h_post, hq, N * n, 1e-5);
    snprintf(what, sizeof what, "forward n=%d: H_res", n), check_vs_double(what, f.acts.h_res, hr, N * n * n, 1e-5);
    snprintf(what, sizeof what, "forward n=%d: x'", n), check_vs_double(what, f.xo, xo, N * C, 1e-5);
    /* mhc_sinkhorn is the forward pass's Sinkhorn bit for bit (the logits as mhc.c forms them) */
    int same = 1;
    for (size_t t = 0; t < N; t++) {
        float z[36], M[36];
        const float *at = f.acts.a + t * f.m;
        for (int i = 0; i < n * n; i++) z[i] = fmaf(f.w.alpha[2], at[2 * n + i], f.w.bias[2 * n + i]);
        mhc_sinkhorn(M, z, n, 20);
        same &= memcmp(M, f.acts.h_res + t * n * n, sizeof(float) * n * n) == 0;
    }
    CHECK(same, "forward n=%d: H_res differs from mhc_sinkhorn of its logits", n);
    /* the coefficients are really spread out (a test at near-identity H_res would prove little) */
    double offdiag = 0;
    for (size_t t = 0; t < N; t++)
        for (int k = 0; k < n; k++) offdiag = fmax(offdiag, hr[t * n * n + k * n + (k + 1) % n]);
    CHECK(offdiag > 0.05, "forward n=%d: H_res nearly diagonal (max off-diagonal %.3g)", n, offdiag);
    free(u), free(hp), free(hq), free(hr), free(xo);
    fx_free(&f);
}

static void test_init(int n, dsc_rng *r) {
    const int N = 3, d = 16, m = n * n + 2 * n;
    fixture f;
    fx_init(&f, N, n, d, 20, r);
    memset(f.w.phi, 0, sizeof(float) * m * n * d);
    for (int q = 0; q < 3; q++) f.w.alpha[q] = 0.01f;
    for (int i = 0; i < m; i++) f.w.bias[i] = 0;
    for (int j = 0; j < n; j++) f.w.bias[j] = -logf((float)(n - 1));
    for (int k = 0; k < n; k++) f.w.bias[2 * n + k * n + k] = 4.0f;
    float *h = fvec((size_t)N * d);
    tu_fill_normal(r, h, (size_t)N * d, 1.0f);
    mhc_expand(f.x, h, N, n, d);
    fx_forward(&f);
    tu_check_close("init: u == h", f.u, h, (size_t)N * d, 1e-6);
    float *want = fvec((size_t)N * n * d);
    for (int t = 0; t < N; t++)
        for (int k = 0; k < n; k++)
            for (int e = 0; e < d; e++) want[((size_t)t * n + k) * d + e] = h[t * d + e] + f.y[t * d + e];
    char what[64];
    snprintf(what, sizeof what, "init n=%d: x'[k] == h + y", n);
    tu_check_close(what, f.xo, want, (size_t)N * n * d, 1e-6);
    free(h), free(want);
    fx_free(&f);
}

/* ---------------------------------------------------------------------------------------------
 * 4. Finite differences of L through mhc_pre -> F -> mhc_post
 * ------------------------------------------------------------------------------------------- */
static double test_gradients(int n, int d, int iters, dsc_rng *r) {
    fixture f;
    const int N = 5;
    fx_init(&f, N, n, d, iters, r);
    fx_backward(&f);
    size_t C = (size_t)n * d, m = f.m;
    float *gx = fvec(N * C), *gphi = fvec(m * C), *gbias = fvec(m), galpha[3];
    memcpy(gx, f.dx, sizeof(float) * N * C);
    memcpy(gphi, f.g.phi, sizeof(float) * m * C);
    memcpy(gbias, f.g.bias, sizeof(float) * m);
    memcpy(galpha, f.g.alpha, sizeof galpha);
    /* Float rounding of L, not truncation, limits the accuracy here: h = 1e-2 gives errors ~1e-4
     * (smaller steps give more). A direction sees only ~1/sqrt(size) of a wrong gradient's error,
     * so the tolerance sits ~20x above the noise, not at 1e-2 (dropping the RMSNorm term of dx
     * shows as ~1e-2 on the directions). */
    const float h = 1e-2f;
    const double tol = 2e-3;
    char what[64];
    double worst = 0, e;
    snprintf(what, sizeof what, "grad n=%d x", n);
    e = tu_gradcheck(what, fx_forward, &f, f.x, gx, N * C, h, 16, 16, tol, r), worst = fmax(worst, e);
    printf("  %-14s worst rel. error %.2e\n", what, e);
    snprintf(what, sizeof what, "grad n=%d phi", n);
    e = tu_gradcheck(what, fx_forward, &f, f.w.phi, gphi, m * C, h, 16, 16, tol, r), worst = fmax(worst, e);
    printf("  %-14s worst rel. error %.2e\n", what, e);
    snprintf(what, sizeof what, "grad n=%d bias", n);
    e = tu_gradcheck(what, fx_forward, &f, f.w.bias, gbias, m, h, 16, 16, tol, r), worst = fmax(worst, e);
    printf("  %-14s worst rel. error %.2e\n", what, e);
    snprintf(what, sizeof what, "grad n=%d alpha", n);
    e = tu_gradcheck(what, fx_forward, &f, f.w.alpha, galpha, 3, h, 4, 3, tol, r), worst = fmax(worst, e);
    printf("  %-14s worst rel. error %.2e\n", what, e);
    free(gx), free(gphi), free(gbias);
    fx_free(&f);
    return worst;
}

/* ---------------------------------------------------------------------------------------------
 * 5. A batch large enough for the parallel path equals one token at a time: full blocks of 16
 *    tokens (48), a partial last block (45), and more threads than blocks (threads > 0 sets them).
 * ------------------------------------------------------------------------------------------- */
static void test_batch(int N, int threads, dsc_rng *r) {
    const int n = 4, d = 256, m = n * n + 2 * n;
    const int saved_threads = omp_get_max_threads();
    if (threads > 0) omp_set_num_threads(threads);
    const size_t C = (size_t)n * d;
    fixture fb, f1;
    fx_init(&fb, N, n, d, 20, r);
    fx_init(&f1, 1, n, d, 20, r);
    memcpy(f1.w.phi, fb.w.phi, sizeof(float) * m * C);
    memcpy(f1.w.bias, fb.w.bias, sizeof(float) * m);
    memcpy(f1.w.alpha, fb.w.alpha, sizeof(float) * 3);
    memcpy(f1.cf, fb.cf, sizeof(float) * d);
    memset(fb.g0_phi, 0, sizeof(float) * m * C), memset(fb.g0_bias, 0, sizeof(float) * m);
    memset(fb.g0_alpha, 0, sizeof(float) * 3);
    fx_backward(&fb);
    float *xo = fvec(N * C), *dx = fvec(N * C), *gphi = fvec(m * C), *gbias = fvec(m), galpha[3] = {0, 0, 0};
    for (int t = 0; t < N; t++) {
        memcpy(f1.x, fb.x + t * C, sizeof(float) * C);
        memcpy(f1.rw, fb.rw + t * C, sizeof(float) * C);
        memcpy(f1.g0_x, fb.g0_x + t * C, sizeof(float) * C);
        fx_backward(&f1);
        memcpy(xo + t * C, f1.xo, sizeof(float) * C);
        memcpy(dx + t * C, f1.dx, sizeof(float) * C);
        for (size_t i = 0; i < m * C; i++) gphi[i] += f1.g.phi[i];
        for (int i = 0; i < m; i++) gbias[i] += f1.g.bias[i];
        for (int q = 0; q < 3; q++) galpha[q] += f1.g.alpha[q];
    }
    char what[64];
    snprintf(what, sizeof what, "batch %d (threads %d): x'", N, omp_get_max_threads());
    tu_check_close(what, fb.xo, xo, N * C, 1e-5);
    snprintf(what, sizeof what, "batch %d (threads %d): dx", N, omp_get_max_threads());
    tu_check_close(what, fb.dx, dx, N * C, 1e-5);
    snprintf(what, sizeof what, "batch %d (threads %d): dphi", N, omp_get_max_threads());
    tu_check_close(what, fb.g.phi, gphi, m * C, 1e-5);
    snprintf(what, sizeof what, "batch %d (threads %d): dbias", N, omp_get_max_threads());
    tu_check_close(what, fb.g.bias, gbias, m, 1e-5);
    snprintf(what, sizeof what, "batch %d (threads %d): dalpha", N, omp_get_max_threads());
    tu_check_close(what, fb.g.alpha, galpha, 3, 1e-5);
    free(xo), free(dx), free(gphi), free(gbias);
    fx_free(&fb), fx_free(&f1);
    omp_set_num_threads(saved_threads);
}

/* ---------------------------------------------------------------------------------------------
 * 6. Expand / reduce
 * ------------------------------------------------------------------------------------------- */
static void test_expand_reduce(dsc_rng *r) {
    const int N = 3, n = 4, d = 5;
    const size_t C = (size_t)n * d;
    float h[15], x[60], hr[15], dh[15], dx[60], gx[60], gh[15];
    tu_fill_normal(r, h, 15, 1.0f);
    mhc_expand(x, h, N, n, d);
    int ok = 1;
    for (int t = 0; t < N; t++)
        for (int k = 0; k < n; k++)
            for (int e = 0; e < d; e++) ok &= x[t * C + k * d + e] == h[t * d + e];
    CHECK(ok, "expand: streams are not copies");
    mhc_reduce(hr, x, N, n, d);
    for (int i = 0; i < 15; i++) h[i] *= n;
    tu_check_close("reduce(expand(h)) == n h", hr, h, 15, 1e-6);
    /* backward passes are the adjoints, and they add: <expand(h), X> == <h, expand_backward(X)> */
    tu_fill_normal(r, gx, 60, 1.0f), tu_fill_normal(r, gh, 15, 1.0f);
    for (int i = 0; i < 15; i++) dh[i] = 1.0f;
    mhc_expand_backward(dh, gx, N, n, d);
    double lhs = 0, rhs = 0;
    mhc_expand(x, gh, N, n, d);
    for (int i = 0; i < 60; i++) lhs += (double)x[i] * gx[i];
    for (int i = 0; i < 15; i++) rhs += (double)gh[i] * (dh[i] - 1.0f);
    CHECK(fabs(lhs - rhs) <= 1e-5 * fabs(lhs), "expand_backward: adjoint %.8g vs %.8g", lhs, rhs);
    for (int i = 0; i < 60; i++) dx[i] = 1.0f;
    mhc_reduce_backward(dx, gh, N, n, d);
    mhc_reduce(hr, gx, N, n, d);
    lhs = rhs = 0;
    for (int i = 0; i < 15; i++) lhs += (double)hr[i] * gh[i];
    for (int i = 0; i < 60; i++) rhs += (double)gx[i] * (dx[i] - 1.0f);
    CHECK(fabs(lhs - rhs) <= 1e-5 * fabs(lhs), "reduce_backward: adjoint %.8g vs %.8g", lhs, rhs);
}

int main(void) {
    dsc_rng r;
    dsc_rng_seed(&r, 20251231);
    test_sinkhorn(&r);
    for (int n = 2; n <= 4; n++) test_forward(n, 8 + 4 * (n - 2), &r);
    for (int n = 2; n <= 4; n++) test_init(n, &r);
    printf("finite differences (error relative to the gradient norm / largest entry):\n");
    double worst = 0;
    worst = fmax(worst, test_gradients(4, 16, 20, &r));
    worst = fmax(worst, test_gradients(3, 12, 20, &r));
    worst = fmax(worst, test_gradients(2, 8, 20, &r));
    worst = fmax(worst, test_gradients(4, 8, 3, &r));
    printf("finite differences: worst %.2e\n", worst);
    test_batch(48, 0, &r);
    test_batch(45, 0, &r);
    test_batch(45, 1, &r);
    test_batch(40, 5, &r);
    test_expand_reduce(&r);
    return tu_finish("test_mhc");
}
