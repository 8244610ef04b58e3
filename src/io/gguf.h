/* gguf.h: GGUF files (the format of ggml and llama.cpp), read and written, and DeepSeek models in
 * them (llama.cpp's architecture "deepseek2").
 *
 * Format (gguf.c): the reader maps the file (or takes a buffer) and validates everything before
 * any value is used: magic, version (2 or 3, little-endian), counts bounded by the file size,
 * every string inside the file, every value type, general.alignment, and every tensor info
 * (unique name, 1..4 dims, sizes without overflow, a known ggml type, an aligned offset, data
 * inside the file, no two tensors overlapping). Errors are one line naming the file and the key
 * or tensor. The writer collects key/values and tensors and writes header, key/values, tensor
 * infos and the aligned data in one atomic file write (or into memory).
 *
 * DeepSeek (gguf_deepseek.c, gguf_config.c): export of a dsc model to the tensor names, shapes and metadata that
 * llama.cpp's deepseek2 loader requires (what its convert_hf_to_gguf.py writes), and the way back:
 * a GGUF file as a tensor_source with Hugging Face names, its config read from the deepseek2.*
 * metadata, and the inference weights built from it. The mapping table is in gguf_deepseek.c. */
#ifndef DSC_IO_GGUF_H
#define DSC_IO_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsc.h"
#include "infer/iweights.h"
#include "kernels/qtensor.h"
#include "tok/tokenizer.h"

/* ---- value and tensor types ------------------------------------------------------------------ */
typedef enum {
    GGUF_V_UINT8 = 0, GGUF_V_INT8 = 1, GGUF_V_UINT16 = 2, GGUF_V_INT16 = 3, GGUF_V_UINT32 = 4,
    GGUF_V_INT32 = 5, GGUF_V_FLOAT32 = 6, GGUF_V_BOOL = 7, GGUF_V_STRING = 8, GGUF_V_ARRAY = 9,
    GGUF_V_UINT64 = 10, GGUF_V_INT64 = 11, GGUF_V_FLOAT64 = 12,
    GGUF_V_COUNT
} gguf_vtype;

/* ggml tensor types dsc computes with; the reader knows every other ggml type's block size too
 * (so it can validate their extents) but a tensor of such a type cannot be used. */
#define GGUF_T_F32 0u
#define GGUF_T_F16 1u
#define GGUF_T_Q4_0 2u
#define GGUF_T_Q8_0 8u
#define GGUF_T_BF16 30u

#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 64            /* ggml's limit: a tensor name has at most 63 bytes */
#define GGUF_DEFAULT_ALIGNMENT 32

const char *gguf_vtype_name(gguf_vtype t);       /* "uint32", ...; "?" when out of range */
/* "f32", "q8_0", "q4_K", ...; NULL for a type id ggml does not define. */
const char *gguf_type_name(uint32_t type);
/* Bytes of a row of n values of a ggml type; 0 if the type is unknown or n is not a whole number
 * of blocks. */
size_t gguf_row_bytes(uint32_t type, int64_t n);
/* The qtensor format of a ggml type; -1 when dsc cannot compute with it. */
int gguf_type_to_qt(uint32_t type);
uint32_t gguf_type_from_qt(qt_type t);

/* ---- reader ---------------------------------------------------------------------------------- */
typedef struct gguf_file gguf_file;

typedef struct {
    const char *key;            /* NUL-terminated copy */
    gguf_vtype type;            /* GGUF_V_ARRAY for arrays */
    gguf_vtype elem;            /* the array's element type; == type for a scalar */
    uint64_t n;                 /* number of elements (1 for a scalar) */
    const void *data;           /* into the file (any alignment): the value or the first element;
                                   a string is a uint64 length followed by its bytes */
    const uint64_t *str_off;    /* arrays of strings: offset of each element's record from data */
} gguf_kv;

