/* gguf_config.c: the configuration of a deepseek2 GGUF from its metadata (see gguf.h): the
 * deepseek2.* keys llama.cpp reads, turned into the Hugging Face config fields and parsed by the
 * config.json reader (so defaults and validation are the same); dsc.* keys, where present, give
 * the values deepseek2.* cannot hold exactly. Kept apart from gguf_deepseek.c so that the fuzz
 * target can reach it with the reader alone. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "io/gguf.h"
#include "model/config.h"

#define ARCH "deepseek2"

typedef struct {
    const gguf_file *f;
    json_t *o;
    int rc;
} cfg_reader;

/* Copies integer key (ARCH-prefixed unless it contains a dot-prefixed namespace) to field; a
 * missing key takes def when def >= 0, else is an error. */
static void cint(cfg_reader *r, const char *key, const char *field, int64_t def) {
    if (r->rc) return;
    int64_t v = def;
    if (gguf_kv_find(r->f, key)) {
        if ((r->rc = gguf_get_int(r->f, key, &v))) return;
        if (v < 0 || v > (1 << 30)) {
            r->rc = dsc_set_error("%s: key '%s': value %lld out of range", gguf_path(r->f), key, (long long)v);
            return;
        }
    } else if (def < 0) {
        r->rc = dsc_set_error("%s: key '%s' is missing", gguf_path(r->f), key);
        return;
    }
    json_object_set_new(r->o, field, json_integer(v));
}

static double cfloat(cfg_reader *r, const char *key, double def, bool required) {
    if (r->rc) return def;
    double v = def;
    if (gguf_kv_find(r->f, key)) r->rc = gguf_get_float(r->f, key, &v);
    else if (required) r->rc = dsc_set_error("%s: key '%s' is missing", gguf_path(r->f), key);
    return v;
}

static int64_t geti(cfg_reader *r, const char *key, int64_t def) {
    int64_t v = def;
    if (!r->rc && gguf_kv_find(r->f, key)) r->rc = gguf_get_int(r->f, key, &v);
    return v;
}

