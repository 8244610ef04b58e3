/* params.h: where every parameter lives. One function walks the configuration in a fixed order
 * and, for each tensor, assigns its pointer in a model_weights struct and (optionally) records a
 * descriptor with its Hugging Face name, shape and offset. Walking with the parameter buffer
 * gives the weights, with the gradient buffer the gradients, with the AdamW buffers the moments:
 * the same struct type, the same layout, one source of truth. */
#ifndef DSC_MODEL_PARAMS_H
#define DSC_MODEL_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsc.h"
#include "model/ffn.h"
#include "model/mhc.h"
#include "model/mla.h"
#include "model/moe.h"

typedef struct {
    float *attn_norm;   /* input_layernorm             [d] */
    float *ffn_norm;    /* post_attention_layernorm    [d] */
    mla_weights attn;
    bool is_moe;
    ffn_weights mlp;    /* dense blocks */
    moe_weights moe;    /* MoE blocks */
    mhc_weights attn_mhc, ffn_mhc; /* n > 1 */
    float *enorm, *hnorm;  /* MTP blocks: [d] */
    float *eh_proj;        /* MTP blocks: [d, 2d] */
    float *head_norm;      /* MTP blocks: shared_head.norm [d] */
} block_weights;

typedef struct {
    float *embed;          /* model.embed_tokens.weight  [V, d] */
    float *norm;           /* model.norm.weight          [d] */
    float *head;           /* lm_head.weight [V, d]; == embed when tied */
    block_weights *blocks; /* [num_hidden_layers + num_nextn_predict_layers] */
} model_weights;

/* How a tensor is initialised and trained. */
typedef enum {
    INIT_NORMAL,     /* N(0, initializer_range^2) */
    INIT_ONES,       /* norm weights */
    INIT_ZEROS,      /* biases */
    INIT_MHC_PHI,    /* N(0, mhc_phi_init_std^2) */
    INIT_MHC_ALPHA,  /* mhc_alpha_init */
    INIT_MHC_BIAS,   /* logit(1/n) | 0 | diag */
} init_kind;

enum {
    TENSOR_NO_DECAY = 1, /* norms, biases, mHC scalars: no weight decay */
    TENSOR_NO_GRAD = 2,  /* updated by a rule, not by gradients (e_score_correction_bias) */
};

typedef struct {
    char name[96];
    int ndim;
    int64_t shape[4];
    size_t offset;       /* in floats from the buffer start (64-byte aligned) */
    size_t numel;
    init_kind init;
    unsigned flags;
} tensor_desc;

/* Walks the layout. base may be NULL (pointers are then offsets from NULL, only the count is
 * meaningful). blocks must have room for L + D entries when w is not NULL. descs (may be NULL)
 * receives the descriptors; *n_descs their number. Returns the total floats. */
size_t params_layout(const dsc_config *c, float *base, model_weights *w, tensor_desc *descs, int *n_descs);

/* Upper bound on the number of descriptors for a configuration. */
int params_max_descs(const dsc_config *c);

#endif
