/* test_qtensor.c: the quantized weight formats and their products.
 *  - element conversions: all 256 FP8 e4m3 codes decoded against the definition, every code
 *    round-tripped, every midpoint between neighbours rounded to the even code, subnormals,
 *    saturation, NaN; all 65536 halves; f32 -> f16 and bf16 rounding at every tie;
 *  - quantizers: Q8_0 / Q4_0 byte for byte against GGML's reference rules, and the error of
 *    every value within its bound (Q8_0 and Q4_0: d/2, plus the fp16 rounding of d; FP8: 2^-4
 *    relative in the normal range);
 *  - qt_dequant_row: every code path bit for bit equal to the portable one;
 *  - qt_matmul on every code path against a double-precision product with the dequantized
 *    weights: decode (N <= 16) and prefill sizes, odd row counts, column counts that are not
 *    multiples of 32 or 128 where the format allows, accumulate on and off (y starts as NaN when
 *    off), threaded and from inside a parallel region. Tolerance: the rigorous fp32 dot-product
 *    bound (cols + 16) * 2^-24 * sum|w x|; where the path rounds x to int8 blocks, plus the bound
 *    of that rounding, sum over blocks of (d_x / 2) * sum|w| (d_x = amax / 127 of the block). */
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/qtensor.h"
#include "testutil.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- FP8 e4m3 ---- */

/* The definition: s eeee mmm, bias 7, e = 0 subnormal, s1111111 NaN. */
static double fp8_def(int c) {
    int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
    if (e == 15 && m == 7) return NAN;
    double v = e == 0 ? ldexp(m, -9) : ldexp(8 + m, e - 10);
    return s ? -v : v;
}

static void test_fp8(void) {
    int bad_decode = 0, bad_trip = 0, bad_mid = 0, bad_near = 0;
    for (int c = 0; c < 256; c++) {
        float f = qt_fp8_e4m3_to_f32((uint8_t)c);
        double want = fp8_def(c);
        if (isnan(want)) {
            if (!isnan(f)) bad_decode++;
            if ((qt_f32_to_fp8_e4m3(f) & 0x7f) != 0x7f) bad_trip++;
            continue;
        }
        if ((double)f != want || !!signbit(f) != (c >> 7)) bad_decode++;
        if (qt_f32_to_fp8_e4m3(f) != c) bad_trip++;
    }
    CHECK(bad_decode == 0, "fp8: %d of 256 codes decode wrong", bad_decode);
    CHECK(bad_trip == 0, "fp8: %d codes do not round-trip", bad_trip);
    /* midpoints of neighbouring codes (exact in float) go to the even code; just above / below
     * them to the nearer one; both signs */
    for (int c = 0; c < 0x7e; c++)
        for (int s = 0; s < 2; s++) {
            float lo = (float)fp8_def(c), hi = (float)fp8_def(c + 1), mid = (lo + hi) / 2;
            int even = (c & 1) ? c + 1 : c, sg = s ? 0x80 : 0;
            float sm = s ? -mid : mid;
            if (qt_f32_to_fp8_e4m3(sm) != (even | sg)) bad_mid++;
            if (qt_f32_to_fp8_e4m3(nextafterf(sm, s ? -INFINITY : INFINITY)) != ((c + 1) | sg)) bad_near++;
            if (qt_f32_to_fp8_e4m3(nextafterf(sm, 0.0f)) != (c | sg)) bad_near++;
        }
    CHECK(bad_mid == 0, "fp8: %d midpoints not rounded to even", bad_mid);
    CHECK(bad_near == 0, "fp8: %d values next to midpoints not rounded to the nearer code", bad_near);
    /* subnormals and the smallest values */
    CHECK(qt_f32_to_fp8_e4m3(0x1p-10f) == 0x00, "fp8: 2^-10 (tie) -> 0");
    CHECK(qt_f32_to_fp8_e4m3(0x1.8p-9f) == 0x02, "fp8: 1.5 * 2^-9 (tie) -> 2 * 2^-9");
    CHECK(qt_f32_to_fp8_e4m3(-0x1p-9f) == 0x81, "fp8: -2^-9");
    CHECK(qt_f32_to_fp8_e4m3(0x1p-30f) == 0x00 && qt_f32_to_fp8_e4m3(-0x1p-30f) == 0x80, "fp8: tiny -> +-0");
    CHECK(qt_f32_to_fp8_e4m3(0x1p-140f) == 0x00, "fp8: float subnormal -> 0");
    CHECK(qt_f32_to_fp8_e4m3(0.0f) == 0x00 && qt_f32_to_fp8_e4m3(-0.0f) == 0x80, "fp8: signed zeros");
    /* saturation */
    CHECK(qt_f32_to_fp8_e4m3(448.0f) == 0x7e && qt_f32_to_fp8_e4m3(464.0f) == 0x7e, "fp8: 448, 464 -> 448");
    CHECK(qt_f32_to_fp8_e4m3(1e6f) == 0x7e && qt_f32_to_fp8_e4m3(-1e30f) == 0xfe, "fp8: saturates");
    CHECK(qt_f32_to_fp8_e4m3(INFINITY) == 0x7e && qt_f32_to_fp8_e4m3(-INFINITY) == 0xfe, "fp8: inf saturates");
    CHECK((qt_f32_to_fp8_e4m3(NAN) & 0x7f) == 0x7f, "fp8: NaN stays NaN");
    /* random values against the nearest code found by search (ties to even) */
    dsc_rng r;
    dsc_rng_seed(&r, 7);
    int bad_rand = 0;
    for (int i = 0; i < 20000; i++) {
        float v = ldexpf(dsc_rng_uniform(&r) * 2 - 1, (int)(dsc_rng_u64(&r) % 24) - 14);
        int best = 0;
        double bd = INFINITY;
        for (int c = 0; c < 256; c++) {
            double cv = fp8_def(c);
            if (isnan(cv) || (cv == 0 && c == 0x80)) continue;
            double d = fabs(cv - v);
            if (d < bd || (d == bd && !(c & 1))) bd = d, best = c;
        }
        if (fabsf(v) >= 448) best = v > 0 ? 0x7e : 0xfe;
        if (best == 0 && signbit(v)) best = 0x80;
        if (qt_f32_to_fp8_e4m3(v) != best) bad_rand++;
    }
    CHECK(bad_rand == 0, "fp8: %d random values not rounded to the nearest code", bad_rand);
}

