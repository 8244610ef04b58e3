/* sgemm_internal.h: what the sgemm front end (sgemm.c: threading, blocking loops) shares with the
 * per-ISA micro-kernels and packing routines (sgemm_avx512.c, sgemm_avx2.c, sgemm_portable.c).
 * Private to src/kernels/; model code uses kernels.h only. */
#ifndef DSC_KERNELS_SGEMM_INTERNAL_H
#define DSC_KERNELS_SGEMM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "kernels/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#define DSC_X86 1
#else
#define DSC_X86 0
#endif

/* One code path of the serial multiply: its tile sizes, cache blocks, packing routines and
 * micro-kernel. sgemm.c cuts C into mr x nr tiles and K into blocks of at most kc; per K block
 * and block of at most nc columns it packs op(B) into panels, then calls the micro-kernel for
 * every tile. Memory layouts:
 *
 *   packed B block (kc x n, from op(B) rows k0.., columns j0..): panels of nr columns, panel p at
 *     dst + p*kc*nr, element (k, j) of the panel at [k*w + j] where w = nr for full panels and
 *     w = round_up(n_left, vec) for the last one (zero-filled beyond n_left). 64-byte aligned
 *     when dst is.
 *   A as the micro-kernel reads it: element (i, k) of the tile at a[i*a_rs + k*a_cs]. Either
 *     a_rs == 1 (transposed A, read in place: a_cs = lda, or packed into a [kc][mr] panel:
 *     a_cs = mr) or a_cs == 1 (A read in place, row by row: a_rs = lda). Kernels specialise
 *     these two cases.
 *
 * kernel: C[m x n tile] = alpha * A·B + beta * C for 1 <= m <= mr, 1 <= n <= nr, kc >= 1;
 * beta == 0 never reads C. C needs no alignment. */
typedef struct {
    int mr, nr, vec; /* micro-tile rows and columns; B panel width granularity (floats) */
    int kc, nc;      /* cache blocks: K depth of a packed block, columns of a packed B block */
    int mc;          /* rows of transposed A packed at once (a multiple of mr) */
    void (*pack_b)(const float *B, ptrdiff_t ldb, bool tb, int k0, int kc, int j0, int n, float *dst);
    /* packs transposed A (stored [K, M]) rows i0..i0+m (m <= mc) as ceil(m/mr) panels [kc][mr]:
     * dst[p*kc*mr + k*mr + i] = A[(k0+k)*lda + i0 + p*mr + i] */
    void (*pack_at)(const float *A, ptrdiff_t lda, int k0, int kc, int i0, int m, float *dst);
    void (*kernel)(int m, int n, int kc, const float *a, ptrdiff_t a_rs, ptrdiff_t a_cs, const float *b, float *c,
                   ptrdiff_t ldc, float alpha, float beta);
} dsc_gemm_impl;

extern const dsc_gemm_impl dsc_gemm_portable;
#if DSC_X86
extern const dsc_gemm_impl dsc_gemm_avx2;
extern const dsc_gemm_impl dsc_gemm_avx512;
#endif

#endif
