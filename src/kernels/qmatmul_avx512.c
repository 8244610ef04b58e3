/* qmatmul_avx512.c: the AVX-512 code path of qt_matmul. Weights are widened to fp32 in registers
 * (F16 and FP8 through vcvtph2ps, BF16 by a shift, Q8_0 / Q4_0 by integer widening times the
 * block scale) and multiplied with fp32 activations by FMA, four rows of W against up to four
 * rows of x at a time, so each weight is read from memory once per call. Compiled for AVX-512 by
 * a target pragma whatever the build flags; qtensor.c calls it only when the CPU has it. */
#include "kernels/qmatmul_internal.h"

#if DSC_X86
#include <immintrin.h>
#include <string.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
#endif

#define ALWAYS_INLINE inline __attribute__((always_inline))

#define R 4     /* rows of W a tile multiplies at once */
#define NB 4    /* rows of x a tile multiplies at once (4 x 4 accumulators + 8 weight vectors) */
#define CB 512  /* columns widened per step (R x 512 fp32 = 8 KiB) */

static inline __mmask16 lanes16(int n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1); }

static inline float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* e4m3 bytes (zero-extended to 16 bits) to the halves with the same bits shifted: s eeee mmm ->
 * s 0eeee mmm0000000, which is the e4m3 value times 2^-8 (subnormals included: bias 15 vs 7).
 * The two NaN codes become half NaNs. */
static ALWAYS_INLINE __m512i fp8_to_f16_32(__m512i w) {
    __m512i h = _mm512_and_si512(_mm512_srai_epi16(_mm512_slli_epi16(w, 8), 1), _mm512_set1_epi16((short)0xbf80));
    __mmask32 nan = _mm512_cmpeq_epi16_mask(_mm512_or_si512(w, _mm512_set1_epi16(0x80)), _mm512_set1_epi16(0xff));
    return _mm512_mask_mov_epi16(h, nan, _mm512_or_si512(h, _mm512_set1_epi16(0x7c00)));
}
static ALWAYS_INLINE __m256i fp8_to_f16_16(__m256i w) {
    __m256i h = _mm256_and_si256(_mm256_srai_epi16(_mm256_slli_epi16(w, 8), 1), _mm256_set1_epi16((short)0xbf80));
    __mmask16 nan = _mm256_cmpeq_epi16_mask(_mm256_or_si256(w, _mm256_set1_epi16(0x80)), _mm256_set1_epi16(0xff));
    return _mm256_mask_mov_epi16(h, nan, _mm256_or_si256(h, _mm256_set1_epi16(0x7c00)));
}

/* Weights of one row in fp32: 32 columns from k (a multiple of 32), FP8 times 2^-8. */
static ALWAYS_INLINE void load32(const qt_type T, const uint8_t *row, int k, __m512 *w0, __m512 *w1) {
    if (T == QT_F32) {
        const float *p = (const float *)(const void *)row + k;
        *w0 = _mm512_loadu_ps(p);
        *w1 = _mm512_loadu_ps(p + 16);
    } else if (T == QT_F16) {
        const uint8_t *p = row + 2 * (size_t)k;
        *w0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
        *w1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 32)));
    } else if (T == QT_BF16) {
        const uint8_t *p = row + 2 * (size_t)k;
        *w0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
        *w1 = _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p + 32))), 16));
    } else if (T == QT_Q8_0) {
        const uint8_t *b = row + (size_t)(k / QT_QK) * QT_Q8_0_BYTES;
        const __m512 d = _mm512_set1_ps(f16_at(b));
        *w0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 2)))), d);
        *w1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 18)))), d);
    } else if (T == QT_Q4_0) {
        const uint8_t *b = row + (size_t)(k / QT_QK) * QT_Q4_0_BYTES;
        const __m512 d = _mm512_set1_ps(f16_at(b));
        const __m128i q = _mm_loadu_si128((const __m128i *)(b + 2)), m4 = _mm_set1_epi8(0x0f), e8 = _mm_set1_epi8(8);
        const __m128i lo = _mm_sub_epi8(_mm_and_si128(q, m4), e8), hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), m4), e8);
        *w0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo)), d);
        *w1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi)), d);
    } else { /* QT_FP8 */
        __m512i h = fp8_to_f16_32(_mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(row + k))));
        *w0 = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
        *w1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
    }
}

/* The lanes in `m` of 16 weights from column k (the F types and FP8 only: the Q types come in
 * whole blocks); other lanes 0. */
static ALWAYS_INLINE __m512 load16m(const qt_type T, const uint8_t *row, int k, __mmask16 m) {
    if (T == QT_F32) return _mm512_maskz_loadu_ps(m, (const float *)(const void *)row + k);
    if (T == QT_F16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 2 * (size_t)k));
    if (T == QT_BF16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row + 2 * (size_t)k)), 16));
    return _mm512_cvtph_ps(fp8_to_f16_16(_mm256_cvtepu8_epi16(_mm_maskz_loadu_epi8(m, row + k))));
}

