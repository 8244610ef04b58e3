/* params.c: the parameter layout walk (see params.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/mem.h"
#include "model/config.h"
#include "model/params.h"

typedef struct {
    float *base;
    size_t off;
    tensor_desc *descs;
    int n;
    bool no_pad; /* set while placing the slices of a stacked tensor */
} walker;

/* Places one tensor; returns its pointer (base + offset). */
static float *place(walker *wk, init_kind init, unsigned flags, int ndim, const int64_t *shape, const char *fmt, ...) {
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= (size_t)shape[i];
    if (wk->descs) {
        tensor_desc *t = &wk->descs[wk->n];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(t->name, sizeof t->name, fmt, ap);
        va_end(ap);
        t->ndim = ndim;
        memset(t->shape, 0, sizeof t->shape);
        for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
        t->offset = wk->off;
        t->numel = numel;
        t->init = init;
        t->flags = flags;
    }
    wk->n++;
    float *p = wk->base ? wk->base + wk->off : NULL;
    wk->off += wk->no_pad ? numel : dsc_round_floats(numel);
    return p;
}

#define VEC(wk, init, flags, n0, ...) place(wk, init, flags, 1, (int64_t[]){n0}, __VA_ARGS__)
#define MAT(wk, init, flags, n0, n1, ...) place(wk, init, flags, 2, (int64_t[]){n0, n1}, __VA_ARGS__)

/* Experts are stored stacked ([E, out, in]) but named one by one as in HF checkpoints: the E
 * descriptors are consecutive slices, so the stacked pointer is the first one's. */
static float *place_experts(walker *wk, int E, int out, int in, int l, const char *proj) {
    float *first = NULL;
    for (int e = 0; e < E; e++) {
        wk->no_pad = e < E - 1; /* slices back to back: expert e starts at first + e*out*in */
        float *p = MAT(wk, INIT_NORMAL, 0, out, in, "model.layers.%d.mlp.experts.%d.%s.weight", l, e, proj);
        if (e == 0) first = p;
    }
    wk->no_pad = false;
    return first;
}

