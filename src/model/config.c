/* config.c: model configuration: named presets, Hugging Face config.json reading and writing,
 * validation with field-naming errors, and shape arithmetic (parameters, FLOPs, KV-cache bytes).
 * The meaning of every field is in docs/MODEL.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "base/error.h"
#include "base/fileio.h"
#include "model/config.h"

/* ----------------------------------------------------------------------------------------------
 * Presets
 * -------------------------------------------------------------------------------------------- */

static void set_common_defaults(dsc_config *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->model_type, "deepseek_v3");
    c->routed_scaling_factor = 1.0f;
    c->scoring_func = DSC_SCORE_SOFTMAX;
    c->n_group = 1;
    c->topk_group = 1;
    c->rope_theta = 10000.0;
    c->rope_factor = 1.0;
    c->beta_fast = 32.0;
    c->beta_slow = 1.0;
    c->mscale = 1.0;
    c->mscale_all_dim = 0.0;
    c->original_max_position_embeddings = 4096;
    c->rms_norm_eps = 1e-6f;
    c->mhc_sinkhorn_iters = 20;
    c->mhc_rms_eps = 1e-20f;
    c->mhc_alpha_init = 0.01f;
    c->mhc_res_diag_init = 4.0f;
    c->mhc_phi_init_std = 0.02f;
    c->initializer_range = 0.006f;
    c->mtp_loss_weight = 0.3f;
    c->aux_loss_alpha = 0.0001f;
    c->bias_update_speed = 0.001f;
    c->bos_token_id = 0;
    c->eos_token_id = 1;
}

static void preset_v3_shapes(dsc_config *c) {
    c->vocab_size = 129280;
    c->hidden_size = 7168;
    c->intermediate_size = 18432;
    c->moe_intermediate_size = 2048;
    c->num_hidden_layers = 61;
    c->first_k_dense_replace = 3;
    c->num_attention_heads = 128;
    c->n_routed_experts = 256;
    c->n_shared_experts = 1;
    c->num_experts_per_tok = 8;
    c->n_group = 8;
    c->topk_group = 4;
    c->routed_scaling_factor = 2.5f;
    c->scoring_func = DSC_SCORE_SIGMOID;
    c->norm_topk_prob = true;
    c->expert_bias = true;
    c->q_lora_rank = 1536;
    c->kv_lora_rank = 512;
    c->qk_nope_head_dim = 128;
    c->qk_rope_head_dim = 64;
    c->v_head_dim = 128;
    c->max_position_embeddings = 163840;
    c->yarn = true;
    c->rope_factor = 40;
    c->mscale = 1.0;
    c->mscale_all_dim = 1.0;
    c->original_max_position_embeddings = 4096;
    c->num_nextn_predict_layers = 1;
}

static const char *const preset_names[] = {"tiny", "small", "deepseek-v3", "deepseek-v3.2",
                                           "deepseek-v2-lite", NULL};

const char *const *dsc_config_preset_names(void) { return preset_names; }