/* ---- f16 / bf16 ---- */

static double f16_def(int h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 31 ? (m ? NAN : INFINITY) : e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static void test_f16(void) {
    int bad_decode = 0, bad_trip = 0, bad_mid = 0, bad_hw = 0;
    for (int h = 0; h < 65536; h++) {
        float f = qt_f16_to_f32((uint16_t)h);
        double want = f16_def(h);
        if (isnan(want)) {
            if (!isnan(f)) bad_decode++;
            if ((qt_f32_to_f16(f) & 0x7c00) != 0x7c00 || !(qt_f32_to_f16(f) & 0x3ff)) bad_trip++;
            continue;
        }
        if ((double)f != want || !!signbit(f) != (h >> 15)) bad_decode++;
        if (qt_f32_to_f16(f) != h) bad_trip++;
        /* midpoint to the next half up in magnitude (below the largest finite) */
        if ((h & 0x7fff) < 0x7bff) {
            float up = qt_f16_to_f32((uint16_t)(h + 1)), mid = (f + up) / 2; /* exact in float */
            int even = (h & 1) ? h + 1 : h;
            if (qt_f32_to_f16(mid) != even) bad_mid++;
            if (qt_f32_to_f16(nextafterf(mid, 0.0f)) != h) bad_mid++;
            if (qt_f32_to_f16(nextafterf(mid, signbit(f) ? -INFINITY : INFINITY)) != h + 1) bad_mid++;
        }
    }
    CHECK(bad_decode == 0, "f16: %d of 65536 halves decode wrong", bad_decode);
    CHECK(bad_trip == 0, "f16: %d halves do not round-trip", bad_trip);
    CHECK(bad_mid == 0, "f16: %d roundings at or next to midpoints wrong", bad_mid);
    CHECK(qt_f32_to_f16(65504.0f) == 0x7bff && qt_f32_to_f16(65519.99f) == 0x7bff, "f16: largest finite");
    CHECK(qt_f32_to_f16(65520.0f) == 0x7c00 && qt_f32_to_f16(-1e10f) == 0xfc00, "f16: overflow to inf");
    CHECK(qt_f32_to_f16(0x1p-25f) == 0 && qt_f32_to_f16(0x1.000002p-25f) == 1, "f16: below the smallest subnormal");
    CHECK(qt_f32_to_f16(0x1p-140f) == 0, "f16: float subnormal -> 0");
#if defined(__F16C__)
    dsc_rng r;
    dsc_rng_seed(&r, 11);
    for (int i = 0; i < 200000; i++) { /* random bit patterns against the hardware conversion */
        float f = u2f((uint32_t)dsc_rng_u64(&r));
        if (isnan(f)) continue;
        if (qt_f32_to_f16(f) != _cvtss_sh(f, 0)) bad_hw++;
    }
    CHECK(bad_hw == 0, "f16: %d random floats convert differently from F16C", bad_hw);
#endif
    /* bf16 */
    int bad_bf = 0;
    for (int h = 0; h < 65536; h++) {
        float f = qt_bf16_to_f32((uint16_t)h);
        if (f2u(f) != (uint32_t)h << 16) bad_bf++;
        if (!isnan(f) && qt_f32_to_bf16(f) != h) bad_bf++;
        if (!isnan(f) && (h & 0x7f80) != 0x7f80 && (h & 0x7fff) != 0x7f7f) {
            uint32_t mid = ((uint32_t)h << 16) + 0x8000u; /* the tie to the next code */
            if (qt_f32_to_bf16(u2f(mid)) != ((h & 1) ? h + 1 : h)) bad_bf++;
        }
    }
    CHECK(bad_bf == 0, "bf16: %d conversions wrong", bad_bf);
    CHECK((qt_f32_to_bf16(NAN) & 0x7f80) == 0x7f80 && (qt_f32_to_bf16(NAN) & 0x7f), "bf16: NaN stays NaN");
}

/* ---- formats ---- */

static void test_formats(void) {
    CHECK(qt_row_bytes(QT_F32, 7) == 28 && qt_row_bytes(QT_F16, 7) == 14 && qt_row_bytes(QT_BF16, 7) == 14, "row bytes");
    CHECK(qt_row_bytes(QT_Q8_0, 64) == 68 && qt_row_bytes(QT_Q4_0, 64) == 36 && qt_row_bytes(QT_FP8, 7) == 7, "row bytes q");
    CHECK(qt_row_bytes(QT_Q8_0, 48) == 0 && qt_row_bytes(QT_Q4_0, 0) == 0 && qt_row_bytes(QT_F32, -1) == 0, "bad cols");
    for (int t = 0; t < QT_COUNT; t++) CHECK(qt_parse(qt_name((qt_type)t)) == t, "name round trip %d", t);
    CHECK(qt_parse("q5_k") == -1 && qt_parse(NULL) == -1, "unknown names");
}

/* ---- quantizers ---- */

static float rd_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return qt_f16_to_f32(h);
}

