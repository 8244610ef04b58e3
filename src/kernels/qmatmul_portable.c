/* qmatmul_portable.c: the plain-C code path of qt_matmul: each row of W dequantized to fp32 once,
 * then dotted with every row of x. The reference the vector paths are tested against, and what
 * runs where neither AVX2 nor AVX-512 is available. */
#include <string.h>

#include "kernels/qmatmul_internal.h"

static inline uint16_t rd16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static void dequant_portable(const qtensor *W, int r, int c0, int n, float *out) {
    const uint8_t *row = qt_row(W, r);
    switch (W->type) {
    case QT_F32: memcpy(out, (const float *)(const void *)row + c0, sizeof(float) * (size_t)n); break;
    case QT_F16:
        for (int j = 0; j < n; j++) out[j] = qt_f16_to_f32(rd16(row + 2 * (size_t)(c0 + j)));
        break;
    case QT_BF16:
        for (int j = 0; j < n; j++) out[j] = qt_bf16_to_f32(rd16(row + 2 * (size_t)(c0 + j)));
        break;
    case QT_Q8_0:
        for (int b = c0 / QT_QK; b < (c0 + n) / QT_QK; b++, out += QT_QK) {
            const uint8_t *blk = row + (size_t)b * QT_Q8_0_BYTES;
            const float d = qt_f16_to_f32(rd16(blk));
            for (int j = 0; j < QT_QK; j++) out[j] = (float)(int8_t)blk[2 + j] * d;
        }
        break;
    case QT_Q4_0:
        for (int b = c0 / QT_QK; b < (c0 + n) / QT_QK; b++, out += QT_QK) {
            const uint8_t *blk = row + (size_t)b * QT_Q4_0_BYTES;
            const float d = qt_f16_to_f32(rd16(blk));
            for (int j = 0; j < QT_QK / 2; j++) {
                out[j] = (float)((blk[2 + j] & 0xf) - 8) * d;
                out[j + QT_QK / 2] = (float)((blk[2 + j] >> 4) - 8) * d;
            }
        }
        break;
    case QT_FP8: {
        const float *s = qt_fp8_scales(W, r / QT_FP8_BLOCK);
        for (int j = 0; j < n; j++) out[j] = qt_fp8_e4m3_to_f32(row[c0 + j]) * s[(c0 + j) / QT_FP8_BLOCK];
        break;
    }
    default: break;
    }
}

static size_t scratch_portable(const qtensor *W, int N) {
    (void)N;
    return sizeof(float) * (size_t)W->cols;
}

static void decode_portable(const qt_mm *m, int r0, int r1, void *scratch) {
    const qtensor *W = m->W;
    const int cols = W->cols;
    float *w = scratch;
    for (int r = r0; r < r1; r++) {
        dequant_portable(W, r, 0, cols, w);
        for (int n = 0; n < m->N; n++) {
            const float *x = m->x + (size_t)n * cols;
            float acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int c = 0; c < cols; c++) acc += w[c] * x[c];
            float *y = m->y + (size_t)n * W->rows + r;
            *y = acc + (m->accumulate ? *y : 0.0f);
        }
    }
}

const qt_impl qt_impl_portable = {dequant_portable, NULL, NULL, scratch_portable, decode_portable, NULL};
