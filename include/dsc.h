/* dsc.h: the public interface of libdsc, the DeepSeek language-model stack in C.
 *
 * The contract: every call that can fail returns a dsc_status (DSC_OK or DSC_ERR); on failure
 * dsc_last_error() gives a one-line message that names the file, field or tensor and says what was
 * expected and what was found. Nothing here exits or prints. Handles are opaque; each _create or
 * _load has a matching _free. Thread-safety: one model handle must not be used by two threads at
 * once; different handles are independent (no global state besides the thread-local error).
 */
#ifndef DSC_H
#define DSC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DSC_VERSION "0.1.0"

typedef int dsc_status;
#define DSC_OK 0
#define DSC_ERR (-1)

/* The message of this thread's last failed call ("no error" if none). */
const char *dsc_last_error(void);

/* ---------------------------------------------------------------------------------------------
 * Model configuration. Field names follow Hugging Face DeepSeek config.json where one exists;
 * the mhc_* and loss fields are dsc's own. See docs/MODEL.md for the exact meaning of each.
 * ------------------------------------------------------------------------------------------- */
typedef enum { DSC_SCORE_SOFTMAX = 0, DSC_SCORE_SIGMOID = 1 } dsc_score_func;

typedef struct dsc_config {
    char model_type[32];            /* deepseek_v2 | deepseek_v3 | deepseek_v32 | dsc */
    int vocab_size;
    int hidden_size;                /* d */
    int intermediate_size;          /* dense SwiGLU width (first_k_dense_replace layers) */
    int moe_intermediate_size;      /* width of one routed expert */
    int num_hidden_layers;          /* main-model blocks (MTP blocks not counted) */
    int first_k_dense_replace;      /* blocks [0, k) are dense, the rest MoE */
    int num_attention_heads;
    /* DeepSeekMoE */
    int n_routed_experts;           /* 0: no MoE at all */
    int n_shared_experts;           /* shared expert width = n_shared_experts * moe_intermediate_size */
    int num_experts_per_tok;        /* routed experts per token (K) */
    int n_group, topk_group;        /* group-limited routing: keep topk_group of n_group groups */
    float routed_scaling_factor;
    dsc_score_func scoring_func;
    bool norm_topk_prob;            /* renormalise the K selected weights to sum 1 */
    bool expert_bias;               /* topk_method "noaux_tc": e_score_correction_bias, selection only */
    /* MLA */
    int q_lora_rank;                /* 0: plain q projection (V2-Lite) */
    int kv_lora_rank;
    int qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    /* RoPE / YaRN */
    double rope_theta;
    int max_position_embeddings;
    bool yarn;                      /* rope_scaling {type: yarn} present and active */
    double rope_factor, beta_fast, beta_slow, mscale, mscale_all_dim;
    int original_max_position_embeddings;
    /* norms, heads */
    float rms_norm_eps;
    bool tie_word_embeddings;
    int num_nextn_predict_layers;   /* MTP depth D (0: none) */
    /* DSA lightning indexer (V3.2); index_n_heads == 0 means no indexer */
    int index_n_heads, index_head_dim, index_topk;
    bool index_rope_interleaved;    /* false (default): half-split rope, DeepSeek's later fix */
    /* mHC: Manifold-Constrained Hyper-Connections; mhc_expansion_rate <= 1 means plain residual */
    int mhc_expansion_rate;         /* n streams */
    int mhc_sinkhorn_iters;
    float mhc_rms_eps;              /* eps of the weightless RMSNorm in the coefficient path */
    float mhc_alpha_init, mhc_res_diag_init, mhc_phi_init_std;
    /* training-time constants */
    float initializer_range;        /* std of the normal init of every weight matrix */
    float mtp_loss_weight;          /* lambda */
    float aux_loss_alpha;           /* alpha of the sequence-wise balance loss (0: off) */
    float bias_update_speed;        /* gamma of the aux-loss-free bias update */
    int bos_token_id, eos_token_id;
} dsc_config;

/* Fills cfg with a named preset: "tiny", "small", "deepseek-v3", "deepseek-v3.2",
 * "deepseek-v2-lite". */
dsc_status dsc_config_preset(const char *name, dsc_config *cfg);
/* NULL-terminated list of preset names. */
const char *const *dsc_config_preset_names(void);
/* Reads a Hugging Face style config.json. Unknown fields are ignored; a missing, out-of-range or
 * inconsistent value is an error naming the field. */
dsc_status dsc_config_load(const char *path, dsc_config *cfg);
/* Writes cfg as config.json (HF field names plus dsc's own). Atomic (temp file + rename). */
dsc_status dsc_config_save(const dsc_config *cfg, const char *path);
/* Checks every field and their consistency. */
dsc_status dsc_config_validate(const dsc_config *cfg);

/* Shape arithmetic for any configuration (no weights needed). */
typedef struct dsc_config_stats {
    double total_params;            /* main model, every expert */
    double active_params;           /* main model, per token: shared + K routed experts */
    double embedding_params;        /* embedding + head (counted in total and active) */
    double mtp_params;              /* MTP modules (not in total), embedding/head shared */
    double flops_per_token;         /* forward matmul FLOPs per token (2 x active, excl. embedding) */
    double attn_flops_per_token_per_ctx; /* extra forward attention FLOPs per token per context token */
    double kv_cache_bytes_per_token;     /* latent cache, bf16: layers x (kv_lora_rank + rope) x 2 */
    double mha_kv_cache_bytes_per_token; /* same dims as plain MHA (per-head K and V), bf16 */
} dsc_config_stats;
dsc_status dsc_config_stats_compute(const dsc_config *cfg, dsc_config_stats *out);

