/* mla.c: Multi-head Latent Attention for training and prefill: every position of B sequences of
 * T tokens attends causally within its sequence (optionally restricted to the DSA selection).
 * Forward and backward side by side; exact maths in docs/MODEL.md §5.
 *
 * Shapes (N = B*T rows): x [N,d]; cq [N,rq]; q [N,H,dqk] = (q_nope dn | q_pe dr);
 * kva [N, rkv+dr] = (latent | rope key); ckv [N,rkv]; kpe [N,dr] (one rope key for all heads);
 * kvb [N,H,dn+dv] = (k_nope | v); att [B,H,T,T]; o [N,H,dv]; out [N,d]. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "base/mem.h"
#include "kernels/kernels.h"
#include "kernels/vmath.h"
#include "model/config.h"
#include "model/mla.h"
#include "model/norm.h"

typedef struct {
    int N, d, H, rq, rkv, dn, dr, dv, dqk, qin, topk;
} mla_dims;

static mla_dims dims_of(const dsc_config *c, int B, int T) {
    mla_dims m;
    m.N = B * T;
    m.d = c->hidden_size;
    m.H = c->num_attention_heads;
    m.rq = c->q_lora_rank;
    m.rkv = c->kv_lora_rank;
    m.dn = c->qk_nope_head_dim;
    m.dr = c->qk_rope_head_dim;
    m.dv = c->v_head_dim;
    m.dqk = m.dn + m.dr;
    m.qin = m.rq > 0 ? m.rq : m.d; /* input width of the q projection */
    m.topk = c->index_n_heads > 0 ? c->index_topk : 0;
    return m;
}

/* Does this pass restrict attention to the indexer's selection? Only when the context is longer
 * than index_topk; otherwise every causal key is selected anyway. */
static bool uses_selection(const dsc_config *c, int T) { return c->index_n_heads > 0 && T > c->index_topk; }

size_t mla_acts_floats(const dsc_config *c, int B, int T) {
    mla_dims m = dims_of(c, B, T);
    size_t N = m.N, s = 0;
    if (m.rq > 0) s += 2 * dsc_round_floats(N * m.rq) + dsc_round_floats(N);
    s += dsc_round_floats(N * m.H * m.dqk) + dsc_round_floats(N * (m.rkv + m.dr)) + dsc_round_floats(N);
    s += dsc_round_floats(N * m.rkv) + dsc_round_floats(N * m.dr) + dsc_round_floats(N * m.H * (m.dn + m.dv));
    s += dsc_round_floats((size_t)B * m.H * T * T) + dsc_round_floats(N * m.H * m.dv);
    if (uses_selection(c, T)) s += dsc_round_floats(N * m.topk);
    return s;
}

void mla_acts_bind(mla_acts *a, float *mem, const dsc_config *c, int B, int T) {
    mla_dims m = dims_of(c, B, T);
    size_t N = m.N;
    memset(a, 0, sizeof *a);
#define TAKE(ptr, n)                                                                                                   \
    do {                                                                                                               \
        (ptr) = (void *)mem;                                                                                           \
        mem += dsc_round_floats(n);                                                                                    \
    } while (0)
    if (m.rq > 0) {
        TAKE(a->cq_raw, N * m.rq);
        TAKE(a->cq_rstd, N);
        TAKE(a->cq, N * m.rq);
    }
    TAKE(a->q, N * m.H * m.dqk);
    TAKE(a->kva, N * (m.rkv + m.dr));
    TAKE(a->ckv_rstd, N);
    TAKE(a->ckv, N * m.rkv);
    TAKE(a->kpe, N * m.dr);
    TAKE(a->kvb, N * m.H * (m.dn + m.dv));
    TAKE(a->att, (size_t)B * m.H * T * T);
    TAKE(a->o, N * m.H * m.dv);
    if (uses_selection(c, T)) TAKE(a->sel, N * m.topk);
#undef TAKE
}

/* Backward scratch: dO [N,H*dv], dkvb [N,H*(dn+dv)], dq [N,H*dqk], dkpe per head [N,H,dr],
 * dcq and dcq_raw [N,rq], dkva [N,rkv+dr], dckv, ckv_raw and dlat [N,rkv], per-thread dP [T,T].
 * The forward pass uses the front of the same scratch for the indexer and the latent copy. */