dsc_status dsc_config_preset(const char *name, dsc_config *c) {
    set_common_defaults(c);
    if (!strcmp(name, "tiny")) {
        /* Every feature on, every dimension tiny: the preset of the tests. */
        strcpy(c->model_type, "dsc");
        c->vocab_size = 97;
        c->hidden_size = 32;
        c->intermediate_size = 64;
        c->moe_intermediate_size = 16;
        c->num_hidden_layers = 3;
        c->first_k_dense_replace = 1;
        c->num_attention_heads = 2;
        c->n_routed_experts = 8;
        c->n_shared_experts = 1;
        c->num_experts_per_tok = 2;
        c->n_group = 4;
        c->topk_group = 2;
        c->routed_scaling_factor = 2.5f;
        c->scoring_func = DSC_SCORE_SIGMOID;
        c->norm_topk_prob = true;
        c->expert_bias = true;
        c->q_lora_rank = 16;
        c->kv_lora_rank = 16;
        c->qk_nope_head_dim = 8;
        c->qk_rope_head_dim = 4;
        c->v_head_dim = 8;
        c->max_position_embeddings = 256;
        c->num_nextn_predict_layers = 1;
        c->index_n_heads = 2;
        c->index_head_dim = 8;
        c->index_topk = 8;
        c->mhc_expansion_rate = 4;
        c->initializer_range = 0.02f;
        return DSC_OK;
    }
    if (!strcmp(name, "small")) {
        /* The model we train on 2 CPU cores: ~16M parameters, 16 routed experts, mHC n=4, MTP 1,
         * DSA indexer (dense attention while the context fits index_topk). */
        strcpy(c->model_type, "dsc");
        c->vocab_size = 8192;
        c->hidden_size = 256;
        c->intermediate_size = 768;
        c->moe_intermediate_size = 128;
        c->num_hidden_layers = 6;
        c->first_k_dense_replace = 1;
        c->num_attention_heads = 4;
        c->n_routed_experts = 16;
        c->n_shared_experts = 1;
        c->num_experts_per_tok = 2;
        c->n_group = 4;
        c->topk_group = 2;
        c->routed_scaling_factor = 2.5f;
        c->scoring_func = DSC_SCORE_SIGMOID;
        c->norm_topk_prob = true;
        c->expert_bias = true;
        c->q_lora_rank = 128;
        c->kv_lora_rank = 64;
        c->qk_nope_head_dim = 32;
        c->qk_rope_head_dim = 16;
        c->v_head_dim = 32;
        c->max_position_embeddings = 2048;
        c->num_nextn_predict_layers = 1;
        c->index_n_heads = 4;
        c->index_head_dim = 32;
        c->index_topk = 512;
        c->mhc_expansion_rate = 4;
        c->initializer_range = 0.02f;
        /* DeepSeek's gamma = 0.001 suits runs of many thousand steps; a CPU run of about a thousand
         * steps needs the bias to move ten times faster to balance the experts in time. */
        c->bias_update_speed = 0.01f;
        return DSC_OK;
    }
    if (!strcmp(name, "deepseek-v3")) {
        preset_v3_shapes(c);
        return DSC_OK;
    }
    if (!strcmp(name, "deepseek-v3.2")) {
        preset_v3_shapes(c);
        strcpy(c->model_type, "deepseek_v32");
        c->index_n_heads = 64;
        c->index_head_dim = 128;
        c->index_topk = 2048;
        return DSC_OK;
    }
    if (!strcmp(name, "deepseek-v2-lite")) {
        strcpy(c->model_type, "deepseek_v2");
        c->vocab_size = 102400;
        c->hidden_size = 2048;
        c->intermediate_size = 10944;
        c->moe_intermediate_size = 1408;
        c->num_hidden_layers = 27;
        c->first_k_dense_replace = 1;
        c->num_attention_heads = 16;
        c->n_routed_experts = 64;
        c->n_shared_experts = 2;
        c->num_experts_per_tok = 6;
        c->routed_scaling_factor = 1.0f;
        c->scoring_func = DSC_SCORE_SOFTMAX;
        c->norm_topk_prob = false;
        c->expert_bias = false;
        c->q_lora_rank = 0;
        c->kv_lora_rank = 512;
        c->qk_nope_head_dim = 128;
        c->qk_rope_head_dim = 64;
        c->v_head_dim = 128;
        c->max_position_embeddings = 163840;
        c->yarn = true;
        c->rope_factor = 40;
        c->mscale = 0.707;
        c->mscale_all_dim = 0.707;
        c->original_max_position_embeddings = 4096;
        c->bos_token_id = 100000;
        c->eos_token_id = 100001;
        return DSC_OK;
    }
    return dsc_set_error("unknown preset '%s' (expected tiny, small, deepseek-v3, deepseek-v3.2 or "
                         "deepseek-v2-lite)", name);
}

/* ----------------------------------------------------------------------------------------------
 * Validation
 * -------------------------------------------------------------------------------------------- */

#define REQUIRE(cond, ...)                                                                        \
    do {                                                                                          \
        if (!(cond)) return dsc_set_error(__VA_ARGS__);                                           \
    } while (0)

#define POSITIVE(field) REQUIRE(c->field > 0, "field '" #field "': expected a positive value, found %g", (double)c->field)
#define IN_RANGE(field, lo, hi)                                                                   \
    REQUIRE(c->field >= (lo) && c->field <= (hi), "field '" #field "': expected %g..%g, found %g", \
            (double)(lo), (double)(hi), (double)c->field)