typedef struct {
    const char *name;           /* NUL-terminated copy */
    uint32_t type;              /* ggml type id */
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];  /* ne[0] is the row length (fastest); unused dims are 1 */
    uint64_t offset;            /* from the start of the data section */
    size_t nbytes;
    const void *data;           /* into the file */
} gguf_tensor;

/* Maps and validates path. */
dsc_status gguf_open(const char *path, gguf_file **out);
/* The same over a buffer the caller keeps alive until gguf_close; name is used in messages. */
dsc_status gguf_open_memory(const void *data, size_t size, const char *name, gguf_file **out);
void gguf_close(gguf_file *f);

const char *gguf_path(const gguf_file *f);
uint32_t gguf_version(const gguf_file *f);
size_t gguf_alignment(const gguf_file *f);

int gguf_kv_count(const gguf_file *f);
const gguf_kv *gguf_kv_at(const gguf_file *f, int i);
const gguf_kv *gguf_kv_find(const gguf_file *f, const char *key); /* NULL when absent (no error) */

/* Typed reads of a scalar key. A missing key or a value of another kind is an error naming the
 * file and the key. get_int accepts every integer type (and checks the range of int64);
 * get_float accepts float32 and float64. */
dsc_status gguf_get_int(const gguf_file *f, const char *key, int64_t *out);
dsc_status gguf_get_float(const gguf_file *f, const char *key, double *out);
dsc_status gguf_get_bool(const gguf_file *f, const char *key, bool *out);
/* The bytes of a string value (not NUL-terminated). */
dsc_status gguf_get_string(const gguf_file *f, const char *key, const char **s, size_t *len);
/* Element i of an array (i < kv->n is the caller's check). */
void gguf_arr_string(const gguf_kv *kv, uint64_t i, const char **s, size_t *len);
int64_t gguf_arr_int(const gguf_kv *kv, uint64_t i);   /* integer and bool arrays */
double gguf_arr_float(const gguf_kv *kv, uint64_t i);  /* float32 and float64 arrays */

int gguf_tensor_count(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, int i);            /* in file order */
const gguf_tensor *gguf_tensor_find(const gguf_file *f, const char *name); /* NULL when absent */

/* A 2-D qtensor view [rows, cols] of rows consecutive rows of t starting at row r0 (rows of t are
 * its ne[0]-long rows, all higher dims flattened). "unsupported tensor type X for tensor Y" when
 * dsc cannot compute with t's type. */
dsc_status gguf_tensor_view(const gguf_file *f, const gguf_tensor *t, int64_t r0, int64_t rows, qtensor *out);

/* ---- writer ---------------------------------------------------------------------------------- */
typedef struct gguf_writer gguf_writer;

dsc_status gguf_writer_create(gguf_writer **out);
void gguf_writer_free(gguf_writer *w);
/* Key/values, written in the order first set; setting a key again replaces its value. */
dsc_status gguf_set_u32(gguf_writer *w, const char *key, uint32_t v);
dsc_status gguf_set_i32(gguf_writer *w, const char *key, int32_t v);
dsc_status gguf_set_f32(gguf_writer *w, const char *key, float v);
dsc_status gguf_set_f64(gguf_writer *w, const char *key, double v);
dsc_status gguf_set_bool(gguf_writer *w, const char *key, bool v);
dsc_status gguf_set_string(gguf_writer *w, const char *key, const char *s);
/* An array of n numbers or bools of type elem (data is copied, elements in host = little-endian order). */
dsc_status gguf_set_array(gguf_writer *w, const char *key, gguf_vtype elem, const void *data, uint64_t n);
/* An array of n strings (copied); len may be NULL for NUL-terminated strings. */
dsc_status gguf_set_string_array(gguf_writer *w, const char *key, const char *const *s, const size_t *len, uint64_t n);
/* Adds a tensor of ggml type `type` with ne[0..n_dims) (ne[0] the row length). data holds
 * gguf_row_bytes(type, ne[0]) * ne[1] * ... bytes; with take it is the writer's (freed with free()),
 * otherwise it must stay valid until the write. Names are unique, shorter than GGUF_MAX_NAME. */
