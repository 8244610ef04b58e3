/* test_sgemm.c: dsc_sgemm on every code path this CPU has (portable, AVX2, AVX-512) against a
 * double-precision reference: all transpose combinations, edge sizes, padded leading dimensions,
 * alpha/beta variants (beta = 0 over NaN), the threaded splits, and calls from inside a parallel
 * region. Integer-valued inputs must match exactly (catches a lost or doubled term at any K);
 * Gaussian inputs must lie within the rigorous fp32 dot-product error bound. */
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "testutil.h"

#define PAD_SENTINEL 12345.0f

typedef struct {
    int M, N, K;
    bool ta, tb;
    float alpha, beta;
    int pad;   /* extra elements per row of A, B and C (leading dimension = width + pad) */
    bool ints; /* integer-valued inputs: the result must be exact */
} gcase;

/* Worst violation of one case, or 0 when it passed: max over C of |err| / tol (> 1 fails). */
typedef struct {
    double ratio;
    int bad_i, bad_j;
    double got, want;
    bool pad_ok;
} gresult;

/* Fills `rows` rows of `cols` values, ld apart; the padding between rows gets NaN, so a kernel
 * that reads it spoils its result. */
static void fill(dsc_rng *r, float *x, int rows, int cols, int ld, bool ints) {
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < (i < rows - 1 ? ld : cols); j++)
            x[(size_t)i * ld + j] = j >= cols ? NAN : ints ? (float)((int)(dsc_rng_u64(r) % 5) - 2) : dsc_rng_normal(r);
}

/* Runs one case on the current code path and compares with the reference. Buffers for A and B
 * end exactly after their last element, so ASan catches any read past them; the padding within
 * them holds NaN and that of C a sentinel that must survive. */
static gresult run_case(const gcase *g, dsc_rng *r) {
    int ar = g->ta ? g->K : g->M, ac = g->ta ? g->M : g->K;
    int br = g->tb ? g->N : g->K, bc = g->tb ? g->K : g->N;
    int lda = ac + g->pad, ldb = bc + g->pad, ldc = g->N + g->pad;
    if (lda < 1) lda = 1;
    if (ldb < 1) ldb = 1;
    if (ldc < 1) ldc = 1;
    size_t an = ar > 0 ? (size_t)(ar - 1) * lda + ac : 0, bn = br > 0 ? (size_t)(br - 1) * ldb + bc : 0;
    size_t cn = (size_t)g->M * ldc;
    float *A = malloc(sizeof(float) * (an ? an : 1)), *B = malloc(sizeof(float) * (bn ? bn : 1));
    float *C = malloc(sizeof(float) * (cn ? cn : 1)), *C0 = malloc(sizeof(float) * (cn ? cn : 1));
    fill(r, A, ar, ac, lda, g->ints);
    fill(r, B, br, bc, ldb, g->ints);
    fill(r, C0, g->M, g->N, ldc, g->ints);
    for (int i = 0; i < g->M; i++)
        for (int j = 0; j < ldc; j++) {
            float *c = &C0[(size_t)i * ldc + j];
            if (j >= g->N)
                *c = PAD_SENTINEL;
            else if (g->beta == 0.0f)
                *c = NAN; /* beta = 0 must overwrite, never read */
        }
    memcpy(C, C0, sizeof(float) * cn);

    dsc_sgemm(g->ta, g->tb, g->M, g->N, g->K, g->alpha, A, lda, B, ldb, g->beta, C, ldc);

    /* reference operands in double: op(A) as [M][K], op(B) transposed as [N][K] */
    double *Ad = malloc(sizeof(double) * ((size_t)g->M * g->K + 1)), *Bd = malloc(sizeof(double) * ((size_t)g->N * g->K + 1));
    for (int i = 0; i < g->M; i++)
        for (int k = 0; k < g->K; k++) Ad[(size_t)i * g->K + k] = g->ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
    for (int j = 0; j < g->N; j++)
        for (int k = 0; k < g->K; k++) Bd[(size_t)j * g->K + k] = g->tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];

    const double u = 0x1p-24;
    gresult res = {0, -1, -1, 0, 0, true};
    for (int i = 0; i < g->M; i++) {
        for (int j = 0; j < ldc; j++) {
            float got = C[(size_t)i * ldc + j], c0 = C0[(size_t)i * ldc + j];
            if (j >= g->N) {
                if (got != PAD_SENTINEL) res.pad_ok = false;
                continue;
            }
            const double *arow = Ad + (size_t)i * g->K, *bcol = Bd + (size_t)j * g->K;
            double acc = 0, abs_sum = 0;
            for (int k = 0; k < g->K; k++) {
                acc += arow[k] * bcol[k];
                abs_sum += fabs(arow[k] * bcol[k]);
            }
            double cterm = g->beta == 0.0f ? 0.0 : (double)g->beta * c0;
            double want = (double)g->alpha * acc + cterm;
            /* any summation order: |err| <= gamma_K * sum|a b|, plus roundings of alpha, beta terms */
            double tol = g->ints ? 0.0 : 2.0 * (g->K + 3) * u * (fabs(g->alpha) * abs_sum + fabs(cterm)) + 1e-30;
            double err = fabs((double)got - want);
            double ratio = isnan(err) ? INFINITY : (tol > 0 ? err / tol : (err > 0 ? INFINITY : 0));
            if (ratio > res.ratio || (ratio > 1 && res.bad_i < 0)) {
                res.ratio = ratio;
                res.bad_i = i, res.bad_j = j, res.got = got, res.want = want;
            }
        }
    }
    free(Ad);
    free(Bd);
    free(A);
    free(B);
    free(C);
    free(C0);
    return res;
}

