/* matmul.c: dsc_sgemm throughput on the model's shapes and on 1024³, against the measured fp32
 * FMA peak of this machine and against OpenBLAS (loaded at run time if installed) as a peer
 * measured in the same run. Reports medians of alternating batches, so both see the same noise.
 * Usage: bench_matmul [batches]   (default 7; OPENBLAS_CORETYPE should be set, see below) */
#include <dlfcn.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/rng.h"
#include "bench_util.h"
#include "kernels/kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define BATCH_SECONDS 0.03 /* each timed batch repeats the product for about this long */

/* ---- OpenBLAS peer ---- */

typedef void (*cblas_sgemm_fn)(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                               const float *B, int ldb, float beta, float *C, int ldc);
typedef struct {
    cblas_sgemm_fn sgemm;
    void (*set_threads)(int);
    const char *lib, *core;
} blas_peer;

static blas_peer load_blas(void) {
    static const char *libs[] = {"libopenblas.so.0", "libopenblas.so", "libblas.so.3"};
    blas_peer p = {0};
    if (!getenv("OPENBLAS_CORETYPE")) {
        printf("WARNING: OPENBLAS_CORETYPE is not set; OpenBLAS may not recognise this CPU and fall back to slow\n"
               "         kernels. Run with OPENBLAS_CORETYPE=SkylakeX for a fair peer.\n");
    }
    for (size_t i = 0; i < sizeof libs / sizeof *libs && !p.sgemm; i++) {
        void *h = dlopen(libs[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) continue;
        p.sgemm = (cblas_sgemm_fn)dlsym(h, "cblas_sgemm");
        p.set_threads = (void (*)(int))dlsym(h, "openblas_set_num_threads");
        char *(*corename)(void) = (char *(*)(void))dlsym(h, "openblas_get_corename");
        p.core = corename ? corename() : "?";
        p.lib = libs[i];
    }
    return p;
}

/* ---- timing ---- */

typedef struct {
    const char *what;
    int M, N, K;
    bool ta, tb;
} shape;

/* The linear layers (N_tokens = 2048, d = 256): forward y = x Wᵀ (NT), input grad dx = dy W
 * (NN), weight grad dW = dyᵀ x (TN); expert-sized products; attention per head. */
static const shape SHAPES[] = {
    {"square", 1024, 1024, 1024, false, false},
    {"fwd d->d", 2048, 256, 256, false, true},
    {"fwd d->768", 2048, 768, 256, false, true},
    {"fwd 768->d", 2048, 256, 768, false, true},
    {"fwd d->128", 2048, 128, 256, false, true},
    {"fwd d->192", 2048, 192, 256, false, true},
    {"fwd d->80", 2048, 80, 256, false, true},
    {"fwd head", 2048, 8192, 256, false, true},
    {"dx d->d", 2048, 256, 256, false, false},
    {"dx d->768", 2048, 256, 768, false, false},
    {"dx 768->d", 2048, 768, 256, false, false},
    {"dx head", 2048, 256, 8192, false, false},
    {"dW d->d", 256, 256, 2048, true, false},
    {"dW d->768", 768, 256, 2048, true, false},
    {"dW 768->d", 256, 768, 2048, true, false},
    {"dW d->128", 128, 256, 2048, true, false},
    {"dW head", 8192, 256, 2048, true, false},
    {"expert fwd", 256, 128, 256, false, true},
    {"expert dx", 256, 256, 128, false, false},
    {"expert dW", 128, 256, 256, true, false},
    {"att QK^T", 256, 256, 48, false, true},
    {"att PV", 256, 32, 256, false, false},
    {"att P^T dO", 256, 32, 256, true, false},
};

typedef struct {
    const shape *s;
    float *A, *B, *C;
} job;

static void run_dsc(const job *j) {
    const shape *s = j->s;
    int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    dsc_sgemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, j->A, lda, j->B, ldb, 0.0f, j->C, s->N);
}

static void run_blas(const blas_peer *p, const job *j) {
    const shape *s = j->s;
    int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    p->sgemm(101, s->ta ? 112 : 111, s->tb ? 112 : 111, s->M, s->N, s->K, 1.0f, j->A, lda, j->B, ldb, 0.0f, j->C,
             s->N);
}

/* Seconds per call over one batch of `calls` calls. */
static double time_batch(const blas_peer *p, const job *j, int calls) {
    double t0 = bench_now();
    for (int c = 0; c < calls; c++) p ? run_blas(p, j) : run_dsc(j);
    return (bench_now() - t0) / calls;
}

/* Idle threads of either library spin for a while before they sleep (OpenMP's for ~ms, OpenBLAS's
 * for up to ~0.1 s) and would steal a core from the other library's next batch: wait them out. */