dsc_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne,
                                  void *data, bool take);
/* From now on, the data of each tensor added goes to an unlinked temporary file at once (and is
 * freed when the writer owns it), so that writing a model far larger than memory holds one tensor
 * at a time; the write copies it back. */
dsc_status gguf_writer_stream(gguf_writer *w);
/* Writes the file atomically (temp file, fsync, rename); data aligned to 32 bytes. */
dsc_status gguf_writer_write(gguf_writer *w, const char *path);
/* The same bytes into a malloc'ed buffer. */
dsc_status gguf_writer_write_memory(gguf_writer *w, void **buf, size_t *len);

/* ---- DeepSeek models (gguf_deepseek.c) ------------------------------------------------------- */
typedef struct {
    qt_type type;               /* weight matrices: QT_F32, QT_F16, QT_BF16, QT_Q8_0 or QT_Q4_0 */
    const char *name;           /* general.name (NULL: "dsc model") */
    bool no_dsc_keys;           /* leave out the dsc.* keys (exact doubles, dsc-only fields) */
    bool stream;                /* hold one tensor in memory at a time (gguf_writer_stream) */
} gguf_export_options;

/* Writes cfg's weights from src (Hugging Face names) and the tokenizer (NULL: no tokenizer keys;
 * llama.cpp cannot load such a file) as a llama.cpp deepseek2 GGUF at path. Models llama.cpp
 * cannot run are refused: mHC, the DSA indexer, MoE blocks without shared experts, group-limited
 * routing without the correction bias. MTP blocks are not written (llama.cpp's converter drops
 * them too). Tensor types follow the converter: vectors, norms and the router stay f32; matrices
 * take the requested type, or f16 when their rows are not whole Q blocks; with q4_0 the embedding,
 * the head and attn_k_b/attn_v_b are q8_0. notes (may be NULL) receives one line per thing the
 * caller should know (skipped MTP blocks, f16 fallbacks). */
dsc_status gguf_export_deepseek2(const dsc_config *cfg, const tensor_source *src, const dsc_tokenizer *tok,
                                 const gguf_export_options *o, const char *path, char *notes, size_t notes_cap);

/* `dsc export --gguf`: exports the model in model_dir (a dsc model directory, a checkpoint step or
 * a Hugging Face directory, FP8 included: io/hfdir.h) with its tokenizer.json, with type "f32",
 * "f16", "bf16", "q8_0" or "q4_0". Prints the notes to stderr. */
int export_gguf(const char *model_dir, const char *out_path, const char *type);

/* The configuration of a deepseek2 GGUF, from its metadata (deepseek2.*, tokenizer ids; the dsc.*
 * keys where present and use_dsc_keys). The file's own architecture must be deepseek2. */
dsc_status gguf_deepseek_config(const gguf_file *f, bool use_dsc_keys, dsc_config *cfg);

/* A tensor_source over a deepseek2 GGUF: Hugging Face names mapped to GGUF names, experts as views
 * into the stacked tensors, kv_b_proj rebuilt (fp32) from attn_k_b and attn_v_b. The source keeps
 * the file (not copied) open until gguf_source_close. */
typedef struct gguf_source gguf_source;
dsc_status gguf_source_open(const char *path, gguf_source **out);
/* The same over a buffer the caller keeps alive until gguf_source_close. */
dsc_status gguf_source_open_memory(const void *data, size_t size, const char *name, gguf_source **out);
void gguf_source_close(gguf_source *s);
const dsc_config *gguf_source_config(const gguf_source *s);
const gguf_file *gguf_source_file(const gguf_source *s);
void gguf_source_tensors(gguf_source *s, tensor_source *out);

/* Inference weights of a deepseek2 GGUF, self-contained: the tensor data is read into a buffer that
 * w owns (iweights_free releases it), so nothing else needs to stay open. */
dsc_status gguf_load_iweights(const char *path, iweights *w);

#endif
