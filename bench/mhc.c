/* mhc.c: the four mHC calls of one sub-layer (src/model/mhc.c) on the small preset's sizes,
 * each timed alone, best of R runs (a shared machine adds noise, never removes it).
 * Usage: bench_mhc [--N 2048] [--n 4] [--d 256] [--iters 20] [--runs 30] [--threads T]
 *                  [--dump FILE]   (writes every output once, for comparing two builds) */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "bench_util.h"
#include "dsc.h"
#include "kernels/kernels.h"
#include "model/mhc.h"

static float *falloc(size_t n) {
    float *p = aligned_alloc(64, ((n ? n : 1) * sizeof(float) + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    memset(p, 0, (n ? n : 1) * sizeof(float));
    return p;
}

static void fill(dsc_rng *r, float *p, size_t n, float std) {
    for (size_t i = 0; i < n; i++) p[i] = std * dsc_rng_normal(r);
}

int main(int argc, char **argv) {
    int N = 2048, n = 4, d = 256, iters = 20, runs = 30, threads = 0;
    const char *dump = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--N")) N = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--n")) n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--d")) d = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--iters")) iters = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--runs")) runs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--dump")) dump = argv[i + 1];
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (threads > 0) omp_set_num_threads(threads);
    dsc_config c;
    memset(&c, 0, sizeof c);
    c.hidden_size = d, c.mhc_expansion_rate = n, c.mhc_sinkhorn_iters = iters, c.mhc_rms_eps = 1e-20f;
    const int m = n * n + 2 * n;
    const size_t C = (size_t)n * d;

    dsc_rng r;
    dsc_rng_seed(&r, 42);
    mhc_weights w = {falloc(m * C), falloc(m), falloc(3)}, g = {falloc(m * C), falloc(m), falloc(3)};
    /* trained-looking weights: coefficients away from the initialisation, H_res well mixed */
    fill(&r, w.phi, m * C, 0.05f);
    fill(&r, w.bias, m, 0.5f);
    for (int q = 0; q < 3; q++) w.alpha[q] = 0.8f;
    float *acts_mem = falloc(mhc_acts_floats(&c, N)), *scratch = falloc(mhc_scratch_floats(&c, N));
    mhc_acts a;
    mhc_acts_bind(&a, acts_mem, &c, N);
    float *x = falloc(N * C), *u = falloc((size_t)N * d), *y = falloc((size_t)N * d), *xo = falloc(N * C);
    float *dxo = falloc(N * C), *dx = falloc(N * C), *dy = falloc((size_t)N * d), *du = falloc((size_t)N * d);
    fill(&r, x, N * C, 1.0f), fill(&r, y, (size_t)N * d, 1.0f), fill(&r, dxo, N * C, 1e-3f);
    fill(&r, du, (size_t)N * d, 1e-3f);

    if (dump) { /* one clean pass of everything, written out */
        mhc_pre(&c, &w, &a, u, x, N, scratch);
        mhc_post(&c, &a, xo, x, y, N);
        mhc_backward_post(&c, &a, dx, dy, dxo, x, y, N);
        mhc_backward_pre(&c, &w, &g, &a, dx, du, x, N, scratch);
        FILE *f = fopen(dump, "wb");
        if (!f) return 1;
        fwrite(u, sizeof(float), (size_t)N * d, f);
        fwrite(a.h_pre, sizeof(float), (size_t)N * n, f);
        fwrite(a.h_post, sizeof(float), (size_t)N * n, f);
        fwrite(a.h_res, sizeof(float), (size_t)N * n * n, f);
        fwrite(xo, sizeof(float), N * C, f);
        fwrite(dy, sizeof(float), (size_t)N * d, f);
        fwrite(dx, sizeof(float), N * C, f);
        fwrite(g.phi, sizeof(float), m * C, f);
        fwrite(g.bias, sizeof(float), m, f);
        fwrite(g.alpha, sizeof(float), 3, f);
        fclose(f);
        printf("wrote %s\n", dump);
        return 0;
    }

    double best[4] = {1e9, 1e9, 1e9, 1e9};
    for (int it = 0; it < runs + 2; it++) { /* two warm-up runs */
        double t0 = bench_now();
        mhc_pre(&c, &w, &a, u, x, N, scratch);
        double t1 = bench_now();
        mhc_post(&c, &a, xo, x, y, N);
        double t2 = bench_now();
        mhc_backward_post(&c, &a, dx, dy, dxo, x, y, N);
        double t3 = bench_now();
        mhc_backward_pre(&c, &w, &g, &a, dx, du, x, N, scratch);
        double t4 = bench_now();
        if (it < 2) continue;
        double dt[4] = {t1 - t0, t2 - t1, t3 - t2, t4 - t3};
        for (int q = 0; q < 4; q++)
            if (dt[q] < best[q]) best[q] = dt[q];
    }
    /* for scale: the three skinny products the module needs, each alone (dsc_sgemm) */
    double gb[3] = {1e9, 1e9, 1e9};
    float *gA = falloc((size_t)N * m), *gW = falloc(m * C);
    fill(&r, gA, (size_t)N * m, 1.0f);
    for (int it = 0; it < runs + 2; it++) {
        double t0 = bench_now();
        dsc_linear_forward(gA, x, w.phi, N, (int)C, m, false);
        double t1 = bench_now();
        dsc_linear_backward_weight(gW, gA, x, N, (int)C, m);
        double t2 = bench_now();
        dsc_linear_backward_input(dx, gA, w.phi, N, (int)C, m, true);
        double t3 = bench_now();
        double dt[3] = {t1 - t0, t2 - t1, t3 - t2};
        for (int q = 0; q < 3; q++)
            if (it >= 2 && dt[q] < gb[q]) gb[q] = dt[q];
    }
    free(gA), free(gW);
    double tot = best[0] + best[1] + best[2] + best[3];
    printf("mhc N=%d n=%d d=%d iters=%d threads=%d (best of %d, ms): pre %.3f  post %.3f  backward_post %.3f  "
           "backward_pre %.3f  total %.3f\n",
           N, n, d, iters, omp_get_max_threads(), runs, 1e3 * best[0], 1e3 * best[1], 1e3 * best[2], 1e3 * best[3],
           1e3 * tot);
    printf("  for scale, dsc_sgemm alone (ms): x.phi^T %.3f  dphi %.3f  dx += dz.phi %.3f\n", 1e3 * gb[0], 1e3 * gb[1],
           1e3 * gb[2]);
    float *p[] = {w.phi, w.bias, w.alpha, g.phi, g.bias, g.alpha, acts_mem, scratch, x, u, y, xo, dxo, dx, dy, du};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++) free(p[i]);
    return 0;
}