dsc_status dsc_config_validate(const dsc_config *c) {
    static const char *types[] = {"deepseek_v2", "deepseek_v3", "deepseek_v32", "dsc"};
    bool type_ok = false;
    for (int i = 0; i < 4; i++) type_ok |= !strcmp(c->model_type, types[i]);
    REQUIRE(type_ok, "field 'model_type': expected deepseek_v2, deepseek_v3, deepseek_v32 or dsc, found '%s'",
            c->model_type);
    IN_RANGE(vocab_size, 2, 1 << 24);
    IN_RANGE(hidden_size, 1, 1 << 16);
    IN_RANGE(num_hidden_layers, 1, 1024);
    IN_RANGE(num_attention_heads, 1, 4096);
    IN_RANGE(first_k_dense_replace, 0, c->num_hidden_layers);
    IN_RANGE(kv_lora_rank, 1, 1 << 16);
    IN_RANGE(q_lora_rank, 0, 1 << 16);
    IN_RANGE(qk_nope_head_dim, 0, 4096);
    IN_RANGE(qk_rope_head_dim, 2, 4096);
    REQUIRE(c->qk_rope_head_dim % 2 == 0, "field 'qk_rope_head_dim': expected an even number, found %d",
            c->qk_rope_head_dim);
    IN_RANGE(v_head_dim, 1, 4096);
    IN_RANGE(max_position_embeddings, 1, 1 << 24);
    REQUIRE(c->rope_theta > 1.0 && isfinite(c->rope_theta), "field 'rope_theta': expected > 1, found %g", c->rope_theta);
    REQUIRE(c->rms_norm_eps > 0 && c->rms_norm_eps < 1, "field 'rms_norm_eps': expected 0 < eps < 1, found %g",
            (double)c->rms_norm_eps);
    IN_RANGE(num_nextn_predict_layers, 0, 16);
    bool has_dense = c->first_k_dense_replace > 0 || c->n_routed_experts == 0;
    if (has_dense) IN_RANGE(intermediate_size, 1, 1 << 20);
    IN_RANGE(n_routed_experts, 0, 1 << 16);
    if (c->n_routed_experts > 0) {
        IN_RANGE(moe_intermediate_size, 1, 1 << 20);
        IN_RANGE(n_shared_experts, 0, 64);
        IN_RANGE(num_experts_per_tok, 1, c->n_routed_experts);
        IN_RANGE(n_group, 1, c->n_routed_experts);
        REQUIRE(c->n_routed_experts % c->n_group == 0,
                "field 'n_group': %d does not divide n_routed_experts %d", c->n_group, c->n_routed_experts);
        IN_RANGE(topk_group, 1, c->n_group);
        int per_group = c->n_routed_experts / c->n_group;
        REQUIRE(c->num_experts_per_tok <= c->topk_group * per_group,
                "field 'num_experts_per_tok': %d is more than the %d experts in topk_group=%d groups",
                c->num_experts_per_tok, c->topk_group * per_group, c->topk_group);
        REQUIRE(!(c->expert_bias && c->n_group > 1 && per_group < 2),
                "field 'n_group': group scores use the top-2 experts of a group, but groups have %d", per_group);
        REQUIRE(c->routed_scaling_factor > 0 && isfinite(c->routed_scaling_factor),
                "field 'routed_scaling_factor': expected > 0, found %g", (double)c->routed_scaling_factor);
    }
    if (c->yarn) {
        REQUIRE(c->rope_factor >= 1 && isfinite(c->rope_factor),
                "field 'rope_scaling.factor': expected >= 1, found %g", c->rope_factor);
        REQUIRE(c->beta_fast > 0 && c->beta_slow > 0 && c->beta_fast >= c->beta_slow,
                "field 'rope_scaling.beta_fast/beta_slow': expected beta_fast >= beta_slow > 0, found %g/%g",
                c->beta_fast, c->beta_slow);
        REQUIRE(c->original_max_position_embeddings > 0,
                "field 'rope_scaling.original_max_position_embeddings': expected > 0, found %d",
                c->original_max_position_embeddings);
        REQUIRE(c->mscale_all_dim >= 0 && c->mscale >= 0,
                "field 'rope_scaling.mscale': expected >= 0, found %g", c->mscale);
    }
    if (c->index_n_heads > 0) {
        REQUIRE(c->q_lora_rank > 0, "field 'index_n_heads': the DSA indexer reads the query latent, "
                                    "so q_lora_rank must be > 0 (found 0)");
        IN_RANGE(index_head_dim, c->qk_rope_head_dim, 1 << 14);
        IN_RANGE(index_topk, 1, 1 << 24);
    } else {
        REQUIRE(strcmp(c->model_type, "deepseek_v32") != 0,
                "field 'index_n_heads': model_type deepseek_v32 needs the indexer fields");
    }
    IN_RANGE(mhc_expansion_rate, 0, 16);
    if (c->mhc_expansion_rate > 1) {
        IN_RANGE(mhc_sinkhorn_iters, 1, 1000);
        REQUIRE(c->mhc_rms_eps > 0, "field 'mhc_rms_eps': expected > 0, found %g", (double)c->mhc_rms_eps);
    }
    REQUIRE(c->initializer_range >= 0 && c->initializer_range < 10,
            "field 'initializer_range': expected 0..10, found %g", (double)c->initializer_range);
    REQUIRE(c->mtp_loss_weight >= 0, "field 'mtp_loss_weight': expected >= 0, found %g", (double)c->mtp_loss_weight);
    REQUIRE(c->aux_loss_alpha >= 0, "field 'aux_loss_alpha': expected >= 0, found %g", (double)c->aux_loss_alpha);
    REQUIRE(c->bias_update_speed >= 0, "field 'bias_update_speed': expected >= 0, found %g",
            (double)c->bias_update_speed);
    return DSC_OK;
}

