/* sgemm_avx512.c: the AVX-512 code path of dsc_sgemm: a 14 x 32 register-blocked micro-kernel
 * (28 zmm accumulators, FMA with broadcast A) and the routines that pack op(B) into 32-column
 * panels. Compiled for AVX-512 by a target pragma whatever the build flags; sgemm.c calls it only
 * when the CPU has AVX-512F/BW/VL/DQ. Blocking loops and threading live in sgemm.c. */
#include "kernels/sgemm_internal.h"

#if DSC_X86
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")
#endif

/* 14 rows x 2 zmm: 28 accumulators + 2 B vectors + 1 broadcast = 31 of 32 registers. Per k the
 * tile issues 28 FMAs (14 cycles on two FMA ports) against 2 vector loads and 14 broadcasts. */
#define MR 14
#define NR 32
#define KC 256 /* B panel 256 x 32 floats = 32 KiB streamed from L2; A tile 14 x 256 = 14 KiB in L1 */
#define NC 1024 /* packed B block 256 x 1024 floats = 1 MiB, half of L2 */
#define MC 112  /* transposed A packed 8 panels at a time (112 x 256 floats = 112 KiB, in L2) */

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* One C tile of m (<= MR) rows and nv (1 or 2) vectors of 16 columns; the last vector stores only
 * the lanes in `last`. contig: A element (i, k) at a[k*a_cs + i], else at a[i*a_rs + k]. m, nv
 * and contig are compile-time constants at every call, so the loops below unroll fully and the
 * accumulators live in registers. */
static ALWAYS_INLINE void tile(const int m, const int nv, const int contig, int kc, const float *a, ptrdiff_t a_rs,
                               ptrdiff_t a_cs, const float *b, float *c, ptrdiff_t ldc, __mmask16 last, float alpha,
                               float beta) {
    __m512 acc[MR][2];
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();

    /* start pulling the C tile in while the k loop runs */
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        if (i < m) {
            _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + i * ldc + 16 * nv - 1), _MM_HINT_T0);
        }
    }

    const ptrdiff_t step = contig ? a_cs : 1;
#pragma GCC unroll 2
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(b);
        __m512 b1 = nv > 1 ? _mm512_load_ps(b + 16) : b0;
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            if (i < m) {
                __m512 ai = _mm512_set1_ps(contig ? a[i] : a[i * a_rs]);
                acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
                if (nv > 1) acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
            }
        }
        a += step;
        b += 16 * nv;
    }

    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        if (i >= m) continue;
#pragma GCC unroll 2
        for (int j = 0; j < nv; j++) {
            __mmask16 mk = j == nv - 1 ? last : (__mmask16)0xFFFF;
            float *cp = c + i * ldc + 16 * j;
            __m512 r = _mm512_mul_ps(acc[i][j], va);
            if (beta != 0.0f) r = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, cp), vb, r);
            _mm512_mask_storeu_ps(cp, mk, r);
        }
    }
}

#define TILE_CASE(M_)                                                                                   \
    case M_:                                                                                            \
        if (nv == 2) {                                                                                  \
            if (contig)                                                                                 \
                tile(M_, 2, 1, kc, a, a_rs, a_cs, b, c, ldc, last, alpha, beta);                        \
            else                                                                                        \
                tile(M_, 2, 0, kc, a, a_rs, a_cs, b, c, ldc, last, alpha, beta);                        \
        } else {                                                                                        \
            if (contig)                                                                                 \
                tile(M_, 1, 1, kc, a, a_rs, a_cs, b, c, ldc, last, alpha, beta);                        \
            else                                                                                        \
                tile(M_, 1, 0, kc, a, a_rs, a_cs, b, c, ldc, last, alpha, beta);                        \
        }                                                                                               \
        break;

static void kernel_avx512(int m, int n, int kc, const float *a, ptrdiff_t a_rs, ptrdiff_t a_cs, const float *b,
                          float *c, ptrdiff_t ldc, float alpha, float beta) {
    const int nv = n > 16 ? 2 : 1;
    const __mmask16 last = (__mmask16)(0xFFFFu >> (16 - (n - 16 * (nv - 1))));
    const bool contig = a_rs == 1;
    switch (m) {
        TILE_CASE(14)
        TILE_CASE(13)
        TILE_CASE(12)
        TILE_CASE(11)
        TILE_CASE(10)
        TILE_CASE(9)
        TILE_CASE(8)
        TILE_CASE(7)
        TILE_CASE(6)
        TILE_CASE(5)
        TILE_CASE(4)
        TILE_CASE(3)
        TILE_CASE(2)
        TILE_CASE(1)
    default: break;
    }
}

