/* dsa.c: the DSA lightning indexer, forward only: index scores and per-query top-k key
 * selection (docs/MODEL.md §7). fp32; the Hadamard rotation and FP8 rounding of DeepSeek's
 * deployed kernels are omitted (the rotation preserves the products; FP8 is an inference-time
 * precision choice). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/config.h"
#include "model/dsa.h"
#include "model/norm.h"

/* scratch: qI [N, HI*dI], kI [N, dI], wI [N, HI], per-thread row buffers. */
size_t dsa_scratch_floats(const dsc_config *c, int B, int T) {
    size_t N = (size_t)B * T, HI = c->index_n_heads, dI = c->index_head_dim;
    size_t per_thread = HI * (size_t)T + 3 * (size_t)T + 64;
    return N * (HI * dI + dI + HI + 2) + per_thread * (size_t)dsc_num_threads();
}

typedef struct {
    float score;
    int32_t pos;
} scored_pos;

/* Descending score; ties to the lower position (deterministic, like a stable top-k). */
static int by_score_desc(const void *pa, const void *pb) {
    const scored_pos *a = pa, *b = pb;
    if (a->score > b->score) return -1;
    if (a->score < b->score) return 1;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

void dsa_select(const dsc_config *c, const dsa_weights *w, const rope_table *rope, const float *x, const float *cq,
                int B, int T, int32_t *sel, float *scores, float *scratch) {
    int N = B * T, d = c->hidden_size, rq = c->q_lora_rank, HI = c->index_n_heads, dI = c->index_head_dim;
    int dr = c->qk_rope_head_dim, topk = c->index_topk;
    bool inter = c->index_rope_interleaved;
    float *qI = scratch;                        /* [N, HI, dI] */
    float *kI = qI + (size_t)N * HI * dI;       /* [N, dI] */
    float *wI = kI + (size_t)N * dI;            /* [N, HI] */
    float *tmp = wI + (size_t)N * HI;           /* [2N] LayerNorm mean / rstd */
    float *thread_mem = tmp + 2 * (size_t)N;

    dsc_linear_forward(qI, cq, w->wq_b, N, rq, HI * dI, false);
    dsc_linear_forward(kI, x, w->wk, N, d, dI, false);
    layernorm_forward(kI, tmp, tmp + N, kI, w->k_norm_w, w->k_norm_b, N, dI, 1e-6f);
    dsc_linear_forward(wI, x, w->weights_proj, N, d, HI, false);
    float wscale = 1.0f / sqrtf((float)HI) / sqrtf((float)dI);
    for (size_t i = 0; i < (size_t)N * HI; i++) wI[i] *= wscale;
    /* RoPE on the first dr dims of every query head and of the key. */
    for (int r = 0; r < N; r++) {
        int pos = r % T;
        for (int h = 0; h < HI; h++) rope_apply(qI + ((size_t)r * HI + h) * dI, rope, pos, inter, false);
        rope_apply(kI + (size_t)r * dI, rope, pos, inter, false);
    }
    (void)dr;

    size_t per_thread = (size_t)HI * T + 3 * (size_t)T + 64;
#pragma omp parallel for schedule(dynamic, 1) collapse(2)
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < T; i++) {
            float *mem = thread_mem + per_thread * (size_t)omp_get_thread_num();
            float *qk = mem;                              /* [HI, i+1] */
            float *row = mem + (size_t)HI * T;            /* [T] */
            scored_pos *cand = (scored_pos *)(row + T);   /* [T] pairs (2 floats each) */
            size_t r = (size_t)b * T + i;
            /* qk[h, j] = qI[r, h] · kI[b, j] for j <= i */
            dsc_sgemm(false, true, HI, i + 1, dI, 1.0f, qI + r * HI * dI, dI, kI + (size_t)b * T * dI, dI, 0.0f, qk,
                      i + 1);
            for (int j = 0; j <= i; j++) {
                float s = 0;
                for (int h = 0; h < HI; h++) {
                    float v = qk[(size_t)h * (i + 1) + j];
                    s += wI[r * HI + h] * (v > 0 ? v : 0);
                }
                row[j] = s;
                cand[j].score = s;
                cand[j].pos = j;
            }
            if (scores) {
                float *out = scores + r * T;
                for (int j = 0; j < T; j++) out[j] = j <= i ? row[j] : -INFINITY;
            }
            int n = i + 1, k = topk < n ? topk : n;
            qsort(cand, n, sizeof *cand, by_score_desc);
            int32_t *srow = sel + r * topk;
            for (int t = 0; t < topk; t++) srow[t] = t < k ? cand[t].pos : -1;
        }
    }
}
