/* hfdir.c: reading a Hugging Face checkpoint directory (see hfdir.h): config.json, one
 * model.safetensors or an index over shards, every shard mapped once and cross-checked against
 * the index before any tensor is handed out; qtensor views for inference, FP8 block scales
 * included; and the check of a directory against its configuration that `dsc info` runs. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/fileio.h"
#include "io/hfdir.h"
#include "io/hfindex.h"
#include "model/params.h"

#define INDEX_FILE "model.safetensors.index.json"
#define SINGLE_FILE "model.safetensors"

typedef struct {
    const char *name;          /* owned by the shard's st_file */
    int shard;
    const st_tensor *t;
    void *copy;                /* aligned copy of misaligned data (owned), or NULL */
} hf_entry;

struct hfdir {
    char *path;
    dsc_config cfg;
    st_file **shards;
    int n_shards;
    hf_entry *ents;            /* sorted by name */
    int n;
    int64_t index_total_size;
    bool sharded;              /* opened through the index */
};

static int join(char *buf, size_t cap, const char *dir, const char *file) {
    size_t n = strlen(dir);
    int k = snprintf(buf, cap, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", file);
    if (k < 0 || (size_t)k >= cap) return dsc_set_error("%s: path too long", dir);
    return DSC_OK;
}

static bool is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

bool hfdir_has_weights(const char *dir) {
    char p[4096];
    if (join(p, sizeof p, dir, SINGLE_FILE) == DSC_OK && is_file(p)) return true;
    return join(p, sizeof p, dir, INDEX_FILE) == DSC_OK && is_file(p);
}

void hfdir_close(hfdir *h) {
    if (!h) return;
    for (int i = 0; i < h->n; i++) free(h->ents[i].copy);
    free(h->ents);
    for (int i = 0; i < h->n_shards; i++) st_close(h->shards[i]);
    free(h->shards);
    free(h->path);
    free(h);
}

static int cmp_ent(const void *a, const void *b) { return strcmp(((const hf_entry *)a)->name, ((const hf_entry *)b)->name); }

static int ent_find(const hfdir *h, const char *name) {
    int lo = 0, hi = h->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(h->ents[mid].name, name);
        if (c == 0) return mid;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

static int open_single(hfdir *h, const char *path) {
    h->shards = calloc(1, sizeof *h->shards);
    if (!h->shards) return dsc_set_error("%s: out of memory", path);
    if (st_open(path, &h->shards[0])) return DSC_ERR;
    h->n_shards = 1;
    int n = st_count(h->shards[0]);
    if (n == 0) return dsc_set_error("%s: holds no tensors", path);
    h->ents = calloc((size_t)n, sizeof *h->ents);
    if (!h->ents) return dsc_set_error("%s: out of memory for %d tensors", path, n);
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_tensor_at(h->shards[0], i);
        h->ents[i] = (hf_entry){t->name, 0, t, NULL};
    }
    h->n = n;
    qsort(h->ents, (size_t)n, sizeof *h->ents, cmp_ent); /* names are unique: st_open checked */
    return DSC_OK;
}

/* Opens every shard the index names and checks that each holds exactly its listed tensors. */
static int open_sharded(hfdir *h, const char *ipath) {
    dsc_mapped_file mf;
    if (dsc_map_file(ipath, &mf)) return DSC_ERR;
    hfindex *ix = NULL;
    int rc = hfdir_parse_index((const char *)mf.data, mf.size, ipath, &ix);
    dsc_unmap_file(&mf);
    if (rc) return DSC_ERR;
    h->index_total_size = ix->total_size;
    h->sharded = true;
    h->shards = calloc((size_t)ix->n_files, sizeof *h->shards);
    h->ents = calloc((size_t)ix->n_entries, sizeof *h->ents);
    if (!h->shards || !h->ents) {
        hfindex_free(ix);
        return dsc_set_error("%s: out of memory for %d tensors", ipath, ix->n_entries);
    }
    char p[4096];
    for (int f = 0; f < ix->n_files; f++) {
        if (join(p, sizeof p, h->path, ix->files[f])) goto fail;
        struct stat sb;
        int serr = stat(p, &sb) ? errno : 0;
        if (serr || !S_ISREG(sb.st_mode)) {
            const char *first = "";
            for (int e = 0; e < ix->n_entries && !first[0]; e++)
                if (ix->entries[e].file == f) first = ix->entries[e].name;
            dsc_set_error("%s: shard '%s' (listed for tensor '%.200s') %s", ipath, ix->files[f], first,
                          serr == ENOENT ? "does not exist" : serr ? strerror(serr) : "is not a regular file");
            goto fail;
        }
        if (st_open(p, &h->shards[f])) goto fail;
        h->n_shards++;
    }
    /* every tensor of every shard must be listed for that shard ... */
    for (int f = 0; f < ix->n_files; f++) {
        const st_file *st = h->shards[f];
        for (int i = 0; i < st_count(st); i++) {
            const st_tensor *t = st_tensor_at(st, i);
            int e = hfindex_find(ix, t->name);
            if (e < 0) {
                dsc_set_error("%s: tensor '%.200s' is not listed in %s", st_path(st), t->name, ipath);
                goto fail;
            }
            if (ix->entries[e].file != f) {
                dsc_set_error("%s: holds tensor '%.200s', which %s lists in '%s' (a tensor belongs to one shard)",
                              st_path(st), t->name, ipath, ix->files[ix->entries[e].file]);
                goto fail;
            }
            h->ents[e] = (hf_entry){t->name, f, t, NULL};
        }
    }
    /* ... and every listed tensor must be there */
    for (int e = 0; e < ix->n_entries; e++)
        if (!h->ents[e].t) {
            dsc_set_error("%s: tensor '%.200s' is listed in '%s', which does not hold it", ipath, ix->entries[e].name,
                          ix->files[ix->entries[e].file]);
            goto fail;
        }
    h->n = ix->n_entries; /* same order as the index: sorted by name */
    hfindex_free(ix);
    return DSC_OK;
fail:
    hfindex_free(ix);
    return DSC_ERR;
}

dsc_status hfdir_open(const char *dir, hfdir **out) {
    *out = NULL;
    hfdir *h = calloc(1, sizeof *h);
    if (!h || !(h->path = strdup(dir))) {
        free(h);
        return dsc_set_error("%s: out of memory", dir);
    }
    h->index_total_size = -1;
    char p[4096];
    int rc = join(p, sizeof p, dir, "config.json");
    if (!rc) rc = dsc_config_load(p, &h->cfg);
    if (!rc) {
        char ip[4096];
        rc = join(p, sizeof p, dir, SINGLE_FILE) || join(ip, sizeof ip, dir, INDEX_FILE);
        if (!rc) {
            if (is_file(p)) rc = open_single(h, p);
            else if (is_file(ip)) rc = open_sharded(h, ip);
            else rc = dsc_set_error("%s: no weights (expected %s or %s)", dir, SINGLE_FILE, INDEX_FILE);
        }
    }
    if (rc) {
        hfdir_close(h);
        return DSC_ERR;
    }
    *out = h;
    return DSC_OK;
}

const char *hfdir_path(const hfdir *h) { return h->path; }
const dsc_config *hfdir_config(const hfdir *h) { return &h->cfg; }
int hfdir_num_tensors(const hfdir *h) { return h->n; }
const char *hfdir_tensor_name(const hfdir *h, int i) { return i >= 0 && i < h->n ? h->ents[i].name : NULL; }

void hfdir_get_stats(const hfdir *h, hfdir_stats *s) {
    memset(s, 0, sizeof *s);
    s->n_shards = h->n_shards;
    s->n_tensors = h->n;
    s->index_total_size = h->index_total_size;
    for (int i = 0; i < h->n; i++) {
        s->bytes += h->ents[i].t->nbytes;
        s->dtype_count[h->ents[i].t->dtype]++;
    }
}

void hfdir_stats_format(const hfdir_stats *s, char *buf, size_t cap) {
    if (!cap) return;
    double mb = (double)s->bytes / 1e6;
    size_t k = (size_t)snprintf(buf, cap, "%d shard%s, %d tensors, %.*f MB (", s->n_shards, s->n_shards == 1 ? "" : "s",
                                s->n_tensors, mb < 10 ? 3 : 1, mb);
    const char *sep = "";
    for (int t = 0; t < ST_NUM_DTYPES && k < cap; t++)
        if (s->dtype_count[t]) {
            k += (size_t)snprintf(buf + k, cap - k, "%s%s %d", sep, st_dtype_name((st_dtype)t), s->dtype_count[t]);
            sep = ", ";
        }
    if (k < cap) snprintf(buf + k, cap - k, ")");
}

const st_tensor *hfdir_raw(const hfdir *h, const char *name, const char **shard_path) {
    int e = ent_find(h, name);
    if (e < 0) return NULL;
    if (shard_path) *shard_path = st_path(h->shards[h->ents[e].shard]);
    return h->ents[e].t;
}

/* The entry's data, copied once into aligned memory when the map has it misaligned. */
static const void *aligned_data(hfdir *h, int e, size_t align) {
    hf_entry *en = &h->ents[e];
    if (((uintptr_t)en->t->data & (align - 1)) == 0) return en->t->data;
    if (!en->copy) {
        en->copy = malloc(en->t->nbytes ? en->t->nbytes : 1);
        if (!en->copy) {
            dsc_set_error("%s: tensor '%.200s': out of memory for an aligned copy of %zu bytes",
                          st_path(h->shards[en->shard]), en->name, en->t->nbytes);
            return NULL;
        }
        memcpy(en->copy, en->t->data, en->t->nbytes);
    }
    return en->copy;
}

static int find_scale(hfdir *h, const char *name, const char *shard, qtensor *out) {
    char sname[512];
    if ((size_t)snprintf(sname, sizeof sname, "%s_scale_inv", name) >= sizeof sname)
        return dsc_set_error("%s: tensor '%.200s': name too long", shard, name);
    int s = ent_find(h, sname);
    if (s < 0)
        return dsc_set_error("%s: tensor '%.200s' is F8_E4M3 but its scale '%.200s' is missing", shard, name, sname);
    const st_tensor *t = h->ents[s].t;
    const char *spath = st_path(h->shards[h->ents[s].shard]);
    if (t->dtype != ST_F32)
        return dsc_set_error("%s: tensor '%.200s': dtype %s, expected F32 (the block scales of '%.200s')", spath, sname,
                             st_dtype_name(t->dtype), name);
    int64_t br = (out->rows + 127) / 128, bc = (out->cols + 127) / 128;
    bool ok = (t->ndim == 2 && t->shape[0] == br && t->shape[1] == bc) ||
              (t->ndim == 1 && br == 1 && t->shape[0] == bc);
    if (!ok) {
        char got[200];
        st_format_shape(got, sizeof got, t->ndim, t->shape);
        return dsc_set_error("%s: tensor '%.200s': shape %s, expected [%lld, %lld] (one scale per 128x128 block of "
                             "'%.200s' [%d, %d])",
                             spath, sname, got, (long long)br, (long long)bc, name, out->rows, out->cols);
    }
    out->scale_inv = aligned_data(h, s, 4);
    return out->scale_inv ? DSC_OK : DSC_ERR;
}

dsc_status hfdir_find(hfdir *h, const char *name, qtensor *out) {
    memset(out, 0, sizeof *out);
    int e = ent_find(h, name);
    if (e < 0)
        return dsc_set_error("%s: tensor '%.200s' is missing (not in %s)", h->path, name,
                             h->sharded ? INDEX_FILE : SINGLE_FILE);
    const st_tensor *t = h->ents[e].t;
    const char *shard = st_path(h->shards[h->ents[e].shard]);
    if (t->ndim > 2) {
        char got[200];
        st_format_shape(got, sizeof got, t->ndim, t->shape);
        return dsc_set_error("%s: tensor '%.200s': shape %s has %d dimensions (expected 1 or 2)", shard, name, got,
                             t->ndim);
    }
    int64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->ndim >= 1 ? t->shape[t->ndim - 1] : 1;
    if (rows > INT_MAX || cols > INT_MAX)
        return dsc_set_error("%s: tensor '%.200s': dimension too large (%lld x %lld)", shard, name, (long long)rows,
                             (long long)cols);
    out->rows = (int)rows;
    out->cols = (int)cols;
    size_t align;
    switch (t->dtype) {
    case ST_F32: out->type = QT_F32, align = 4; break;
    case ST_F16: out->type = QT_F16, align = 2; break;
    case ST_BF16: out->type = QT_BF16, align = 2; break;
    case ST_F8_E4M3: out->type = QT_FP8, align = 1; break;
    default:
        return dsc_set_error("%s: tensor '%.200s': dtype %s is not supported (expected F32, F16, BF16 or F8_E4M3)",
                             shard, name, st_dtype_name(t->dtype));
    }
    if (out->type == QT_FP8 && find_scale(h, name, shard, out)) return DSC_ERR;
    out->data = aligned_data(h, e, align);
    return out->data ? DSC_OK : DSC_ERR;
}

static int source_find(void *ctx, const char *name, qtensor *out) { return hfdir_find(ctx, name, out); }

void hfdir_source(hfdir *h, tensor_source *src) {
    src->find = source_find;
    src->ctx = h;
    src->what = h->path;
    src->find_absorbed = NULL;
}

/* ---- the directory against its configuration ---- */

static bool is_mtp_name(const char *name, int L) {
    int l;
    return sscanf(name, "model.layers.%d.", &l) == 1 && l >= L;
}

/* One tensor the model reads: present, supported, the expected shape; marks it (and its scale) used. */
static int check_one(hfdir *h, const tensor_desc *d, bool *used) {
    qtensor q;
    if (hfdir_find(h, d->name, &q)) return DSC_ERR;
    const char *shard;
    const st_tensor *t = hfdir_raw(h, d->name, &shard);
    bool ok = d->ndim == 2 ? q.rows == d->shape[0] && q.cols == d->shape[1]
                           : (size_t)q.rows * (size_t)q.cols == (size_t)d->numel && (t->ndim == 1 || q.rows == 1);
    if (!ok) {
        char want[200], got[200];
        st_format_shape(want, sizeof want, d->ndim, d->shape);
        st_format_shape(got, sizeof got, t->ndim, t->shape);
        return dsc_set_error("%s: tensor '%.200s': shape %s, config.json expects %s", shard, d->name, got, want);
    }
    used[ent_find(h, d->name)] = true;
    if (q.type == QT_FP8) {
        char sname[512];
        snprintf(sname, sizeof sname, "%s_scale_inv", d->name);
        used[ent_find(h, sname)] = true;
    }
    return DSC_OK;
}

dsc_status hfdir_check(hfdir *h, bool include_mtp, hfdir_report *r) {
    const dsc_config *c = &h->cfg;
    int cap = params_max_descs(c), n = 0;
    tensor_desc *descs = malloc((size_t)cap * sizeof *descs);
    bool *used = calloc((size_t)h->n + 1, sizeof *used);
    if (!descs || !used) {
        free(descs);
        free(used);
        return dsc_set_error("%s: out of memory", h->path);
    }
    params_layout(c, NULL, NULL, descs, &n);
    int rc = DSC_OK;
    bool mtp_ok = c->num_nextn_predict_layers > 0;
    for (int i = 0; i < n && !rc; i++) {
        if (!is_mtp_name(descs[i].name, c->num_hidden_layers) || include_mtp) rc = check_one(h, &descs[i], used);
        else if (mtp_ok && check_one(h, &descs[i], used)) mtp_ok = false; /* probed only: not an error */
    }
    if (!rc && r) {
        r->n_unused = 0;
        for (int i = 0; i < h->n; i++) r->n_unused += !used[i];
        r->mtp_layers = c->num_nextn_predict_layers;
        r->mtp_complete = mtp_ok;
    }
    free(descs);
    free(used);
    return rc;
}

dsc_status hfdir_iweights(hfdir *h, bool include_mtp, iweights *w) {
    memset(w, 0, sizeof *w);
    if (hfdir_check(h, include_mtp, NULL)) return DSC_ERR;
    tensor_source src;
    hfdir_source(h, &src);
    return iweights_build(w, &h->cfg, &src, include_mtp);
}