/* Test data: Gaussian rows whose scale varies over blocks (from 1e-6 to 1e2), with zero blocks,
 * lone outliers and exact ties. */
static void fill_weights(dsc_rng *r, float *w, int rows, int cols) {
    for (int i = 0; i < rows; i++)
        for (int b = 0; b < (cols + 31) / 32; b++) {
            float scale = powf(10.0f, (float)(dsc_rng_u64(r) % 9) - 6.0f);
            int kind = (int)(dsc_rng_u64(r) % 10);
            for (int j = b * 32; j < cols && j < b * 32 + 32; j++) {
                float v = scale * dsc_rng_normal(r);
                if (kind == 0) v = 0;
                if (kind == 1 && j == b * 32 + 5) v = 30 * scale;
                if (kind == 2) v = scale * (float)((int)(dsc_rng_u64(r) % 17) - 8) / 8; /* ties */
                w[(size_t)i * cols + j] = v;
            }
        }
}

static void test_quantizers(void) {
    dsc_rng r;
    dsc_rng_seed(&r, 3);
    const int rows = 40, cols = 256;
    float *w = malloc(sizeof(float) * rows * cols), *deq = malloc(sizeof(float) * cols);
    uint8_t *q8 = malloc(qt_row_bytes(QT_Q8_0, cols) * rows), *q4 = malloc(qt_row_bytes(QT_Q4_0, cols) * rows);
    fill_weights(&r, w, rows, cols);
    qt_quantize(QT_Q8_0, w, rows, cols, q8, NULL);
    qt_quantize(QT_Q4_0, w, rows, cols, q4, NULL);
    int bad8 = 0, bad4 = 0, err8 = 0, err4 = 0;
    qtensor t8 = {QT_Q8_0, rows, cols, q8, NULL}, t4 = {QT_Q4_0, rows, cols, q4, NULL};
    for (int i = 0; i < rows; i++) {
        for (int b = 0; b < cols / 32; b++) {
            const float *x = w + (size_t)i * cols + b * 32;
            /* GGML's rules, written out independently */
            float amax = 0, max = 0;
            for (int j = 0; j < 32; j++)
                if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
            const uint8_t *b8 = q8 + (size_t)i * qt_row_bytes(QT_Q8_0, cols) + b * 34;
            const uint8_t *b4 = q4 + (size_t)i * qt_row_bytes(QT_Q4_0, cols) + b * 18;
            float d8 = amax / 127, id8 = d8 ? 1 / d8 : 0, d4 = max / -8, id4 = d4 ? 1 / d4 : 0;
            if (rd_f16(b8) != qt_f16_to_f32(qt_f32_to_f16(d8))) bad8++;
            if (rd_f16(b4) != qt_f16_to_f32(qt_f32_to_f16(d4))) bad4++;
            for (int j = 0; j < 32; j++) {
                if ((int8_t)b8[2 + j] != (int)roundf(x[j] * id8)) bad8++;
                volatile float p = x[j] * id4;
                int n = (int)(p + 8.5f);
                n = n > 15 ? 15 : n;
                int got = j < 16 ? b4[2 + j] & 15 : b4[2 + j - 16] >> 4;
                if (got != n) bad4++;
            }
        }
        /* error bounds: |x - q d16| <= d/2 + |q| |d - d16| (Q4_0: d where the top value clamps) */
        qt_dequant_row(deq, &t8, i);
        for (int c = 0; c < cols; c++) {
            const float *x = w + (size_t)i * cols + (c / 32) * 32;
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
            double d = amax / 127.0, d16 = rd_f16(q8 + (size_t)i * qt_row_bytes(QT_Q8_0, cols) + (c / 32) * 34);
            double bound = d / 2 + 127 * fabs(d - d16) + 1e-6 * d;
            if (fabs((double)deq[c] - w[(size_t)i * cols + c]) > bound) err8++;
        }
        qt_dequant_row(deq, &t4, i);
        for (int c = 0; c < cols; c++) {
            const float *x = w + (size_t)i * cols + (c / 32) * 32;
            float amax = 0, max = 0;
            for (int j = 0; j < 32; j++)
                if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
            double d = fabs(max / -8.0), d16 = fabs(rd_f16(q4 + (size_t)i * qt_row_bytes(QT_Q4_0, cols) + (c / 32) * 18));
            double xv = w[(size_t)i * cols + c], e = fabs((double)deq[c] - xv);
            bool clamped = d > 0 && xv / (max / -8.0) > 7.5;
            double bound = (clamped ? d : d / 2) + 8 * fabs(d - d16) + 1e-6 * d;
            if (e > bound) err4++;
        }
    }
    CHECK(bad8 == 0, "q8_0: %d bytes differ from GGML's rule", bad8);
    CHECK(bad4 == 0, "q4_0: %d values differ from GGML's rule", bad4);
    CHECK(err8 == 0, "q8_0: %d values outside d/2", err8);
    CHECK(err4 == 0, "q4_0: %d values outside d/2 (d when clamped)", err4);

    /* FP8: scale per 128 x 128 block = amax / 448 (1 for zero blocks); each value within 2^-4
     * relative (normal range of x / scale) or 2^-10 * scale (subnormal range) */
    const int fr = 200, fc = 300, sr = 2, sc = 3;
    float *fw = malloc(sizeof(float) * fr * fc), *fd = malloc(sizeof(float) * fc), s[6];
    uint8_t *f8 = malloc((size_t)fr * fc);
    fill_weights(&r, fw, fr, fc);
    for (int i = 0; i < 128; i++) /* one all-zero block */
        for (int c = 128; c < 256; c++) fw[(size_t)i * fc + c] = 0;
    qt_quantize(QT_FP8, fw, fr, fc, f8, s);
    int bad_s = 0, bad_v = 0;
    for (int bi = 0; bi < sr; bi++)
        for (int bj = 0; bj < sc; bj++) {
            float amax = 0;
            for (int i = bi * 128; i < fr && i < bi * 128 + 128; i++)
                for (int c = bj * 128; c < fc && c < bj * 128 + 128; c++) amax = fmaxf(amax, fabsf(fw[(size_t)i * fc + c]));
            if (s[bi * sc + bj] != (amax > 0 ? amax / 448 : 1.0f)) bad_s++;
        }
    CHECK(bad_s == 0, "fp8: %d block scales differ from amax / 448", bad_s);
    CHECK(s[1] == 1.0f, "fp8: zero block has scale 1");
    qtensor tf = {QT_FP8, fr, fc, f8, s};
    for (int i = 0; i < fr; i++) {
        qt_dequant_row(fd, &tf, i);
        for (int c = 0; c < fc; c++) {
            double x = fw[(size_t)i * fc + c], sc_ = s[(i / 128) * sc + c / 128];
            double e = fabs(fd[c] - x), bound = fabs(x / sc_) >= 0x1p-6 ? 0x1p-4 * fabs(x) * (1 + 1e-6) : 0x1p-10 * sc_ * (1 + 1e-6);
            if (e > bound) bad_v++;
            if (f8[(size_t)i * fc + c] != qt_f32_to_fp8_e4m3((float)(x / sc_)) && f8[(size_t)i * fc + c] != qt_f32_to_fp8_e4m3((float)x / (float)sc_)) bad_v++;
        }
    }
    CHECK(bad_v == 0, "fp8: %d values outside 2^-4 relative", bad_v);

    /* F16 / BF16 quantize: round to nearest even of each value */
    uint16_t h[4];
    float hv[4] = {1.0f, 0x1.002p0f, -65520.0f, 0x1.0101p0f};
    qt_quantize(QT_F16, hv, 1, 4, h, NULL);
    CHECK(h[0] == 0x3c00 && h[1] == 0x3c00 && h[2] == 0xfc00, "f16 quantize");
    qt_quantize(QT_BF16, hv, 1, 4, h, NULL);
    CHECK(h[0] == 0x3f80 && h[3] == 0x3f81, "bf16 quantize");
    free(w), free(deq), free(q8), free(q4), free(fw), free(fd), free(f8);
}