static void settle(void) {
    struct timespec ts = {0, 120 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

typedef struct {
    double med, best; /* GFLOP/s */
} rate;

static rate summarize(double *g, int n) {
    rate r = {bench_median(g, n), g[0]};
    for (int i = 0; i < n; i++)
        if (g[i] > r.best) r.best = g[i];
    return r;
}

/* GFLOP/s of dsc and of the peer (if any), measured in alternating batches. */
static void measure(const blas_peer *peer, const job *j, int batches, rate *r_dsc, rate *r_blas) {
    double flops = 2.0 * j->s->M * j->s->N * j->s->K;
    double per = time_batch(NULL, j, 1);
    int calls = per > BATCH_SECONDS ? 1 : (int)(BATCH_SECONDS / per) + 1;
    if (peer) { /* warm up the peer's threads and buffers */
        time_batch(peer, j, 1);
        settle();
    }
    double gd[64], gb[64];
    for (int b = 0; b < batches; b++) {
        gd[b] = flops / time_batch(NULL, j, calls) * 1e-9;
        if (peer) {
            settle();
            gb[b] = flops / time_batch(peer, j, calls) * 1e-9;
            settle();
        }
    }
    *r_dsc = summarize(gd, batches);
    *r_blas = peer ? summarize(gb, batches) : (rate){0, 0};
}

static void print_header(void) {
    printf("%-12s %-16s %-2s %8s %6s %7s | %8s %7s | %6s\n", "product", "MxNxK", "op", "dsc", "%peak", "(best)",
           "OpenBLAS", "(best)", "ratio");
}

static void print_row(const shape *s, rate d, rate b, double peak) {
    char dims[32];
    snprintf(dims, sizeof dims, "%dx%dx%d", s->M, s->N, s->K);
    printf("%-12s %-16s %c%c %8.1f %5.1f%% %7.1f | ", s->what, dims, s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', d.med,
           peak > 0 ? 100 * d.med / peak : 0.0, d.best);
    if (b.med > 0)
        printf("%8.1f %7.1f | %6.2f\n", b.med, b.best, d.med / b.med);
    else
        printf("%8s %7s | %6s\n", "n/a", "", "n/a");
}

int main(int argc, char **argv) {
    int batches = argc > 1 ? atoi(argv[1]) : 7;
    if (batches < 1 || batches > 64) batches = 7;
    int threads = dsc_num_threads();
    blas_peer blas = load_blas();
    const blas_peer *peer = blas.sgemm ? &blas : NULL;

    double peak = dsc_fma_peak_gflops(threads), peak1 = dsc_fma_peak_gflops(1);
    printf("dsc_sgemm: path %s, %d threads; fp32 FMA peak %.1f GFLOP/s (%d threads), %.1f GFLOP/s (1 thread)\n",
           dsc_kernels_isa_name(), threads, peak, threads, peak1);
    if (peer)
        printf("peer: %s (OpenBLAS core %s)\n", blas.lib, blas.core);
    else
        printf("peer: no BLAS library found (install libopenblas0-pthread); peer columns n/a\n");
    if (threads > 1 && peak1 > 0 && peak < 0.8 * threads * peak1)
        printf("WARNING: %d threads reach only %.1fx the 1-thread peak: other processes are using the cores, so the\n"
               "         multithreaded figures below measure the machine's load more than the code.\n",
               threads, peak / peak1);
    const char *wait = getenv("OMP_WAIT_POLICY");
    printf("OMP_WAIT_POLICY=%s (with other busy processes on the machine, 'passive' is far more robust)\n",
           wait ? wait : "(unset: threads spin between parallel regions)");
    printf("GFLOP/s: medians of %d alternating batches of ~%.0f ms each (best batch in brackets); ratio of\n"
           "medians dsc/OpenBLAS\n\n",
           batches, 1e3 * BATCH_SECONDS);

    size_t max_a = 0, max_b = 0, max_c = 0;
    for (size_t i = 0; i < sizeof SHAPES / sizeof *SHAPES; i++) {
        const shape *s = &SHAPES[i];
        if ((size_t)s->M * s->K > max_a) max_a = (size_t)s->M * s->K;
        if ((size_t)s->K * s->N > max_b) max_b = (size_t)s->K * s->N;
        if ((size_t)s->M * s->N > max_c) max_c = (size_t)s->M * s->N;
    }
    float *A = aligned_alloc(64, max_a * sizeof(float)), *B = aligned_alloc(64, max_b * sizeof(float));
    float *C = aligned_alloc(64, max_c * sizeof(float));
    if (!A || !B || !C) return 1;
    dsc_rng r;
    dsc_rng_seed(&r, 1);
    for (size_t i = 0; i < max_a; i++) A[i] = dsc_rng_normal(&r);
    for (size_t i = 0; i < max_b; i++) B[i] = dsc_rng_normal(&r);
    memset(C, 0, max_c * sizeof(float));

    print_header();
    for (size_t i = 0; i < sizeof SHAPES / sizeof *SHAPES; i++) {
        job j = {&SHAPES[i], A, B, C};
        rate d, b;
        measure(peer, &j, batches, &d, &b);
        print_row(&SHAPES[i], d, b, peak);
        fflush(stdout);
    }

    /* Per-head and per-expert products run one per thread inside the model's parallel loops
     * (dsc_sgemm then runs on the calling thread, as with one thread): compare single-threaded,
     * against the 1-thread peak. */
    printf("\nsingle-threaded (as when called inside a parallel region), %% of 1-thread peak:\n");
    print_header();
    omp_set_num_threads(1);
    if (peer && blas.set_threads) blas.set_threads(1);
    const blas_peer *peer1 = peer && blas.set_threads ? peer : NULL;
    for (size_t i = 0; i < sizeof SHAPES / sizeof *SHAPES; i++) {
        const shape *s = &SHAPES[i];
        if ((double)s->M * s->N * s->K > 2e7 && s->M != 1024) continue;
        job j = {s, A, B, C};
        rate d, b;
        measure(peer1, &j, batches, &d, &b);
        print_row(s, d, b, peak1);
        fflush(stdout);
    }
    free(A);
    free(B);
    free(C);
    return 0;
}
