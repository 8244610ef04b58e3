/* gguf_deepseek.c: DeepSeek models in GGUF files, as llama.cpp's "deepseek2" architecture reads
 * them: export (dsc model -> GGUF), and the way back (GGUF -> config, tensor_source, iweights).
 * What llama.cpp requires was read from its sources (src/llama-arch.cpp, the deepseek2 loader and
 * graph, convert_hf_to_gguf.py's DeepseekV2Model); this file follows that converter.
 *
 * Tensor names (Hugging Face -> GGUF; GGUF dims are reversed: ne[0] is the row length):
 *   model.embed_tokens.weight [V,d]                 token_embd.weight            {d, V}
 *   model.norm.weight [d]                           output_norm.weight           {d}
 *   lm_head.weight [V,d]                            output.weight {d, V}   (absent when tied)
 *   model.layers.L.  input_layernorm.weight         blk.L.attn_norm.weight
 *                    post_attention_layernorm.weight blk.L.ffn_norm.weight
 *     self_attn.q_a_proj.weight [rq,d]              blk.L.attn_q_a.weight        {d, rq}
 *     self_attn.q_a_layernorm.weight                blk.L.attn_q_a_norm.weight
 *     self_attn.q_b_proj.weight [H*dqk,rq]          blk.L.attn_q_b.weight        {rq, H*dqk}
 *     self_attn.q_proj.weight [H*dqk,d] (rq = 0)    blk.L.attn_q.weight          {d, H*dqk}
 *     self_attn.kv_a_proj_with_mqa.weight           blk.L.attn_kv_a_mqa.weight   {d, rkv+dr}
 *     self_attn.kv_a_layernorm.weight               blk.L.attn_kv_a_norm.weight
 *     self_attn.kv_b_proj.weight [H*(dn+dv),rkv]    blk.L.attn_k_b.weight        {dn, rkv, H}
 *                                                   blk.L.attn_v_b.weight        {rkv, dv, H}
 *         k_b[h][c][j] = kv_b[h*(dn+dv) + j][c] (per head transposed), v_b[h][j][c] = kv_b[h*(dn+dv) + dn + j][c]
 *     self_attn.o_proj.weight                       blk.L.attn_output.weight     {H*dv, d}
 *     mlp.{gate,up,down}_proj.weight (dense)        blk.L.ffn_{gate,up,down}.weight
 *     mlp.gate.weight [E,d]                         blk.L.ffn_gate_inp.weight    {d, E}   (f32)
 *     mlp.gate.e_score_correction_bias [E]          blk.L.exp_probs_b.bias       {E}
 *     mlp.experts.e.{gate,up}_proj.weight [Ie,d]    blk.L.ffn_{gate,up}_exps.weight {d, Ie, E} (slice e)
 *     mlp.experts.e.down_proj.weight [d,Ie]         blk.L.ffn_down_exps.weight   {Ie, d, E}
 *     mlp.shared_experts.{gate,up,down}_proj.weight blk.L.ffn_{gate,up,down}_shexp.weight
 *   MTP blocks (read only; export skips them, as the converter does):
 *     enorm / hnorm / eh_proj / shared_head.norm    blk.L.nextn.{enorm,hnorm,eh_proj,shared_head_norm}.weight
 * Metadata: general.*, deepseek2.* (see write_metadata) and tokenizer.ggml.* (gpt2 BPE, pre
 * "deepseek-v3"); dsc.* keys carry what the deepseek2 keys cannot hold exactly (doubles, dsc-only
 * training constants) and are ignored by llama.cpp. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "base/mem.h"
#include "io/gguf.h"
#include "io/hfdir.h"
#include "model/config.h"

#define ARCH "deepseek2"

/* ---- names ----------------------------------------------------------------------------------- */

typedef struct {
    const char *hf, *gguf;
} name_pair;

static const name_pair block_names[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"self_attn.q_a_proj.weight", "attn_q_a.weight"},
    {"self_attn.q_a_layernorm.weight", "attn_q_a_norm.weight"},
    {"self_attn.q_b_proj.weight", "attn_q_b.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.kv_a_proj_with_mqa.weight", "attn_kv_a_mqa.weight"},
    {"self_attn.kv_a_layernorm.weight", "attn_kv_a_norm.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
    {"mlp.gate.weight", "ffn_gate_inp.weight"},
    {"mlp.gate.e_score_correction_bias", "exp_probs_b.bias"},
    {"mlp.shared_experts.gate_proj.weight", "ffn_gate_shexp.weight"},
    {"mlp.shared_experts.up_proj.weight", "ffn_up_shexp.weight"},
    {"mlp.shared_experts.down_proj.weight", "ffn_down_shexp.weight"},
    {"enorm.weight", "nextn.enorm.weight"},
    {"hnorm.weight", "nextn.hnorm.weight"},
    {"eh_proj.weight", "nextn.eh_proj.weight"},
    {"shared_head.norm.weight", "nextn.shared_head_norm.weight"},
};

enum { MAP_PLAIN, MAP_EXPERT, MAP_KV_B };

/* The GGUF name of a Hugging Face name; *expert the slice of a stacked expert tensor (-1 if none);
 * returns MAP_* or -1 for a name with no GGUF counterpart. */
