/* dsa.h: the DeepSeek Sparse Attention lightning indexer (V3.2): index scores
 * I[i,j] = Σ_h w[i,h]·ReLU(q[i,h]·k[j]) and the top-k keys each query may attend to.
 * Forward only: training the indexer is a separate stage. Exact maths: docs/MODEL.md §7. */
#ifndef DSC_MODEL_DSA_H
#define DSC_MODEL_DSA_H

#include <stddef.h>
#include <stdint.h>

#include "dsc.h"
#include "model/rope.h"

typedef struct {
    float *wq_b;         /* indexer.wq_b.weight          [HI*dI, rq] */
    float *wk;           /* indexer.wk.weight            [dI, d] */
    float *k_norm_w;     /* indexer.k_norm.weight        [dI] */
    float *k_norm_b;     /* indexer.k_norm.bias          [dI] */
    float *weights_proj; /* indexer.weights_proj.weight  [HI, d] */
} dsa_weights;

/* Scratch floats dsa_select needs for B sequences of T tokens. */
size_t dsa_scratch_floats(const dsc_config *c, int B, int T);

/* For x [N,d] (normed block input) and cq [N,rq] (MLA query latent): fills sel [B, T, topk]
 * (topk = index_topk) with the selected key positions of every query, in descending score
 * order; entries past min(topk, i+1) are -1. If scores is not NULL it receives I [B, T, T]
 * (-inf above the diagonal). */
void dsa_select(const dsc_config *c, const dsa_weights *w, const rope_table *rope, const float *x, const float *cq,
                int B, int T, int32_t *sel, float *scores, float *scratch);

#endif
