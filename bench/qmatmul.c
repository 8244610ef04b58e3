/* qmatmul.c: qt_matmul throughput per weight format.
 *  - the machine's DRAM read bandwidth, measured: a streaming sum over a 1 GiB buffer on 1 and on
 *    all threads (the ceiling for decode, which reads every weight once per call);
 *  - decode (N = 1, 4, 16 rows of x): GB/s of weights read and the fraction of that bandwidth.
 *    Copies of W are rotated so that at least 1 GiB passes between two uses of one copy: the
 *    weights come from DRAM, as they do in inference (the L3 here holds 260 MiB);
 *  - prefill (N = 512): GFLOP/s against dsc_sgemm on the fp32 weights, measured alternately.
 * Usage: bench_qmatmul [--quick] [--types f32,f16,bf16,q8_0,q4_0,fp8]
 * Rates are the best of several passes (the machine is shared; the best is the least disturbed). */
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "bench_util.h"
#include "kernels/kernels.h"
#include "kernels/qtensor.h"

#define ARENA_BYTES ((size_t)1 << 30)

typedef struct {
    const char *what;
    int rows, cols;
} shape;

static const shape DECODE_SHAPES[] = {
    {"attn 2048x2048", 2048, 2048},   {"dense up 10944x2048", 10944, 2048}, {"expert up 1408x2048", 1408, 2048},
    {"expert down 2048x1408", 2048, 1408}, {"big 8192x8192", 8192, 8192},
};
static const shape PREFILL_SHAPES[] = {
    {"attn 2048x2048", 2048, 2048},
    {"dense up 10944x2048", 10944, 2048},
    {"expert up 1408x2048", 1408, 2048},
    {"expert down 2048x1408", 2048, 1408},
};

typedef struct {
    qt_type t;
    int rows, cols;
    size_t bytes;   /* weights + scales of one copy */
    int copies;
    uint8_t *arena; /* copies of the packed weights, one after another */
    float *scales;
} wset;

/* Quantizes a random [rows, cols] matrix and fills the arena with copies of it. */
static void wset_make(wset *s, uint8_t *arena, qt_type t, int rows, int cols, dsc_rng *r) {
    float *w = malloc(sizeof(float) * (size_t)rows * cols);
    for (size_t i = 0; i < (size_t)rows * cols; i++) w[i] = 0.02f * dsc_rng_normal(r);
    size_t wb = qt_row_bytes(t, cols) * rows;
    s->t = t, s->rows = rows, s->cols = cols, s->arena = arena;
    s->scales = malloc(sizeof(float) * (size_t)((rows + 127) / 128) * ((cols + 127) / 128));
    qt_quantize(t, w, rows, cols, arena, s->scales);
    s->bytes = wb + (t == QT_FP8 ? sizeof(float) * (size_t)((rows + 127) / 128) * ((cols + 127) / 128) : 0);
    s->copies = (int)(ARENA_BYTES / wb);
    if (s->copies < 1) s->copies = 1;
    for (int c = 1; c < s->copies; c++) memcpy(arena + (size_t)c * wb, arena, wb);
    free(w);
}