/* out[0..n) = row's columns [c0, c0+n) in fp32, times `mul` (FP8: scale * 256; else 1, unused).
 * c0 is a multiple of 32; FP8 columns [c0, c0+n) lie in one 128-column scale block. */
static ALWAYS_INLINE void widen(const qt_type T, const bool scaled, const uint8_t *row, int c0, int n, float mul,
                                float *out) {
    const __m512 s = _mm512_set1_ps(mul);
    int k = c0;
    for (; k + 32 <= c0 + n; k += 32, out += 32) {
        __m512 w0, w1;
        load32(T, row, k, &w0, &w1);
        if (scaled) w0 = _mm512_mul_ps(w0, s), w1 = _mm512_mul_ps(w1, s);
        _mm512_storeu_ps(out, w0);
        _mm512_storeu_ps(out + 16, w1);
    }
    for (; k < c0 + n; k += 16, out += 16) {
        const __mmask16 m = lanes16(c0 + n - k);
        __m512 w = load16m(T, row, k, m);
        if (scaled) w = _mm512_mul_ps(w, s);
        _mm512_mask_storeu_ps(out, m, w);
    }
}

/* widen for W's type; FP8 multiplied by mul (unless it is 1), the others never. */
static void widen_any(const qtensor *W, const uint8_t *row, int c0, int n, float mul, float *out) {
    switch (W->type) {
    case QT_F32: widen(QT_F32, false, row, c0, n, 1.0f, out); break;
    case QT_F16: widen(QT_F16, false, row, c0, n, 1.0f, out); break;
    case QT_BF16: widen(QT_BF16, false, row, c0, n, 1.0f, out); break;
    case QT_Q8_0: widen(QT_Q8_0, false, row, c0, n, 1.0f, out); break;
    case QT_Q4_0: widen(QT_Q4_0, false, row, c0, n, 1.0f, out); break;
    case QT_FP8:
        if (mul == 1.0f)
            widen(QT_FP8, false, row, c0, n, 1.0f, out);
        else
            widen(QT_FP8, true, row, c0, n, mul, out);
        break;
    default: break;
    }
}

static void dequant_avx512(const qtensor *W, int r, int c0, int n, float *out) {
    const uint8_t *row = qt_row(W, r);
    if (W->type != QT_FP8) {
        widen_any(W, row, c0, n, 1.0f, out);
        return;
    }
    const float *s = qt_fp8_scales(W, r / QT_FP8_BLOCK);
    for (int k = c0; k < c0 + n;) { /* one piece per 128-column scale block */
        int end = (k / QT_FP8_BLOCK + 1) * QT_FP8_BLOCK;
        if (end > c0 + n) end = c0 + n;
        widen_any(W, row, k, end - k, s[k / QT_FP8_BLOCK] * 256.0f, out + (k - c0));
        k = end;
    }
}

/* FP8 widened for decode, 64 columns at a time in an order that needs fewer shuffles: within
 * each whole 64-column block, out[32 h + 8 l + t] = column 16 l + 8 h + t (l < 4, h < 2, t < 8);
 * the activations are permuted alike (scale_x_fp8). Each byte lands in the high byte of a 16-bit
 * lane (vpunpck*bw with zero), one arithmetic shift and a mask make the half with the same bits
 * (value * 2^-8), and vcvtph2ps widens it. Columns past the last whole block are in natural
 * order. Returns false if the row holds a NaN code: the caller then widens it exactly. */
static bool widen_fp8_perm(const uint8_t *row, int c0, int n, float *out) {
    const __m512i zero = _mm512_setzero_si512(), mask = _mm512_set1_epi16((short)0xbf80);
    const __m512i one = _mm512_set1_epi8(1), low7 = _mm512_set1_epi8(0x7f);
    __mmask64 nan = 0;
    __m512i h[2];
    int k = c0;
    for (; k + 64 <= c0 + n; k += 64, out += 64) {
        const __m512i b = _mm512_loadu_si512(row + k);
        nan |= _mm512_testn_epi8_mask(_mm512_add_epi8(b, one), low7); /* 0x7f and 0xff */
        h[0] = _mm512_and_si512(_mm512_srai_epi16(_mm512_unpacklo_epi8(zero, b), 1), mask);
        h[1] = _mm512_and_si512(_mm512_srai_epi16(_mm512_unpackhi_epi8(zero, b), 1), mask);
        const __m256i *hp = (const __m256i *)(const void *)h;
        _mm512_storeu_ps(out, _mm512_cvtph_ps(_mm256_loadu_si256(hp)));
        _mm512_storeu_ps(out + 16, _mm512_cvtph_ps(_mm256_loadu_si256(hp + 1)));
        _mm512_storeu_ps(out + 32, _mm512_cvtph_ps(_mm256_loadu_si256(hp + 2)));
        _mm512_storeu_ps(out + 48, _mm512_cvtph_ps(_mm256_loadu_si256(hp + 3)));
    }
    if (k < c0 + n) widen(QT_FP8, false, row, k, c0 + n - k, 1.0f, out);
    return nan == 0;
}