/* In-register transpose of a 16 x 16 block: r[i][j] -> r[j][i]. Two stages within 128-bit lanes
 * (4 x 4 blocks), then a 4 x 4 transpose of the lanes themselves. */
static ALWAYS_INLINE void transpose16(__m512 r[16]) {
    __m512 s[16];
    for (int g = 0; g < 4; g++) { /* rows 4g..4g+3 -> s[4g+c]: lane L holds column 4L+c */
        __m512 t0 = _mm512_unpacklo_ps(r[4 * g], r[4 * g + 1]);
        __m512 t1 = _mm512_unpackhi_ps(r[4 * g], r[4 * g + 1]);
        __m512 t2 = _mm512_unpacklo_ps(r[4 * g + 2], r[4 * g + 3]);
        __m512 t3 = _mm512_unpackhi_ps(r[4 * g + 2], r[4 * g + 3]);
        s[4 * g + 0] = _mm512_shuffle_ps(t0, t2, 0x44);
        s[4 * g + 1] = _mm512_shuffle_ps(t0, t2, 0xEE);
        s[4 * g + 2] = _mm512_shuffle_ps(t1, t3, 0x44);
        s[4 * g + 3] = _mm512_shuffle_ps(t1, t3, 0xEE);
    }
    for (int c = 0; c < 4; c++) { /* output row 4L+c takes lane L of s[c], s[4+c], s[8+c], s[12+c] */
        __m512 x0 = _mm512_shuffle_f32x4(s[c], s[4 + c], 0x44);
        __m512 x1 = _mm512_shuffle_f32x4(s[c], s[4 + c], 0xEE);
        __m512 x2 = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], 0x44);
        __m512 x3 = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], 0xEE);
        r[c] = _mm512_shuffle_f32x4(x0, x2, 0x88);
        r[4 + c] = _mm512_shuffle_f32x4(x0, x2, 0xDD);
        r[8 + c] = _mm512_shuffle_f32x4(x1, x3, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(x1, x3, 0xDD);
    }
}

static inline __mmask16 lanes(int n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1); }

/* Packs op(B) rows k0..k0+kc, columns j0..j0+n into NR-column panels (layout: sgemm_internal.h). */
static void pack_b_avx512(const float *B, ptrdiff_t ldb, bool tb, int k0, int kc, int j0, int n, float *dst) {
    for (int jr = 0; jr < n; jr += NR) {
        const int nn = n - jr < NR ? n - jr : NR;
        const int nv = (nn + 15) / 16, w = 16 * nv;
        float *d = dst + (size_t)(jr / NR) * kc * NR;
        if (!tb) { /* B[K, N]: rows of the panel are pieces of rows of B */
            const float *src = B + (ptrdiff_t)k0 * ldb + j0 + jr;
            for (int k = 0; k < kc; k++, src += ldb)
                for (int v = 0; v < nv; v++)
                    _mm512_store_ps(d + k * w + 16 * v, _mm512_maskz_loadu_ps(lanes(nn - 16 * v), src + 16 * v));
        } else { /* B[N, K]: transpose 16 x 16 blocks */
            for (int v = 0; v < nv; v++) {
                const int rows = nn - 16 * v < 16 ? nn - 16 * v : 16;
                const float *src = B + (ptrdiff_t)(j0 + jr + 16 * v) * ldb + k0;
                for (int kk = 0; kk < kc; kk += 16) {
                    const int kn = kc - kk < 16 ? kc - kk : 16;
                    const __mmask16 km = lanes(kn);
                    __m512 r[16];
                    for (int t = 0; t < 16; t++)
                        r[t] = t < rows ? _mm512_maskz_loadu_ps(km, src + t * ldb + kk) : _mm512_setzero_ps();
                    transpose16(r);
                    for (int t = 0; t < kn; t++) _mm512_store_ps(d + (kk + t) * w + 16 * v, r[t]);
                }
            }
        }
    }
}

/* Packs transposed A (stored [K, M]) rows k0.., columns i0..i0+m into [kc][MR] panels. Reads
 * each row of A once, m floats at a time. */
static void pack_at_avx512(const float *A, ptrdiff_t lda, int k0, int kc, int i0, int m, float *dst) {
    const float *src = A + (ptrdiff_t)k0 * lda + i0;
    for (int k = 0; k < kc; k++, src += lda)
        for (int p = 0; p * MR < m; p++)
            _mm512_mask_storeu_ps(dst + (size_t)p * kc * MR + k * MR, lanes(MR),
                                  _mm512_maskz_loadu_ps(lanes(m - p * MR), src + p * MR));
}

const dsc_gemm_impl dsc_gemm_avx512 = {MR, NR, 16, KC, NC, MC, pack_b_avx512, pack_at_avx512, kernel_avx512};

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif /* DSC_X86 */
