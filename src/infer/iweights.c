/* iweights.c: building the inference view of a model's weights from a tensor source (see
 * iweights.h): one walk over the HF tensor names with shape checks, vectors copied to fp32,
 * kv_b_proj split per head for the absorbed attention. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "infer/iweights.h"
#include "model/config.h"
#include "model/model.h"

static void *own(iweights *w, size_t bytes) {
    if (w->n_owned == w->cap_owned) {
        int cap = w->cap_owned ? 2 * w->cap_owned : 64;
        void **n = realloc(w->owned, sizeof(void *) * cap);
        if (!n) return NULL;
        w->owned = n;
        w->cap_owned = cap;
    }
    void *p = dsc_alloc(bytes);
    if (p) w->owned[w->n_owned++] = p;
    return p;
}

void iweights_free(iweights *w) {
    if (!w) return;
    for (int i = 0; i < w->n_owned; i++) dsc_free(w->owned[i]);
    free(w->owned);
    if (w->blocks) {
        int nb = w->cfg.num_hidden_layers + w->cfg.num_nextn_predict_layers;
        for (int l = 0; l < nb; l++) free(w->blocks[l].experts);
    }
    free(w->blocks);
    memset(w, 0, sizeof *w);
}

typedef struct {
    iweights *w;
    const tensor_source *src;
    char name[160];
} walker;

static int vfind(walker *k, qtensor *out, const char *fmt, va_list ap) {
    vsnprintf(k->name, sizeof k->name, fmt, ap);
    return k->src->find(k->src->ctx, k->name, out);
}

/* A matrix [rows, cols]. */
__attribute__((format(printf, 5, 6))) static int mat(walker *k, qtensor *out, int rows, int cols, const char *fmt,
                                                     ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = vfind(k, out, fmt, ap);
    va_end(ap);
    if (rc) return DSC_ERR;
    if (out->rows != rows || out->cols != cols)
        return dsc_set_error("%s: tensor '%s': expected shape [%d, %d], found [%d, %d]", k->src->what, k->name, rows,
                             cols, out->rows, out->cols);
    return DSC_OK;
}

/* Any tensor of n values, copied to fp32. */
static const float *to_f32(walker *k, const qtensor *t, size_t n) {
    float *v = own(k->w, n * sizeof(float));
    if (!v) return NULL;
    size_t cols = (size_t)t->cols;
    for (int r = 0; r < t->rows; r++) qt_dequant_row(v + r * cols, t, r);
    (void)n;
    return v;
}

__attribute__((format(printf, 4, 5))) static int vec(walker *k, const float **out, size_t n, const char *fmt, ...) {
    qtensor t;
    va_list ap;
    va_start(ap, fmt);
    int rc = vfind(k, &t, fmt, ap);
    va_end(ap);
    if (rc) return DSC_ERR;
    if ((size_t)t.rows * (size_t)t.cols != n)
        return dsc_set_error("%s: tensor '%s': expected %zu values, found %d x %d", k->src->what, k->name, n, t.rows,
                             t.cols);
    *out = to_f32(k, &t, n);
    return *out ? DSC_OK : DSC_ERR;
}

static int ffn(walker *k, iffn *f, int d, int I, const char *prefix) {
    return mat(k, &f->w1, I, d, "%s.gate_proj.weight", prefix) || mat(k, &f->w3, I, d, "%s.up_proj.weight", prefix) ||
           mat(k, &f->w2, d, I, "%s.down_proj.weight", prefix);
}