/* Position of column j of a whole 64-column block in widen_fp8_perm's order. */
static inline int fp8_perm_pos(int j) { return (j & 8) * 4 + (j >> 4) * 8 + (j & 7); }

/* ---- decode: y[n, r] for few rows n of x ---- */

/* acc[r][j][h] += rows r < RR of W (from w, stride wstride bytes) times rows j < nb of x (stride
 * ldx floats) over columns [0, kn). Column halves go to accumulator set h = 0 / 1 when the tile
 * is small (two chains keep the FMA latency hidden), else both to set 0. */
static ALWAYS_INLINE void tile(const qt_type T, const int RR, const int nb, const uint8_t *w, size_t wstride,
                               const float *x, size_t ldx, int kn, __m512 acc[R][NB][2]) {
    const int h1 = RR * nb >= 8 ? 0 : 1;
    int k = 0;
    for (; k + 32 <= kn; k += 32) {
        __m512 wv[R][2];
#pragma GCC unroll 4
        for (int r = 0; r < RR; r++) load32(T, w + r * wstride, k, &wv[r][0], &wv[r][1]);
#pragma GCC unroll 4
        for (int j = 0; j < nb; j++) {
            const __m512 x0 = _mm512_loadu_ps(x + j * ldx + k), x1 = _mm512_loadu_ps(x + j * ldx + k + 16);
#pragma GCC unroll 4
            for (int r = 0; r < RR; r++) {
                acc[r][j][0] = _mm512_fmadd_ps(wv[r][0], x0, acc[r][j][0]);
                acc[r][j][h1] = _mm512_fmadd_ps(wv[r][1], x1, acc[r][j][h1]);
            }
        }
    }
    for (; k < kn; k += 16) { /* the F types' and FP8's last columns */
        const __mmask16 m = lanes16(kn - k);
        __m512 wv[R];
#pragma GCC unroll 4
        for (int r = 0; r < RR; r++) wv[r] = load16m(T, w + r * wstride, k, m);
#pragma GCC unroll 4
        for (int j = 0; j < nb; j++) {
            const __m512 xv = _mm512_maskz_loadu_ps(m, x + j * ldx + k);
#pragma GCC unroll 4
            for (int r = 0; r < RR; r++) acc[r][j][0] = _mm512_fmadd_ps(wv[r], xv, acc[r][j][0]);
        }
    }
}

/* y[n0 + j, r0 + r] = sum of acc[r][j] (+ y when accumulating). */
static ALWAYS_INLINE void store_y(const int RR, const int nb, const qt_mm *m, int r0, int n0, __m512 acc[R][NB][2]) {
    const int rows = m->W->rows;
#pragma GCC unroll 4
    for (int j = 0; j < nb; j++)
#pragma GCC unroll 4
        for (int r = 0; r < RR; r++) {
            float *y = m->y + (size_t)(n0 + j) * rows + r0 + r;
            float v = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][j][0], acc[r][j][1]));
            *y = m->accumulate ? *y + v : v;
        }
}

static ALWAYS_INLINE void zero_acc(__m512 acc[R][NB][2]) {
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < NB; j++) acc[r][j][0] = acc[r][j][1] = _mm512_setzero_ps();
}

/* Rows [r0, r0+RR) of W, widened into wbuf (RR rows of CB floats) for columns [c0, c0+kn), against
 * rows [n0, n0+nb) of x; the accumulators are carried between column steps in accbuf ([R][N]
 * pairs of vectors). */
static ALWAYS_INLINE void from_buf(const int RR, const int nb, const qt_mm *m, const float *x, int r0, int n0,
                                   int c0, int kn, const float *wbuf, __m512 *accbuf) {
    const int cols = m->W->cols, N = m->N;
    __m512 acc[R][NB][2];
    zero_acc(acc);
    if (c0 > 0)
#pragma GCC unroll 4
        for (int r = 0; r < RR; r++)
#pragma GCC unroll 4
            for (int j = 0; j < nb; j++) acc[r][j][0] = accbuf[r * N + n0 + j];
    tile(QT_F32, RR, nb, (const uint8_t *)wbuf, CB * sizeof(float), x + (size_t)n0 * cols + c0, (size_t)cols, kn, acc);
    if (c0 + kn >= cols)
        store_y(RR, nb, m, r0, n0, acc);
    else
#pragma GCC unroll 4
        for (int r = 0; r < RR; r++)
#pragma GCC unroll 4
            for (int j = 0; j < nb; j++) accbuf[r * N + n0 + j] = _mm512_add_ps(acc[r][j][0], acc[r][j][1]);
}

#define NB_SWITCH(CALL_)                                                                                \
    switch (nb) {                                                                                       \
    case 1: CALL_(1); break;                                                                            \
    case 2: CALL_(2); break;                                                                            \
    case 3: CALL_(3); break;                                                                            \
    default: CALL_(4); break;                                                                           \
    }

static void from_buf_any(int RR, int nb, const qt_mm *m, const float *x, int r0, int n0, int c0, int kn,
                         const float *wbuf, __m512 *accbuf) {
#define BUF_(NB_)                                                                                       \
    (RR == R ? from_buf(R, NB_, m, x, r0, n0, c0, kn, wbuf, accbuf)                                     \
             : from_buf(1, NB_, m, x, r0, n0, c0, kn, wbuf, accbuf))
    NB_SWITCH(BUF_)
#undef BUF_
}

