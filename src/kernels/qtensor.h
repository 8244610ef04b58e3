/* qtensor.h: weight matrices in the formats inference reads them in, and the products over them.
 * A qtensor is a row-major [rows, cols] matrix (a linear layer's W stored [out, in]) whose rows
 * are packed in one of:
 *   QT_F32    4 bytes per value
 *   QT_F16    IEEE half
 *   QT_BF16   bfloat16
 *   QT_Q8_0   blocks of 32 values along a row: fp16 scale d, then 32 int8 q; value = d * q
 *             (34 bytes; the GGUF/GGML Q8_0 layout byte for byte)
 *   QT_Q4_0   blocks of 32: fp16 scale d, then 16 bytes; byte j holds value j in its low nibble and
 *             value j+16 in its high nibble; value = d * (nibble - 8) (18 bytes; GGML Q4_0)
 *   QT_FP8    float8 e4m3fn values (1 byte) with one fp32 scale per 128x128 block,
 *             value = q * scale_inv[r/128][c/128] (DeepSeek's checkpoint layout: the `weight` and
 *             `weight_scale_inv` tensors)
 * The data may point into a memory-mapped file (no copy). cols must be a multiple of 32 for the
 * Q formats. Products take fp32 activations and produce fp32. Kernels dispatch AVX-512 (with
 * VNNI / BF16 where present), AVX2 or portable code at run time, like dsc_sgemm. */
#ifndef DSC_KERNELS_QTENSOR_H
#define DSC_KERNELS_QTENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { QT_F32 = 0, QT_F16, QT_BF16, QT_Q8_0, QT_Q4_0, QT_FP8, QT_COUNT } qt_type;

typedef struct {
    qt_type type;
    int rows, cols;
    const void *data;        /* rows x row_bytes(type, cols) */
    const float *scale_inv;  /* QT_FP8 only: [ceil(rows/128), ceil(cols/128)] */
} qtensor;

/* Bytes of one packed row; 0 if cols is not valid for the type. */
size_t qt_row_bytes(qt_type t, int cols);
const char *qt_name(qt_type t);
/* Parses "f32", "f16", "bf16", "q8_0", "q4_0", "fp8"; -1 if unknown. */
int qt_parse(const char *name);

/* y[N, rows] = x[N, cols] · Wᵀ (accumulate: y +=). Multithreaded outside parallel regions; the
 * weights are streamed once for all N rows of x (batched decode reads each weight once). */
void qt_matmul(float *y, const float *x, const qtensor *W, int N, bool accumulate);
/* Several independent products (outputs must not overlap) in one parallel pass: the threads take
 * row tasks of all of them from one queue, so small matrices (MoE experts at decode, the
 * projections that share an input) cost one fork and join between them, not one each, and the
 * weight stream never stops. Products too large for decode (N > 16) run one after another. */
typedef struct {
    float *y;
    const float *x;
    const qtensor *W;
    int N;
    bool accumulate;
} qt_job;
void qt_matmul_batch(const qt_job *jobs, int n);
/* Row r of W as fp32 (embedding lookups). */
void qt_dequant_row(float *out, const qtensor *W, int r);

/* Quantizes an fp32 matrix [rows, cols] into dst (rows * qt_row_bytes bytes); for QT_FP8 also
 * fills scale_inv (ceil(rows/128) * ceil(cols/128) floats) with DeepSeek's rule
 * (scale = amax / 448 per 128x128 block). Round to nearest even everywhere. */
void qt_quantize(qt_type t, const float *src, int rows, int cols, void *dst, float *scale_inv);

/* Element conversions (exact where representable, round to nearest even otherwise). */
float qt_fp8_e4m3_to_f32(uint8_t v);
uint8_t qt_f32_to_fp8_e4m3(float f); /* saturates to +-448; NaN stays NaN */
float qt_f16_to_f32(uint16_t h);
uint16_t qt_f32_to_f16(float f);     /* overflows to +-inf like IEEE; NaN stays NaN */
float qt_bf16_to_f32(uint16_t h);
uint16_t qt_f32_to_bf16(float f);    /* NaN stays NaN (quiet) */

/* Whether qt_matmul on the current code path rounds x to int8 blocks for this product (see
 * qt_matmul); tests and callers that need the error bound ask. */
bool qt_matmul_int8_activations(qt_type t, int N);

#endif