/* ----------------------------------------------------------------------------------------------
 * config.json reading
 * -------------------------------------------------------------------------------------------- */

typedef struct {
    json_t *root;
    const char *path;
    const char *prefix; /* "" at the top level, "rope_scaling." inside that object */
} reader;

/* Each getter: absent (or null where allowed) keeps the default; a value of the wrong type or
 * range is an error naming the field. */
static int get_int(reader *r, json_t *obj, const char *key, int *out, bool null_is_zero) {
    json_t *v = json_object_get(obj, key);
    if (!v) return DSC_OK;
    if (json_is_null(v) && null_is_zero) {
        *out = 0;
        return DSC_OK;
    }
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x < -2147483647LL || x > 2147483647LL)
            return dsc_set_error("%s: field '%s%s': %lld does not fit an int", r->path, r->prefix, key,
                                 (long long)x);
        *out = (int)x;
        return DSC_OK;
    }
    if (json_is_real(v)) {
        double x = json_real_value(v);
        if (x == floor(x) && fabs(x) < 2147483647.0) {
            *out = (int)x;
            return DSC_OK;
        }
    }
    return dsc_set_error("%s: field '%s%s': expected an integer", r->path, r->prefix, key);
}

static int get_double(reader *r, json_t *obj, const char *key, double *out) {
    json_t *v = json_object_get(obj, key);
    if (!v) return DSC_OK;
    if (!json_is_number(v)) return dsc_set_error("%s: field '%s%s': expected a number", r->path, r->prefix, key);
    *out = json_number_value(v);
    if (!isfinite(*out))
        return dsc_set_error("%s: field '%s%s': expected a finite number", r->path, r->prefix, key);
    return DSC_OK;
}

static int get_float(reader *r, json_t *obj, const char *key, float *out) {
    double d = *out;
    if (get_double(r, obj, key, &d)) return DSC_ERR;
    *out = (float)d;
    return DSC_OK;
}

static int get_bool(reader *r, json_t *obj, const char *key, bool *out) {
    json_t *v = json_object_get(obj, key);
    if (!v) return DSC_OK;
    if (!json_is_boolean(v))
        return dsc_set_error("%s: field '%s%s': expected true or false", r->path, r->prefix, key);
    *out = json_is_true(v);
    return DSC_OK;
}

/* Returns the string value or NULL if absent/null; error if present with another type. */
static int get_string(reader *r, json_t *obj, const char *key, const char **out) {
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v)) return DSC_OK;
    if (!json_is_string(v)) return dsc_set_error("%s: field '%s%s': expected a string", r->path, r->prefix, key);
    *out = json_string_value(v);
    return DSC_OK;
}

static int require_present(reader *r, const char *key) {
    if (!json_object_get(r->root, key)) return dsc_set_error("%s: field '%s%s' is missing", r->path, r->prefix, key);
    return DSC_OK;
}

