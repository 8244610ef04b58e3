/* peak.c: the machine's limits, measured: the fp32 FMA peak (independent fused multiply-adds on
 * every thread, the widest vectors the kernels use) and the memory read bandwidth. Benchmarks
 * divide achieved FLOP/s and bytes/s by them. */
#include <omp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

#if defined(__x86_64__)
/* 16 independent accumulators hide the 4-cycle FMA latency on two ports with room to spare.
 * acc = acc * 0.999 + 0.001 converges to 1: no overflow, no denormals. */
__attribute__((target("avx512f,fma"))) static float fma_loop_avx512(long iters) {
    __m512 acc[16];
    for (int j = 0; j < 16; j++) acc[j] = _mm512_set1_ps((float)j);
    const __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(0.001f);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) acc[j] = _mm512_fmadd_ps(acc[j], x, y);
    }
    __m512 s = acc[0];
    for (int j = 1; j < 16; j++) s = _mm512_add_ps(s, acc[j]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float fma_loop_avx2(long iters) {
    __m256 acc[12];
    for (int j = 0; j < 12; j++) acc[j] = _mm256_set1_ps((float)j);
    const __m256 x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(0.001f);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int j = 0; j < 12; j++) acc[j] = _mm256_fmadd_ps(acc[j], x, y);
    }
    float out[8], s = 0;
    for (int j = 1; j < 12; j++) acc[0] = _mm256_add_ps(acc[0], acc[j]);
    _mm256_storeu_ps(out, acc[0]);
    for (int j = 0; j < 8; j++) s += out[j];
    return s;
}
#endif

/* fp32 GFLOP/s of independent FMAs on `threads` threads, for the widest vectors the kernels use
 * (0 when there is no FMA path). The best of 7 runs: other processes can only slow it down, so
 * this is the closest to what the hardware does, and the fractions of peak below are not
 * flattered by a noisy peak. */
double dsc_fma_peak_gflops(int threads) {
#if defined(__x86_64__)
    bool z = dsc_kernels_isa() == DSC_ISA_AVX512;
    if (dsc_kernels_isa() == DSC_ISA_PORTABLE) return 0;
    const long iters = 10000000;
    double flops = (double)threads * iters * (z ? 16 * 16 * 2 : 12 * 8 * 2), best = 0;
    volatile float sink = 0;
    for (int r = 0; r < 7; r++) {
        double t0 = now();
#pragma omp parallel num_threads(threads)
        {
            float s = z ? fma_loop_avx512(iters) : fma_loop_avx2(iters);
#pragma omp atomic
            sink += s;
        }
        double g = flops / (now() - t0) * 1e-9;
        if (g > best) best = g;
    }
    (void)sink;
    return best;
#else
    (void)threads;
    return 0;
#endif
}

/* Streaming read of n floats on `threads` threads: GB/s (10^9 bytes), the best of `reps` passes.
 * Sixteen partial sums a thread keep the adds off the critical path: the loads set the pace. */
double dsc_read_bandwidth_gbs(const float *buf, size_t n, int threads, int reps) {
    double best = 0;
    volatile float sink = 0;
    n &= ~(size_t)15;
    for (int rep = 0; rep < reps; rep++) {
        double t0 = now();
        float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
        {
            float s[16] = {0};
#pragma omp for schedule(static)
            for (size_t i = 0; i < n; i += 16)
#pragma omp simd
                for (int j = 0; j < 16; j++) s[j] += buf[i + j];
            for (int j = 0; j < 16; j++) total += s[j];
        }
        double gbs = n * sizeof(float) / (now() - t0) / 1e9;
        sink += total;
        if (gbs > best) best = gbs;
    }
    (void)sink;
    return best;
}

/* The same over a fresh 1 GiB buffer (far beyond the caches) on every thread, best of three. */
double dsc_memory_bandwidth_gbs(void) {
    size_t n = (size_t)1 << 28; /* floats: 1 GiB */
    float *buf = malloc(n * sizeof(float));
    if (!buf) return 0;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 7);
    double gbs = dsc_read_bandwidth_gbs(buf, n, omp_get_max_threads(), 3);
    free(buf);
    return gbs;
}