static int map_name(const char *hf, char *out, size_t cap, int *expert, int *layer) {
    *expert = -1;
    *layer = -1;
    if (!strcmp(hf, "model.embed_tokens.weight")) return snprintf(out, cap, "token_embd.weight"), MAP_PLAIN;
    if (!strcmp(hf, "model.norm.weight")) return snprintf(out, cap, "output_norm.weight"), MAP_PLAIN;
    if (!strcmp(hf, "lm_head.weight")) return snprintf(out, cap, "output.weight"), MAP_PLAIN;
    int l, n = 0;
    if (sscanf(hf, "model.layers.%d.%n", &l, &n) != 1 || n == 0 || l < 0) return -1;
    *layer = l;
    const char *rest = hf + n;
    if (!strcmp(rest, "self_attn.kv_b_proj.weight")) return snprintf(out, cap, "blk.%d.attn_kv_b.weight", l), MAP_KV_B;
    for (size_t i = 0; i < sizeof block_names / sizeof block_names[0]; i++)
        if (!strcmp(rest, block_names[i].hf)) return snprintf(out, cap, "blk.%d.%s", l, block_names[i].gguf), MAP_PLAIN;
    int e, m = 0;
    char which[16];
    if (sscanf(rest, "mlp.experts.%d.%15[a-z]_proj.weight%n", &e, which, &m) == 2 && m > 0 && rest[m] == '\0' &&
        e >= 0 && (!strcmp(which, "gate") || !strcmp(which, "up") || !strcmp(which, "down"))) {
        *expert = e;
        return snprintf(out, cap, "blk.%d.ffn_%s_exps.weight", l, which), MAP_EXPERT;
    }
    return -1;
}

/* ---- export ---------------------------------------------------------------------------------- */

typedef struct {
    const dsc_config *c;
    const tensor_source *src;
    gguf_writer *w;
    qt_type type;
    char *notes;
    size_t notes_cap;
    int n_f16;                   /* tensors stored f16 because their rows are not whole Q blocks */
    char f16_names[256];
} exporter;

__attribute__((format(printf, 2, 3))) static void note(exporter *x, const char *fmt, ...) {
    if (!x->notes || !x->notes_cap) return;
    size_t len = strlen(x->notes);
    if (len + 1 >= x->notes_cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->notes + len, x->notes_cap - len, fmt, ap);
    va_end(ap);
    len = strlen(x->notes);
    if (len + 1 < x->notes_cap) strcat(x->notes, "\n");
}

