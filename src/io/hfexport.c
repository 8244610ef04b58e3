/* hfexport.c: writing a Hugging Face DeepSeek directory (see hfdir.h): the configuration's tensors
 * from any tensor_source, converted to f32, bf16 or DeepSeek's fp8 (128x128 block scales), packed
 * into size-limited shards with an index, the whole directory built under a temporary name and
 * renamed into place. One shard's converted data is in memory at a time. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/fileio.h"
#include "io/hfdir.h"
#include "model/params.h"

typedef struct {
    char name[128];             /* output name */
    char src_name[128];         /* name in the source (differs for the MTP copies) */
    st_dtype dt;
    int ndim;
    int64_t shape[2];
    int rows, cols;             /* the 2-D view (1-D: rows 1) */
    size_t bytes;               /* data + scales */
    int shard;
    const void *data;           /* converted (or the source's own F32 data) */
    float *scale;               /* F8: [ceil(rows/128), ceil(cols/128)] */
    bool owned;
} item;

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* The stored dtype of a tensor, as DeepSeek's release does it (see hfdir.h). */
static st_dtype out_dtype(const char *name, int ndim, qt_type type) {
    if (strstr(name, "_mhc.") || ends_with(name, "e_score_correction_bias")) return ST_F32;
    if (type == QT_F32) return ST_F32;
    if (type == QT_BF16) return ST_BF16;
    static const char *const keep_bf16[] = {"embed_tokens.weight", "lm_head.weight", ".mlp.gate.weight",
                                            ".eh_proj.weight", ".indexer.weights_proj.weight",
                                            "shared_head.head.weight"};
    if (ndim != 2 || !ends_with(name, ".weight")) return ST_BF16;
    for (size_t i = 0; i < sizeof keep_bf16 / sizeof *keep_bf16; i++)
        if (ends_with(name, keep_bf16[i])) return ST_BF16;
    return ST_F8_E4M3;
}

static size_t n_scales(const item *it) { return (size_t)((it->rows + 127) / 128) * (size_t)((it->cols + 127) / 128); }

static void set_item(item *it, const char *name, const char *src_name, const tensor_desc *d, qt_type type) {
    memset(it, 0, sizeof *it);
    snprintf(it->name, sizeof it->name, "%s", name);
    snprintf(it->src_name, sizeof it->src_name, "%s", src_name);
    it->ndim = d->ndim;
    it->shape[0] = d->shape[0];
    it->shape[1] = d->ndim == 2 ? d->shape[1] : 0;
    it->rows = d->ndim == 2 ? (int)d->shape[0] : 1;
    it->cols = d->ndim == 2 ? (int)d->shape[1] : (int)d->shape[0];
    it->dt = out_dtype(name, d->ndim, type);
    it->bytes = (size_t)d->numel * st_dtype_size(it->dt);
    if (it->dt == ST_F8_E4M3) it->bytes += n_scales(it) * sizeof(float);
}

/* Every output tensor, in the layout's order; the MTP copies of embed/head after their block. */
static int plan_items(const dsc_config *c, qt_type type, item **out, int *n_out) {
    int cap = params_max_descs(c), n = 0;
    tensor_desc *d = malloc((size_t)cap * sizeof *d);
    if (!d) return dsc_set_error("out of memory");
    params_layout(c, NULL, NULL, d, &n);
    int D = c->num_nextn_predict_layers, L = c->num_hidden_layers;
    item *it = calloc((size_t)(n + 2 * D), sizeof *it);
    const tensor_desc *embed = NULL, *head = NULL;
    for (int i = 0; i < n; i++) {
        if (!strcmp(d[i].name, "model.embed_tokens.weight")) embed = &d[i];
        if (!strcmp(d[i].name, "lm_head.weight")) head = &d[i];
    }
    if (!it || !embed) {
        const char *why = it ? "the layout has no model.embed_tokens.weight" : "out of memory";
        free(d);
        free(it);
        return dsc_set_error("%s", why);
    }
    if (!head) head = embed; /* tied */
    int k = 0, copies = 0;
    for (int i = 0; i < n; i++) {
        set_item(&it[k++], d[i].name, d[i].name, &d[i], type);
        int l, l2;
        bool last_of_block = sscanf(d[i].name, "model.layers.%d.", &l) == 1 && l >= L &&
                             (i + 1 == n || sscanf(d[i + 1].name, "model.layers.%d.", &l2) != 1 || l2 != l);
        if (last_of_block && copies < D) { /* blocks are contiguous in the layout: once per MTP block */
            copies++;
            char nm[128];
            snprintf(nm, sizeof nm, "model.layers.%d.embed_tokens.weight", l);
            set_item(&it[k++], nm, "model.embed_tokens.weight", embed, type);
            snprintf(nm, sizeof nm, "model.layers.%d.shared_head.head.weight", l);
            set_item(&it[k++], nm, head->name, head, type);
        }
    }
    free(d);
    *out = it;
    *n_out = k;
    return DSC_OK;
}