/* Rows [r0, r1) of y: each group of R weight rows is widened CB columns at a time into wbuf and
 * multiplied from there with each group of at most NB rows of x. */
static void decode_f32(const qt_mm *m, const float *x, int r0, int r1, float *wbuf, __m512 *accbuf) {
    const qtensor *W = m->W;
    const int N = m->N, cols = W->cols;
    const int groups = (N + NB - 1) / NB;
    /* the same columns of the row `ahead` rows on are asked for while these are widened */
    const size_t rb = qt_row_bytes(W->type, cols);
    const int ahead = (int)((QT_PF_BYTES + rb - 1) / rb);
    for (int r = r0; r < r1;) {
        const int RR = r1 - r >= R ? R : 1;
        for (int c0 = 0; c0 < cols; c0 += CB) {
            const int kn = cols - c0 < CB ? cols - c0 : CB;
            const size_t b0 = qt_row_bytes(W->type, c0), b1 = c0 + kn < cols ? qt_row_bytes(W->type, c0 + kn) : rb;
            for (int i = 0; i < RR; i++) {
                if (r + i + ahead < r1) qt_prefetch_l2(qt_row(W, r + i + ahead) + b0, b1 - b0);
                float *wb = wbuf + i * CB;
                if (W->type != QT_FP8) {
                    widen_any(W, qt_row(W, r + i), c0, kn, 1.0f, wb);
                } else if (!widen_fp8_perm(qt_row(W, r + i), c0, kn, wb)) { /* NaN codes: exactly */
                    float tmp[64];
                    for (int b = 0; b + 64 <= kn; b += 64) {
                        widen(QT_FP8, false, qt_row(W, r + i), c0 + b, 64, 1.0f, tmp);
                        for (int j = 0; j < 64; j++) wb[b + fp8_perm_pos(j)] = tmp[j];
                    }
                }
            }
            for (int g = 0; g < groups; g++) {
                const int n0 = (int)((long)N * g / groups), nb = (int)((long)N * (g + 1) / groups) - n0;
                from_buf_any(RR, nb, m, x, r, n0, c0, kn, wbuf, accbuf);
            }
        }
        r += RR;
    }
}

/* Scratch: wbuf [R][CB] floats, accbuf [R][N] vectors, and for FP8 the activations times the
 * scales of one 128-row block ([N][cols] floats). */
static size_t scratch_avx512(const qtensor *W, int N) {
    size_t s = sizeof(float) * R * CB + sizeof(__m512) * R * (size_t)N;
    if (W->type == QT_FP8) s += sizeof(float) * (size_t)N * W->cols;
    return s;
}

static void decode_q_vnni(const qt_mm *m, int r0, int r1);

static void decode_avx512(const qt_mm *m, int r0, int r1, void *scratch) {
    const qtensor *W = m->W;
    if (m->xq) { /* the activations were rounded to int8 (Q8_0 / Q4_0 with VNNI) */
        decode_q_vnni(m, r0, r1);
        return;
    }
    float *wbuf = scratch;
    __m512 *accbuf = (__m512 *)(void *)(wbuf + R * CB);
    const float *x = m->x;
    if (W->type == QT_FP8) { /* x times the block scales (and 2^8, see fp8_to_f16_32) */
        const int cols = W->cols;
        const float *s = qt_fp8_scales(W, r0 / QT_FP8_BLOCK);
        float *xs = (float *)(void *)(accbuf + R * (size_t)m->N);
        for (int n = 0; n < m->N; n++)
            for (int c0 = 0; c0 < cols; c0 += QT_FP8_BLOCK) {
                const int kn = cols - c0 < QT_FP8_BLOCK ? cols - c0 : QT_FP8_BLOCK;
                const __m512 sv = _mm512_set1_ps(s[c0 / QT_FP8_BLOCK] * 256.0f);
                const float *src = m->x + (size_t)n * cols + c0;
                float *dst = xs + (size_t)n * cols + c0;
                int k = 0;
                for (; k + 64 <= kn; k += 64) { /* whole 64-column blocks in widen_fp8_perm's order */
                    const __m512 a = _mm512_loadu_ps(src + k), b = _mm512_loadu_ps(src + k + 16);
                    const __m512 c = _mm512_loadu_ps(src + k + 32), d = _mm512_loadu_ps(src + k + 48);
                    _mm512_storeu_ps(dst + k, _mm512_mul_ps(_mm512_shuffle_f32x4(a, b, 0x44), sv));
                    _mm512_storeu_ps(dst + k + 16, _mm512_mul_ps(_mm512_shuffle_f32x4(c, d, 0x44), sv));
                    _mm512_storeu_ps(dst + k + 32, _mm512_mul_ps(_mm512_shuffle_f32x4(a, b, 0xee), sv));
                    _mm512_storeu_ps(dst + k + 48, _mm512_mul_ps(_mm512_shuffle_f32x4(c, d, 0xee), sv));
                }
                for (; k < kn; k += 16) {
                    const __mmask16 mk = lanes16(kn - k);
                    _mm512_mask_storeu_ps(dst + k, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, src + k), sv));
                }
            }
        x = xs;
    }
    decode_f32(m, x, r0, r1, wbuf, accbuf);
}

