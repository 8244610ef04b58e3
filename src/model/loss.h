/* loss.h: cross-entropy over the vocabulary, fused with its gradient. */
#ifndef DSC_MODEL_LOSS_H
#define DSC_MODEL_LOSS_H

#include <stdint.h>

/* Number of rows with target >= 0. */
int64_t ce_count_targets(const int32_t *targets, int N);

/* For rows with target >= 0: returns Σ −log softmax(logits)[target] (in double). If grad_scale
 * is not 0, logits are replaced by grad_scale·(softmax − onehot) (rows without a target get 0);
 * otherwise logits are left untouched. */
double ce_forward_backward(float *logits, const int32_t *targets, int N, int V, float grad_scale);

#endif