static int check_finite(const char *what, const char *name, const float *x, int nr, int cols, int r0) {
    size_t n = (size_t)nr * (size_t)cols;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4); /* bit test: correct even under -ffinite-math-only */
        if ((u & 0x7f800000u) == 0x7f800000u)
            return dsc_set_error("%s: tensor '%s': element [%zu, %zu] is %s (expected finite values)", what, name,
                                 r0 + i / cols, i % cols, (u & 0x7fffffu) ? "NaN" : "infinite");
    }
    return DSC_OK;
}

/* Fetches one tensor from the source and converts it to its stored dtype. */
static int convert(const tensor_source *src, item *it) {
    qtensor q;
    if (src->find(src->ctx, it->src_name, &q)) return DSC_ERR;
    if (q.rows != it->rows || q.cols != it->cols)
        return dsc_set_error("%s: tensor '%s': expected [%d, %d] (config), found [%d, %d]", src->what, it->src_name,
                             it->rows, it->cols, q.rows, q.cols);
    int rows = it->rows, cols = it->cols;
    if (it->dt == ST_F32 && q.type == QT_F32 && ((uintptr_t)q.data & 3) == 0) {
        it->data = q.data; /* no copy */
        return check_finite(src->what, it->src_name, q.data, rows, cols, 0);
    }
    size_t esz = st_dtype_size(it->dt), n = (size_t)rows * (size_t)cols;
    unsigned char *buf = malloc(n * esz + 1);
    float *scale = it->dt == ST_F8_E4M3 ? malloc(n_scales(it) * sizeof(float)) : NULL;
    int chunk = rows < 128 ? rows : 128;
    float *tmp = malloc((size_t)chunk * (size_t)cols * sizeof(float) + 1);
    if (!buf || !tmp || (it->dt == ST_F8_E4M3 && !scale)) {
        free(buf);
        free(scale);
        free(tmp);
        return dsc_set_error("%s: tensor '%s': out of memory (%zu bytes)", src->what, it->src_name, n * esz);
    }
    it->data = buf;
    it->scale = scale;
    it->owned = true;
    int rc = DSC_OK;
    int bc = (cols + 127) / 128;
    for (int r0 = 0; r0 < rows && !rc; r0 += 128) {
        int nr = rows - r0 < 128 ? rows - r0 : 128;
        for (int r = 0; r < nr; r++) qt_dequant_row(tmp + (size_t)r * cols, &q, r0 + r);
        if ((rc = check_finite(src->what, it->src_name, tmp, nr, cols, r0))) break;
        size_t m = (size_t)nr * (size_t)cols, off = (size_t)r0 * (size_t)cols;
        if (it->dt == ST_F32) {
            memcpy(buf + off * 4, tmp, m * 4);
        } else if (it->dt == ST_BF16) {
            for (size_t i = 0; i < m; i++) {
                uint16_t h = st_f32_to_bf16(tmp[i]);
                memcpy(buf + (off + i) * 2, &h, 2); /* little-endian host */
            }
        } else {
            qt_quantize(QT_FP8, tmp, nr, cols, buf + off, scale + (size_t)(r0 / 128) * bc);
        }
    }
    free(tmp);
    return rc;
}

static void release(item *it) {
    if (it->owned) {
        free((void *)it->data);
        free(it->scale);
    }
    it->data = NULL;
    it->scale = NULL;
    it->owned = false;
}

static void shard_name(char *buf, size_t cap, int s, int n) {
    if (n == 1) snprintf(buf, cap, "model.safetensors");
    else snprintf(buf, cap, "model-%05d-of-%05d.safetensors", s + 1, n);
}