/* Seconds per call, best over `passes` passes through all copies. */
static double time_decode(const wset *s, const float *x, float *y, int N, int passes) {
    const size_t wb = qt_row_bytes(s->t, s->cols) * s->rows;
    double best = 1e30;
    for (int p = 0; p < passes; p++) {
        double t0 = bench_now();
        for (int c = 0; c < s->copies; c++) {
            qtensor W = {s->t, s->rows, s->cols, s->arena + (size_t)c * wb, s->scales};
            qt_matmul(y, x, &W, N, false);
        }
        double t = (bench_now() - t0) / s->copies;
        if (t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv) {
    bool quick = false;
    bool use[QT_COUNT];
    for (int t = 0; t < QT_COUNT; t++) use[t] = true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[i], "--types") == 0 && i + 1 < argc) {
            for (int t = 0; t < QT_COUNT; t++) use[t] = false;
            char *list = strdup(argv[++i]);
            for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
                int t = qt_parse(tok);
                if (t >= 0) use[t] = true;
            }
            free(list);
        } else {
            fprintf(stderr, "usage: %s [--quick] [--types f32,f16,bf16,q8_0,q4_0,fp8]\n", argv[0]);
            return 2;
        }
    }
    const int threads = dsc_num_threads(), passes = quick ? 2 : 4;
    uint8_t *arena = aligned_alloc(64, ARENA_BYTES);
    if (!arena) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    memset(arena, 1, ARENA_BYTES);
    double bw1 = dsc_read_bandwidth_gbs((const float *)(const void *)arena, ARENA_BYTES / 4, 1, 4);
    double bw = dsc_read_bandwidth_gbs((const float *)(const void *)arena, ARENA_BYTES / 4, threads, 6);
    printf("qt_matmul: path %s, %d threads\n", dsc_kernels_isa_name(), threads);
    printf("DRAM read bandwidth (streaming sum over 1 GiB): %.1f GB/s on 1 thread, %.1f GB/s on %d threads\n\n", bw1,
           bw, threads);

    dsc_rng r;
    dsc_rng_seed(&r, 1);
    const int Ns[] = {1, 4, 16};
    float *x = malloc(sizeof(float) * 512 * 10944), *y = malloc(sizeof(float) * 512 * 10944);
    for (int i = 0; i < 512 * 10944; i++) x[i] = dsc_rng_normal(&r);

    printf("decode: weights from DRAM; GB/s of weights read (%% of the %.1f GB/s measured), us per call\n", bw);
    printf("%-6s %-24s", "type", "W [rows x cols]");
    for (size_t n = 0; n < sizeof Ns / sizeof *Ns; n++) printf(" | N=%-2d %6s %5s %7s", Ns[n], "GB/s", "%", "us");
    printf("\n");
    for (int t = 0; t < QT_COUNT; t++) {
        if (!use[t]) continue;
        for (size_t si = 0; si < sizeof DECODE_SHAPES / sizeof *DECODE_SHAPES; si++) {
            const shape *sh = &DECODE_SHAPES[si];
            if (quick && sh->rows == 8192 && t != QT_Q4_0) continue;
            wset s;
            wset_make(&s, arena, (qt_type)t, sh->rows, sh->cols, &r);
            printf("%-6s %-24s", qt_name((qt_type)t), sh->what);
            for (size_t n = 0; n < sizeof Ns / sizeof *Ns; n++) {
                time_decode(&s, x, y, Ns[n], 1); /* warm up */
                double sec = time_decode(&s, x, y, Ns[n], passes), gbs = s.bytes / sec * 1e-9;
                printf(" |      %6.1f %4.0f%% %7.1f", gbs, 100 * gbs / bw, sec * 1e6);
            }
            printf("\n");
            fflush(stdout);
            free(s.scales);
        }
    }

    const int NP = 512;
    printf("\nprefill: N = %d, GFLOP/s (2 N rows cols / s); fp32 dsc_sgemm on the same shape alongside\n", NP);
    printf("%-6s %-24s %10s %10s %7s\n", "type", "W [rows x cols]", "qt_matmul", "sgemm f32", "ratio");
    for (int t = 0; t < QT_COUNT; t++) {
        if (!use[t]) continue;
        for (size_t si = 0; si < sizeof PREFILL_SHAPES / sizeof *PREFILL_SHAPES; si++) {
            const shape *sh = &PREFILL_SHAPES[si];
            if (quick && si > 0) continue;
            float *w = malloc(sizeof(float) * (size_t)sh->rows * sh->cols);
            for (size_t i = 0; i < (size_t)sh->rows * sh->cols; i++) w[i] = 0.02f * dsc_rng_normal(&r);
            float *sc = malloc(sizeof(float) * (size_t)((sh->rows + 127) / 128) * ((sh->cols + 127) / 128));
            qt_quantize((qt_type)t, w, sh->rows, sh->cols, arena, sc);
            qtensor W = {(qt_type)t, sh->rows, sh->cols, arena, sc};
            const double flops = 2.0 * NP * sh->rows * sh->cols;
            double bq = 1e30, bs = 1e30;
            qt_matmul(y, x, &W, NP, false);
            for (int p = 0; p < passes; p++) { /* alternate, so that both see the same noise */
                double t0 = bench_now();
                qt_matmul(y, x, &W, NP, false);
                double t1 = bench_now();
                dsc_sgemm(false, true, NP, sh->rows, sh->cols, 1.0f, x, sh->cols, w, sh->cols, 0.0f, y, sh->rows);
                double t2 = bench_now();
                if (t1 - t0 < bq) bq = t1 - t0;
                if (t2 - t1 < bs) bs = t2 - t1;
            }
            printf("%-6s %-24s %10.1f %10.1f %7.2f\n", qt_name((qt_type)t), sh->what, flops / bq * 1e-9,
                   flops / bs * 1e-9, bs / bq);
            fflush(stdout);
            free(w), free(sc);
        }
    }
    free(x), free(y), free(arena);
    return 0;
}