static int parse_config(reader *r, dsc_config *c) {
    json_t *o = r->root;
    const char *s;
    set_common_defaults(c);
    /* Values that have no sensible default must be present. */
    static const char *required[] = {"model_type", "vocab_size", "hidden_size", "num_hidden_layers",
                                     "num_attention_heads", "kv_lora_rank", "qk_nope_head_dim",
                                     "qk_rope_head_dim", "v_head_dim", NULL};
    for (int i = 0; required[i]; i++)
        if (require_present(r, required[i])) return DSC_ERR;
    if (get_string(r, o, "model_type", &s)) return DSC_ERR;
    if (!s) return dsc_set_error("%s: field 'model_type' is null", r->path);
    if (strlen(s) >= sizeof c->model_type)
        return dsc_set_error("%s: field 'model_type': unknown model type '%.40s'", r->path, s);
    strcpy(c->model_type, s);
    c->max_position_embeddings = 4096;
    if (get_int(r, o, "vocab_size", &c->vocab_size, false) || get_int(r, o, "hidden_size", &c->hidden_size, false) ||
        get_int(r, o, "intermediate_size", &c->intermediate_size, false) ||
        get_int(r, o, "moe_intermediate_size", &c->moe_intermediate_size, true) ||
        get_int(r, o, "num_hidden_layers", &c->num_hidden_layers, false) ||
        get_int(r, o, "first_k_dense_replace", &c->first_k_dense_replace, true) ||
        get_int(r, o, "num_attention_heads", &c->num_attention_heads, false) ||
        get_int(r, o, "n_routed_experts", &c->n_routed_experts, true) ||
        get_int(r, o, "n_shared_experts", &c->n_shared_experts, true) ||
        get_int(r, o, "num_experts_per_tok", &c->num_experts_per_tok, true) ||
        get_int(r, o, "n_group", &c->n_group, false) || get_int(r, o, "topk_group", &c->topk_group, false) ||
        get_float(r, o, "routed_scaling_factor", &c->routed_scaling_factor) ||
        get_bool(r, o, "norm_topk_prob", &c->norm_topk_prob) ||
        get_int(r, o, "q_lora_rank", &c->q_lora_rank, true) || get_int(r, o, "kv_lora_rank", &c->kv_lora_rank, false) ||
        get_int(r, o, "qk_nope_head_dim", &c->qk_nope_head_dim, false) ||
        get_int(r, o, "qk_rope_head_dim", &c->qk_rope_head_dim, false) ||
        get_int(r, o, "v_head_dim", &c->v_head_dim, false) || get_double(r, o, "rope_theta", &c->rope_theta) ||
        get_int(r, o, "max_position_embeddings", &c->max_position_embeddings, false) ||
        get_float(r, o, "rms_norm_eps", &c->rms_norm_eps) ||
        get_bool(r, o, "tie_word_embeddings", &c->tie_word_embeddings) ||
        get_int(r, o, "num_nextn_predict_layers", &c->num_nextn_predict_layers, true) ||
        get_int(r, o, "index_n_heads", &c->index_n_heads, true) ||
        get_int(r, o, "index_head_dim", &c->index_head_dim, true) ||
        get_int(r, o, "index_topk", &c->index_topk, true) ||
        get_bool(r, o, "index_rope_interleaved", &c->index_rope_interleaved) ||
        get_int(r, o, "mhc_expansion_rate", &c->mhc_expansion_rate, true) ||
        get_int(r, o, "mhc_sinkhorn_iters", &c->mhc_sinkhorn_iters, false) ||
        get_float(r, o, "mhc_rms_eps", &c->mhc_rms_eps) || get_float(r, o, "mhc_alpha_init", &c->mhc_alpha_init) ||
        get_float(r, o, "mhc_res_diag_init", &c->mhc_res_diag_init) ||
        get_float(r, o, "mhc_phi_init_std", &c->mhc_phi_init_std) ||
        get_float(r, o, "initializer_range", &c->initializer_range) ||
        get_float(r, o, "mtp_loss_weight", &c->mtp_loss_weight) ||
        get_float(r, o, "aux_loss_alpha", &c->aux_loss_alpha) ||
        get_float(r, o, "bias_update_speed", &c->bias_update_speed) ||
        get_int(r, o, "bos_token_id", &c->bos_token_id, true) || get_int(r, o, "eos_token_id", &c->eos_token_id, true))
        return DSC_ERR;

    if (get_string(r, o, "scoring_func", &s)) return DSC_ERR;
    if (s) {
        if (!strcmp(s, "softmax")) c->scoring_func = DSC_SCORE_SOFTMAX;
        else if (!strcmp(s, "sigmoid")) c->scoring_func = DSC_SCORE_SIGMOID;
        else return dsc_set_error("%s: field 'scoring_func': expected softmax or sigmoid, found '%s'", r->path, s);
    }
    /* topk_method decides whether the router has the aux-loss-free correction bias. */
    if (get_string(r, o, "topk_method", &s)) return DSC_ERR;
    if (s) {
        if (!strcmp(s, "noaux_tc")) c->expert_bias = true;
        else if (!strcmp(s, "greedy") || !strcmp(s, "group_limited_greedy")) c->expert_bias = false;
        else
            return dsc_set_error("%s: field 'topk_method': expected noaux_tc, greedy or group_limited_greedy, "
                                 "found '%s'", r->path, s);
    } else {
        c->expert_bias = c->scoring_func == DSC_SCORE_SIGMOID;
    }
    /* Checks on fields we do not model: a value other than the one we implement is an error. */
    int nkv = c->num_attention_heads, freq = 1;
    if (get_int(r, o, "num_key_value_heads", &nkv, false) || get_int(r, o, "moe_layer_freq", &freq, false))
        return DSC_ERR;
    if (nkv != c->num_attention_heads)
        return dsc_set_error("%s: field 'num_key_value_heads': MLA needs it equal to num_attention_heads (%d), "
                             "found %d", r->path, c->num_attention_heads, nkv);
    if (freq != 1) return dsc_set_error("%s: field 'moe_layer_freq': only 1 is supported, found %d", r->path, freq);
    bool attn_bias = false;
    if (get_bool(r, o, "attention_bias", &attn_bias)) return DSC_ERR;
    if (attn_bias) return dsc_set_error("%s: field 'attention_bias': DeepSeek models have none, found true", r->path);
    if (get_string(r, o, "hidden_act", &s)) return DSC_ERR;
    if (s && strcmp(s, "silu"))
        return dsc_set_error("%s: field 'hidden_act': expected silu, found '%s'", r->path, s);

    json_t *rs = json_object_get(o, "rope_scaling");
    if (rs && !json_is_null(rs)) {
        if (!json_is_object(rs)) return dsc_set_error("%s: field 'rope_scaling': expected an object or null", r->path);
        reader n = {rs, r->path, "rope_scaling."};
        const char *type = NULL, *rtype = NULL;
        if (get_string(&n, rs, "type", &type) || get_string(&n, rs, "rope_type", &rtype)) return DSC_ERR;
        const char *t = type ? type : rtype;
        if (!t) return dsc_set_error("%s: field 'rope_scaling.type' is missing", r->path);
        if (strcmp(t, "yarn"))
            return dsc_set_error("%s: field 'rope_scaling.type': only yarn is supported, found '%s'", r->path, t);
        c->yarn = true;
        if (require_present(&n, "factor") || get_double(&n, rs, "factor", &c->rope_factor) ||
            get_double(&n, rs, "beta_fast", &c->beta_fast) || get_double(&n, rs, "beta_slow", &c->beta_slow) ||
            get_double(&n, rs, "mscale", &c->mscale) || get_double(&n, rs, "mscale_all_dim", &c->mscale_all_dim) ||
            get_int(&n, rs, "original_max_position_embeddings", &c->original_max_position_embeddings, false))
            return DSC_ERR;
    }
    if (dsc_config_validate(c)) return dsc_prefix_error("%s", r->path);
    return DSC_OK;
}

