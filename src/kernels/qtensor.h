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
 * and one layout that exists only in memory, never in a file (it comes after QT_COUNT, so qt_parse
 * and the file formats never see it):
 *   QT_Q4_0X4 Q4_0 repacked for the AVX-512 VNNI decode kernel: rows in fours, columns in groups
 *             of 4 blocks (128 values, the last group padded with zero blocks); per four rows and
 *             group 288 bytes: the 16 nibble bytes of block j of row i at 64 i + 16 j, then the
 *             16 fp16 scales, row i's block j at 256 + 2 (4 i + j). The kernel then loads a row's
 *             group with one 64-byte load and no byte shuffles (see qt_decode_type).
 * The data may point into a memory-mapped file (no copy). cols must be a multiple of 32 for the
 * Q formats. Products take fp32 activations and produce fp32. Kernels dispatch AVX-512 (with
 * VNNI / BF16 where present), AVX2 or portable code at run time, like dsc_sgemm. */
#ifndef DSC_KERNELS_QTENSOR_H
#define DSC_KERNELS_QTENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { QT_F32 = 0, QT_F16, QT_BF16, QT_Q8_0, QT_Q4_0, QT_FP8, QT_COUNT, QT_Q4_0X4 = QT_COUNT } qt_type;

typedef struct {
    qt_type type;
    int rows, cols;
    const void *data;        /* rows x row_bytes(type, cols) */
    const float *scale_inv;  /* QT_FP8 only: [ceil(rows/128), ceil(cols/128)] */
} qtensor;

/* Bytes of one packed row; 0 if cols is not valid for the type. (QT_Q4_0X4: a quarter of four
 * rows' bytes, which are interleaved; qt_bytes gives the whole.) */
size_t qt_row_bytes(qt_type t, int cols);
/* Bytes of a whole [rows, cols] matrix of type t; 0 if the shape is not valid for it. */
size_t qt_bytes(qt_type t, int rows, int cols);
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
/* The layout the products on this machine read fastest for W: QT_Q4_0X4 for a Q4_0 matrix whose
 * rows come in fours when the AVX-512 VNNI path runs (measured in docs/RESULTS.md), else W's own
 * type. Loaders repack once (qt_repack); every function here accepts either. */
qt_type qt_decode_type(const qtensor *W);
/* *out = W in layout t (W's own type, or QT_Q4_0X4 from QT_Q4_0), written to dst, which holds
 * qt_bytes(t, W->rows, W->cols) bytes. The values are identical; only their order changes. */
void qt_repack(const qtensor *W, qt_type t, void *dst, qtensor *out);
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