/* ---------------------------------------------------------------------------------------------
 * Model: parameters, forward, backward.
 * ------------------------------------------------------------------------------------------- */
typedef struct dsc_model dsc_model;

dsc_status dsc_model_create(const dsc_config *cfg, dsc_model **out);
void dsc_model_free(dsc_model *m);
const dsc_config *dsc_model_config(const dsc_model *m);
/* Random initialisation from a seed (normal(0, initializer_range) for matrices, ones for norm
 * weights, zero for biases; mHC as docs/MODEL.md says). Deterministic. */
dsc_status dsc_model_init(dsc_model *m, uint64_t seed);
/* Loads DIR/config.json and DIR/model.safetensors (HF tensor names; F32, BF16 or F16). */
dsc_status dsc_model_load(const char *dir, dsc_model **out);
/* Writes DIR/config.json and DIR/model.safetensors (F32). */
dsc_status dsc_model_save(const dsc_model *m, const char *dir);
/* Number of parameters held (main model + MTP). */
size_t dsc_model_num_params(const dsc_model *m);

/* Logits of every position: tokens [B*T] row-major, logits [B*T*vocab] written. */
dsc_status dsc_model_logits(dsc_model *m, const int32_t *tokens, int B, int T, float *logits);

typedef struct dsc_losses {
    float total;                    /* ce + mtp_loss_weight*mtp + aux_loss_alpha*balance */
    float ce;                       /* mean next-token cross-entropy over counted targets */
    float mtp;                      /* mean over MTP depths of their cross-entropy */
    float balance;                  /* sequence-wise balance loss, summed over MoE layers */
    int64_t n_targets;              /* targets counted in ce (target >= 0) */
} dsc_losses;

/* One training forward and backward pass over tokens/targets [B*T] (target -1: not counted).
 * Gradients are ADDED to the model's gradient buffers (call dsc_model_zero_grad first). Expert
 * loads of this pass are accumulated for dsc_model_update_expert_bias. */
dsc_status dsc_model_forward_backward(dsc_model *m, const int32_t *tokens, const int32_t *targets,
                                      int B, int T, dsc_losses *out);
void dsc_model_zero_grad(dsc_model *m);
/* Multiplies every gradient by s (gradient accumulation averages micro-batches with it). */
void dsc_model_scale_grads(dsc_model *m, float s);
/* Forward only: the main model's mean next-token cross-entropy (out->ce and out->total; no MTP,
 * no balance term, no gradient, no expert-load counting). For validation. */
dsc_status dsc_model_loss(dsc_model *m, const int32_t *tokens, const int32_t *targets, int B, int T,
                          dsc_losses *out);
/* Per-token log-probabilities of the targets under the main model sampled at a temperature
 * (softmax(logits / temperature); 1: the model itself) (forward only, no MTP, no expert-load
 * counting): logp [B*T] (0 where the target is -1); entropy (may be NULL) of each position's
 * next-token distribution. For a policy's old and reference log-probabilities. */
dsc_status dsc_model_logprobs(dsc_model *m, const int32_t *tokens, const int32_t *targets, int B, int T,
                              float temperature, float *logp, float *entropy);
/* A loss of per-token log-probabilities: returns the loss and writes ∂loss/∂logp[i] into dlogp
 * [N] (zeroed before the call; rows with target -1 are ignored). */
typedef double (*dsc_logprob_loss_fn)(void *user, const float *logp, int N, float *dlogp);
/* The policy-gradient training pass (Tinker's forward_backward with a custom loss): the main model
 * computes logp of every target, loss_fn turns them into a loss and its gradient, which is
 * backpropagated and ADDED to the gradients (the sequence-wise balance term included, though not
 * in *loss; MTP modules are not run). temperature: the policy is softmax(logits / temperature),
 * the distribution rollouts sampled from. logp_out and entropy (may be NULL) receive [B*T] values;
 * loss (may be NULL) loss_fn's value. Expert loads are counted as in dsc_model_forward_backward. */
dsc_status dsc_model_forward_backward_logprob(dsc_model *m, const int32_t *tokens, const int32_t *targets, int B,
                                              int T, float temperature, dsc_logprob_loss_fn loss_fn, void *user,
                                              float *logp_out, float *entropy, double *loss);
/* Tokens routed to each expert since the last bias update: out [(L + D) * E], block-major
 * (rows of dense blocks are 0). Returns E (0 for a model without MoE). */
int dsc_model_expert_loads(const dsc_model *m, int64_t *out);
/* Aux-loss-free balancing: b_i += gamma * sign(mean_j c_j - c_i) per MoE layer, from the expert
 * loads counted since the last call; then the counts are reset. */
dsc_status dsc_model_update_expert_bias(dsc_model *m, float gamma);

/* Parameter tensors by name, for tools and tests (HF names, e.g. "model.norm.weight"). */
int dsc_model_num_tensors(const dsc_model *m);
const char *dsc_model_tensor_name(const dsc_model *m, int i);
/* Shape into shape[4], returns ndim; data and grad point into the model's buffers. */
int dsc_model_tensor_info(const dsc_model *m, int i, int64_t shape[4], float **data, float **grad);

/* Phase profile of training passes, collected only when the environment has DSC_PROFILE=1:
 * fills up to cap (name, seconds) pairs and returns the number of phases. */
int dsc_profile_get(const char **names, double *seconds, int cap);
void dsc_profile_reset(void);

#ifdef __cplusplus
}
#endif
#endif