/* ---- int8 decode for Q8_0 / Q4_0 (AVX512-VNNI and VBMI) ----
 *
 * x is rounded to int8 per block of 32, once per call (prepare_q8): q = round(x / dx), dx =
 * amax / 127, as GGML rounds activations for these formats. Products of blocks are then integer:
 * vpdpbusd multiplies 64 unsigned weight bytes by 64 signed activation bytes and adds each four
 * products into a 32-bit lane. The weights are made unsigned (Q4_0: the nibble 0..15 instead of
 * nibble - 8; Q8_0: q + 128) and the excess taken off by starting the lane sums at -K * sum(q_x)
 * (K = 8 or 128), which the preparation computes. Four blocks (128 columns) make a group: one
 * byte permute gathers their first 16 values into one register and their last 16 into another,
 * so each 128-bit lane holds one block; the lane sums are then scaled by dw * dx per lane in
 * float. Per row of x and group: 2 vpdpbusd, a conversion, a multiply and an FMA. */

static bool has_vnni(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vbmi");
}

static bool int8_activations_avx512(qt_type t) { return (t == QT_Q8_0 || t == QT_Q4_0) && has_vnni(); }

/* The activations of one row of x for one group of 4 blocks (absent blocks: all zero). */
typedef struct {
    int8_t lo[64];    /* values 0..15 of block j at [16 j, 16 j + 16) */
    int8_t hi[64];    /* values 16..31 */
    int32_t corr[16]; /* lane 4 j: -K * sum of block j's values; other lanes 0 */
    float dx[16];     /* lanes 4 j .. 4 j + 3: block j's scale */
} xgroup;

#define GROUP_COLS 128
#ifndef Q_PF_ROWS
#define Q_PF_ROWS 8 /* software prefetch distance of the N = 1 weight stream, rows of W */
#endif
#ifndef Q_PF_MIN_BYTES
#define Q_PF_MIN_BYTES 8192 /* ... and at least this many bytes */
#endif
#ifndef Q_PF
#define Q_PF 1536 /* software prefetch distance of the weight stream, bytes */
#endif

static int groups_of(int cols) { return (cols + GROUP_COLS - 1) / GROUP_COLS; }

static size_t prepare_bytes_avx512(const qtensor *W, int N) {
    if (!int8_activations_avx512(W->type)) return 0;
    return sizeof(xgroup) * (size_t)groups_of(W->cols) * (size_t)N;
}

static void decode_q_vnni(const qt_mm *m, int r0, int r1);
static void prepare_q8(const qt_mm *m, void *buf);

const qt_impl qt_impl_avx512 = {dequant_avx512, prepare_bytes_avx512, prepare_q8, scratch_avx512, decode_avx512,
                                int8_activations_avx512};

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi,avx2,fma,f16c"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi,avx2,fma,f16c")
#endif

/* xgroup array [groups][N]: group g of row n at [g * N + n]. */
static void prepare_q8(const qt_mm *m, void *buf) {
    const int cols = m->W->cols, N = m->N, G = groups_of(cols), nblocks = cols / QT_QK;
    const int K = m->W->type == QT_Q4_0 ? 8 : 128;
    xgroup *xg = buf;
    memset(buf, 0, sizeof(xgroup) * (size_t)G * N);
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int n = 0; n < N; n++)
        for (int b = 0; b < nblocks; b++) {
            const float *x = m->x + (size_t)n * cols + (size_t)b * QT_QK;
            xgroup *g = xg + (size_t)(b / 4) * N + n;
            const int j = b % 4;
            const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
            const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1)));
            const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, _mm512_set1_ps(id)));
            const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, _mm512_set1_ps(id)));
            _mm_storeu_si128((__m128i *)(void *)(g->lo + 16 * j), _mm512_cvtepi32_epi8(q0));
            _mm_storeu_si128((__m128i *)(void *)(g->hi + 16 * j), _mm512_cvtepi32_epi8(q1));
            g->corr[4 * j] = -K * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
            for (int l = 0; l < 4; l++) g->dx[4 * j + l] = d;
        }
}

/* Byte masks of the first n bytes of a 64-byte load. */
static inline __mmask64 bytes_mask(int n) {
    return n >= 64 ? ~(__mmask64)0 : n <= 0 ? 0 : (((__mmask64)1 << n) - 1);
}

/* Permute tables: for byte 16 j + i of the result, the byte of the group it comes from. */
typedef struct {
    uint8_t q4[64], l8[64], h8[64], c8[64];
    uint16_t d4[32], d8[32];
    uint16_t s4[32]; /* four rows' scales, see q_rows4 */
} perm_tables;

