/* qmatmul_avx2.c: the AVX2 + FMA + F16C code path of qt_matmul, the AVX-512 path
 * (qmatmul_avx512.c) in 8-lane vectors: weights widened to fp32 in registers and multiplied with
 * fp32 activations by FMA, two rows of W against up to two rows of x at a time. Columns past the
 * last multiple of 16 (F types and FP8 only) are done in scalar code. */
#include "kernels/qmatmul_internal.h"

#if DSC_X86
#include <immintrin.h>
#include <string.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

#define ALWAYS_INLINE inline __attribute__((always_inline))

#define R 2    /* rows of W a tile multiplies at once */
#define NB 2   /* rows of x a tile multiplies at once (2 x 2 x 2 accumulators + 4 weight vectors) */
#define CB 512 /* columns widened per step when x has more than NB rows */

static inline float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* One weight of a row in fp32 (FP8 times 2^-8, as the vector code gives it). */
static inline float weight_at(qt_type T, const uint8_t *row, int c) {
    uint16_t h;
    switch (T) {
    case QT_F32: {
        float f;
        memcpy(&f, row + 4 * (size_t)c, 4);
        return f;
    }
    case QT_F16: memcpy(&h, row + 2 * (size_t)c, 2); return qt_f16_to_f32(h);
    case QT_BF16: memcpy(&h, row + 2 * (size_t)c, 2); return qt_bf16_to_f32(h);
    case QT_FP8: return qt_fp8_e4m3_to_f32(row[c]) * 0x1p-8f;
    default: return 0.0f; /* the Q types have no partial blocks */
    }
}

/* 16 FP8 bytes to 16 halves holding value * 2^-8 (see qmatmul_avx512.c), NaN codes to NaN. */
static ALWAYS_INLINE __m256i fp8_to_f16_16(__m128i b) {
    const __m256i w = _mm256_cvtepu8_epi16(b);
    const __m256i h = _mm256_and_si256(_mm256_srai_epi16(_mm256_slli_epi16(w, 8), 1), _mm256_set1_epi16((short)0xbf80));
    const __m256i nan = _mm256_cmpeq_epi16(_mm256_or_si256(w, _mm256_set1_epi16(0x80)), _mm256_set1_epi16(0xff));
    return _mm256_blendv_epi8(h, _mm256_or_si256(h, _mm256_set1_epi16(0x7c00)), nan);
}

/* Weights of one row in fp32: 16 columns from k (a multiple of 16), FP8 times 2^-8. */
static ALWAYS_INLINE void load16(const qt_type T, const uint8_t *row, int k, __m256 *w0, __m256 *w1) {
    if (T == QT_F32) {
        const float *p = (const float *)(const void *)row + k;
        *w0 = _mm256_loadu_ps(p);
        *w1 = _mm256_loadu_ps(p + 8);
    } else if (T == QT_F16) {
        const uint8_t *p = row + 2 * (size_t)k;
        *w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
        *w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 16)));
    } else if (T == QT_BF16) {
        const uint8_t *p = row + 2 * (size_t)k;
        *w0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
        *w1 = _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + 16))), 16));
    } else if (T == QT_Q8_0) {
        const uint8_t *b = row + (size_t)(k / QT_QK) * QT_Q8_0_BYTES;
        const __m256 d = _mm256_set1_ps(f16_at(b));
        const __m128i q = _mm_loadu_si128((const __m128i *)(b + 2 + k % QT_QK));
        *w0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d);
        *w1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8))), d);
    } else if (T == QT_Q4_0) {
        const uint8_t *b = row + (size_t)(k / QT_QK) * QT_Q4_0_BYTES;
        const __m256 d = _mm256_set1_ps(f16_at(b));
        __m128i q = _mm_loadu_si128((const __m128i *)(b + 2));
        if (k % QT_QK) q = _mm_srli_epi16(q, 4); /* values 16..31 are the high nibbles */
        q = _mm_sub_epi8(_mm_and_si128(q, _mm_set1_epi8(0x0f)), _mm_set1_epi8(8));
        *w0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d);
        *w1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8))), d);
    } else { /* QT_FP8 */
        const __m256i h = fp8_to_f16_16(_mm_loadu_si128((const __m128i *)(row + k)));
        *w0 = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
        *w1 = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
    }
}

/* out[0..n) = row's columns [c0, c0+n) in fp32 times `mul` (FP8 only; see qmatmul_avx512.c). */
static ALWAYS_INLINE void widen(const qt_type T, const uint8_t *row, int c0, int n, float mul, float *out) {
    const __m256 s = _mm256_set1_ps(mul);
    int k = c0;
    for (; k + 16 <= c0 + n; k += 16, out += 16) {
        __m256 w0, w1;
        load16(T, row, k, &w0, &w1);
        if (T == QT_FP8) w0 = _mm256_mul_ps(w0, s), w1 = _mm256_mul_ps(w1, s);
        _mm256_storeu_ps(out, w0);
        _mm256_storeu_ps(out + 8, w1);
    }
    for (; k < c0 + n; k++) *out++ = weight_at(T, row, k) * (T == QT_FP8 ? mul : 1.0f);
}