static void check_case(const char *isa, const gcase *g, dsc_rng *r) {
    gresult res = run_case(g, r);
    CHECK(res.ratio <= 1.0 && res.pad_ok,
          "[%s] %dx%dx%d ta=%d tb=%d alpha=%g beta=%g pad=%d ints=%d: worst err/tol %.3g at (%d,%d) got %.9g want "
          "%.9g; padding %s",
          isa, g->M, g->N, g->K, g->ta, g->tb, (double)g->alpha, (double)g->beta, g->pad, g->ints, res.ratio,
          res.bad_i, res.bad_j, res.got, res.want, res.pad_ok ? "intact" : "OVERWRITTEN");
}

static const float ALPHAS[] = {1.0f, 0.5f, -1.0f, 1.0f};
static const float BETAS[] = {0.0f, 1.0f, 0.25f, 0.0f};
static const int PADS[] = {0, 3, 16, 1, 0};

/* Edge sizes: every combination of small M, N, K and transposes. */
static void test_small_cross(const char *isa, dsc_rng *r) {
    static const int MN[] = {0, 1, 2, 3, 7, 15, 16, 17, 31, 33};
    static const int KS[] = {0, 1, 2, 3, 7, 16, 17, 33};
    int v = 0;
    for (int t = 0; t < 4; t++)
        for (size_t x = 0; x < sizeof MN / sizeof *MN; x++)
            for (size_t y = 0; y < sizeof MN / sizeof *MN; y++)
                for (size_t z = 0; z < sizeof KS / sizeof *KS; z++, v++) {
                    gcase g = {MN[x], MN[y], KS[z], t & 1, t >> 1, ALPHAS[v % 4], BETAS[(v / 4) % 4],
                               PADS[v % 5], v % 3 == 0};
                    check_case(isa, &g, r);
                }
}