static perm_tables make_tables(void) {
    perm_tables t;
    for (int j = 0; j < 4; j++)
        for (int i = 0; i < 16; i++) {
            t.q4[16 * j + i] = (uint8_t)(QT_Q4_0_BYTES * j + 2 + i);
            t.l8[16 * j + i] = (uint8_t)(QT_Q8_0_BYTES * j + 2 + i);
            t.h8[16 * j + i] = (uint8_t)((QT_Q8_0_BYTES * j + 18 + i) & 127); /* past 127: fixed from c */
            t.c8[16 * j + i] = (uint8_t)((QT_Q8_0_BYTES * j + 18 + i) & 63);
        }
    for (int k = 0; k < 32; k++) {
        t.d4[k] = (uint16_t)((k / 4 % 4) * QT_Q4_0_BYTES / 2);
        t.d8[k] = (uint16_t)((k / 4 % 4) * QT_Q8_0_BYTES / 2);
        t.s4[k] = (uint16_t)((k & 1 ? 32 : 0) + (k / 4 % 4) * QT_Q4_0_BYTES / 2);
    }
    return t;
}

/* The weights of one group of `nb` (1..4) blocks starting at p: unsigned bytes (lo: values 0..15
 * of each block, hi: 16..31, block j in 128-bit lane j), and in *sw the raw bytes the scales sit
 * in: Q4_0 the group's first 64 bytes (block j's fp16 scale is word 9 j), Q8_0 the scales
 * themselves (word k: block k / 4's, the layout load_group widens). */
static ALWAYS_INLINE void load_group_raw(const qt_type T, const uint8_t *p, int nb, const perm_tables *pt, __m512i *lo,
                                         __m512i *hi, __m512i *sw) {
    if (T == QT_Q4_0) {
        const int bytes = nb * QT_Q4_0_BYTES;
        const __m512i z0 = _mm512_maskz_loadu_epi8(bytes_mask(bytes), p);
        const __m512i z1 = _mm512_maskz_loadu_epi8(bytes_mask(bytes - 64), p + 64);
        const __m512i q = _mm512_permutex2var_epi8(z0, _mm512_loadu_si512(pt->q4), z1);
        const __m512i m4 = _mm512_set1_epi8(0x0f);
        *lo = _mm512_and_si512(q, m4);
        *hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
        *sw = z0;
    } else {
        const int bytes = nb * QT_Q8_0_BYTES;
        const __m512i a = _mm512_maskz_loadu_epi8(bytes_mask(bytes), p);
        const __m512i b = _mm512_maskz_loadu_epi8(bytes_mask(bytes - 64), p + 64);
        const __m512i c = _mm512_maskz_loadu_epi8(bytes_mask(bytes - 128), p + 128);
        const __m512i flip = _mm512_set1_epi8((char)0x80);
        __m512i h = _mm512_permutex2var_epi8(a, _mm512_loadu_si512(pt->h8), b);
        h = _mm512_mask_permutexvar_epi8(h, (__mmask64)0xff << 56, _mm512_loadu_si512(pt->c8), c);
        *lo = _mm512_xor_si512(_mm512_permutex2var_epi8(a, _mm512_loadu_si512(pt->l8), b), flip);
        *hi = _mm512_xor_si512(h, flip);
        *sw = _mm512_permutex2var_epi16(a, _mm512_loadu_si512(pt->d8), b);
    }
}

/* The same with the block scales in fp32, four lanes a block (lane 4 j + k: block j's). */
static ALWAYS_INLINE void load_group(const qt_type T, const uint8_t *p, int nb, const perm_tables *pt, __m512i *lo,
                                     __m512i *hi, __m512 *dw) {
    __m512i sw;
    load_group_raw(T, p, nb, pt, lo, hi, &sw);
    if (T == QT_Q4_0) sw = _mm512_permutexvar_epi16(_mm512_loadu_si512(pt->d4), sw);
    *dw = _mm512_cvtph_ps(_mm512_castsi512_si256(sw));
}

/* Asks for the cache lines of one group of weights at p (72 bytes Q4_0, 136 bytes Q8_0), into L1
 * (to_l2 false) or into L2 only (to_l2 true). */
static ALWAYS_INLINE void prefetch_group(const qt_type T, const char *p, const bool to_l2) {
    if (to_l2) {
        _mm_prefetch(p, _MM_HINT_T1);
        _mm_prefetch(p + 64, _MM_HINT_T1);
        if (T == QT_Q8_0) _mm_prefetch(p + 128, _MM_HINT_T1);
    } else {
        _mm_prefetch(p, _MM_HINT_T0);
        _mm_prefetch(p + 64, _MM_HINT_T0);
        if (T == QT_Q8_0) _mm_prefetch(p + 128, _MM_HINT_T0);
    }
}

/* Row r of W against rows [n0, n0 + NBN) of x over groups [g0, g1). The accumulators start at
 * zero (g0 == 0) or from accbuf, and end in y (g1 == G) or in accbuf. */