static void widen_any(qt_type T, const uint8_t *row, int c0, int n, float mul, float *out) {
    switch (T) {
    case QT_F32: widen(QT_F32, row, c0, n, mul, out); break;
    case QT_F16: widen(QT_F16, row, c0, n, mul, out); break;
    case QT_BF16: widen(QT_BF16, row, c0, n, mul, out); break;
    case QT_Q8_0: widen(QT_Q8_0, row, c0, n, mul, out); break;
    case QT_Q4_0: widen(QT_Q4_0, row, c0, n, mul, out); break;
    case QT_FP8: widen(QT_FP8, row, c0, n, mul, out); break;
    default: break;
    }
}

static void dequant_avx2(const qtensor *W, int r, int c0, int n, float *out) {
    const uint8_t *row = qt_row(W, r);
    if (W->type != QT_FP8) {
        widen_any(W->type, row, c0, n, 1.0f, out);
        return;
    }
    const float *s = qt_fp8_scales(W, r / QT_FP8_BLOCK);
    for (int k = c0; k < c0 + n;) {
        int end = (k / QT_FP8_BLOCK + 1) * QT_FP8_BLOCK;
        if (end > c0 + n) end = c0 + n;
        widen(QT_FP8, row, k, end - k, s[k / QT_FP8_BLOCK] * 256.0f, out + (k - c0));
        k = end;
    }
}

/* ---- decode ---- */

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* acc[r][j][h] += rows r < RR of W (stride wstride bytes) times rows j < nb of x over columns
 * [0, kn); tail[r][j] collects the scalar columns past the last multiple of 16. */
static ALWAYS_INLINE void tile(const qt_type T, const int RR, const int nb, const uint8_t *w, size_t wstride,
                               const float *x, size_t ldx, int kn, __m256 acc[R][NB][2], float tail[R][NB]) {
    int k = 0;
    for (; k + 16 <= kn; k += 16) {
        __m256 wv[R][2];
#pragma GCC unroll 2
        for (int r = 0; r < RR; r++) load16(T, w + r * wstride, k, &wv[r][0], &wv[r][1]);
#pragma GCC unroll 2
        for (int j = 0; j < nb; j++) {
            const __m256 x0 = _mm256_loadu_ps(x + j * ldx + k), x1 = _mm256_loadu_ps(x + j * ldx + k + 8);
#pragma GCC unroll 2
            for (int r = 0; r < RR; r++) {
                acc[r][j][0] = _mm256_fmadd_ps(wv[r][0], x0, acc[r][j][0]);
                acc[r][j][1] = _mm256_fmadd_ps(wv[r][1], x1, acc[r][j][1]);
            }
        }
    }
    for (; k < kn; k++)
        for (int r = 0; r < RR; r++) {
            const float wk = weight_at(T, w + r * wstride, k);
            for (int j = 0; j < nb; j++) tail[r][j] += wk * x[j * ldx + k];
        }
}

static ALWAYS_INLINE void store_y(const int RR, const int nb, const qt_mm *m, int r0, int n0, __m256 acc[R][NB][2],
                                  float tail[R][NB]) {
    const int rows = m->W->rows;
    for (int j = 0; j < nb; j++)
        for (int r = 0; r < RR; r++) {
            float *y = m->y + (size_t)(n0 + j) * rows + r0 + r;
            float v = hsum8(_mm256_add_ps(acc[r][j][0], acc[r][j][1])) + tail[r][j];
            *y = m->accumulate ? *y + v : v;
        }
}

static ALWAYS_INLINE void zero_acc(__m256 acc[R][NB][2], float tail[R][NB]) {
    for (int r = 0; r < R; r++)
        for (int j = 0; j < NB; j++) acc[r][j][0] = acc[r][j][1] = _mm256_setzero_ps(), tail[r][j] = 0.0f;
}

static ALWAYS_INLINE void direct(const qt_type T, const int RR, const int nb, const qt_mm *m, const float *x, int r0,
                                 int n0) {
    const qtensor *W = m->W;
    __m256 acc[R][NB][2];
    float tail[R][NB];
    zero_acc(acc, tail);
    tile(T, RR, nb, qt_row(W, r0), qt_row_bytes(T, W->cols), x + (size_t)n0 * W->cols, (size_t)W->cols, W->cols, acc,
         tail);
    store_y(RR, nb, m, r0, n0, acc, tail);
}

