/* kernels.h: the numerical kernels the model is built from. Model code calls only these; the
 * implementations pick the fastest code path for this CPU once, at start-up (AVX-512, AVX2+FMA or
 * portable C), so no intrinsics appear outside src/kernels/.
 *
 * Conventions: row-major, fp32, leading dimensions in elements. All functions are safe to call
 * from inside an OpenMP parallel region (they then run on the calling thread only). */
#ifndef DSC_KERNELS_H
#define DSC_KERNELS_H

#include <stdbool.h>
#include <stddef.h>

/* Which code path the kernels use. */
typedef enum { DSC_ISA_PORTABLE = 0, DSC_ISA_AVX2 = 1, DSC_ISA_AVX512 = 2 } dsc_isa;
dsc_isa dsc_kernels_isa(void);
const char *dsc_kernels_isa_name(void);
/* Forces a code path (tests use it to check every path against the portable one). Returns the
 * path actually selected (a path this CPU lacks is not selected). The environment variable
 * DSC_ISA=portable|avx2|avx512 does the same at start-up. */
dsc_isa dsc_kernels_force_isa(dsc_isa isa);

/* General matrix multiply, BLAS semantics in row-major storage:
 *   C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C
 * op(A) = A[M,K] (lda >= K) if !trans_a, else A is stored [K,M] (lda >= M) and transposed;
 * op(B) = B[K,N] (ldb >= N) if !trans_b, else B is stored [N,K] (ldb >= K) and transposed.
 * beta == 0 means C is overwritten (its old contents may be NaN). Multithreaded with OpenMP when
 * called outside a parallel region. */
void dsc_sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc);

/* The three products a linear layer y = x Wᵀ needs (W stored [out, in] as in checkpoints):
 *   forward:        y[N,out]  (+)= x[N,in] · Wᵀ
 *   input grad:     dx[N,in]  (+)= dy[N,out] · W
 *   weight grad:    dW[out,in] += dyᵀ · x
 * accumulate=false overwrites the output. */
void dsc_linear_forward(float *y, const float *x, const float *W, int N, int in, int out, bool accumulate);
void dsc_linear_backward_input(float *dx, const float *dy, const float *W, int N, int in, int out, bool accumulate);
void dsc_linear_backward_weight(float *dW, const float *dy, const float *x, int N, int in, int out);

/* Number of threads OpenMP parallel regions use. */
int dsc_num_threads(void);

/* The fp32 FMA peak of this machine on `threads` threads, in GFLOP/s, measured (about 0.5 s):
 * independent FMAs with the widest vectors the kernels use; 0 on the portable path. */
double dsc_fma_peak_gflops(int threads);
/* Memory read bandwidth with all threads, GB/s (10^9 B/s), measured over a fresh 1 GiB buffer (~1 s). */
double dsc_memory_bandwidth_gbs(void);
/* The same over the caller's buffer of n floats (make it far larger than the caches), on `threads`
 * threads, best of `reps` passes: for benchmarks that probe again and again without a new buffer. */
double dsc_read_bandwidth_gbs(const float *buf, size_t n, int threads, int reps);

/* Matrix-multiply accounting for benchmarks: FLOPs of every dsc_sgemm call (2·M·N·K), and the
 * wall time of the calls made outside parallel regions (those inside run on one thread of a
 * region whose time belongs to its caller). Counting is always on; it costs two atomics. */
typedef struct {
    double flops;        /* all calls */
    double top_flops;    /* calls made outside parallel regions */
    double seconds;      /* wall time of those calls */
    long calls;
} dsc_gemm_stats;
void dsc_gemm_stats_get(dsc_gemm_stats *out);

#endif