static ALWAYS_INLINE void q_row(const qt_type T, const int NBN, const qt_mm *m, const perm_tables *pt, int r, int n0,
                                int g0, int g1, __m512 *accbuf) {
    const qtensor *W = m->W;
    const int N = m->N, nblocks = W->cols / QT_QK, G = groups_of(W->cols);
    const size_t gbytes = 4 * (size_t)(T == QT_Q4_0 ? QT_Q4_0_BYTES : QT_Q8_0_BYTES);
    const uint8_t *row = qt_row(W, r);
    const xgroup *xg = (const xgroup *)m->xq + (size_t)g0 * N + n0;
    __m512 acc[16];
#pragma GCC unroll 16
    for (int j = 0; j < NBN; j++) acc[j] = g0 == 0 ? _mm512_setzero_ps() : accbuf[j];
    for (int g = g0; g < g1; g++, xg += N) {
        __m512i lo, hi;
        __m512 dw;
        const int nb = nblocks - 4 * g < 4 ? nblocks - 4 * g : 4;
        /* the weights stream from DRAM once: asking for them Q_PF bytes ahead overlaps the
         * fetch with this group's arithmetic (measured: 46% -> 66% of one core's bandwidth) */
        prefetch_group(T, (const char *)(row + (size_t)g * gbytes) + Q_PF, false);
        load_group(T, row + (size_t)g * gbytes, nb, pt, &lo, &hi, &dw);
#pragma GCC unroll 16
        for (int j = 0; j < NBN; j++) {
            __m512i s = _mm512_loadu_si512(xg[j].corr);
            s = _mm512_dpbusd_epi32(s, lo, _mm512_loadu_si512(xg[j].lo));
            s = _mm512_dpbusd_epi32(s, hi, _mm512_loadu_si512(xg[j].hi));
            acc[j] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s), _mm512_loadu_ps(xg[j].dx)), dw, acc[j]);
        }
    }
    if (g1 < G) {
#pragma GCC unroll 16
        for (int j = 0; j < NBN; j++) accbuf[j] = acc[j];
        return;
    }
#pragma GCC unroll 16
    for (int j = 0; j < NBN; j++) {
        float *y = m->y + (size_t)(n0 + j) * W->rows + r;
        const float v = _mm512_reduce_add_ps(acc[j]);
        *y = m->accumulate ? *y + v : v;
    }
}

/* N == 1, whole rows: four rows of W at once, the common decode case. The four rows' lane sums
 * (16 lanes each: lane 4 j + k holds a quarter of block j) are folded into one vector whose lane
 * 4 j + i is row i's sum over block j, so that one conversion, one multiply and one FMA scale all
 * four (instead of one each), and the scales of the four rows are gathered into one vector to
 * match (measured on Zen 4, 1408 x 2048 Q4_0 in cache: 25 -> 30 GB/s a thread). */
static ALWAYS_INLINE __m512i fold4(const __m512i s[4]) {
    const __m512i t01 = _mm512_add_epi32(_mm512_unpacklo_epi32(s[0], s[1]), _mm512_unpackhi_epi32(s[0], s[1]));
    const __m512i t23 = _mm512_add_epi32(_mm512_unpacklo_epi32(s[2], s[3]), _mm512_unpackhi_epi32(s[2], s[3]));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(t01, t23), _mm512_unpackhi_epi64(t01, t23));
}

/* Lane 4 j + i: the scale of block j of row i, from the rows' scale words (load_group_raw). */
static ALWAYS_INLINE __m512 scales4(const qt_type T, const __m512i sw[4], const perm_tables *pt) {
    __m512i w;
    if (T == QT_Q4_0) { /* rows 0, 1 and rows 2, 3 gathered by one two-source permute each */
        const __m512i idx = _mm512_loadu_si512(pt->s4);
        w = _mm512_mask_blend_epi16((__mmask32)0xCCCCCCCC, _mm512_permutex2var_epi16(sw[0], idx, sw[1]),
                                    _mm512_permutex2var_epi16(sw[2], idx, sw[3]));
    } else { /* word 4 j + i of row i's scale words is already block j's */
        w = _mm512_mask_blend_epi16((__mmask32)0x22222222, sw[0], sw[1]);
        w = _mm512_mask_blend_epi16((__mmask32)0x44444444, w, sw[2]);
        w = _mm512_mask_blend_epi16((__mmask32)0x88888888, w, sw[3]);
    }
    return _mm512_cvtph_ps(_mm512_castsi512_si256(w));
}