/* ---- products ---- */

typedef struct {
    qt_type t;
    int rows, cols;
    uint8_t *data;
    float *scale;
    float *deq; /* [rows, cols] dequantized on the portable path */
    qtensor W;
} qmat;

static void qmat_make(qmat *q, qt_type t, int rows, int cols, dsc_rng *r) {
    float *w = malloc(sizeof(float) * (size_t)rows * cols);
    for (size_t i = 0; i < (size_t)rows * cols; i++) w[i] = 0.1f * dsc_rng_normal(r);
    q->t = t, q->rows = rows, q->cols = cols;
    q->data = malloc(qt_row_bytes(t, cols) * rows);
    int sb = ((rows + 127) / 128) * ((cols + 127) / 128);
    q->scale = t == QT_FP8 ? malloc(sizeof(float) * sb) : NULL;
    qt_quantize(t, w, rows, cols, q->data, q->scale);
    q->W = (qtensor){t, rows, cols, q->data, q->scale};
    dsc_isa was = dsc_kernels_isa();
    dsc_kernels_force_isa(DSC_ISA_PORTABLE);
    for (int i = 0; i < rows; i++) qt_dequant_row(w + (size_t)i * cols, &q->W, i);
    dsc_kernels_force_isa(was);
    q->deq = w;
}