/* Sizes around the micro-tile and cache-block edges, several K blocks, more than one column block. */
static void test_medium(const char *isa, dsc_rng *r) {
    static const int S[][3] = {{64, 65, 100},  {129, 100, 65}, {100, 129, 64}, {65, 64, 129},  {129, 129, 129},
                               {300, 257, 129}, {28, 64, 600},  {15, 33, 513},  {20, 1100, 40}, {1, 300, 257},
                               {300, 1, 257},   {42, 96, 256},  {43, 97, 257},  {14, 32, 1}};
    int v = 0;
    for (size_t s = 0; s < sizeof S / sizeof *S; s++)
        for (int t = 0; t < 4; t++, v++) {
            gcase g = {S[s][0], S[s][1], S[s][2], t & 1, t >> 1, ALPHAS[v % 4], BETAS[(v / 3) % 4], PADS[v % 5],
                       v % 2 == 0};
            check_case(isa, &g, r);
        }
    /* transposed A with rows far apart (lda = 7130) and C wider than 4 tiles: packed A panels */
    for (int t = 0; t < 2; t++) {
        gcase g = {130, 140, 300, true, t == 1, t ? 0.5f : 1.0f, t ? 0.0f : 1.0f, 7000, t == 0};
        check_case(isa, &g, r);
    }
}

/* The threaded front end: task grids with dynamic claiming (several tasks per thread, op(B)
 * kept across tasks, K over several blocks, more columns than one block) and the K split (small
 * C, long K), with 2 threads and with 3 (uneven splits). */
static void test_threaded(const char *isa, dsc_rng *r) {
    static const int S[][4] = {{150, 129, 100, 2}, {120, 100, 300, 2}, {30, 1100, 40, 2}, {14, 32, 4096, 2},
                               {5, 7, 20000, 2},   {40, 300, 50, 2},   {120, 100, 300, 3}, {5, 7, 20000, 3}};
    int saved = omp_get_max_threads(), v = 0;
    for (size_t s = 0; s < sizeof S / sizeof *S; s++) {
        omp_set_num_threads(S[s][3]);
        for (int t = 0; t < 4; t++, v++) {
            gcase g = {S[s][0], S[s][1], S[s][2], t & 1, t >> 1, ALPHAS[v % 4], BETAS[(v / 2) % 4], PADS[v % 5],
                       v % 2 == 1};
            check_case(isa, &g, r);
        }
    }
    omp_set_num_threads(saved);
}

/* BLAS: alpha = 0 or K = 0 only scales C (A and B may hold NaN and are not read). */
static void test_degenerate(const char *isa) {
    float A[6] = {NAN, NAN, NAN, NAN, NAN, NAN}, B[6] = {NAN, NAN, NAN, NAN, NAN, NAN};
    float C[4] = {1, 2, 3, 4};
    dsc_sgemm(false, false, 2, 2, 3, 0.0f, A, 3, B, 2, 0.5f, C, 2);
    CHECK(C[0] == 0.5f && C[1] == 1.0f && C[2] == 1.5f && C[3] == 2.0f, "[%s] alpha=0 must only scale C", isa);
    float D[4] = {NAN, NAN, NAN, NAN};
    dsc_sgemm(true, true, 2, 2, 0, 1.0f, A, 2, B, 1, 0.0f, D, 2);
    CHECK(D[0] == 0 && D[1] == 0 && D[2] == 0 && D[3] == 0, "[%s] K=0, beta=0 must zero C", isa);
}

/* Calls from inside a parallel region run single-threaded on the calling thread; several threads
 * multiply at once, each into its own C. */