static int parse_root(json_t *root, json_error_t *jerr, const char *path, dsc_config *c) {
    if (!root) {
        if (jerr->line < 0) return dsc_set_error("%s: cannot read: %s", path, jerr->text);
        return dsc_set_error("%s: invalid JSON at line %d column %d: %s", path, jerr->line, jerr->column, jerr->text);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return dsc_set_error("%s: expected a JSON object at the top level", path);
    }
    reader r = {root, path, ""};
    int rc = parse_config(&r, c);
    json_decref(root);
    return rc;
}

dsc_status dsc_config_load(const char *path, dsc_config *c) {
    json_error_t jerr;
    return parse_root(json_load_file(path, JSON_REJECT_DUPLICATES, &jerr), &jerr, path, c);
}

dsc_status config_parse_text(const char *text, size_t len, const char *name, dsc_config *c) {
    json_error_t jerr;
    return parse_root(json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr), &jerr, name, c);
}

/* ----------------------------------------------------------------------------------------------
 * config.json writing
 * -------------------------------------------------------------------------------------------- */

dsc_status dsc_config_save(const dsc_config *c, const char *path) {
    json_t *o = json_object();
    json_object_set_new(o, "model_type", json_string(c->model_type));
    json_object_set_new(o, "architectures", json_pack("[s]", !strcmp(c->model_type, "deepseek_v2")
                                                                ? "DeepseekV2ForCausalLM"
                                                                : !strcmp(c->model_type, "deepseek_v32")
                                                                      ? "DeepseekV32ForCausalLM"
                                                                      : "DeepseekV3ForCausalLM"));
#define SET_INT(f) json_object_set_new(o, #f, json_integer(c->f))
#define SET_REAL(f) json_object_set_new(o, #f, json_real(c->f))
#define SET_BOOL(f) json_object_set_new(o, #f, json_boolean(c->f))
    SET_INT(vocab_size);
    SET_INT(hidden_size);
    SET_INT(intermediate_size);
    SET_INT(moe_intermediate_size);
    SET_INT(num_hidden_layers);
    SET_INT(first_k_dense_replace);
    SET_INT(num_attention_heads);
    json_object_set_new(o, "num_key_value_heads", json_integer(c->num_attention_heads));
    SET_INT(n_routed_experts);
    SET_INT(n_shared_experts);
    SET_INT(num_experts_per_tok);
    SET_INT(n_group);
    SET_INT(topk_group);
    SET_REAL(routed_scaling_factor);
    json_object_set_new(o, "scoring_func", json_string(c->scoring_func == DSC_SCORE_SIGMOID ? "sigmoid" : "softmax"));
    json_object_set_new(o, "topk_method", json_string(c->expert_bias ? "noaux_tc"
                                                      : c->n_group > 1 ? "group_limited_greedy" : "greedy"));
    SET_BOOL(norm_topk_prob);
    json_object_set_new(o, "moe_layer_freq", json_integer(1));
    if (c->q_lora_rank > 0) SET_INT(q_lora_rank);
    else json_object_set_new(o, "q_lora_rank", json_null());
    SET_INT(kv_lora_rank);
    SET_INT(qk_nope_head_dim);
    SET_INT(qk_rope_head_dim);
    SET_INT(v_head_dim);
    SET_REAL(rope_theta);
    SET_INT(max_position_embeddings);
    if (c->yarn) {
        json_object_set_new(o, "rope_scaling",
                            json_pack("{s:s, s:f, s:f, s:f, s:f, s:f, s:i}", "type", "yarn", "factor", c->rope_factor,
                                      "beta_fast", c->beta_fast, "beta_slow", c->beta_slow, "mscale", c->mscale,
                                      "mscale_all_dim", c->mscale_all_dim, "original_max_position_embeddings",
                                      c->original_max_position_embeddings));
    } else {
        json_object_set_new(o, "rope_scaling", json_null());
    }
    SET_REAL(rms_norm_eps);
    SET_BOOL(tie_word_embeddings);
    SET_INT(num_nextn_predict_layers);
    json_object_set_new(o, "hidden_act", json_string("silu"));
    json_object_set_new(o, "attention_bias", json_false());
    if (c->index_n_heads > 0) {
        SET_INT(index_n_heads);
        SET_INT(index_head_dim);
        SET_INT(index_topk);
        SET_BOOL(index_rope_interleaved);
    }
    if (c->mhc_expansion_rate > 1) {
        SET_INT(mhc_expansion_rate);
        SET_INT(mhc_sinkhorn_iters);
        SET_REAL(mhc_rms_eps);
        SET_REAL(mhc_alpha_init);
        SET_REAL(mhc_res_diag_init);
        SET_REAL(mhc_phi_init_std);
    }
    SET_REAL(initializer_range);
    SET_REAL(mtp_loss_weight);
    SET_REAL(aux_loss_alpha);
    SET_REAL(bias_update_speed);
    SET_INT(bos_token_id);
    SET_INT(eos_token_id);
    json_object_set_new(o, "torch_dtype", json_string("float32"));
#undef SET_INT
#undef SET_REAL
#undef SET_BOOL
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    json_decref(o);
    if (!text) return dsc_set_error("%s: could not format the configuration as JSON", path);
    size_t len = strlen(text);
    text[len] = '\0';
    int rc = dsc_write_file_atomic(path, text, len);
    free(text);
    return rc;
}