/* wk_t and wv of layer l (iattn): the source's own, or split from kv_b_proj [H*(dn+dv), rkv]. */
static int absorbed(walker *k, const dsc_config *c, int l, iattn *a) {
    int H = c->num_attention_heads, rkv = c->kv_lora_rank, dn = c->qk_nope_head_dim, dv = c->v_head_dim;
    if (k->src->find_absorbed) {
        int rc = k->src->find_absorbed(k->src->ctx, l, &a->wk_t, &a->wv);
        if (rc != 1) return rc;
    }
    qtensor kvbt, *kvb = &kvbt;
    if (mat(k, kvb, H * (dn + dv), rkv, "model.layers.%d.self_attn.kv_b_proj.weight", l)) return DSC_ERR;
    qt_type t = kvb->type == QT_FP8 ? QT_BF16 : kvb->type == QT_Q4_0 ? QT_Q8_0 : kvb->type;
    if (t == QT_Q8_0 && (dn % 32 || rkv % 32)) t = QT_F16; /* rows must be whole Q8_0 blocks */
    float *kv = malloc(sizeof(float) * (size_t)kvb->rows * kvb->cols), *kt = malloc(sizeof(float) * (size_t)H * rkv * dn),
          *vv = malloc(sizeof(float) * (size_t)H * dv * rkv);
    void *kd = own(k->w, qt_row_bytes(t, dn) * (size_t)H * rkv), *vd = own(k->w, qt_row_bytes(t, rkv) * (size_t)H * dv);
    int rc = kv && kt && vv && kd && vd ? DSC_OK : dsc_set_error("out of memory");
    if (!rc) {
        for (int r = 0; r < kvb->rows; r++) qt_dequant_row(kv + (size_t)r * rkv, kvb, r);
        for (int h = 0; h < H; h++) {
            const float *kh = kv + (size_t)h * (dn + dv) * rkv;
            for (int j = 0; j < dn; j++)
                for (int cc = 0; cc < rkv; cc++) kt[((size_t)h * rkv + cc) * dn + j] = kh[(size_t)j * rkv + cc];
            memcpy(vv + (size_t)h * dv * rkv, kh + (size_t)dn * rkv, sizeof(float) * (size_t)dv * rkv);
        }
        qt_quantize(t, kt, H * rkv, dn, kd, NULL);
        qt_quantize(t, vv, H * dv, rkv, vd, NULL);
        a->wk_t = (qtensor){t, H * rkv, dn, kd, NULL};
        a->wv = (qtensor){t, H * dv, rkv, vd, NULL};
    }
    free(kv);
    free(kt);
    free(vv);
    return rc;
}

static int block(walker *k, const dsc_config *c, int l, iblock *b) {
    int d = c->hidden_size, H = c->num_attention_heads, dqk = cfg_qk_head_dim(c), rq = c->q_lora_rank;
    int rkv = c->kv_lora_rank, dr = c->qk_rope_head_dim;
    char p[96];
    memset(b, 0, sizeof *b);
    if (l >= c->num_hidden_layers) {
        if (vec(k, &b->enorm, d, "model.layers.%d.enorm.weight", l) || vec(k, &b->hnorm, d, "model.layers.%d.hnorm.weight", l) ||
            mat(k, &b->eh_proj, d, 2 * d, "model.layers.%d.eh_proj.weight", l) ||
            vec(k, &b->head_norm, d, "model.layers.%d.shared_head.norm.weight", l))
            return DSC_ERR;
    }
    iattn *a = &b->attn;
    if (vec(k, &b->attn_norm, d, "model.layers.%d.input_layernorm.weight", l) ||
        vec(k, &b->ffn_norm, d, "model.layers.%d.post_attention_layernorm.weight", l))
        return DSC_ERR;
    if (rq > 0) {
        if (mat(k, &a->wq_a, rq, d, "model.layers.%d.self_attn.q_a_proj.weight", l) ||
            vec(k, &a->q_norm, rq, "model.layers.%d.self_attn.q_a_layernorm.weight", l) ||
            mat(k, &a->wq_b, H * dqk, rq, "model.layers.%d.self_attn.q_b_proj.weight", l))
            return DSC_ERR;
    } else if (mat(k, &a->wq_b, H * dqk, d, "model.layers.%d.self_attn.q_proj.weight", l)) {
        return DSC_ERR;
    }
    if (mat(k, &a->wkv_a, rkv + dr, d, "model.layers.%d.self_attn.kv_a_proj_with_mqa.weight", l) ||
        vec(k, &a->kv_norm, rkv, "model.layers.%d.self_attn.kv_a_layernorm.weight", l) || absorbed(k, c, l, a) ||
        mat(k, &a->wo, d, H * c->v_head_dim, "model.layers.%d.self_attn.o_proj.weight", l))
        return DSC_ERR;
    if (c->index_n_heads > 0) {
        int HI = c->index_n_heads, dI = c->index_head_dim;
        if (mat(k, &a->idx_wq_b, HI * dI, rq, "model.layers.%d.self_attn.indexer.wq_b.weight", l) ||
            mat(k, &a->idx_wk, dI, d, "model.layers.%d.self_attn.indexer.wk.weight", l) ||
            vec(k, &a->idx_k_norm_w, dI, "model.layers.%d.self_attn.indexer.k_norm.weight", l) ||
            vec(k, &a->idx_k_norm_b, dI, "model.layers.%d.self_attn.indexer.k_norm.bias", l) ||
            mat(k, &a->idx_weights_proj, HI, d, "model.layers.%d.self_attn.indexer.weights_proj.weight", l))
            return DSC_ERR;
    }
    b->is_moe = cfg_layer_is_moe(c, l);
    if (!b->is_moe) {
        snprintf(p, sizeof p, "model.layers.%d.mlp", l);
        if (ffn(k, &b->mlp, d, c->intermediate_size, p)) return DSC_ERR;
    } else {
        int E = c->n_routed_experts, Ie = c->moe_intermediate_size;
        if (mat(k, &b->gate, E, d, "model.layers.%d.mlp.gate.weight", l)) return DSC_ERR;
        if (c->expert_bias && vec(k, &b->gate_bias, E, "model.layers.%d.mlp.gate.e_score_correction_bias", l))
            return DSC_ERR;
        b->experts = calloc((size_t)E, sizeof(iffn));
        if (!b->experts) return dsc_set_error("out of memory");
        for (int e = 0; e < E; e++) {
            snprintf(p, sizeof p, "model.layers.%d.mlp.experts.%d", l, e);
            if (ffn(k, &b->experts[e], d, Ie, p)) return DSC_ERR;
        }
        if (c->n_shared_experts > 0) {
            snprintf(p, sizeof p, "model.layers.%d.mlp.shared_experts", l);
            if (ffn(k, &b->shared, d, c->n_shared_experts * Ie, p)) return DSC_ERR;
        }
    }
    if (cfg_has_mhc(c)) {
        int n = c->mhc_expansion_rate, m = n * n + 2 * n;
        const char *which[2] = {"attn_mhc", "ffn_mhc"};
        imhc *mh[2] = {&b->attn_mhc, &b->ffn_mhc};
        for (int s = 0; s < 2; s++)
            if (vec(k, &mh[s]->phi, (size_t)m * n * d, "model.layers.%d.%s.phi", l, which[s]) ||
                vec(k, &mh[s]->bias, m, "model.layers.%d.%s.bias", l, which[s]) ||
                vec(k, &mh[s]->alpha, 3, "model.layers.%d.%s.alpha", l, which[s]))
                return DSC_ERR;
    }
    return DSC_OK;
}

