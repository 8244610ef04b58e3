/* loss.h: cross-entropy over the vocabulary, fused with its gradient; per-token log-probabilities
 * and their gradient for policy-gradient losses (GRPO). */
#ifndef DSC_MODEL_LOSS_H
#define DSC_MODEL_LOSS_H

#include <stdint.h>

/* Number of rows with target >= 0. */
int64_t ce_count_targets(const int32_t *targets, int N);

/* For rows with target >= 0: returns Σ −log softmax(logits)[target] (in double). If grad_scale
 * is not 0, logits are replaced by grad_scale·(softmax − onehot) (rows without a target get 0);
 * otherwise logits are left untouched. */
double ce_forward_backward(float *logits, const int32_t *targets, int N, int V, float grad_scale);

/* Per-token log-probabilities for policy-gradient losses, of the distribution sampled at a
 * temperature τ: logp[i] = log softmax(logits_i/τ)[t_i] and (entropy may be NULL) the entropy of
 * softmax(logits_i/τ); rows with target < 0 get 0. Logits are left untouched. */
void logprob_forward(const float *logits, const int32_t *targets, int N, int V, float temperature, float *logp,
                     float *entropy);
/* Replaces logits by coef_i · ∂logp_i/∂logits_i = (coef_i/τ) · (onehot(t_i) − softmax(logits_i/τ)),
 * the gradient of Σ_i coef_i·logp_i (rows with target < 0 get 0). */
void logprob_backward(float *logits, const int32_t *targets, const float *coef, int N, int V, float temperature);

#endif