static void qmat_free(qmat *q) { free(q->data), free(q->scale), free(q->deq); }

/* The product in double, the fp32 tolerance per output and (for int8 activations) the bound of
 * their rounding. */
static void reference(const qmat *q, const float *x, int N, double *ref, double *tol, double *qbound) {
    for (int n = 0; n < N; n++) {
        const float *xn = x + (size_t)n * q->cols;
        double damax[1024];
        for (int b = 0; b * 32 < q->cols; b++) {
            double a = 0;
            for (int c = b * 32; c < q->cols && c < b * 32 + 32; c++) a = fmax(a, fabs(xn[c]));
            damax[b] = a / 127;
        }
        for (int i = 0; i < q->rows; i++) {
            const float *w = q->deq + (size_t)i * q->cols;
            double s = 0, sa = 0, qb = 0;
            for (int c = 0; c < q->cols; c++) {
                s += (double)w[c] * xn[c];
                sa += fabs((double)w[c] * xn[c]);
                qb += fabs((double)w[c]) * damax[c / 32] / 2;
            }
            ref[(size_t)n * q->rows + i] = s;
            tol[(size_t)n * q->rows + i] = (q->cols + 16) * 0x1p-24 * sa + 1e-30;
            qbound[(size_t)n * q->rows + i] = qb * (1 + 1e-3) + (q->cols + 16) * 0x1p-24 * (sa + qb);
        }
    }
}