size_t mla_scratch_floats(const dsc_config *c, int B, int T) {
    mla_dims m = dims_of(c, B, T);
    size_t N = m.N;
    size_t bwd = N * m.H * m.dv + N * m.H * (m.dn + m.dv) + N * m.H * m.dqk + N * m.H * m.dr +
                 (m.rq > 0 ? 2 * N * m.rq : 0) + N * (m.rkv + m.dr) + 3 * N * m.rkv +
                 (size_t)T * T * dsc_num_threads() + 256;
    size_t fwd = uses_selection(c, T) ? dsa_scratch_floats(c, B, T) : 0;
    return bwd > fwd ? bwd : fwd;
}

/* Row i of one (sequence, head) score matrix: which keys may it see? All j <= i, or, with a
 * DSA selection, the selected ones. Writes keep[j] in {0,1} for j <= i. */
static void allowed_keys(unsigned char *keep, const int32_t *sel_row, int topk, int i) {
    if (!sel_row) {
        memset(keep, 1, (size_t)i + 1);
        return;
    }
    memset(keep, 0, (size_t)i + 1);
    for (int t = 0; t < topk; t++)
        if (sel_row[t] >= 0 && sel_row[t] <= i) keep[sel_row[t]] = 1;
}

void mla_forward(const dsc_config *c, const mla_weights *w, const rope_table *rope, mla_acts *a, float *out,
                 const float *x, int B, int T, float *scratch) {
    mla_dims m = dims_of(c, B, T);
    int N = m.N, H = m.H;
    float scale = mla_softmax_scale(c);
    a->x = x;

    /* queries: q = RMSNorm(x wq_aᵀ) wq_bᵀ, or x wqᵀ */
    if (m.rq > 0) {
        dsc_linear_forward(a->cq_raw, x, w->wq_a, N, m.d, m.rq, false);
        rmsnorm_forward(a->cq, a->cq_rstd, a->cq_raw, w->q_norm, N, m.rq, c->rms_norm_eps);
        dsc_linear_forward(a->q, a->cq, w->wq_b, N, m.rq, H * m.dqk, false);
    } else {
        dsc_linear_forward(a->q, x, w->wq_b, N, m.d, H * m.dqk, false);
    }
    /* keys/values: latent and shared rope key */
    dsc_linear_forward(a->kva, x, w->wkv_a, N, m.d, m.rkv + m.dr, false);
    for (int r = 0; r < N; r++) {
        memcpy(a->ckv + (size_t)r * m.rkv, a->kva + (size_t)r * (m.rkv + m.dr), sizeof(float) * m.rkv);
        memcpy(a->kpe + (size_t)r * m.dr, a->kva + (size_t)r * (m.rkv + m.dr) + m.rkv, sizeof(float) * m.dr);
    }
    rmsnorm_forward(a->ckv, a->ckv_rstd, a->ckv, w->kv_norm, N, m.rkv, c->rms_norm_eps);
    for (int r = 0; r < N; r++) {
        int pos = r % T;
        rope_apply(a->kpe + (size_t)r * m.dr, rope, pos, true, false);
        for (int h = 0; h < H; h++) rope_apply(a->q + ((size_t)r * H + h) * m.dqk + m.dn, rope, pos, true, false);
    }
    dsc_linear_forward(a->kvb, a->ckv, w->wkv_b, N, m.rkv, H * (m.dn + m.dv), false);

    /* DSA: restrict each query to its selected keys when the context exceeds index_topk */
    a->use_sel = uses_selection(c, T);
    if (a->use_sel) dsa_select(c, &w->idx, rope, x, a->cq, B, T, a->sel, NULL, scratch);

    int ldq = H * m.dqk, ldkv = H * (m.dn + m.dv), ldo = H * m.dv;
#pragma omp parallel for schedule(dynamic, 1) collapse(2)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            const float *q = a->q + (size_t)b * T * ldq + (size_t)h * m.dqk;
            const float *kn = a->kvb + (size_t)b * T * ldkv + (size_t)h * (m.dn + m.dv);
            const float *v = kn + m.dn;
            const float *kpe = a->kpe + (size_t)b * T * m.dr;
            float *P = a->att + ((size_t)b * H + h) * T * T;
            /* S = q_nope k_nopeᵀ + q_pe kpeᵀ  (then scaled, masked and softmaxed row by row) */
            if (m.dn > 0) dsc_sgemm(false, true, T, T, m.dn, 1.0f, q, ldq, kn, ldkv, 0.0f, P, T);
            dsc_sgemm(false, true, T, T, m.dr, 1.0f, q + m.dn, ldq, kpe, m.dr, m.dn > 0 ? 1.0f : 0.0f, P, T);
            unsigned char keep[T];
            for (int i = 0; i < T; i++) {
                float *row = P + (size_t)i * T;
                allowed_keys(keep, a->use_sel ? a->sel + ((size_t)b * T + i) * m.topk : NULL, m.topk, i);
                float mx = -INFINITY;
                for (int j = 0; j <= i; j++)
                    if (keep[j] && row[j] * scale > mx) mx = row[j] * scale;
                float sum = 0;
#pragma omp simd reduction(+ : sum)
                for (int j = 0; j <= i; j++) {
                    float e = keep[j] ? dsc_expf(row[j] * scale - mx) : 0.0f;
                    row[j] = e;
                    sum += e;
                }
                float inv = 1.0f / sum;
#pragma omp simd
                for (int j = 0; j <= i; j++) row[j] *= inv;
                for (int j = i + 1; j < T; j++) row[j] = 0.0f;
            }
            /* o = P v */
            dsc_sgemm(false, false, T, m.dv, T, 1.0f, P, T, v, ldkv, 0.0f, a->o + (size_t)b * T * ldo + (size_t)h * m.dv,
                      ldo);
        }
    }
    dsc_linear_forward(out, a->o, w->wo, N, H * m.dv, m.d, false);
}