/* Converts and writes the items of shard s; tensors go in by element size (F32, BF16, F8) so
 * that every tensor's data is aligned for its type. */
static int write_shard(const tensor_source *src, item *it, int n, int s, int n_shards, const char *dir) {
    int rc = DSC_OK;
    st_writer *w = NULL;
    if (st_writer_create(&w)) return DSC_ERR;
    rc = st_writer_set_metadata(w, "format", "pt");
    for (int i = 0; i < n && !rc; i++)
        if (it[i].shard == s) rc = convert(src, &it[i]);
    static const st_dtype order[] = {ST_F32, ST_BF16, ST_F8_E4M3};
    for (int k = 0; k < 3 && !rc; k++)
        for (int i = 0; i < n && !rc; i++) {
            if (it[i].shard != s) continue;
            if (it[i].dt == ST_F8_E4M3 && order[k] == ST_F32) {
                char sn[160];
                int64_t sh[2] = {(it[i].rows + 127) / 128, (it[i].cols + 127) / 128};
                snprintf(sn, sizeof sn, "%s_scale_inv", it[i].name);
                rc = st_writer_add(w, sn, ST_F32, 2, sh, it[i].scale);
            }
            if (it[i].dt == order[k]) rc = st_writer_add(w, it[i].name, it[i].dt, it[i].ndim, it[i].shape, it[i].data);
        }
    char fname[64], path[4096];
    shard_name(fname, sizeof fname, s, n_shards);
    snprintf(path, sizeof path, "%s/%s", dir, fname);
    if (!rc) rc = st_writer_write(w, path);
    st_writer_free(w);
    for (int i = 0; i < n; i++)
        if (it[i].shard == s) release(&it[i]);
    return rc;
}

static int write_index(const item *it, int n, int n_shards, const char *dir) {
    json_t *root = json_object(), *meta = json_object(), *map = json_object();
    uint64_t total = 0;
    char fname[64], sn[160];
    for (int i = 0; i < n; i++) {
        shard_name(fname, sizeof fname, it[i].shard, n_shards);
        json_object_set_new(map, it[i].name, json_string(fname));
        if (it[i].dt == ST_F8_E4M3) {
            snprintf(sn, sizeof sn, "%s_scale_inv", it[i].name);
            json_object_set_new(map, sn, json_string(fname));
        }
        total += it[i].bytes;
    }
    json_object_set_new(meta, "total_size", json_integer((json_int_t)total));
    json_object_set_new(root, "metadata", meta);
    json_object_set_new(root, "weight_map", map);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (!text) return dsc_set_error("%s: could not format the index", path);
    int rc = dsc_write_file_atomic(path, text, strlen(text));
    free(text);
    return rc;
}

/* config.json as dsc writes it, plus the dtype and (fp8) DeepSeek's quantization_config. */
static int write_config(const dsc_config *c, qt_type type, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (dsc_config_save(c, path)) return DSC_ERR;
    if (type == QT_F32) return DSC_OK;
    json_error_t jerr;
    json_t *o = json_load_file(path, 0, &jerr);
    if (!o) return dsc_set_error("%s: cannot read back: %s", path, jerr.text);
    json_object_set_new(o, "torch_dtype", json_string("bfloat16"));
    if (type == QT_FP8)
        json_object_set_new(o, "quantization_config",
                            json_pack("{s:s, s:s, s:s, s:[i,i]}", "activation_scheme", "dynamic", "fmt", "e4m3",
                                      "quant_method", "fp8", "weight_block_size", 128, 128));
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    json_decref(o);
    if (!text) return dsc_set_error("%s: could not format the configuration", path);
    int rc = dsc_write_file_atomic(path, text, strlen(text));
    free(text);
    return rc;
}

static int copy_if_present(const char *from_dir, const char *to_dir, const char *file) {
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/%s", from_dir, file);
    snprintf(b, sizeof b, "%s/%s", to_dir, file);
    struct stat sb;
    if (stat(a, &sb) != 0 || !S_ISREG(sb.st_mode)) return DSC_OK;
    dsc_mapped_file m;
    if (dsc_map_file(a, &m)) return DSC_ERR;
    int rc = dsc_write_file_atomic(b, m.data ? (const void *)m.data : "", m.size);
    dsc_unmap_file(&m);
    return rc;
}

/* Removes the files of a temporary directory this module created, then the directory. */
static void remove_tmp_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[4200];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(dir);
}