typedef struct {
    double worst;  /* max |err| / tol over the outputs checked (accumulate off) */
    double rel;    /* max |err| / sum|w x| (accumulate off) */
    long outputs;
} stats;

static void check_product(const char *what, const qmat *q, const float *x, int N, bool acc, const double *ref,
                          const double *tol, const double *qb, stats *st) {
    const size_t ny = (size_t)N * q->rows;
    float *y = malloc(sizeof(float) * ny), *y0 = malloc(sizeof(float) * ny);
    for (size_t i = 0; i < ny; i++) y0[i] = acc ? (float)((int)(i % 7) - 3) : NAN;
    memcpy(y, y0, sizeof(float) * ny);
    qt_matmul(y, x, &q->W, N, acc);
    const bool i8 = qt_matmul_int8_activations(q->t, N);
    double worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < ny; i++) {
        double want = ref[i] + (acc ? y0[i] : 0), t = (i8 ? qb[i] : tol[i]) + (acc ? 0x1p-23 * fabs(want) : 0);
        double e = fabs((double)y[i] - want), ratio = e / t;
        if (!(ratio <= worst)) worst = isnan(ratio) ? INFINITY : ratio, wi = i;
        double sa = tol[i] / ((q->cols + 16) * 0x1p-24);
        if (!acc && e / sa > st->rel) st->rel = e / sa;
    }
    CHECK(worst <= 1, "%s %s %dx%d N=%d acc=%d: error %.3g x tolerance at y[%zu] (got %.9g, want %.9g)", what,
          qt_name(q->t), q->rows, q->cols, N, acc, worst, wi, (double)y[wi], ref[wi] + (acc ? y0[wi] : 0));
    if (!acc && worst > st->worst) st->worst = worst;
    st->outputs += (long)ny;
    free(y), free(y0);
}

static const char *isa_names[] = {"portable", "avx2", "avx512"};