dsc_status gguf_deepseek_config(const gguf_file *f, bool use_dsc_keys, dsc_config *cfg) {
    const char *s;
    size_t len;
    if (gguf_get_string(f, "general.architecture", &s, &len)) return DSC_ERR;
    if (len != strlen(ARCH) || memcmp(s, ARCH, len))
        return dsc_set_error("%s: architecture '%.*s' is not deepseek2", gguf_path(f), (int)(len < 64 ? len : 64), s);
    cfg_reader r = {f, json_object(), DSC_OK};
    json_t *o = r.o;
    if (!o) return dsc_set_error("out of memory");
    int64_t gating = geti(&r, ARCH ".expert_gating_func", 1), n_expert = geti(&r, ARCH ".expert_count", 0);
    int64_t blocks = geti(&r, ARCH ".block_count", -1), nextn = geti(&r, ARCH ".nextn_predict_layers", 0);
    if (!r.rc && blocks < 1) r.rc = dsc_set_error("%s: key '" ARCH ".block_count' is missing or < 1", gguf_path(f));
    if (!r.rc && (nextn < 0 || nextn >= blocks))
        r.rc = dsc_set_error("%s: key '" ARCH ".nextn_predict_layers': %lld of %lld blocks", gguf_path(f),
                             (long long)nextn, (long long)blocks);
    int64_t L = blocks - nextn;
    /* MTP blocks count only when their tensors are there (a trunk-only file has none) */
    char name[GGUF_MAX_NAME];
    snprintf(name, sizeof name, "blk.%lld.nextn.eh_proj.weight", (long long)L);
    if (nextn > 0 && !gguf_tensor_find(f, name)) nextn = 0;
    char mt[32];
    snprintf(mt, sizeof mt, "%s", gating == 2 ? "deepseek_v3" : "deepseek_v2");
    if (!r.rc && use_dsc_keys && gguf_kv_find(f, "dsc.model_type")) {
        r.rc = gguf_get_string(f, "dsc.model_type", &s, &len);
        if (!r.rc) snprintf(mt, sizeof mt, "%.*s", (int)(len < 31 ? len : 31), s);
    }
    json_object_set_new(o, "model_type", json_string(mt));
    json_object_set_new(o, "num_hidden_layers", json_integer(L));
    json_object_set_new(o, "num_nextn_predict_layers", json_integer(nextn));
    cint(&r, ARCH ".embedding_length", "hidden_size", -1);
    cint(&r, ARCH ".feed_forward_length", "intermediate_size", 0);
    cint(&r, ARCH ".attention.head_count", "num_attention_heads", -1);
    cint(&r, ARCH ".context_length", "max_position_embeddings", -1);
    cint(&r, ARCH ".attention.q_lora_rank", "q_lora_rank", 0);
    cint(&r, ARCH ".attention.kv_lora_rank", "kv_lora_rank", -1);
    int64_t dr = geti(&r, ARCH ".rope.dimension_count", -1);
    int64_t dqk = geti(&r, ARCH ".attention.key_length_mla", -1), dv = geti(&r, ARCH ".attention.value_length_mla", -1);
    if (dqk < 0) dqk = geti(&r, ARCH ".attention.key_length", -1); /* legacy files with attn_kv_b */
    if (dv < 0) dv = geti(&r, ARCH ".attention.value_length", -1);
    if (!r.rc && (dr < 0 || dqk < 0 || dv < 0))
        r.rc = dsc_set_error("%s: the head sizes (rope.dimension_count, attention.key_length_mla, "
                             "attention.value_length_mla) are missing", gguf_path(f));
    json_object_set_new(o, "qk_rope_head_dim", json_integer(dr));
    json_object_set_new(o, "qk_nope_head_dim", json_integer(dqk - dr));
    json_object_set_new(o, "v_head_dim", json_integer(dv));
    const gguf_tensor *emb = gguf_tensor_find(f, "token_embd.weight");
    if (!r.rc && !emb) r.rc = dsc_set_error("%s: tensor 'token_embd.weight' is missing", gguf_path(f));
    if (!r.rc) json_object_set_new(o, "vocab_size", json_integer(geti(&r, ARCH ".vocab_size", emb->ne[1])));
    json_object_set_new(o, "tie_word_embeddings", json_boolean(!gguf_tensor_find(f, "output.weight")));
    json_object_set_new(o, "rms_norm_eps", json_real(cfloat(&r, ARCH ".attention.layer_norm_rms_epsilon", 1e-6, true)));
    double theta = cfloat(&r, ARCH ".rope.freq_base", 10000.0, false);
    if (n_expert > 0) {
        int64_t lead = geti(&r, ARCH ".leading_dense_block_count", 0);
        json_object_set_new(o, "first_k_dense_replace", json_integer(lead));
        json_object_set_new(o, "n_routed_experts", json_integer(n_expert));
        cint(&r, ARCH ".expert_used_count", "num_experts_per_tok", -1);
        cint(&r, ARCH ".expert_shared_count", "n_shared_experts", 0);
        cint(&r, ARCH ".expert_feed_forward_length", "moe_intermediate_size", -1);
        int64_t groups = geti(&r, ARCH ".expert_group_count", 1);
        json_object_set_new(o, "n_group", json_integer(groups));
        cint(&r, ARCH ".expert_group_used_count", "topk_group", 1);
        json_object_set_new(o, "routed_scaling_factor", json_real(cfloat(&r, ARCH ".expert_weights_scale", 1.0, false)));
        bool norm = false;
        if (!r.rc && gguf_kv_find(f, ARCH ".expert_weights_norm")) r.rc = gguf_get_bool(f, ARCH ".expert_weights_norm", &norm);
        json_object_set_new(o, "norm_topk_prob", json_boolean(norm));
        json_object_set_new(o, "scoring_func", json_string(gating == 2 ? "sigmoid" : "softmax"));
        snprintf(name, sizeof name, "blk.%lld.exp_probs_b.bias", (long long)(lead < L ? lead : 0));
        json_object_set_new(o, "topk_method", json_string(gguf_tensor_find(f, name) ? "noaux_tc"
                                                          : groups > 1 ? "group_limited_greedy" : "greedy"));
    } else {
        json_object_set_new(o, "first_k_dense_replace", json_integer(L));
    }
    if (gguf_kv_find(f, ARCH ".rope.scaling.type")) {
        if (!r.rc) r.rc = gguf_get_string(f, ARCH ".rope.scaling.type", &s, &len);
        if (!r.rc && !(len == 4 && !memcmp(s, "yarn", 4)) && !(len == 4 && !memcmp(s, "none", 4)))
            r.rc = dsc_set_error("%s: key '" ARCH ".rope.scaling.type': only yarn is supported, found '%.*s'",
                                 gguf_path(f), (int)(len < 32 ? len : 32), s);
        if (!r.rc && len == 4 && !memcmp(s, "yarn", 4)) {
            json_t *rs = json_object();
            /* 0.1 * mscale_all_dim was stored as a float32: float precision is all there is */
            double mall = (float)(cfloat(&r, ARCH ".rope.scaling.yarn_log_multiplier", 0.0, false) / 0.1);
            /* an attention factor is only what the exporter writes when mscale_all_dim is 0: the
             * one that cancels YaRN's default factor */
            double factor = cfloat(&r, ARCH ".rope.scaling.factor", 1.0, true);
            double af = cfloat(&r, ARCH ".rope.scaling.attn_factor", 1.0, false);
            double want = mall == 0 && factor > 1 ? 1.0 / (1.0 + 0.1 * log(factor)) : 1.0;
            if (!r.rc && fabs(af - want) > 1e-6 * want)
                r.rc = dsc_set_error("%s: key '" ARCH ".rope.scaling.attn_factor': %g is not supported (expected %g)",
                                     gguf_path(f), af, want);
            json_object_set_new(rs, "type", json_string("yarn"));
            json_object_set_new(rs, "factor", json_real(cfloat(&r, ARCH ".rope.scaling.factor", 1.0, true)));
            json_object_set_new(rs, "original_max_position_embeddings",
                                json_integer(geti(&r, ARCH ".rope.scaling.original_context_length", 4096)));
            json_object_set_new(rs, "beta_fast", json_real(cfloat(&r, ARCH ".rope.scaling.yarn_beta_fast", 32.0, false)));
            json_object_set_new(rs, "beta_slow", json_real(cfloat(&r, ARCH ".rope.scaling.yarn_beta_slow", 1.0, false)));
            json_object_set_new(rs, "mscale_all_dim", json_real(mall));
            json_object_set_new(rs, "mscale", json_real(mall)); /* never scales cos/sin in dsc (docs/MODEL.md §1) */
            if (use_dsc_keys) {
                static const char *const exact[] = {"factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim"};
                static const char *const keys[] = {"dsc.rope_factor", "dsc.beta_fast", "dsc.beta_slow", "dsc.mscale",
                                                   "dsc.mscale_all_dim"};
                for (int i = 0; i < 5; i++)
                    if (gguf_kv_find(f, keys[i])) json_object_set_new(rs, exact[i], json_real(cfloat(&r, keys[i], 0, true)));
            }
            json_object_set_new(o, "rope_scaling", rs);
        }
    }
    if (use_dsc_keys && gguf_kv_find(f, "dsc.rope_theta")) theta = cfloat(&r, "dsc.rope_theta", theta, true);
    json_object_set_new(o, "rope_theta", json_real(theta));
    /* token ids: the tokenizer's, or dsc's own */
    int64_t bos = geti(&r, "tokenizer.ggml.bos_token_id", 0), eos = geti(&r, "tokenizer.ggml.eos_token_id", 1);
    if (use_dsc_keys) {
        bos = geti(&r, "dsc.bos_token_id", bos);
        eos = geti(&r, "dsc.eos_token_id", eos);
        static const char *const fl[] = {"initializer_range", "mtp_loss_weight", "aux_loss_alpha", "bias_update_speed"};
        for (int i = 0; i < 4; i++) {
            char key[64];
            snprintf(key, sizeof key, "dsc.%s", fl[i]);
            if (gguf_kv_find(f, key)) json_object_set_new(o, fl[i], json_real(cfloat(&r, key, 0, true)));
        }
    }
    json_object_set_new(o, "bos_token_id", json_integer(bos));
    json_object_set_new(o, "eos_token_id", json_integer(eos));
    int rc = r.rc;
    if (!rc) {
        char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
        if (!text) rc = dsc_set_error("out of memory");
        else rc = config_parse_text(text, strlen(text), gguf_path(f), cfg);
        free(text);
    }
    json_decref(o);
    return rc;
}
