/* model_io.c: dsc_model_load and dsc_model_save, a model directory as Hugging Face lays it out:
 * DIR/config.json and one DIR/model.safetensors with HF tensor names. Loading accepts F32, BF16
 * and F16 tensors and ignores tensors the model does not use; saving writes F32. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "io/safetensors.h"
#include "model/model.h"

static int join(char *buf, size_t cap, const char *dir, const char *file) {
    size_t n = strlen(dir);
    int k = snprintf(buf, cap, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", file);
    if (k < 0 || (size_t)k >= cap) return dsc_set_error("%s: path too long", dir);
    return DSC_OK;
}

/* Checks one descriptor's tensor in the file and converts it into dst. */
static int load_tensor(const st_file *st, const tensor_desc *d, float *dst) {
    const char *path = st_path(st);
    char want[160], got[200];
    st_format_shape(want, sizeof want, d->ndim, d->shape);
    const st_tensor *t = st_find(st, d->name);
    if (!t) return dsc_set_error("%s: tensor '%s' is missing (expected shape %s)", path, d->name, want);
    bool same = t->ndim == d->ndim;
    for (int i = 0; same && i < d->ndim; i++) same = t->shape[i] == d->shape[i];
    if (!same) {
        st_format_shape(got, sizeof got, t->ndim, t->shape);
        return dsc_set_error("%s: tensor '%s': shape %s in the file, the model expects %s", path, d->name, got, want);
    }
    if (t->dtype == ST_F8_E4M3 || t->dtype == ST_F8_E5M2)
        return dsc_set_error("%s: tensor '%s': dtype %s: FP8 tensors need dsc quantize/inference support (not yet)",
                             path, d->name, st_dtype_name(t->dtype));
    if (t->dtype != ST_F32 && t->dtype != ST_BF16 && t->dtype != ST_F16)
        return dsc_set_error("%s: tensor '%s': dtype %s (expected F32, BF16 or F16)", path, d->name,
                             st_dtype_name(t->dtype));
    if (st_tensor_to_f32(st, t, dst, d->numel)) return DSC_ERR;
    for (size_t i = 0; i < d->numel; i++) {
        uint32_t u;
        memcpy(&u, &dst[i], 4); /* bit test: correct even under -ffinite-math-only */
        if ((u & 0x7f800000u) == 0x7f800000u)
            return dsc_set_error("%s: tensor '%s': element %zu is %s (expected finite values)", path, d->name, i,
                                 (u & 0x7fffffu) ? "NaN" : ((u >> 31) ? "-Inf" : "Inf"));
    }
    return DSC_OK;
}

dsc_status dsc_model_load(const char *dir, dsc_model **out) {
    *out = NULL;
    char cpath[4096], wpath[4096];
    if (join(cpath, sizeof cpath, dir, "config.json") || join(wpath, sizeof wpath, dir, "model.safetensors"))
        return DSC_ERR;
    dsc_config cfg;
    if (dsc_config_load(cpath, &cfg)) return DSC_ERR;
    st_file *st = NULL;
    if (st_open(wpath, &st)) return DSC_ERR; /* before allocating the model: fail fast */
    dsc_model *m = NULL;
    if (dsc_model_create(&cfg, &m)) {
        st_close(st);
        return dsc_prefix_error("%s", dir);
    }
    for (int i = 0; i < m->n_descs; i++) {
        const tensor_desc *d = &m->descs[i];
        if (load_tensor(st, d, m->params + d->offset)) {
            st_close(st);
            dsc_model_free(m);
            return DSC_ERR;
        }
    }
    st_close(st);
    *out = m;
    return DSC_OK;
}

dsc_status dsc_model_save(const dsc_model *m, const char *dir) {
    char cpath[4096], wpath[4096];
    if (join(cpath, sizeof cpath, dir, "config.json") || join(wpath, sizeof wpath, dir, "model.safetensors"))
        return DSC_ERR;
    if (dsc_mkdir(dir)) return DSC_ERR;
    st_writer *w = NULL;
    if (st_writer_create(&w)) return DSC_ERR;
    int rc = st_writer_set_metadata(w, "format", "pt");
    for (int i = 0; !rc && i < m->n_descs; i++) {
        const tensor_desc *d = &m->descs[i];
        rc = st_writer_add(w, d->name, ST_F32, d->ndim, d->shape, m->params + d->offset);
    }
    /* each file is replaced atomically; the pair is not (a crash in between leaves the old config) */
    if (!rc) rc = st_writer_write(w, wpath);
    st_writer_free(w);
    if (!rc) rc = dsc_config_save(&m->cfg, cpath);
    return rc ? DSC_ERR : DSC_OK;
}