static ALWAYS_INLINE void q_rows4(const qt_type T, const qt_mm *m, const perm_tables *pt, int r) {
    const qtensor *W = m->W;
    const int nblocks = W->cols / QT_QK, G = groups_of(W->cols);
    const size_t gbytes = 4 * (size_t)(T == QT_Q4_0 ? QT_Q4_0_BYTES : QT_Q8_0_BYTES);
    const size_t rb = qt_row_bytes(W->type, W->cols);
    /* prefetch distance: Q_PF_ROWS rows, and at least Q_PF_MIN_BYTES for short rows */
    const size_t pf_rows = (Q_PF_MIN_BYTES + rb - 1) / rb > Q_PF_ROWS ? (Q_PF_MIN_BYTES + rb - 1) / rb : Q_PF_ROWS;
    const size_t pf = pf_rows * rb;
    const uint8_t *row = qt_row(W, r);
    const xgroup *xg = (const xgroup *)m->xq;
    __m512 acc = _mm512_setzero_ps(); /* lane 4 j + i: row i */
    for (int g = 0; g < G; g++, xg++) {
        const int nb = nblocks - 4 * g < 4 ? nblocks - 4 * g : 4;
        const __m512i xlo = _mm512_loadu_si512(xg->lo), xhi = _mm512_loadu_si512(xg->hi);
        const __m512i corr = _mm512_loadu_si512(xg->corr);
        __m512i s[4], sw[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            const uint8_t *p = row + (size_t)i * rb + (size_t)g * gbytes;
            /* the rows are one stream: fetch the same place pf bytes on, into L2. A
             * core keeps more misses in flight to L2 than to L1, and with one stream a core
             * needs many in flight (measured on Zen 4, 1408 x 2048 from DRAM, 2 threads: 18 GB/s
             * with the next four rows into L1, 30 GB/s with the rows eight on into L2) */
            prefetch_group(T, (const char *)p + pf, true);
            __m512i lo, hi;
            load_group_raw(T, p, nb, pt, &lo, &hi, &sw[i]);
            s[i] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(corr, lo, xlo), hi, xhi);
        }
        /* xg->dx: lane 4 j + k is block j's activation scale, for every k: it matches the fold */
        acc = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(fold4(s)), _mm512_loadu_ps(xg->dx)),
                              scales4(T, sw, pt), acc);
    }
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1));
    float v[4];
    _mm_storeu_ps(v, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
    for (int i = 0; i < 4; i++) {
        float *y = m->y + r + i;
        *y = m->accumulate ? *y + v[i] : v[i];
    }
}

#define QROW_CASE(NBN_)                                                                                 \
    case NBN_:                                                                                          \
        if (T == QT_Q4_0)                                                                               \
            q_row(QT_Q4_0, NBN_, m, pt, r, n0, g0, g1, accbuf);                                         \
        else                                                                                            \
            q_row(QT_Q8_0, NBN_, m, pt, r, n0, g0, g1, accbuf);                                         \
        break;

static void q_row_any(qt_type T, int nbn, const qt_mm *m, const perm_tables *pt, int r, int n0, int g0, int g1,
                      __m512 *accbuf) {
    switch (nbn) {
        QROW_CASE(1)
        QROW_CASE(2)
        QROW_CASE(3)
        QROW_CASE(4)
        QROW_CASE(5)
        QROW_CASE(6)
        QROW_CASE(7)
        QROW_CASE(8)
        QROW_CASE(9)
        QROW_CASE(10)
        QROW_CASE(11)
        QROW_CASE(12)
        QROW_CASE(13)
        QROW_CASE(14)
        QROW_CASE(15)
        QROW_CASE(16)
    default: break;
    }
}

/* Rows of W in blocks of Q_ROWS, rows of x in blocks of 16 (16 accumulators), columns in chunks
 * whose activations (16 rows x chunk) fit in L1: the block's weights are read from DRAM once and
 * then from L1/L2 for each block of x, the activations from L2 once per block of W rows. Each row
 * of W carries its accumulators from chunk to chunk in accbuf. */
#ifndef Q_ROWS
#define Q_ROWS 8
#endif

#ifndef Q_L1_BYTES
#define Q_L1_BYTES (24 * 1024)
#endif

static void decode_q_vnni(const qt_mm *m, int r0, int r1) {
    const perm_tables pt = make_tables();
    const int N = m->N, G = groups_of(m->W->cols);
    __m512 accbuf[Q_ROWS * 16];
    if (N == 1 && (size_t)G * sizeof(xgroup) <= Q_L1_BYTES) { /* whole rows, four at a time */
        int r = r0;
        for (; r + 4 <= r1; r += 4) {
            if (m->W->type == QT_Q4_0) q_rows4(QT_Q4_0, m, &pt, r);
            else q_rows4(QT_Q8_0, m, &pt, r);
        }
        for (; r < r1; r++) q_row_any(m->W->type, 1, m, &pt, r, 0, 0, G, accbuf);
        return;
    }
    for (int rb = r0; rb < r1; rb += Q_ROWS) {
        const int re = r1 - rb < Q_ROWS ? r1 : rb + Q_ROWS;
        for (int n0 = 0; n0 < N; n0 += 16) {
            const int nbn = N - n0 < 16 ? N - n0 : 16;
            int cg = Q_L1_BYTES / (int)(sizeof(xgroup) * (size_t)nbn);
            cg = cg < 1 ? 1 : cg > G ? G : cg;
            for (int g0 = 0; g0 < G; g0 += cg) {
                const int g1 = G - g0 < cg ? G : g0 + cg;
                for (int r = rb; r < re; r++)
                    q_row_any(m->W->type, nbn, m, &pt, r, n0, g0, g1, accbuf + (size_t)(r - rb) * 16);
            }
        }
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif /* DSC_X86 */