static void test_products(void) {
    static const int Ns[] = {1, 2, 3, 4, 7, 16, 33, 128};
    static const int shapes_q[][2] = {{1, 32}, {5, 64}, {37, 96}, {130, 288}, {67, 544}, {257, 288}};
    static const int shapes_f[][2] = {{3, 1}, {5, 17}, {33, 45}, {130, 200}, {9, 300}, {257, 300}};
    dsc_rng r;
    dsc_rng_seed(&r, 5);
    dsc_isa best = dsc_kernels_isa();
    stats st[3][QT_COUNT];
    memset(st, 0, sizeof st);
    for (int t = 0; t < QT_COUNT; t++) {
        const bool qtype = t == QT_Q8_0 || t == QT_Q4_0;
        for (int sh = 0; sh < 12; sh++) {
            int rows, cols;
            if (sh < 6) rows = shapes_q[sh][0], cols = shapes_q[sh][1];
            else if (!qtype) rows = shapes_f[sh - 6][0], cols = shapes_f[sh - 6][1];
            else continue;
            qmat q;
            qmat_make(&q, (qt_type)t, rows, cols, &r);
            for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++) {
                const int N = Ns[ni];
                if (N == 128 && rows * cols > 40000) continue; /* keep the test fast */
                float *x = malloc(sizeof(float) * (size_t)N * cols);
                for (size_t i = 0; i < (size_t)N * cols; i++) x[i] = dsc_rng_normal(&r);
                if (N > 2) x[cols + 3 % cols] = 40; /* an outlier */
                size_t ny = (size_t)N * rows;
                double *ref = malloc(sizeof(double) * ny), *tol = malloc(sizeof(double) * ny),
                       *qb = malloc(sizeof(double) * ny);
                reference(&q, x, N, ref, tol, qb);
                for (int isa = 0; isa <= (int)best; isa++) {
                    if (dsc_kernels_force_isa((dsc_isa)isa) != (dsc_isa)isa) continue;
                    for (int acc = 0; acc < 2; acc++)
                        check_product(isa_names[isa], &q, x, N, acc, ref, tol, qb, &st[isa][t]);
                }
                dsc_kernels_force_isa(best);
                free(x), free(ref), free(tol), free(qb);
            }
            qmat_free(&q);
        }
    }
    for (int isa = 0; isa <= (int)best; isa++)
        for (int t = 0; t < QT_COUNT; t++)
            if (st[isa][t].outputs)
                printf("  %-8s %-5s %7ld outputs: worst error %.3f x tolerance, %.2e x sum|wx|\n", isa_names[isa],
                       qt_name((qt_type)t), st[isa][t].outputs, st[isa][t].worst, st[isa][t].rel);
}

/* Every path's dequantized rows equal the portable path's bit for bit; products from inside a
 * parallel region (each thread its own output) are right. */
static void test_dequant_and_parallel(void) {
    dsc_rng r;
    dsc_rng_seed(&r, 9);
    dsc_isa best = dsc_kernels_isa();
    for (int t = 0; t < QT_COUNT; t++) {
        const int rows = 131, cols = (t == QT_Q8_0 || t == QT_Q4_0) ? 320 : 333;
        qmat q;
        qmat_make(&q, (qt_type)t, rows, cols, &r);
        float *row = malloc(sizeof(float) * cols);
        for (int isa = 1; isa <= (int)best; isa++) {
            if (dsc_kernels_force_isa((dsc_isa)isa) != (dsc_isa)isa) continue;
            int bad = 0;
            for (int i = 0; i < rows; i++) {
                qt_dequant_row(row, &q.W, i);
                if (memcmp(row, q.deq + (size_t)i * cols, sizeof(float) * cols) != 0) bad++;
            }
            CHECK(bad == 0, "%s %s: %d dequantized rows differ from portable", isa_names[isa], qt_name((qt_type)t), bad);
        }
        dsc_kernels_force_isa(best);
        const int Nsmall = 3, Nbig = 40;
        float *x = malloc(sizeof(float) * Nbig * cols);
        for (int i = 0; i < Nbig * cols; i++) x[i] = dsc_rng_normal(&r);
        double *ref = malloc(sizeof(double) * Nbig * rows), *tol = malloc(sizeof(double) * Nbig * rows),
               *qb = malloc(sizeof(double) * Nbig * rows);
        reference(&q, x, Nbig, ref, tol, qb);
        int bad = 0;
#pragma omp parallel num_threads(2) reduction(+ : bad)
        {
            const int N = omp_get_thread_num() == 0 ? Nsmall : Nbig;
            float *y = malloc(sizeof(float) * N * rows);
            for (int rep = 0; rep < 3; rep++) {
                qt_matmul(y, x, &q.W, N, false);
                const bool i8 = qt_matmul_int8_activations(q.t, N);
                for (int i = 0; i < N * rows; i++)
                    if (!(fabs(y[i] - ref[i]) <= (i8 ? qb[i] : tol[i]))) bad++;
            }
            free(y);
        }
        CHECK(bad == 0, "%s: %d outputs wrong when called inside a parallel region", qt_name((qt_type)t), bad);
        free(row), free(x), free(ref), free(tol), free(qb);
        qmat_free(&q);
    }
}

int main(void) {
    printf("code path: %s\n", dsc_kernels_isa_name());
    test_formats();
    test_fp8();
    test_f16();
    test_quantizers();
    test_dequant_and_parallel();
    test_products();
    return tu_finish("test_qtensor");
}