dsc_status iweights_build(iweights *w, const dsc_config *cfg, const tensor_source *src, bool include_mtp) {
    memset(w, 0, sizeof *w);
    if (dsc_config_validate(cfg)) return DSC_ERR;
    w->cfg = *cfg;
    if (!include_mtp) w->cfg.num_nextn_predict_layers = 0;
    const dsc_config *c = &w->cfg;
    int nb = c->num_hidden_layers + c->num_nextn_predict_layers, d = c->hidden_size, V = c->vocab_size;
    walker k = {w, src, ""};
    w->blocks = calloc((size_t)nb, sizeof(iblock));
    if (!w->blocks) return dsc_set_error("out of memory");
    if (mat(&k, &w->embed, V, d, "model.embed_tokens.weight") || vec(&k, &w->norm, d, "model.norm.weight")) goto fail;
    if (c->tie_word_embeddings) w->head = w->embed;
    else if (mat(&k, &w->head, V, d, "lm_head.weight")) goto fail;
    for (int l = 0; l < nb; l++)
        if (block(&k, c, l, &w->blocks[l])) goto fail;
    return DSC_OK;
fail:
    iweights_free(w);
    return DSC_ERR;
}

/* ---- a source over a dsc_model ---- */

static int model_find(void *ctx, const char *name, qtensor *out) {
    const dsc_model *m = ctx;
    for (int i = 0; i < m->n_descs; i++) {
        const tensor_desc *t = &m->descs[i];
        if (strcmp(t->name, name)) continue;
        out->type = QT_F32;
        out->rows = t->ndim == 2 ? (int)t->shape[0] : 1;
        out->cols = t->ndim == 2 ? (int)t->shape[1] : (int)t->shape[0];
        out->data = m->params + t->offset;
        out->scale_inv = NULL;
        return DSC_OK;
    }
    return dsc_set_error("model: tensor '%s' is missing", name);
}

void tensor_source_from_model(tensor_source *src, const dsc_model *m) {
    src->find = model_find;
    src->ctx = (void *)m;
    src->what = "model";
    src->find_absorbed = NULL;
}