static void test_in_parallel(const char *isa) {
    enum { THREADS = 4, PER = 6 };
    static const int S[PER][3] = {{128, 32, 128}, {96, 96, 48}, {33, 17, 65}, {150, 129, 40}, {64, 64, 64}, {7, 1, 3}};
    gresult res[THREADS][PER][4];
#pragma omp parallel num_threads(THREADS)
    {
        int t = omp_get_thread_num();
        dsc_rng r;
        dsc_rng_seed(&r, 1000 + (uint64_t)t);
        for (int s = 0; s < PER; s++)
            for (int tr = 0; tr < 4; tr++) {
                gcase g = {S[s][0], S[s][1], S[s][2], tr & 1, tr >> 1, ALPHAS[(s + t) % 4], BETAS[tr], t, s % 2};
                res[t][s][tr] = run_case(&g, &r);
            }
    }
    for (int t = 0; t < THREADS; t++)
        for (int s = 0; s < PER; s++)
            for (int tr = 0; tr < 4; tr++)
                CHECK(res[t][s][tr].ratio <= 1.0 && res[t][s][tr].pad_ok,
                      "[%s] in parallel region: thread %d shape %dx%dx%d trans %d: err/tol %.3g", isa, t, S[s][0],
                      S[s][1], S[s][2], tr, res[t][s][tr].ratio);
}

/* The linear-layer wrappers are three transpose patterns of the same product. */
static void test_linear(const char *isa, dsc_rng *r) {
    enum { N = 37, IN = 45, OUT = 29 };
    float x[N * IN], W[OUT * IN], y[N * OUT], dy[N * OUT], dx[N * IN], dW[OUT * IN];
    tu_fill_normal(r, x, N * IN, 1.0f);
    tu_fill_normal(r, W, OUT * IN, 1.0f);
    tu_fill_normal(r, dy, N * OUT, 1.0f);
    double worst = 0;
    dsc_linear_forward(y, x, W, N, IN, OUT, false);
    dsc_linear_backward_input(dx, dy, W, N, IN, OUT, false);
    for (int i = 0; i < OUT * IN; i++) dW[i] = 1.0f;
    dsc_linear_backward_weight(dW, dy, x, N, IN, OUT);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) {
            double s = 0;
            for (int i = 0; i < IN; i++) s += (double)x[n * IN + i] * W[o * IN + i];
            worst = fmax(worst, fabs(s - y[n * OUT + o]));
        }
    for (int n = 0; n < N; n++)
        for (int i = 0; i < IN; i++) {
            double s = 0;
            for (int o = 0; o < OUT; o++) s += (double)dy[n * OUT + o] * W[o * IN + i];
            worst = fmax(worst, fabs(s - dx[n * IN + i]));
        }
    for (int o = 0; o < OUT; o++)
        for (int i = 0; i < IN; i++) {
            double s = 1.0;
            for (int n = 0; n < N; n++) s += (double)dy[n * OUT + o] * x[n * IN + i];
            worst = fmax(worst, fabs(s - dW[o * IN + i]));
        }
    CHECK(worst < 1e-4, "[%s] linear wrappers: max abs error %.3g", isa, worst);
}

int main(void) {
    static const dsc_isa paths[] = {DSC_ISA_PORTABLE, DSC_ISA_AVX2, DSC_ISA_AVX512};
    static const char *names[] = {"portable", "avx2", "avx512"};
    dsc_isa initial = dsc_kernels_isa();
    printf("test_sgemm: default path %s, %d threads\n", dsc_kernels_isa_name(), dsc_num_threads());
    for (int p = 0; p < 3; p++) {
        if (dsc_kernels_force_isa(paths[p]) != paths[p]) {
            printf("  %s: not supported by this CPU, skipped\n", names[p]);
            continue;
        }
        CHECK(strcmp(dsc_kernels_isa_name(), names[p]) == 0, "isa name %s for %s", dsc_kernels_isa_name(), names[p]);
        int before = tu_failures, checks = tu_checks;
        dsc_rng r;
        dsc_rng_seed(&r, 42 + (uint64_t)p);
        test_small_cross(names[p], &r);
        test_medium(names[p], &r);
        test_threaded(names[p], &r);
        test_degenerate(names[p]);
        test_in_parallel(names[p]);
        test_linear(names[p], &r);
        printf("  %s: %d checks, %d failures\n", names[p], tu_checks - checks, tu_failures - before);
    }
    dsc_kernels_force_isa(initial);
    return tu_finish("test_sgemm");
}