/* The f32 values of source tensor hf, which must be [rows, cols], into dst. */
static int read_f32(exporter *x, const char *hf, int rows, int cols, float *dst) {
    qtensor q;
    if (x->src->find(x->src->ctx, hf, &q)) return DSC_ERR;
    if (q.rows != rows || q.cols != cols)
        return dsc_set_error("%s: tensor '%s': expected shape [%d, %d], found [%d, %d]", x->src->what, hf, rows, cols,
                             q.rows, q.cols);
    for (int r = 0; r < rows; r++) qt_dequant_row(dst + (size_t)r * cols, &q, r);
    return DSC_OK;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* The converter's rule: vectors, norms and the router stay f32; the rest takes the requested
 * type, f16 where a row is not a whole number of Q blocks. dsc's own rule for q4_0: the
 * embedding, the head and the absorbed-attention matrices are q8_0. */
static qt_type pick_type(exporter *x, const char *name, int n_dims, int64_t ne0) {
    if (n_dims == 1 || ends_with(name, "_norm.weight") || strstr(name, "ffn_gate_inp")) return QT_F32;
    qt_type t = x->type;
    if (t == QT_Q4_0 && (!strcmp(name, "token_embd.weight") || !strcmp(name, "output.weight") ||
                         strstr(name, "attn_k_b") || strstr(name, "attn_v_b")))
        t = QT_Q8_0;
    if ((t == QT_Q8_0 || t == QT_Q4_0) && ne0 % 32) {
        if (x->n_f16++ < 4) {
            size_t len = strlen(x->f16_names);
            snprintf(x->f16_names + len, sizeof x->f16_names - len, "%s%s", len ? ", " : "", name);
        }
        t = QT_F16;
    }
    return t;
}

/* Adds tensor name with dims ne (ne[0] the row length) from f32 values (rows = product of ne[1..]). */
static int put_tensor(exporter *x, const char *name, int n_dims, const int64_t *ne, const float *vals) {
    qt_type t = pick_type(x, name, n_dims, ne[0]);
    int64_t rows = 1;
    for (int i = 1; i < n_dims; i++) rows *= ne[i];
    size_t rb = qt_row_bytes(t, (int)ne[0]);
    size_t nbytes = rb * (size_t)rows;
    void *data = malloc(nbytes ? nbytes : 1);
    if (!data) return dsc_set_error("out of memory");
    if (t == QT_F32) memcpy(data, vals, nbytes);
    else qt_quantize(t, vals, (int)rows, (int)ne[0], data, NULL);
    return gguf_writer_add_tensor(x->w, name, gguf_type_from_qt(t), n_dims, ne, data, true);
}

/* A 2-D HF tensor [rows, cols] as GGUF {cols, rows}, or a vector of n = cols (rows = 0). */
static int copy_tensor(exporter *x, const char *gname, int rows, int cols, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int copy_tensor(exporter *x, const char *gname, int rows, int cols, const char *fmt, ...) {
    char hf[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(hf, sizeof hf, fmt, ap);
    va_end(ap);
    int r = rows ? rows : 1;
    float *v = malloc(sizeof(float) * (size_t)r * cols);
    if (!v) return dsc_set_error("out of memory");
    int64_t ne[2] = {cols, rows};
    int rc = read_f32(x, hf, r, cols, v) || put_tensor(x, gname, rows ? 2 : 1, ne, v);
    free(v);
    return rc ? DSC_ERR : DSC_OK;
}

static int export_block(exporter *x, int l) {
    const dsc_config *c = x->c;
    int d = c->hidden_size, H = c->num_attention_heads, rq = c->q_lora_rank, rkv = c->kv_lora_rank;
    int dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim, dqk = dn + dr;
    char g[GGUF_MAX_NAME];
#define G(suffix) (snprintf(g, sizeof g, "blk.%d." suffix, l), g)
#define P "model.layers.%d."
    if (copy_tensor(x, G("attn_norm.weight"), 0, d, P "input_layernorm.weight", l) ||
        copy_tensor(x, G("ffn_norm.weight"), 0, d, P "post_attention_layernorm.weight", l))
        return DSC_ERR;
    if (rq > 0) {
        if (copy_tensor(x, G("attn_q_a.weight"), rq, d, P "self_attn.q_a_proj.weight", l) ||
            copy_tensor(x, G("attn_q_a_norm.weight"), 0, rq, P "self_attn.q_a_layernorm.weight", l) ||
            copy_tensor(x, G("attn_q_b.weight"), H * dqk, rq, P "self_attn.q_b_proj.weight", l))
            return DSC_ERR;
    } else if (copy_tensor(x, G("attn_q.weight"), H * dqk, d, P "self_attn.q_proj.weight", l)) {
        return DSC_ERR;
    }
    if (copy_tensor(x, G("attn_kv_a_mqa.weight"), rkv + dr, d, P "self_attn.kv_a_proj_with_mqa.weight", l) ||
        copy_tensor(x, G("attn_kv_a_norm.weight"), 0, rkv, P "self_attn.kv_a_layernorm.weight", l) ||
        copy_tensor(x, G("attn_output.weight"), d, H * dv, P "self_attn.o_proj.weight", l))
        return DSC_ERR;
    /* kv_b_proj split per head into k_b (transposed) and v_b, as llama.cpp's absorbed MLA wants */
    size_t nkv = (size_t)H * (dn + dv) * rkv;
    float *kvb = malloc(sizeof(float) * nkv), *kb = malloc(sizeof(float) * (size_t)H * dn * rkv),
          *vb = malloc(sizeof(float) * (size_t)H * dv * rkv);
    char hf[160];
    snprintf(hf, sizeof hf, P "self_attn.kv_b_proj.weight", l);
    int rc = !kvb || !kb || !vb ? dsc_set_error("out of memory") : read_f32(x, hf, H * (dn + dv), rkv, kvb);
    if (!rc) {
        for (int h = 0; h < H; h++)
            for (int cc = 0; cc < rkv; cc++) {
                for (int j = 0; j < dn; j++)
                    kb[((size_t)h * rkv + cc) * dn + j] = kvb[((size_t)h * (dn + dv) + j) * rkv + cc];
                for (int j = 0; j < dv; j++)
                    vb[((size_t)h * dv + j) * rkv + cc] = kvb[((size_t)h * (dn + dv) + dn + j) * rkv + cc];
            }
        int64_t kne[3] = {dn, rkv, H}, vne[3] = {rkv, dv, H};
        rc = put_tensor(x, G("attn_k_b.weight"), 3, kne, kb) || put_tensor(x, G("attn_v_b.weight"), 3, vne, vb);
    }
    free(kvb);
    free(kb);
    free(vb);
    if (rc) return DSC_ERR;
    if (!cfg_layer_is_moe(c, l)) {
        int I = c->intermediate_size;
        return copy_tensor(x, G("ffn_gate.weight"), I, d, P "mlp.gate_proj.weight", l) ||
                       copy_tensor(x, G("ffn_up.weight"), I, d, P "mlp.up_proj.weight", l) ||
                       copy_tensor(x, G("ffn_down.weight"), d, I, P "mlp.down_proj.weight", l)
                   ? DSC_ERR
                   : DSC_OK;
    }
    int E = c->n_routed_experts, Ie = c->moe_intermediate_size, S = c->n_shared_experts;
    if (copy_tensor(x, G("ffn_gate_inp.weight"), E, d, P "mlp.gate.weight", l) ||
        (c->expert_bias && copy_tensor(x, G("exp_probs_b.bias"), 0, E, P "mlp.gate.e_score_correction_bias", l)))
        return DSC_ERR;
    /* experts stacked [E, rows, cols] = GGUF {cols, rows, E} */
    static const char *const which[3] = {"gate", "up", "down"};
    size_t per = (size_t)Ie * d;
    float *st = malloc(sizeof(float) * per * E);
    if (!st) return dsc_set_error("out of memory");
    for (int k = 0; k < 3 && !rc; k++) {
        int rows = k < 2 ? Ie : d, cols = k < 2 ? d : Ie;
        for (int e = 0; e < E && !rc; e++) {
            snprintf(hf, sizeof hf, P "mlp.experts.%d.%s_proj.weight", l, e, which[k]);
            rc = read_f32(x, hf, rows, cols, st + per * e);
        }
        int64_t ne[3] = {cols, rows, E};
        snprintf(g, sizeof g, "blk.%d.ffn_%s_exps.weight", l, which[k]);
        if (!rc) rc = put_tensor(x, g, 3, ne, st);
    }
    free(st);
    if (rc) return DSC_ERR;
    return copy_tensor(x, G("ffn_gate_shexp.weight"), S * Ie, d, P "mlp.shared_experts.gate_proj.weight", l) ||
                   copy_tensor(x, G("ffn_up_shexp.weight"), S * Ie, d, P "mlp.shared_experts.up_proj.weight", l) ||
                   copy_tensor(x, G("ffn_down_shexp.weight"), d, S * Ie, P "mlp.shared_experts.down_proj.weight", l)
               ? DSC_ERR
               : DSC_OK;
#undef G
#undef P
}

/* llama.cpp's llama_ftype of the file's main type. */
static uint32_t file_type(qt_type t) {
    switch (t) {
    case QT_F16: return 1;
    case QT_Q4_0: return 2;
    case QT_Q8_0: return 7;
    case QT_BF16: return 32;
    default: return 0;
    }
}

static int write_metadata(exporter *x, const char *name) {
    const dsc_config *c = x->c;
    gguf_writer *w = x->w;
    bool moe = c->n_routed_experts > 0;
    int rc = gguf_set_string(w, "general.architecture", ARCH) || gguf_set_string(w, "general.type", "model") ||
             gguf_set_string(w, "general.name", name ? name : "dsc model") ||
             gguf_set_u32(w, "general.file_type", file_type(x->type)) ||
             gguf_set_u32(w, "general.quantization_version", 2) ||
             gguf_set_u32(w, ARCH ".block_count", (uint32_t)c->num_hidden_layers) ||
             gguf_set_u32(w, ARCH ".context_length", (uint32_t)c->max_position_embeddings) ||
             gguf_set_u32(w, ARCH ".embedding_length", (uint32_t)c->hidden_size) ||
             gguf_set_u32(w, ARCH ".feed_forward_length", (uint32_t)c->intermediate_size) ||
             gguf_set_u32(w, ARCH ".attention.head_count", (uint32_t)c->num_attention_heads) ||
             gguf_set_u32(w, ARCH ".attention.head_count_kv", 1) /* MLA runs as MQA over the latent */ ||
             gguf_set_f32(w, ARCH ".rope.freq_base", (float)c->rope_theta) ||
             gguf_set_f32(w, ARCH ".attention.layer_norm_rms_epsilon", c->rms_norm_eps) ||
             gguf_set_u32(w, ARCH ".leading_dense_block_count",
                          (uint32_t)(moe ? c->first_k_dense_replace : c->num_hidden_layers)) ||
             gguf_set_u32(w, ARCH ".vocab_size", (uint32_t)c->vocab_size) ||
             gguf_set_u32(w, ARCH ".attention.q_lora_rank", (uint32_t)c->q_lora_rank) ||
             gguf_set_u32(w, ARCH ".attention.kv_lora_rank", (uint32_t)c->kv_lora_rank) ||
             gguf_set_u32(w, ARCH ".attention.key_length", (uint32_t)(c->kv_lora_rank + c->qk_rope_head_dim)) ||
             gguf_set_u32(w, ARCH ".attention.value_length", (uint32_t)c->kv_lora_rank) ||
             gguf_set_u32(w, ARCH ".attention.key_length_mla", (uint32_t)(c->qk_nope_head_dim + c->qk_rope_head_dim)) ||
             gguf_set_u32(w, ARCH ".attention.value_length_mla", (uint32_t)c->v_head_dim) ||
             gguf_set_u32(w, ARCH ".expert_feed_forward_length",
                          (uint32_t)(moe ? c->moe_intermediate_size : c->intermediate_size)) ||
             gguf_set_u32(w, ARCH ".expert_shared_count", (uint32_t)(moe ? c->n_shared_experts : 0)) ||
             gguf_set_u32(w, ARCH ".rope.dimension_count", (uint32_t)c->qk_rope_head_dim);
    if (!rc && moe)
        rc = gguf_set_u32(w, ARCH ".expert_count", (uint32_t)c->n_routed_experts) ||
             gguf_set_u32(w, ARCH ".expert_used_count", (uint32_t)c->num_experts_per_tok) ||
             gguf_set_u32(w, ARCH ".expert_group_count", (uint32_t)c->n_group) ||
             gguf_set_u32(w, ARCH ".expert_group_used_count", (uint32_t)c->topk_group) ||
             gguf_set_f32(w, ARCH ".expert_weights_scale", c->routed_scaling_factor) ||
             gguf_set_bool(w, ARCH ".expert_weights_norm", c->norm_topk_prob) ||
             gguf_set_u32(w, ARCH ".expert_gating_func", c->scoring_func == DSC_SCORE_SIGMOID ? 2 : 1);
    if (!rc && c->yarn)
        rc = gguf_set_string(w, ARCH ".rope.scaling.type", "yarn") ||
             gguf_set_f32(w, ARCH ".rope.scaling.factor", (float)c->rope_factor) ||
             gguf_set_u32(w, ARCH ".rope.scaling.original_context_length",
                          (uint32_t)c->original_max_position_embeddings) ||
             gguf_set_f32(w, ARCH ".rope.scaling.yarn_beta_fast", (float)c->beta_fast) ||
             gguf_set_f32(w, ARCH ".rope.scaling.yarn_beta_slow", (float)c->beta_slow);
    if (!rc && c->yarn && c->mscale_all_dim != 0)
        /* the converter writes 0.1 * mscale_all_dim and llama.cpp divides by 0.1 again; its softmax
         * scale is then (1 + 0.1 mscale_all_dim ln factor)^2 / sqrt(dqk), cos/sin unscaled */
        rc = gguf_set_f32(w, ARCH ".rope.scaling.yarn_log_multiplier", (float)(0.1 * c->mscale_all_dim));
    else if (!rc && c->yarn && c->rope_factor > 1)
        /* without it llama.cpp falls back to YaRN's own attention factor 1 + 0.1 ln(factor) (on
         * cos/sin and on the softmax scale); DeepSeek's code has none then (docs/MODEL.md §5):
         * rope.scaling.attn_factor cancels it exactly */
        rc = gguf_set_f32(w, ARCH ".rope.scaling.attn_factor", (float)(1.0 / (1.0 + 0.1 * log(c->rope_factor))));
    return rc ? DSC_ERR : DSC_OK;
}

static int write_dsc_keys(exporter *x) {
    const dsc_config *c = x->c;
    gguf_writer *w = x->w;
    return gguf_set_string(w, "dsc.model_type", c->model_type) || gguf_set_f64(w, "dsc.rope_theta", c->rope_theta) ||
                   gguf_set_f64(w, "dsc.rope_factor", c->rope_factor) ||
                   gguf_set_f64(w, "dsc.beta_fast", c->beta_fast) || gguf_set_f64(w, "dsc.beta_slow", c->beta_slow) ||
                   gguf_set_f64(w, "dsc.mscale", c->mscale) || gguf_set_f64(w, "dsc.mscale_all_dim", c->mscale_all_dim) ||
                   gguf_set_f32(w, "dsc.initializer_range", c->initializer_range) ||
                   gguf_set_f32(w, "dsc.mtp_loss_weight", c->mtp_loss_weight) ||
                   gguf_set_f32(w, "dsc.aux_loss_alpha", c->aux_loss_alpha) ||
                   gguf_set_f32(w, "dsc.bias_update_speed", c->bias_update_speed) ||
                   gguf_set_i32(w, "dsc.bos_token_id", c->bos_token_id) ||
                   gguf_set_i32(w, "dsc.eos_token_id", c->eos_token_id)
               ? DSC_ERR
               : DSC_OK;
}

/* tokenizer.ggml.*: GPT-2 style byte-level BPE, every id up to the model's vocab_size. */
static int write_tokenizer(exporter *x, const dsc_tokenizer *tok) {
    int V = x->c->vocab_size, n_ids = dsc_tokenizer_vocab_size(tok);
    if (n_ids > V)
        return dsc_set_error("the tokenizer has %d ids but the model's vocab_size is %d", n_ids, V);
    const char **text = calloc((size_t)V, sizeof *text);
    size_t *len = calloc((size_t)V, sizeof *len);
    int32_t *type = calloc((size_t)V, sizeof *type);
    char *pads = malloc((size_t)V * 16 + 1);
    int32_t n_merges = dsc_tokenizer_num_merges(tok);
    char **merges = calloc((size_t)(n_merges ? n_merges : 1), sizeof *merges);
    int rc = DSC_OK;
    if (!text || !len || !type || !pads || !merges) rc = dsc_set_error("out of memory");
    for (int id = 0; id < V && !rc; id++) {
        dsc_token_kind kind;
        const char *s = id < n_ids ? dsc_tokenizer_token_text(tok, id, &len[id], &kind) : NULL;
        if (!s) { /* the converter's placeholder for an id without a token */
            char *p = pads + (size_t)id * 16;
            snprintf(p, 16, "[PAD%d]", id);
            text[id] = p;
            len[id] = strlen(p);
            type[id] = 5; /* UNUSED */
        } else {
            text[id] = s;
            type[id] = kind == DSC_TOKEN_SPECIAL ? 3 /* CONTROL */ : kind == DSC_TOKEN_ADDED ? 4 /* USER_DEFINED */ : 1;
        }
    }
    for (int32_t i = 0; i < n_merges && !rc; i++) {
        int32_t a, b;
        size_t la, lb;
        dsc_tokenizer_merge_at(tok, i, &a, &b);
        const char *sa = dsc_tokenizer_token_text(tok, a, &la, NULL), *sb = dsc_tokenizer_token_text(tok, b, &lb, NULL);
        if (!sa || !sb || !(merges[i] = malloc(la + lb + 2))) {
            rc = dsc_set_error(!sa || !sb ? "tokenizer merge %d names an unused id" : "out of memory", i);
            break;
        }
        memcpy(merges[i], sa, la);
        merges[i][la] = ' ';
        memcpy(merges[i] + la + 1, sb, lb);
        merges[i][la + lb + 1] = '\0';
    }
    dsc_special_ids sp;
    dsc_tokenizer_specials(tok, &sp);
    if (!rc)
        rc = gguf_set_string(x->w, "tokenizer.ggml.model", "gpt2") ||
             /* llama.cpp picks DeepSeek-V3's pre-tokenizer regexes by this name; dsc tokenizers use them */
             gguf_set_string(x->w, "tokenizer.ggml.pre", "deepseek-v3") ||
             gguf_set_string_array(x->w, "tokenizer.ggml.tokens", text, len, (uint64_t)V) ||
             gguf_set_array(x->w, "tokenizer.ggml.token_type", GGUF_V_INT32, type, (uint64_t)V) ||
             gguf_set_string_array(x->w, "tokenizer.ggml.merges", (const char *const *)merges, NULL, (uint64_t)n_merges) ||
             (sp.bos >= 0 && gguf_set_u32(x->w, "tokenizer.ggml.bos_token_id", (uint32_t)sp.bos)) ||
             (sp.eos >= 0 && gguf_set_u32(x->w, "tokenizer.ggml.eos_token_id", (uint32_t)sp.eos)) ||
             (sp.pad >= 0 && gguf_set_u32(x->w, "tokenizer.ggml.padding_token_id", (uint32_t)sp.pad)) ||
             gguf_set_bool(x->w, "tokenizer.ggml.add_bos_token", sp.bos >= 0) ||
             gguf_set_bool(x->w, "tokenizer.ggml.add_eos_token", false);
    for (int32_t i = 0; merges && i < n_merges; i++) free(merges[i]);
    free(merges);
    free(text);
    free(len);
    free(type);
    free(pads);
    return rc ? DSC_ERR : DSC_OK;
}

/* Why llama.cpp's deepseek2 cannot run this configuration, or NULL. */
static const char *refusal(const dsc_config *c, char *buf, size_t cap) {
    if (cfg_has_mhc(c))
        return snprintf(buf, cap, "mHC (mhc_expansion_rate %d): llama.cpp's deepseek2 has plain residual connections",
                        c->mhc_expansion_rate), buf;
    if (c->index_n_heads > 0)
        return "the DSA lightning indexer (index_n_heads > 0): llama.cpp's deepseek2 has dense attention only (it "
               "runs such models as architecture deepseek32, which dsc does not write)";
    if (c->n_routed_experts > 0 && c->n_shared_experts < 1)
        return "MoE blocks without shared experts: llama.cpp's deepseek2 requires the ffn_*_shexp tensors";
    if (c->n_routed_experts > 0 && c->n_group > 1 && !c->expert_bias)
        return "group-limited routing without the correction bias (group_limited_greedy): llama.cpp scores a group by "
               "the sum of its two best experts (noaux_tc), this model by its best one";
    return NULL;
}

dsc_status gguf_export_deepseek2(const dsc_config *cfg, const tensor_source *src, const dsc_tokenizer *tok,
                                 const gguf_export_options *o, const char *path, char *notes, size_t notes_cap) {
    if (notes && notes_cap) notes[0] = '\0';
    if (dsc_config_validate(cfg)) return dsc_prefix_error("%s", path);
    char why[160];
    const char *r = refusal(cfg, why, sizeof why);
    if (r) return dsc_set_error("%s: llama.cpp cannot run this model: %s", path, r);
    if (o->type != QT_F32 && o->type != QT_F16 && o->type != QT_BF16 && o->type != QT_Q8_0 && o->type != QT_Q4_0)
        return dsc_set_error("%s: cannot export weights as %s (expected f32, f16, bf16, q8_0 or q4_0)", path,
                             qt_name(o->type));
    exporter x = {cfg, src, NULL, o->type, notes, notes_cap, 0, ""};
    if (gguf_writer_create(&x.w)) return DSC_ERR;
    if (o->stream && gguf_writer_stream(x.w)) {
        gguf_writer_free(x.w);
        return dsc_prefix_error("%s", path);
    }
    int rc = write_metadata(&x, o->name) || (!o->no_dsc_keys && write_dsc_keys(&x)) ||
             (tok && write_tokenizer(&x, tok));
    int d = cfg->hidden_size, V = cfg->vocab_size;
    if (!rc) rc = copy_tensor(&x, "token_embd.weight", V, d, "model.embed_tokens.weight");
    for (int l = 0; l < cfg->num_hidden_layers && !rc; l++) rc = export_block(&x, l);
    if (!rc) rc = copy_tensor(&x, "output_norm.weight", 0, d, "model.norm.weight");
    if (!rc && !cfg->tie_word_embeddings) rc = copy_tensor(&x, "output.weight", V, d, "lm_head.weight");
    if (!rc) rc = gguf_writer_write(x.w, path);
    gguf_writer_free(x.w);
    if (rc) return dsc_prefix_error("%s", path);
    if (cfg->num_nextn_predict_layers > 0)
        note(&x, "%d MTP block(s) not written: llama.cpp's converter drops them for deepseek2 as well",
             cfg->num_nextn_predict_layers);
    if (x.n_f16)
        note(&x, "%d matrices stored as f16: their rows are not whole %s blocks of 32 (%s%s)", x.n_f16,
             qt_name(o->type), x.f16_names, x.n_f16 > 4 ? ", ..." : "");
    if (!tok) note(&x, "no tokenizer written: llama.cpp needs one to load the file");
    return DSC_OK;
}

int export_gguf(const char *model_dir, const char *out_path, const char *type) {
    int t = qt_parse(type);
    if (t != QT_F32 && t != QT_F16 && t != QT_BF16 && t != QT_Q8_0 && t != QT_Q4_0)
        return dsc_set_error("--type: expected f32, f16, bf16, q8_0 or q4_0, found '%s'", type);
    hfdir *h;
    if (hfdir_open(model_dir, &h)) return DSC_ERR;
    char why[160];
    const char *r = refusal(hfdir_config(h), why, sizeof why);
    if (r) {
        hfdir_close(h);
        return dsc_set_error("%s: llama.cpp cannot run this model: %s", out_path, r);
    }
    char tpath[4200];
    snprintf(tpath, sizeof tpath, "%s/tokenizer.json", model_dir);
    dsc_tokenizer *tok = NULL;
    if (dsc_tokenizer_load(tpath, &tok)) {
        hfdir_close(h);
        return dsc_prefix_error("a GGUF for llama.cpp needs the model's tokenizer");
    }
    tensor_source src;
    hfdir_source(h, &src);
    gguf_export_options o = {(qt_type)t, NULL, false, true}; /* checkpoints can be far larger than memory */
    char notes[1024];
    int rc = gguf_export_deepseek2(hfdir_config(h), &src, tok, &o, out_path, notes, sizeof notes);
    for (char *line = notes, *nl; !rc && *line; line = nl + 1) {
        if (!(nl = strchr(line, '\n'))) break;
        fprintf(stderr, "dsc export: note: %.*s\n", (int)(nl - line), line);
    }
    dsc_tokenizer_free(tok);
    hfdir_close(h);
    return rc;
}

/* ---- a GGUF file as a tensor source ---------------------------------------------------------- */

struct gguf_source {
    gguf_file *f;
    dsc_config cfg;
    void **owned;                /* kv_b matrices rebuilt in fp32 (dsc_alloc) */
    int n_owned, cap_owned;
};

static float *own_floats(gguf_source *s, size_t n) {
    if (s->n_owned == s->cap_owned) {
        int cap = s->cap_owned ? 2 * s->cap_owned : 16;
        void **q = realloc(s->owned, sizeof *q * (size_t)cap);
        if (!q) {
            dsc_set_error("out of memory");
            return NULL;
        }
        s->owned = q;
        s->cap_owned = cap;
    }
    float *p = dsc_alloc(n * sizeof(float));
    if (p) s->owned[s->n_owned++] = p;
    return p;
}

static int shape_error(const gguf_file *f, const gguf_tensor *t, const char *want) {
    char got[96] = "";
    for (int i = 0; i < t->n_dims; i++) {
        size_t l = strlen(got);
        snprintf(got + l, sizeof got - l, "%s%lld", i ? ", " : "", (long long)t->ne[i]);
    }
    return dsc_set_error("%s: tensor '%s': expected dims {%s}, found {%s}", gguf_path(f), t->name, want, got);
}

/* attn_k_b {dn, rkv, H} and attn_v_b {rkv, dv, H} of layer l as [H*rkv, dn] and [H*dv, rkv]
 * views: the engine's wk_t and wv as they are. 1 when either is missing (a legacy file with
 * attn_kv_b). */
static int kv_b_parts(gguf_source *s, int l, qtensor *kq, qtensor *vq) {
    const dsc_config *c = &s->cfg;
    int H = c->num_attention_heads, rkv = c->kv_lora_rank, dn = c->qk_nope_head_dim, dv = c->v_head_dim;
    char kn[GGUF_MAX_NAME], vn[GGUF_MAX_NAME], want[64];
    snprintf(kn, sizeof kn, "blk.%d.attn_k_b.weight", l);
    snprintf(vn, sizeof vn, "blk.%d.attn_v_b.weight", l);
    const gguf_tensor *kt = gguf_tensor_find(s->f, kn), *vt = gguf_tensor_find(s->f, vn);
    if (!kt || !vt) {
        dsc_set_error("%s: tensor '%s' is missing (and so is the legacy blk.%d.attn_kv_b.weight)", gguf_path(s->f),
                      kt ? vn : kn, l);
        return 1;
    }
    if (kt->n_dims != 3 || kt->ne[0] != dn || kt->ne[1] != rkv || kt->ne[2] != H)
        return snprintf(want, sizeof want, "%d, %d, %d", dn, rkv, H), shape_error(s->f, kt, want);
    if (vt->n_dims != 3 || vt->ne[0] != rkv || vt->ne[1] != dv || vt->ne[2] != H)
        return snprintf(want, sizeof want, "%d, %d, %d", rkv, dv, H), shape_error(s->f, vt, want);
    return gguf_tensor_view(s->f, kt, 0, (int64_t)rkv * H, kq) || gguf_tensor_view(s->f, vt, 0, (int64_t)dv * H, vq)
               ? DSC_ERR
               : DSC_OK;
}

static int source_absorbed(void *ctx, int l, qtensor *wk_t, qtensor *wv) { return kv_b_parts(ctx, l, wk_t, wv); }

/* kv_b_proj [H*(dn+dv), rkv] in fp32, rebuilt from attn_k_b and attn_v_b (exports read it). */
static int rebuild_kv_b(gguf_source *s, int l, qtensor *out) {
    const dsc_config *c = &s->cfg;
    int H = c->num_attention_heads, rkv = c->kv_lora_rank, dn = c->qk_nope_head_dim, dv = c->v_head_dim;
    qtensor kq, vq;
    if (kv_b_parts(s, l, &kq, &vq)) return DSC_ERR;
    float *kvb = own_floats(s, (size_t)H * (dn + dv) * rkv), *row = malloc(sizeof(float) * (size_t)(dn > rkv ? dn : rkv));
    if (!kvb || !row) {
        free(row);
        return kvb ? dsc_set_error("out of memory") : DSC_ERR;
    }
    for (int h = 0; h < H; h++) {
        for (int cc = 0; cc < rkv; cc++) {
            qt_dequant_row(row, &kq, h * rkv + cc);
            for (int j = 0; j < dn; j++) kvb[((size_t)h * (dn + dv) + j) * rkv + cc] = row[j];
        }
        for (int j = 0; j < dv; j++) {
            qt_dequant_row(row, &vq, h * dv + j);
            memcpy(kvb + ((size_t)h * (dn + dv) + dn + j) * rkv, row, sizeof(float) * (size_t)rkv);
        }
    }
    free(row);
    *out = (qtensor){QT_F32, H * (dn + dv), rkv, kvb, NULL};
    return DSC_OK;
}

static int source_find(void *ctx, const char *hf, qtensor *out) {
    gguf_source *s = ctx;
    char g[GGUF_MAX_NAME + 32];
    int expert, layer, kind = map_name(hf, g, sizeof g, &expert, &layer);
    if (kind < 0) return dsc_set_error("%s: tensor '%s' has no GGUF counterpart", gguf_path(s->f), hf);
    const gguf_tensor *t = gguf_tensor_find(s->f, g);
    if (kind == MAP_KV_B && !t) return rebuild_kv_b(s, layer, out);
    if (!t) return dsc_set_error("%s: tensor '%s' (for '%s') is missing", gguf_path(s->f), g, hf);
    if (kind == MAP_EXPERT) {
        int E = s->cfg.n_routed_experts;
        if (t->n_dims != 3 || t->ne[2] != E) {
            char want[64];
            snprintf(want, sizeof want, "*, *, %d", E);
            return shape_error(s->f, t, want);
        }
        if (expert >= E)
            return dsc_set_error("%s: tensor '%s': expert %d of %d", gguf_path(s->f), hf, expert, E);
        return gguf_tensor_view(s->f, t, (int64_t)expert * t->ne[1], t->ne[1], out);
    }
    if (t->n_dims > 2) return shape_error(s->f, t, "cols, rows");
    return gguf_tensor_view(s->f, t, 0, t->ne[1], out);
}

static dsc_status source_over(gguf_file *f, gguf_source **out) {
    *out = NULL;
    gguf_source *s = calloc(1, sizeof *s);
    if (!s) {
        gguf_close(f);
        return dsc_set_error("out of memory");
    }
    s->f = f;
    if (gguf_deepseek_config(f, true, &s->cfg)) {
        gguf_source_close(s);
        return DSC_ERR;
    }
    *out = s;
    return DSC_OK;
}

dsc_status gguf_source_open(const char *path, gguf_source **out) {
    gguf_file *f;
    *out = NULL;
    if (gguf_open(path, &f)) return DSC_ERR;
    return source_over(f, out);
}

dsc_status gguf_source_open_memory(const void *data, size_t size, const char *name, gguf_source **out) {
    gguf_file *f;
    *out = NULL;
    if (gguf_open_memory(data, size, name, &f)) return DSC_ERR;
    return source_over(f, out);
}

void gguf_source_close(gguf_source *s) {
    if (!s) return;
    for (int i = 0; i < s->n_owned; i++) dsc_free(s->owned[i]);
    free(s->owned);
    gguf_close(s->f);
    free(s);
}

const dsc_config *gguf_source_config(const gguf_source *s) { return &s->cfg; }
const gguf_file *gguf_source_file(const gguf_source *s) { return s->f; }

void gguf_source_tensors(gguf_source *s, tensor_source *out) {
    out->find = source_find;
    out->ctx = s;
    out->what = gguf_path(s->f);
    out->find_absorbed = source_absorbed;
}

/* Hands buffer p (dsc_alloc) to w, which frees it in iweights_free. */
static int give(iweights *w, void *p) {
    if (w->n_owned == w->cap_owned) {
        int cap = w->cap_owned ? 2 * w->cap_owned : 64;
        void **q = realloc(w->owned, sizeof *q * (size_t)cap);
        if (!q) return dsc_set_error("out of memory");
        w->owned = q;
        w->cap_owned = cap;
    }
    w->owned[w->n_owned++] = p;
    return DSC_OK;
}

dsc_status gguf_load_iweights(const char *path, iweights *w) {
    memset(w, 0, sizeof *w);
    dsc_mapped_file map;
    if (dsc_map_file(path, &map)) return DSC_ERR;
    unsigned char *copy = dsc_alloc(map.size);
    if (!copy) {
        dsc_unmap_file(&map);
        return DSC_ERR;
    }
    memcpy(copy, map.data, map.size);
    size_t size = map.size;
    dsc_unmap_file(&map);
    gguf_file *f;
    gguf_source *s;
    if (gguf_open_memory(copy, size, path, &f) || source_over(f, &s)) {
        dsc_free(copy);
        return DSC_ERR;
    }
    tensor_source src;
    gguf_source_tensors(s, &src);
    int rc = iweights_build(w, &s->cfg, &src, false);
    /* the views point into copy: the weights own it from here, and the rebuilt kv_b matrices too */
    bool given = false;
    if (!rc) {
        if (give(w, copy)) rc = DSC_ERR;
        else given = true;
    }
    if (!given) dsc_free(copy);
    for (int i = 0; i < s->n_owned; i++)
        if (rc || give(w, s->owned[i])) {
            rc = DSC_ERR;
            dsc_free(s->owned[i]);
        }
    s->n_owned = 0;
    gguf_source_close(s);
    if (rc && w->blocks) iweights_free(w);
    return rc;
}
