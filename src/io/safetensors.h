/* safetensors.h: one .safetensors file, read and written. The reader maps the file (or takes a
 * buffer), parses the JSON header with jansson and validates every tensor entry (dtype, shape,
 * offsets, overlaps) before any data is touched; the writer collects tensors and writes header +
 * data in one atomic file write. Sharded checkpoints (an index.json over many files) are not here. */
#ifndef DSC_IO_SAFETENSORS_H
#define DSC_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "dsc.h"

typedef enum {
    ST_F64, ST_F32, ST_F16, ST_BF16, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL,
    ST_F8_E4M3, ST_F8_E5M2,
    ST_NUM_DTYPES
} st_dtype;

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u * 1000 * 1000) /* bytes of JSON header accepted */

typedef struct {
    const char *name;           /* owned by the st_file */
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t numel;
    const void *data;           /* into the map: any alignment, little-endian */
    size_t nbytes;              /* numel * st_dtype_size(dtype) */
} st_tensor;

const char *st_dtype_name(st_dtype dt);   /* "F32", ...; "?" when out of range */
size_t st_dtype_size(st_dtype dt);        /* bytes per element; 0 when out of range */
/* Writes "[a, b, c]" into buf (truncated to cap, always terminated). */
void st_format_shape(char *buf, size_t cap, int ndim, const int64_t *shape);

/* ---- reader ------------------------------------------------------------------------------ */
typedef struct st_file st_file;

/* Maps and validates path. Errors name the file (and the tensor). */
dsc_status st_open(const char *path, st_file **out);
/* The same from a buffer the caller keeps alive until st_close; name is used in messages. */
dsc_status st_open_memory(const void *data, size_t size, const char *name, st_file **out);
void st_close(st_file *st);

const char *st_path(const st_file *st);
/* Tensors in the order of their data offsets. */
int st_count(const st_file *st);
const st_tensor *st_tensor_at(const st_file *st, int i);
/* NULL when absent (no error set). */
const st_tensor *st_find(const st_file *st, const char *name);
/* A string of __metadata__, or NULL. */
const char *st_metadata(const st_file *st, const char *key);

/* Converts a tensor (F32, BF16 or F16) to n floats; n must equal its element count. */
dsc_status st_tensor_to_f32(const st_file *st, const st_tensor *t, float *dst, size_t n);
/* st_find + st_tensor_to_f32; a missing tensor is an error. */
dsc_status st_read_f32(const st_file *st, const char *name, float *dst, size_t n);

/* ---- element conversions (exact where the target can hold the value; round to nearest even
 * otherwise; NaN stays NaN, infinities stay infinities) ------------------------------------- */
float st_bf16_to_f32(uint16_t h);
uint16_t st_f32_to_bf16(float f);
float st_f16_to_f32(uint16_t h);
uint16_t st_f32_to_f16(float f);

/* ---- writer ------------------------------------------------------------------------------ */
typedef struct st_writer st_writer;

dsc_status st_writer_create(st_writer **out);
void st_writer_free(st_writer *w);
/* Adds one tensor. data (numel * dtype size bytes) is not copied: it must stay valid until
 * st_writer_write. Names must be unique and not "__metadata__". */
dsc_status st_writer_add(st_writer *w, const char *name, st_dtype dt, int ndim, const int64_t *shape,
                         const void *data);
dsc_status st_writer_set_metadata(st_writer *w, const char *key, const char *value);
/* Writes the file atomically (temp file, fsync, rename). Data offsets follow insertion order,
 * back to back; the header is padded with spaces so that the data section starts 8-aligned. */
dsc_status st_writer_write(st_writer *w, const char *path);

#endif