static void place_block(walker *wk, const dsc_config *c, int l, block_weights *b) {
    int d = c->hidden_size, H = c->num_attention_heads, dqk = c->qk_nope_head_dim + c->qk_rope_head_dim;
    int rq = c->q_lora_rank, rkv = c->kv_lora_rank, dr = c->qk_rope_head_dim;
    block_weights tmp;
    if (!b) b = &tmp;
    memset(b, 0, sizeof *b);
    bool mtp = l >= c->num_hidden_layers;
    if (mtp) {
        b->enorm = VEC(wk, INIT_ONES, TENSOR_NO_DECAY, d, "model.layers.%d.enorm.weight", l);
        b->hnorm = VEC(wk, INIT_ONES, TENSOR_NO_DECAY, d, "model.layers.%d.hnorm.weight", l);
        b->eh_proj = MAT(wk, INIT_NORMAL, 0, d, 2 * d, "model.layers.%d.eh_proj.weight", l);
        b->head_norm = VEC(wk, INIT_ONES, TENSOR_NO_DECAY, d, "model.layers.%d.shared_head.norm.weight", l);
    }
    b->attn_norm = VEC(wk, INIT_ONES, TENSOR_NO_DECAY, d, "model.layers.%d.input_layernorm.weight", l);
    mla_weights *a = &b->attn;
    if (rq > 0) {
        a->wq_a = MAT(wk, INIT_NORMAL, 0, rq, d, "model.layers.%d.self_attn.q_a_proj.weight", l);
        a->q_norm = VEC(wk, INIT_ONES, TENSOR_NO_DECAY, rq, "model.layers.%d.self_attn.q_a_layernorm.weight", l);
        a->wq_b = MAT(wk, INIT_NORMAL, 0, H * dqk, rq, "model.layers.%d.self_attn.q_b_proj.weight", l);
    } else {
        a->wq_b = MAT(wk, INIT_NORMAL, 0, H * dqk, d, "model.layers.%d.self_attn.q_proj.weight", l);
    }
    a->wkv_a = MAT(wk, INIT_NORMAL, 0, rkv + dr, d, "model.layers.%d.self_attn.kv_a_proj_with_mqa.weight", l);
    a->kv_norm = VEC(wk, INIT_ONES, TENSOR_NO_DECAY, rkv, "model.layers.%d.self_attn.kv_a_layernorm.weight", l);
    a->wkv_b = MAT(wk, INIT_NORMAL, 0, H * (c->qk_nope_head_dim + c->v_head_dim), rkv,
                   "model.layers.%d.self_attn.kv_b_proj.weight", l);
    a->wo = MAT(wk, INIT_NORMAL, 0, d, H * c->v_head_dim, "model.layers.%d.self_attn.o_proj.weight", l);
    if (c->index_n_heads > 0) {
        int HI = c->index_n_heads, dI = c->index_head_dim;
        a->idx.wq_b = MAT(wk, INIT_NORMAL, 0, HI * dI, rq, "model.layers.%d.self_attn.indexer.wq_b.weight", l);
        a->idx.wk = MAT(wk, INIT_NORMAL, 0, dI, d, "model.layers.%d.self_attn.indexer.wk.weight", l);
        a->idx.k_norm_w = VEC(wk, INIT_ONES, TENSOR_NO_DECAY, dI, "model.layers.%d.self_attn.indexer.k_norm.weight", l);
        a->idx.k_norm_b = VEC(wk, INIT_ZEROS, TENSOR_NO_DECAY, dI, "model.layers.%d.self_attn.indexer.k_norm.bias", l);
        a->idx.weights_proj = MAT(wk, INIT_NORMAL, 0, HI, d, "model.layers.%d.self_attn.indexer.weights_proj.weight", l);
    }
    b->ffn_norm = VEC(wk, INIT_ONES, TENSOR_NO_DECAY, d, "model.layers.%d.post_attention_layernorm.weight", l);
    b->is_moe = cfg_layer_is_moe(c, l);
    if (!b->is_moe) {
        int I = c->intermediate_size;
        b->mlp.w1 = MAT(wk, INIT_NORMAL, 0, I, d, "model.layers.%d.mlp.gate_proj.weight", l);
        b->mlp.w3 = MAT(wk, INIT_NORMAL, 0, I, d, "model.layers.%d.mlp.up_proj.weight", l);
        b->mlp.w2 = MAT(wk, INIT_NORMAL, 0, d, I, "model.layers.%d.mlp.down_proj.weight", l);
    } else {
        int E = c->n_routed_experts, Ie = c->moe_intermediate_size, S = c->n_shared_experts * Ie;
        moe_weights *m = &b->moe;
        m->gate = MAT(wk, INIT_NORMAL, 0, E, d, "model.layers.%d.mlp.gate.weight", l);
        if (c->expert_bias)
            m->bias = VEC(wk, INIT_ZEROS, TENSOR_NO_DECAY | TENSOR_NO_GRAD, E,
                          "model.layers.%d.mlp.gate.e_score_correction_bias", l);
        m->w1 = place_experts(wk, E, Ie, d, l, "gate_proj");
        m->w3 = place_experts(wk, E, Ie, d, l, "up_proj");
        m->w2 = place_experts(wk, E, d, Ie, l, "down_proj");
        if (S > 0) {
            m->shared.w1 = MAT(wk, INIT_NORMAL, 0, S, d, "model.layers.%d.mlp.shared_experts.gate_proj.weight", l);
            m->shared.w3 = MAT(wk, INIT_NORMAL, 0, S, d, "model.layers.%d.mlp.shared_experts.up_proj.weight", l);
            m->shared.w2 = MAT(wk, INIT_NORMAL, 0, d, S, "model.layers.%d.mlp.shared_experts.down_proj.weight", l);
        }
    }
    if (cfg_has_mhc(c)) {
        int n = c->mhc_expansion_rate, width = n * n + 2 * n;
        const char *which[2] = {"attn_mhc", "ffn_mhc"};
        mhc_weights *mw[2] = {&b->attn_mhc, &b->ffn_mhc};
        for (int s = 0; s < 2; s++) {
            mw[s]->phi = MAT(wk, INIT_MHC_PHI, 0, width, n * d, "model.layers.%d.%s.phi", l, which[s]);
            mw[s]->bias = VEC(wk, INIT_MHC_BIAS, TENSOR_NO_DECAY, width, "model.layers.%d.%s.bias", l, which[s]);
            mw[s]->alpha = VEC(wk, INIT_MHC_ALPHA, TENSOR_NO_DECAY, 3, "model.layers.%d.%s.alpha", l, which[s]);
        }
    }
}

int params_max_descs(const dsc_config *c) {
    int per_block = 40 + 3 * (c->n_routed_experts > 0 ? c->n_routed_experts : 0);
    return 8 + (c->num_hidden_layers + c->num_nextn_predict_layers) * per_block;
}

size_t params_layout(const dsc_config *c, float *base, model_weights *w, tensor_desc *descs, int *n_descs) {
    walker wk = {base, 0, descs, 0, false};
    int d = c->hidden_size, V = c->vocab_size;
    float *embed = MAT(&wk, INIT_NORMAL, 0, V, d, "model.embed_tokens.weight");
    int nb = c->num_hidden_layers + c->num_nextn_predict_layers;
    for (int l = 0; l < nb; l++) place_block(&wk, c, l, w ? &w->blocks[l] : NULL);
    float *norm = VEC(&wk, INIT_ONES, TENSOR_NO_DECAY, d, "model.norm.weight");
    float *head = c->tie_word_embeddings ? embed : MAT(&wk, INIT_NORMAL, 0, V, d, "lm_head.weight");
    if (w) {
        w->embed = embed;
        w->norm = norm;
        w->head = head;
    }
    if (n_descs) *n_descs = wk.n;
    return wk.off;
}
