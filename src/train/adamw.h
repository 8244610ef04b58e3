/* adamw.h: AdamW with decoupled weight decay over a model's parameters, and global-norm gradient
 * clipping. Moments live in two buffers with the parameters' layout; tensors flagged no-decay
 * (norms, biases, mHC scalars) get no weight decay, tensors flagged no-grad are left alone. */
#ifndef DSC_TRAIN_ADAMW_H
#define DSC_TRAIN_ADAMW_H

#include "dsc.h"

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} adamw_params;

typedef struct adamw adamw;

dsc_status adamw_create(const dsc_model *m, adamw **out);
void adamw_free(adamw *o);
/* Global L2 norm of the gradients of every trained tensor. */
double adamw_grad_norm(const dsc_model *m);
/* One step: if clip > 0 and the gradient norm exceeds it, gradients are scaled to norm clip.
 * Returns the gradient norm before clipping. */
double adamw_step(adamw *o, dsc_model *m, const adamw_params *p, float clip);
long adamw_steps(const adamw *o);
/* The moments (same layout as the model's parameters, n_floats each) and the step counter, for
 * checkpoints. */
float *adamw_first_moment(adamw *o);
float *adamw_second_moment(adamw *o);
void adamw_set_steps(adamw *o, long t);

#endif