/* accbuf: [R][N] pairs of vectors; the scalar tail needs no carrying (it is in the last step). */
static ALWAYS_INLINE void from_buf(const int RR, const int nb, const qt_mm *m, const float *x, int r0, int n0,
                                   int c0, int kn, const float *wbuf, __m256 *accbuf) {
    const int cols = m->W->cols, N = m->N;
    __m256 acc[R][NB][2];
    float tail[R][NB];
    zero_acc(acc, tail);
    if (c0 > 0)
        for (int r = 0; r < RR; r++)
            for (int j = 0; j < nb; j++)
                acc[r][j][0] = accbuf[2 * (r * N + n0 + j)], acc[r][j][1] = accbuf[2 * (r * N + n0 + j) + 1];
    tile(QT_F32, RR, nb, (const uint8_t *)wbuf, CB * sizeof(float), x + (size_t)n0 * cols + c0, (size_t)cols, kn, acc,
         tail);
    if (c0 + kn >= cols)
        store_y(RR, nb, m, r0, n0, acc, tail);
    else
        for (int r = 0; r < RR; r++)
            for (int j = 0; j < nb; j++)
                accbuf[2 * (r * N + n0 + j)] = acc[r][j][0], accbuf[2 * (r * N + n0 + j) + 1] = acc[r][j][1];
}

static ALWAYS_INLINE void decode_type(const qt_type T, const qt_mm *m, const float *x, int r0, int r1, float *wbuf,
                                      __m256 *accbuf) {
    const qtensor *W = m->W;
    const int N = m->N, cols = W->cols;
    /* the rows `ahead` rows on are asked for while these are multiplied */
    const size_t rb = qt_row_bytes(T, cols);
    const int ahead = (int)((QT_PF_BYTES + rb - 1) / rb);
    for (int r = r0; r < r1;) {
        const int RR = r1 - r >= R ? R : 1;
        for (int i = 0; i < RR && r + i + ahead < r1; i++) qt_prefetch_l2(qt_row(W, r + i + ahead), rb);
        if (N <= NB) {
            if (RR == R)
                N == 1 ? direct(T, R, 1, m, x, r, 0) : direct(T, R, 2, m, x, r, 0);
            else
                N == 1 ? direct(T, 1, 1, m, x, r, 0) : direct(T, 1, 2, m, x, r, 0);
        } else {
            for (int c0 = 0; c0 < cols; c0 += CB) {
                const int kn = cols - c0 < CB ? cols - c0 : CB;
                for (int i = 0; i < RR; i++) widen(T, qt_row(W, r + i), c0, kn, 1.0f, wbuf + i * CB);
                for (int n0 = 0; n0 < N; n0 += NB) {
                    const bool two = N - n0 >= 2;
                    if (RR == R)
                        two ? from_buf(R, 2, m, x, r, n0, c0, kn, wbuf, accbuf)
                            : from_buf(R, 1, m, x, r, n0, c0, kn, wbuf, accbuf);
                    else
                        two ? from_buf(1, 2, m, x, r, n0, c0, kn, wbuf, accbuf)
                            : from_buf(1, 1, m, x, r, n0, c0, kn, wbuf, accbuf);
                }
            }
        }
        r += RR;
    }
}

static size_t scratch_avx2(const qtensor *W, int N) {
    size_t s = sizeof(float) * R * CB + sizeof(__m256) * 2 * R * (size_t)N;
    if (W->type == QT_FP8) s += sizeof(float) * (size_t)N * W->cols;
    return s;
}

static void decode_avx2(const qt_mm *m, int r0, int r1, void *scratch) {
    const qtensor *W = m->W;
    float *wbuf = scratch;
    __m256 *accbuf = (__m256 *)(void *)(wbuf + R * CB);
    const float *x = m->x;
    if (W->type == QT_FP8) {
        const int cols = W->cols;
        const float *s = qt_fp8_scales(W, r0 / QT_FP8_BLOCK);
        float *xs = (float *)(void *)(accbuf + 2 * R * (size_t)m->N);
        for (int n = 0; n < m->N; n++)
            for (int c = 0; c < cols; c++)
                xs[(size_t)n * cols + c] = m->x[(size_t)n * cols + c] * (s[c / QT_FP8_BLOCK] * 256.0f);
        x = xs;
    }
    switch (W->type) {
    case QT_F32: decode_type(QT_F32, m, x, r0, r1, wbuf, accbuf); break;
    case QT_F16: decode_type(QT_F16, m, x, r0, r1, wbuf, accbuf); break;
    case QT_BF16: decode_type(QT_BF16, m, x, r0, r1, wbuf, accbuf); break;
    case QT_Q8_0: decode_type(QT_Q8_0, m, x, r0, r1, wbuf, accbuf); break;
    case QT_Q4_0: decode_type(QT_Q4_0, m, x, r0, r1, wbuf, accbuf); break;
    case QT_FP8: decode_type(QT_FP8, m, x, r0, r1, wbuf, accbuf); break;
    default: break;
    }
}

const qt_impl qt_impl_avx2 = {dequant_avx2, NULL, NULL, scratch_avx2, decode_avx2, NULL};

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif /* DSC_X86 */
