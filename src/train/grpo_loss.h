/* grpo_loss.h: the GRPO objective (DeepSeekMath, DeepSeek-R1) and its variants, as a loss over
 * per-token log-probabilities: group-normalised advantages, the clipped probability ratio (DAPO's
 * higher upper clip as an option), the k3 KL estimate to a frozen reference policy, and the three
 * aggregations (GRPO per sequence, DAPO per token, Dr. GRPO over a constant). Pure functions over
 * arrays: the model pass (dsc_model_forward_backward_logprob) calls grpo_loss through a callback.
 * Exact maths: docs/GRPO.md; the PyTorch reference: tests/reference/grpo_ref.py. */
#ifndef DSC_TRAIN_GRPO_LOSS_H
#define DSC_TRAIN_GRPO_LOSS_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    GRPO_AGG_SEQUENCE = 0, /* GRPO: mean over each sequence's tokens, then over sequences */
    GRPO_AGG_TOKEN = 1,    /* DAPO: mean over every completion token of the batch */
    GRPO_AGG_CONSTANT = 2, /* Dr. GRPO: sum over tokens / (sequences x max_len) */
} grpo_agg;

typedef struct {
    float eps_low, eps_high; /* ratio clipped to [1 - eps_low, 1 + eps_high] (0.2, 0.2; DAPO 0.28) */
    float beta;              /* KL coefficient (0: no KL term, no reference log-probabilities) */
    grpo_agg agg;
    int max_len;             /* GRPO_AGG_CONSTANT's constant: the largest completion length allowed */
} grpo_loss_options;

/* Advantages of n_groups groups of G rewards each (group-major): A = (r - mean) / (std + 1e-4)
 * with the unbiased std over the group (G > 1), or A = r - mean when scale_std is false
 * (Dr. GRPO). A group whose rewards are all equal gets 0. */
void grpo_advantages(const float *rewards, int n_groups, int G, bool scale_std, float *adv);

/* One batch of S sequences padded to T tokens, as the model pass sees it: position t of sequence s
 * predicts targets[s*T + t]; completion tokens have target >= 0 and count in the loss, prompt and
 * padding have -1. */
typedef struct {
    int S, T;
    const int32_t *targets;  /* [S*T] */
    const float *adv;        /* [S] the sequence's advantage */
    const float *old_logp;   /* [S*T] log π_old of each target (NULL: the current logp, detached,
                              * so the ratio is 1: one optimizer step per rollout batch) */
    const float *ref_logp;   /* [S*T] log π_ref (NULL when beta == 0) */
    double norm_tokens;      /* GRPO_AGG_TOKEN's denominator (the completion tokens of the whole
                              * minibatch when it is split into passes); 0: this batch's count */
    int norm_seqs;           /* GRPO_AGG_SEQUENCE/CONSTANT's sequence count; 0: S */
} grpo_batch;

typedef struct {
    double loss;             /* the minimised loss, -J */
    double pg;               /* the policy-gradient part of J (aggregated like J) */
    double kl;               /* mean k3 KL per completion token (0 when beta == 0) */
    double clip_frac;        /* fraction of completion tokens whose gradient the clip removed */
    double ratio_mean;       /* mean ratio per completion token */
    int64_t tokens;          /* completion tokens counted */
} grpo_loss_stats;

/* The loss, minimised: L = -Σ_s w_s Σ_t [ min(ρ A_s, clip(ρ, 1-ε_lo, 1+ε_hi) A_s) - β KL_{s,t} ],
 * ρ = exp(logp - old_logp), KL = exp(ref - logp) - (ref - logp) - 1, and w_s the aggregation
 * weight (1/(S·|o_s|), 1/Σ|o|, or 1/(S·max_len)). Writes ∂L/∂logp into dlogp [S*T] (0 off the
 * completions) and fills st (may be NULL). Returns L. */
double grpo_loss(const grpo_loss_options *o, const grpo_batch *b, const float *logp, float *dlogp,
                 grpo_loss_stats *st);

#endif