/* ----------------------------------------------------------------------------------------------
 * Shape arithmetic
 * -------------------------------------------------------------------------------------------- */

/* Parameters of one attention block (MLA + its indexer + the two norms of the block). */
static double attn_params(const dsc_config *c) {
    double d = c->hidden_size, H = c->num_attention_heads, dqk = c->qk_nope_head_dim + c->qk_rope_head_dim;
    double p = 0;
    if (c->q_lora_rank > 0) p += d * c->q_lora_rank + c->q_lora_rank + (double)c->q_lora_rank * H * dqk;
    else p += d * H * dqk;
    p += d * (c->kv_lora_rank + c->qk_rope_head_dim) + c->kv_lora_rank;
    p += (double)c->kv_lora_rank * H * (c->qk_nope_head_dim + c->v_head_dim);
    p += H * c->v_head_dim * d;
    if (c->index_n_heads > 0)
        p += (double)c->q_lora_rank * c->index_n_heads * c->index_head_dim + d * c->index_head_dim +
             2.0 * c->index_head_dim + d * c->index_n_heads;
    return p + 2 * d; /* input_layernorm, post_attention_layernorm */
}

static double mhc_params(const dsc_config *c) {
    if (c->mhc_expansion_rate <= 1) return 0;
    double n = c->mhc_expansion_rate, w = n * n + 2 * n;
    return 2 * (n * c->hidden_size * w + w + 3); /* two sub-layers: phi, bias, alpha */
}

