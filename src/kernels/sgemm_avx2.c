/* sgemm_avx2.c: the AVX2+FMA code path of dsc_sgemm: a 6 x 16 register-blocked micro-kernel
 * (12 ymm accumulators, FMA with broadcast A) and the routines that pack op(B) into 16-column
 * panels. Compiled for AVX2 by a target pragma whatever the build flags; sgemm.c calls it only
 * when the CPU has AVX2 and FMA. Blocking loops and threading live in sgemm.c. */
#include "kernels/sgemm_internal.h"

#if DSC_X86
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

/* 6 rows x 2 ymm: 12 accumulators + 2 B vectors + 1 broadcast = 15 of 16 registers. */
#define MR 6
#define NR 16
#define KC 256  /* B panel 256 x 16 floats = 16 KiB; A tile 6 x 256 = 6 KiB */
#define NC 1024 /* packed B block 1 MiB */
#define MC 96   /* transposed A packed 16 panels at a time (96 KiB) */

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* lanes 0..n-1 set (n clipped to 0..8), for maskload/maskstore */
static inline __m256i lanes8(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* One C tile of m (<= MR) rows and nv (1 or 2) vectors of 8 columns; the last vector stores only
 * the lanes in `last`. contig: A element (i, k) at a[k*a_cs + i], else at a[i*a_rs + k]. */
static ALWAYS_INLINE void tile(const int m, const int nv, const int contig, int kc, const float *a, ptrdiff_t a_rs,
                               ptrdiff_t a_cs, const float *b, float *c, ptrdiff_t ldc, __m256i last, float alpha,
                               float beta) {
    __m256 acc[MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();

    const ptrdiff_t step = contig ? a_cs : 1;
#pragma GCC unroll 2
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(b);
        __m256 b1 = nv > 1 ? _mm256_load_ps(b + 8) : b0;
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            if (i < m) {
                __m256 ai = _mm256_broadcast_ss(contig ? a + i : a + i * a_rs);
                acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
                if (nv > 1) acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
            }
        }
        a += step;
        b += 8 * nv;
    }

    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    const __m256i all = _mm256_set1_epi32(-1);
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        if (i >= m) continue;
#pragma GCC unroll 2
        for (int j = 0; j < nv; j++) {
            __m256i mk = j == nv - 1 ? last : all;
            float *cp = c + i * ldc + 8 * j;
            __m256 r = _mm256_mul_ps(acc[i][j], va);
            if (beta != 0.0f) r = _mm256_fmadd_ps(_mm256_maskload_ps(cp, mk), vb, r);
            _mm256_maskstore_ps(cp, mk, r);
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

static void kernel_avx2(int m, int n, int kc, const float *a, ptrdiff_t a_rs, ptrdiff_t a_cs, const float *b,
                        float *c, ptrdiff_t ldc, float alpha, float beta) {
    const int nv = n > 8 ? 2 : 1;
    const __m256i last = lanes8(n - 8 * (nv - 1));
    const bool contig = a_rs == 1;
    switch (m) {
        TILE_CASE(6)
        TILE_CASE(5)
        TILE_CASE(4)
        TILE_CASE(3)
        TILE_CASE(2)
        TILE_CASE(1)
    default: break;
    }
}

/* In-register transpose of an 8 x 8 block: r[i][j] -> r[j][i]. */
static ALWAYS_INLINE void transpose8(__m256 r[8]) {
    __m256 t[8], s[8];
    for (int g = 0; g < 2; g++) {
        t[4 * g + 0] = _mm256_unpacklo_ps(r[4 * g], r[4 * g + 1]);
        t[4 * g + 1] = _mm256_unpackhi_ps(r[4 * g], r[4 * g + 1]);
        t[4 * g + 2] = _mm256_unpacklo_ps(r[4 * g + 2], r[4 * g + 3]);
        t[4 * g + 3] = _mm256_unpackhi_ps(r[4 * g + 2], r[4 * g + 3]);
        s[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        s[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        s[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        s[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) { /* s[c]: column c (low lane) and 4+c (high lane) of rows 0..3 */
        r[c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x20);
        r[4 + c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x31);
    }
}

/* Packs op(B) rows k0..k0+kc, columns j0..j0+n into NR-column panels (layout: sgemm_internal.h). */
static void pack_b_avx2(const float *B, ptrdiff_t ldb, bool tb, int k0, int kc, int j0, int n, float *dst) {
    for (int jr = 0; jr < n; jr += NR) {
        const int nn = n - jr < NR ? n - jr : NR;
        const int nv = (nn + 7) / 8, w = 8 * nv;
        float *d = dst + (size_t)(jr / NR) * kc * NR;
        if (!tb) {
            const float *src = B + (ptrdiff_t)k0 * ldb + j0 + jr;
            for (int k = 0; k < kc; k++, src += ldb)
                for (int v = 0; v < nv; v++)
                    _mm256_store_ps(d + k * w + 8 * v, _mm256_maskload_ps(src + 8 * v, lanes8(nn - 8 * v)));
        } else {
            for (int v = 0; v < nv; v++) {
                const int rows = nn - 8 * v < 8 ? nn - 8 * v : 8;
                const float *src = B + (ptrdiff_t)(j0 + jr + 8 * v) * ldb + k0;
                for (int kk = 0; kk < kc; kk += 8) {
                    const int kn = kc - kk < 8 ? kc - kk : 8;
                    const __m256i km = lanes8(kn);
                    __m256 r[8];
                    for (int t = 0; t < 8; t++)
                        r[t] = t < rows ? _mm256_maskload_ps(src + t * ldb + kk, km) : _mm256_setzero_ps();
                    transpose8(r);
                    for (int t = 0; t < kn; t++) _mm256_store_ps(d + (kk + t) * w + 8 * v, r[t]);
                }
            }
        }
    }
}

/* Packs transposed A (stored [K, M]) rows k0.., columns i0..i0+m into [kc][MR] panels. */
static void pack_at_avx2(const float *A, ptrdiff_t lda, int k0, int kc, int i0, int m, float *dst) {
    const float *src = A + (ptrdiff_t)k0 * lda + i0;
    for (int k = 0; k < kc; k++, src += lda)
        for (int p = 0; p * MR < m; p++) {
            const __m256i mk = lanes8(m - p * MR < MR ? m - p * MR : MR);
            _mm256_maskstore_ps(dst + (size_t)p * kc * MR + k * MR, mk, _mm256_maskload_ps(src + p * MR, mk));
        }
}

const dsc_gemm_impl dsc_gemm_avx2 = {MR, NR, 8, KC, NC, MC, pack_b_avx2, pack_at_avx2, kernel_avx2};

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif /* DSC_X86 */
