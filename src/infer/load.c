/* load.c: model sources for inference (see load.h): a GGUF file (mapped, no copy), or a
 * directory with safetensors weights — a dsc model, a training run (newest checkpoint) or a
 * Hugging Face DeepSeek checkpoint, single-file or sharded, F32/BF16/F16/FP8 (mapped, no copy). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "infer/load.h"
#include "io/gguf.h"
#include "io/hfdir.h"
#include "train/checkpoint.h"

struct infer_model {
    hfdir *dir;            /* safetensors directory: the weights point into its maps */
    gguf_source *gguf;     /* GGUF file: likewise */
    engine *e;
    char tokenizer[4200];
};

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

dsc_status infer_open(const char *path, const infer_options *o, infer_model **out) {
    *out = NULL;
    infer_model *im = calloc(1, sizeof *im);
    if (!im) return dsc_set_error("out of memory");
    iweights w;
    memset(&w, 0, sizeof w);
    const dsc_config *c;
    if (ends_with(path, ".gguf")) {
        tensor_source src;
        if (gguf_source_open(path, &im->gguf)) goto fail;
        c = gguf_source_config(im->gguf);
        gguf_source_tensors(im->gguf, &src);
        if (iweights_build(&w, c, &src, o->mtp && c->num_nextn_predict_layers > 0)) goto fail;
        /* a tokenizer.json next to the file, if any (GGUF carries its own vocabulary too) */
        const char *slash = strrchr(path, '/');
        int dir_len = slash ? (int)(slash - path) : 1;
        snprintf(im->tokenizer, sizeof im->tokenizer, "%.*s/tokenizer.json", dir_len, slash ? path : ".");
    } else {
        /* a training run's output directory: its newest checkpoint */
        char ck[4096];
        if (ckpt_resolve_model(path, ck, sizeof ck) == DSC_OK) path = ck;
        if (hfdir_open(path, &im->dir)) goto fail;
        c = hfdir_config(im->dir);
        if (hfdir_iweights(im->dir, o->mtp && c->num_nextn_predict_layers > 0, &w)) goto fail;
        snprintf(im->tokenizer, sizeof im->tokenizer, "%s/tokenizer.json", hfdir_path(im->dir));
    }
    engine_options eo = {o->max_seqs > 0 ? o->max_seqs : 1, o->max_ctx, o->max_rows > 0 ? o->max_rows : 64};
    if (eo.max_ctx <= 0) eo.max_ctx = c->max_position_embeddings < 4096 ? c->max_position_embeddings : 4096;
    if (eo.max_ctx > c->max_position_embeddings) eo.max_ctx = c->max_position_embeddings;
    if (engine_create(&w, &eo, &im->e)) goto fail;
    *out = im;
    return DSC_OK;
fail:
    iweights_free(&w);
    infer_close(im);
    return DSC_ERR;
}

void infer_close(infer_model *im) {
    if (!im) return;
    engine_free(im->e); /* before the maps its weights point into */
    hfdir_close(im->dir);
    gguf_source_close(im->gguf);
    free(im);
}

engine *infer_engine(infer_model *im) { return im->e; }
const char *infer_tokenizer_path(const infer_model *im) { return im->tokenizer; }