dsc_status dsc_config_stats_compute(const dsc_config *c, dsc_config_stats *s) {
    if (dsc_config_validate(c)) return DSC_ERR;
    memset(s, 0, sizeof *s);
    double d = c->hidden_size, V = c->vocab_size;
    double attn = attn_params(c) + mhc_params(c);
    double dense_ffn = 3 * d * c->intermediate_size;
    double expert = 3 * d * c->moe_intermediate_size;
    double moe_total = c->n_routed_experts * expert + c->n_shared_experts * expert + (double)c->n_routed_experts * d +
                       (c->expert_bias ? c->n_routed_experts : 0);
    double moe_active = c->num_experts_per_tok * expert + c->n_shared_experts * expert + (double)c->n_routed_experts * d;
    int n_dense = c->n_routed_experts > 0 ? c->first_k_dense_replace : c->num_hidden_layers;
    int n_moe = c->num_hidden_layers - n_dense;
    s->embedding_params = V * d * (c->tie_word_embeddings ? 1 : 2);
    s->total_params = s->embedding_params + d + c->num_hidden_layers * attn + n_dense * dense_ffn + n_moe * moe_total;
    s->active_params = s->embedding_params + d + c->num_hidden_layers * attn + n_dense * dense_ffn + n_moe * moe_active;
    double mtp_ffn = c->n_routed_experts > 0 ? moe_total : dense_ffn;
    s->mtp_params = c->num_nextn_predict_layers * (attn + mtp_ffn + 2 * d * d + 3 * d);
    /* Forward FLOPs: 2 per multiply-add of every active weight except the embedding lookup. */
    double head = V * d;
    s->flops_per_token = 2 * (s->active_params - s->embedding_params + head);
    /* Attention per context token: scores (H x dqk) and values (H x dv), plus the indexer. */
    double H = c->num_attention_heads;
    s->attn_flops_per_token_per_ctx =
        c->num_hidden_layers * 2 * H * (c->qk_nope_head_dim + c->qk_rope_head_dim + c->v_head_dim);
    if (c->index_n_heads > 0)
        s->attn_flops_per_token_per_ctx += c->num_hidden_layers * 2.0 * c->index_n_heads * c->index_head_dim;
    s->kv_cache_bytes_per_token = c->num_hidden_layers * (double)(c->kv_lora_rank + c->qk_rope_head_dim) * 2;
    s->mha_kv_cache_bytes_per_token =
        c->num_hidden_layers * H * (double)(c->qk_nope_head_dim + c->qk_rope_head_dim + c->v_head_dim) * 2;
    return DSC_OK;
}
