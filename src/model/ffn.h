/* ffn.h: the SwiGLU feed-forward y = (silu(x w1ᵀ) ⊙ (x w3ᵀ)) w2ᵀ used by the dense MLP, every
 * routed expert and the shared experts. Forward saves h1 = x w1ᵀ and h3 = x w3ᵀ; backward
 * recomputes silu from them. Backward ADDS into dx and into the weight gradients. */
#ifndef DSC_MODEL_FFN_H
#define DSC_MODEL_FFN_H

#include <stdbool.h>

typedef struct {
    float *w1; /* gate_proj [I, d] */
    float *w3; /* up_proj   [I, d] */
    float *w2; /* down_proj [d, I] */
} ffn_weights;

/* Rows x[N,d] -> y[N,d]. h1, h3 [N,I] are saved for backward; act [N,I] is scratch that holds
 * silu(h1)*h3 on return. accumulate=true adds into y instead of overwriting. */
void ffn_forward(float *y, float *h1, float *h3, float *act, const ffn_weights *w, const float *x, int N, int d, int I,
                 bool accumulate);
/* dy[N,d] -> dx += ..., g->w1,w3,w2 += ...; dact [N,2I] scratch. */
void ffn_backward(float *dx, const ffn_weights *g, const float *dy, const ffn_weights *w, const float *x,
                  const float *h1, const float *h3, float *scratch, int N, int d, int I);

/* Elementwise pieces, exposed for the MoE path. */
void swiglu_forward(float *act, const float *h1, const float *h3, long n);
/* From d(act): dh1 = dact * h3 * silu'(h1), dh3 = dact * silu(h1) (overwritten). */
void swiglu_backward(float *dh1, float *dh3, const float *dact, const float *h1, const float *h3, long n);

#endif
