/* hfdir.h: Hugging Face DeepSeek checkpoint directories, in and out. Reading: DIR/config.json plus
 * either DIR/model.safetensors or DIR/model.safetensors.index.json and its shards, every shard
 * mapped once (no copy) and cross-checked against the index; a tensor_source hands out qtensor
 * views (F32, F16, BF16, and F8_E4M3 with its 128x128 block scales `X_scale_inv`). Writing: any
 * tensor_source as config.json + size-limited shards + index, in f32, bf16 or DeepSeek's fp8
 * layout. The index parser itself is io/hfindex.h. */
#ifndef DSC_IO_HFDIR_H
#define DSC_IO_HFDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsc.h"
#include "infer/iweights.h"
#include "io/safetensors.h"
#include "kernels/qtensor.h"

/* ---- reading ----------------------------------------------------------------------------- */
typedef struct hfdir hfdir;

typedef struct {
    int n_shards;                      /* safetensors files */
    int n_tensors;                     /* over all shards (scales included) */
    uint64_t bytes;                    /* tensor data bytes */
    int dtype_count[ST_NUM_DTYPES];    /* tensors of each dtype */
    int64_t index_total_size;          /* the index's metadata.total_size; -1 if absent or no index */
} hfdir_stats;

typedef struct {
    int n_unused;                      /* tensors the model does not read (a weight's scale counts as read
                                          with it); MTP copies of embed/head are expected here */
    int mtp_layers;                    /* MTP blocks in the config (num_nextn_predict_layers) */
    bool mtp_complete;                 /* every MTP tensor present and valid (false when there are none) */
} hfdir_report;

/* True when DIR has model.safetensors or model.safetensors.index.json. */
bool hfdir_has_weights(const char *dir);

/* Loads DIR/config.json, then DIR/model.safetensors if present (as Hugging Face does), else the
 * index and every shard it names. Validates the index (plain file names, no tensor twice), that
 * every shard exists and holds exactly the tensors listed for it, and maps each shard once.
 * Errors are one line naming the file and the tensor. */
dsc_status hfdir_open(const char *dir, hfdir **out);
void hfdir_close(hfdir *h);

const char *hfdir_path(const hfdir *h);
const dsc_config *hfdir_config(const hfdir *h);
void hfdir_get_stats(const hfdir *h, hfdir_stats *s);
/* "3 shards, 250 tensors, 1.23 MB (F32 50, BF16 120, F8_E4M3 40)" into buf (always terminated). */
void hfdir_stats_format(const hfdir_stats *s, char *buf, size_t cap);
/* Tensor names over all shards, sorted; i in [0, n_tensors). */
int hfdir_num_tensors(const hfdir *h);
const char *hfdir_tensor_name(const hfdir *h, int i);
/* The raw entry of a tensor and the path of its shard; NULL when absent (no error set). */
const st_tensor *hfdir_raw(const hfdir *h, const char *name, const char **shard_path);

/* A 2-D view of a tensor (1-D of n values: rows 1, cols n): F32, F16, BF16 point into the map;
 * F8_E4M3 becomes QT_FP8 with scale_inv from `NAME_scale_inv` (F32, shape [ceil(rows/128),
 * ceil(cols/128)]). A tensor whose data is not aligned for its type is copied once into memory
 * the hfdir owns. Other dtypes, more than two dimensions, a missing tensor or scale: error.
 * Views stay valid until hfdir_close. Not thread-safe (one hfdir, one thread at a time). */
dsc_status hfdir_find(hfdir *h, const char *name, qtensor *out);
/* A tensor_source over the directory (what = the directory). */
void hfdir_source(hfdir *h, tensor_source *src);

/* Checks every tensor the configuration reads (docs/MODEL.md §2): present, a supported dtype
 * (FP8 with a valid scale) and the expected shape; the error names the shard, the tensor, the
 * expected and the found shape. MTP blocks are required only with include_mtp; without it they
 * are still probed for the report. r (may be NULL) receives the counts. */
dsc_status hfdir_check(hfdir *h, bool include_mtp, hfdir_report *r);
/* hfdir_check, then iweights_build over the directory. The weights point into h's maps: h must
 * outlive w (and any engine w is moved into). */
dsc_status hfdir_iweights(hfdir *h, bool include_mtp, iweights *w);

/* ---- writing ----------------------------------------------------------------------------- */
typedef struct {
    qt_type type;              /* QT_F32, QT_BF16 or QT_FP8 */
    uint64_t shard_bytes;      /* most tensor data bytes per shard (0: 2000 MB); a larger single
                                  tensor gets a shard of its own */
    const char *tokenizer_dir; /* tokenizer.json and tokenizer_config.json are copied from here
                                  when present; NULL: none */
} hfdir_export_options;

#define HFDIR_DEFAULT_SHARD_BYTES (2000ull * 1000 * 1000)

/* Writes a Hugging Face directory at out_dir from any source of the configuration's tensors:
 * config.json, then model.safetensors when everything fits one shard, else
 * model-00001-of-0000N.safetensors ... and model.safetensors.index.json ({"metadata":
 * {"total_size"}, "weight_map"}). Types: f32 everything F32; bf16 everything BF16 except
 * e_score_correction_bias and mHC coefficients (F32); fp8 as DeepSeek's release: every 2-D
 * `.weight` matrix F8_E4M3 + `.weight_scale_inv` except the embedding, lm_head, the router gate,
 * eh_proj and the indexer's weights_proj (BF16), the rest as bf16. MTP blocks also get the
 * release's `embed_tokens` and `shared_head.head` copies. Values must be finite. The directory
 * is built under a temporary name and renamed into place: out_dir must not exist or be empty. */
dsc_status hfdir_export(const dsc_config *cfg, const tensor_source *src, const char *out_dir,
                        const hfdir_export_options *o);
/* hfdir_export of a model in memory. */
dsc_status hfdir_export_model(const dsc_model *m, const char *out_dir, const hfdir_export_options *o);
/* hfdir_open(src_dir) + hfdir_export (src_dir can be a dsc model directory, a training checkpoint
 * step directory, or another HF directory: sharded, bf16 or fp8); the tokenizer is copied from
 * src_dir unless o->tokenizer_dir says otherwise. */
dsc_status hfdir_convert(const char *src_dir, const char *out_dir, const hfdir_export_options *o);

#endif