static void fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* 1: an empty directory, 0: absent, -1: anything else (error set). */
static int out_state(const char *dir) {
    struct stat sb;
    if (stat(dir, &sb) != 0) return errno == ENOENT ? 0 : dsc_set_error("%s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return dsc_set_error("%s: exists and is not a directory", dir);
    DIR *d = opendir(dir);
    if (!d) return dsc_set_error("%s: %s", dir, strerror(errno));
    struct dirent *e;
    bool empty = true;
    while (empty && (e = readdir(d))) empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    closedir(d);
    return empty ? 1 : dsc_set_error("%s: exists and is not empty (give a new directory)", dir);
}

dsc_status hfdir_export(const dsc_config *cfg, const tensor_source *src, const char *out_dir,
                        const hfdir_export_options *o) {
    if (o->type != QT_F32 && o->type != QT_BF16 && o->type != QT_FP8)
        return dsc_set_error("%s: type %s cannot be written as a Hugging Face directory (expected f32, bf16 or fp8)",
                             out_dir, qt_name(o->type));
    if (dsc_config_validate(cfg)) return dsc_prefix_error("%s", src->what);
    char dst[4000], tmp[4096];
    snprintf(dst, sizeof dst, "%s", out_dir);
    for (size_t k = strlen(dst); k > 1 && dst[k - 1] == '/'; k--) dst[k - 1] = '\0';
    if (!dst[0]) return dsc_set_error("export: empty output directory name");
    int state = out_state(dst);
    if (state < 0) return DSC_ERR;
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", dst, (long)getpid());
    if (mkdir(tmp, 0755) != 0)
        return dsc_set_error("%s: cannot create the temporary directory: %s%s", tmp, strerror(errno),
                             errno == EEXIST ? " (left by a killed export? remove it)" : "");

    item *it = NULL;
    int n = 0;
    if (plan_items(cfg, o->type, &it, &n)) {
        rmdir(tmp);
        return DSC_ERR;
    }
    uint64_t limit = o->shard_bytes ? o->shard_bytes : HFDIR_DEFAULT_SHARD_BYTES, cur = 0;
    int s = 0;
    for (int i = 0; i < n; i++) {
        if (cur > 0 && cur + it[i].bytes > limit) {
            s++;
            cur = 0;
        }
        it[i].shard = s;
        cur += it[i].bytes;
    }
    int n_shards = s + 1;

    int rc = DSC_OK;
    for (int k = 0; k < n_shards && !rc; k++) rc = write_shard(src, it, n, k, n_shards, tmp);
    if (!rc && n_shards > 1) rc = write_index(it, n, n_shards, tmp);
    if (!rc) rc = write_config(cfg, o->type, tmp);
    if (!rc && o->tokenizer_dir)
        rc = copy_if_present(o->tokenizer_dir, tmp, "tokenizer.json") ||
             copy_if_present(o->tokenizer_dir, tmp, "tokenizer_config.json");
    free(it);
    if (!rc) {
        fsync_path(tmp);
        if (state == 1 && rmdir(dst) != 0) rc = dsc_set_error("%s: cannot replace the empty directory: %s", dst,
                                                              strerror(errno));
        else if (rename(tmp, dst) != 0) rc = dsc_set_error("%s: rename from %s failed: %s", dst, tmp, strerror(errno));
    }
    if (rc) {
        remove_tmp_dir(tmp);
        return DSC_ERR;
    }
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", dst);
    fsync_path(dirname(parent));
    return DSC_OK;
}

dsc_status hfdir_export_model(const dsc_model *m, const char *out_dir, const hfdir_export_options *o) {
    tensor_source src;
    tensor_source_from_model(&src, m);
    return hfdir_export(dsc_model_config(m), &src, out_dir, o);
}

dsc_status hfdir_convert(const char *src_dir, const char *out_dir, const hfdir_export_options *o) {
    hfdir *h;
    if (hfdir_open(src_dir, &h)) return DSC_ERR;
    hfdir_export_options oo = *o;
    if (!oo.tokenizer_dir) oo.tokenizer_dir = src_dir;
    tensor_source src;
    hfdir_source(h, &src);
    int rc = hfdir_export(hfdir_config(h), &src, out_dir, &oo);
    hfdir_close(h);
    return rc;
}
