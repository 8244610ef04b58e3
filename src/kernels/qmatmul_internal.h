/* qmatmul_internal.h: what the qt_matmul front end (qtensor.c: formats, threading, scratch, the
 * decode/prefill choice) shares with the per-ISA kernels (qmatmul_avx512.c, qmatmul_avx2.c,
 * qmatmul_portable.c). Private to src/kernels/; callers use qtensor.h. */
#ifndef DSC_KERNELS_QMATMUL_INTERNAL_H
#define DSC_KERNELS_QMATMUL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "kernels/qtensor.h"
#include "kernels/sgemm_internal.h" /* DSC_X86 */

#define QT_QK 32          /* values per Q8_0 / Q4_0 block */
#define QT_Q8_0_BYTES 34  /* fp16 d + 32 int8 */
#define QT_Q4_0_BYTES 18  /* fp16 d + 16 bytes of nibbles */
#define QT_FP8_BLOCK 128  /* FP8 scale blocks are 128 x 128 */

/* Up to this many rows of x a product runs the decode kernels (each weight read once, from
 * memory, for all rows); above it, prefill (fp32 tiles of W through dsc_sgemm), but see
 * QT_INT8_MAX_N. */
#define QT_DECODE_MAX_N 16
/* Where the path rounds x to int8 (Q8_0/Q4_0 with AVX512-VNNI), products of up to this many rows
 * run the decode kernels too: integer dot products of the weights as they are (~280 GFLOP/s on 2
 * Zen 4 cores at 16-128 rows) outrun widening them to fp32 for the GEMM (~135 GFLOP/s). It
 * covers a whole prefill chunk (the engine's passes are at most 512 rows). */
#define QT_INT8_MAX_N 1024

/* One product y[N, rows] (+)= x[N, cols] · Wᵀ being computed. */
typedef struct {
    const qtensor *W;
    const float *x; /* [N, cols] */
    float *y;       /* [N, rows] */
    int N;
    bool accumulate;
    const void *xq; /* the activations as impl->prepare left them (NULL when the path has none) */
} qt_mm;

/* A code path. The front end hands decode row ranges [r0, r1) that lie within one 128-row block
 * (r0 / 128 == (r1 - 1) / 128), so that for QT_FP8 one row of scales applies. */
typedef struct {
    /* out[0..n) = W[r, c0 .. c0+n) in fp32. For the Q types c0 and n are multiples of 32. */
    void (*dequant)(const qtensor *W, int r, int c0, int n, float *out);
    /* Bytes `prepare` needs (0 when the path uses x as it is; prepare is then not called). It
     * runs once per call, on the calling thread, before the threads start; they read its
     * output, m->xq, concurrently. */
    size_t (*prepare_bytes)(const qtensor *W, int N);
    void (*prepare)(const qt_mm *m, void *buf);
    /* y[n, r0..r1) for every n, on the calling thread, using `scratch_bytes` of 64-byte aligned
     * scratch that belongs to this thread. */
    size_t (*scratch_bytes)(const qtensor *W, int N);
    void (*decode)(const qt_mm *m, int r0, int r1, void *scratch);
    /* Whether decode rounds x to int8 blocks for this weight type (NULL: never). */
    bool (*int8_activations)(qt_type t);
} qt_impl;

extern const qt_impl qt_impl_portable;
#if DSC_X86
extern const qt_impl qt_impl_avx2;
extern const qt_impl qt_impl_avx512;
#endif

/* Scales of W's 128-row block rb (QT_FP8): ceil(cols/128) floats. */
static inline const float *qt_fp8_scales(const qtensor *W, int rb) {
    return W->scale_inv + (size_t)rb * (size_t)((W->cols + QT_FP8_BLOCK - 1) / QT_FP8_BLOCK);
}

/* Asks for bytes [p, p + n) into L2 (prefetcht1). The decode kernels' weights stream from DRAM
 * once per call, and a core keeps more misses in flight to L2 than to L1: a single stream needs
 * many in flight to reach DRAM bandwidth. */
static inline void qt_prefetch_l2(const void *p, size_t n) {
    for (size_t b = 0; b < n; b += 64) __builtin_prefetch((const char *)p + b, 0, 2);
}

/* How far ahead the widening decode paths (F32/F16/BF16/FP8, and Q8_0/Q4_0 without VNNI) ask
 * for the weight stream, bytes (rounded up to whole rows). */
#define QT_PF_BYTES 16384

static inline const uint8_t *qt_row(const qtensor *W, int r) {
    return (const uint8_t *)W->data + (size_t)r * qt_row_bytes(W->type, W->cols);
}

#endif