void mla_backward(const dsc_config *c, const mla_weights *w, const mla_weights *g, const rope_table *rope,
                  const mla_acts *a, float *dx, const float *dout, int B, int T, float *scratch) {
    mla_dims m = dims_of(c, B, T);
    int N = m.N, H = m.H;
    float scale = mla_softmax_scale(c);
    int ldq = H * m.dqk, ldkv = H * (m.dn + m.dv), ldo = H * m.dv;
    float *dO = scratch;                                 /* [N, H*dv] */
    float *dkvb = dO + (size_t)N * ldo;                  /* [N, H*(dn+dv)] */
    float *dq = dkvb + (size_t)N * ldkv;                 /* [N, H*dqk] */
    float *dkpe_h = dq + (size_t)N * ldq;                /* [N, H, dr] per-head rope-key grads */
    float *dcq = dkpe_h + (size_t)N * H * m.dr;          /* [N, rq] */
    float *dcq_raw = dcq + (size_t)N * (m.rq > 0 ? m.rq : 0);
    float *dkva = dcq_raw + (size_t)N * (m.rq > 0 ? m.rq : 0); /* [N, rkv+dr] */
    float *dckv = dkva + (size_t)N * (m.rkv + m.dr);     /* [N, rkv] */
    float *ckv_raw = dckv + (size_t)N * m.rkv;           /* [N, rkv] */
    float *dlat = ckv_raw + (size_t)N * m.rkv;           /* [N, rkv] grad of the raw latent */
    float *dP_all = dlat + (size_t)N * m.rkv;            /* [threads, T, T] */

    /* out = o woᵀ */
    dsc_linear_backward_weight(g->wo, dout, a->o, N, H * m.dv, m.d);
    dsc_linear_backward_input(dO, dout, w->wo, N, H * m.dv, m.d, false);

#pragma omp parallel for schedule(dynamic, 1) collapse(2)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            const float *q = a->q + (size_t)b * T * ldq + (size_t)h * m.dqk;
            const float *kn = a->kvb + (size_t)b * T * ldkv + (size_t)h * (m.dn + m.dv);
            const float *v = kn + m.dn;
            const float *kpe = a->kpe + (size_t)b * T * m.dr;
            const float *P = a->att + ((size_t)b * H + h) * T * T;
            const float *dOh = dO + (size_t)b * T * ldo + (size_t)h * m.dv;
            float *dqh = dq + (size_t)b * T * ldq + (size_t)h * m.dqk;
            float *dknh = dkvb + (size_t)b * T * ldkv + (size_t)h * (m.dn + m.dv);
            float *dvh = dknh + m.dn;
            float *dkpeh = dkpe_h + ((size_t)b * T * H + h) * m.dr; /* row stride H*dr */
            float *dS = dP_all + (size_t)T * T * omp_get_thread_num();
            /* dv = Pᵀ dO ; dP = dO vᵀ */
            dsc_sgemm(true, false, T, m.dv, T, 1.0f, P, T, dOh, ldo, 0.0f, dvh, ldkv);
            dsc_sgemm(false, true, T, T, m.dv, 1.0f, dOh, ldo, v, ldkv, 0.0f, dS, T);
            /* softmax backward: dS = P ⊙ (dP − Σ_j P dP) · scale  (masked entries have P = 0) */
            for (int i = 0; i < T; i++) {
                const float *p = P + (size_t)i * T;
                float *ds = dS + (size_t)i * T;
                double dot = 0;
                for (int j = 0; j <= i; j++) dot += (double)p[j] * ds[j];
                for (int j = 0; j <= i; j++) ds[j] = p[j] * (ds[j] - (float)dot) * scale;
                for (int j = i + 1; j < T; j++) ds[j] = 0.0f;
            }
            /* S = q_nope k_nopeᵀ + q_pe kpeᵀ */
            if (m.dn > 0) {
                dsc_sgemm(false, false, T, m.dn, T, 1.0f, dS, T, kn, ldkv, 0.0f, dqh, ldq);
                dsc_sgemm(true, false, T, m.dn, T, 1.0f, dS, T, q, ldq, 0.0f, dknh, ldkv);
            }
            dsc_sgemm(false, false, T, m.dr, T, 1.0f, dS, T, kpe, m.dr, 0.0f, dqh + m.dn, ldq);
            dsc_sgemm(true, false, T, m.dr, T, 1.0f, dS, T, q + m.dn, ldq, 0.0f, dkpeh, H * m.dr);
        }
    }

    /* rope backward (inverse rotation) on q_pe and the summed rope key */
    for (int r = 0; r < N; r++) {
        int pos = r % T;
        for (int h = 0; h < H; h++) rope_apply(dq + ((size_t)r * H + h) * m.dqk + m.dn, rope, pos, true, true);
        float *dk = dkva + (size_t)r * (m.rkv + m.dr) + m.rkv;
        for (int e = 0; e < m.dr; e++) {
            float s = 0;
            for (int h = 0; h < H; h++) s += dkpe_h[((size_t)r * H + h) * m.dr + e];
            dk[e] = s;
        }
        rope_apply(dk, rope, pos, true, true);
    }

    /* queries */
    if (m.rq > 0) {
        dsc_linear_backward_weight(g->wq_b, dq, a->cq, N, m.rq, ldq);
        dsc_linear_backward_input(dcq, dq, w->wq_b, N, m.rq, ldq, false);
        memset(dcq_raw, 0, sizeof(float) * (size_t)N * m.rq);
        rmsnorm_backward(dcq_raw, g->q_norm, dcq, a->cq_raw, w->q_norm, a->cq_rstd, N, m.rq);
        dsc_linear_backward_weight(g->wq_a, dcq_raw, a->x, N, m.d, m.rq);
        dsc_linear_backward_input(dx, dcq_raw, w->wq_a, N, m.d, m.rq, true);
    } else {
        dsc_linear_backward_weight(g->wq_b, dq, a->x, N, m.d, ldq);
        dsc_linear_backward_input(dx, dq, w->wq_b, N, m.d, ldq, true);
    }

    /* latent: kvb = ckv wkv_bᵀ, ckv = RMSNorm(kva[:, :rkv]) */
    dsc_linear_backward_weight(g->wkv_b, dkvb, a->ckv, N, m.rkv, ldkv);
    dsc_linear_backward_input(dckv, dkvb, w->wkv_b, N, m.rkv, ldkv, false);
    for (int r = 0; r < N; r++)
        memcpy(ckv_raw + (size_t)r * m.rkv, a->kva + (size_t)r * (m.rkv + m.dr), sizeof(float) * m.rkv);
    memset(dlat, 0, sizeof(float) * (size_t)N * m.rkv);
    rmsnorm_backward(dlat, g->kv_norm, dckv, ckv_raw, w->kv_norm, a->ckv_rstd, N, m.rkv);
    for (int r = 0; r < N; r++)
        memcpy(dkva + (size_t)r * (m.rkv + m.dr), dlat + (size_t)r * m.rkv, sizeof(float) * m.rkv);
    dsc_linear_backward_weight(g->wkv_a, dkva, a->x, N, m.d, m.rkv + m.dr);
    dsc_linear_backward_input(dx, dkva, w->wkv_a, N, m.d, m.rkv + m.dr, true);
}
