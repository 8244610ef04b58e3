/* engine.c: the inference forward pass over R rows with the latent KV cache (see engine.h).
 * Buffers for max_rows rows are allocated once; a pass allocates nothing. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "kernels/kernels.h"
#include "kernels/vmath.h"
#include "infer/engine.h"
#include "model/config.h"
#include "model/ffn.h"
#include "model/mhc.h"
#include "model/moe.h"
#include "model/norm.h"
#include "model/rope.h"

struct engine {
    iweights w;
    dsc_config cfg;
    engine_options opt;
    rope_table rope;
    int nb;                      /* main blocks (the main pass) */
    double flops_per_token;      /* forward matmul FLOPs of one row (dsc_config_stats) */
    double serial_pass_flops;    /* passes of less work run on one thread (see forward_rows) */
    int ncache;                  /* blocks with a cache: main + the first MTP block if loaded */
    int *seq_len;                /* [max_seqs], -1 = free */
    float *kv, *pe, *ik;         /* caches [max_seqs][nb][max_ctx][rkv | dr | dI] */
    /* per-pass buffers, max_rows rows */
    int *row_seq, *row_pos;
    int32_t *row_tok;
    float *xa, *xb;              /* streams [R, n, d] */
    float *u, *an, *y, *hn;      /* [R, d] */
    float *mhc_mem, *mhc_scratch;
    mhc_acts mhc;
    float *cq, *q, *kva, *qlat, *olat, *o; /* attention */
    float *hx;                   /* one head's rows gathered [H][R][max(dn, dv)] */
    float *S;                    /* scores of one sequence's rows [R*H, max_ctx] */
    float *qI, *kI, *wI, *iscore;/* indexer */
    unsigned char *allow;        /* [R, max_ctx] DSA selection mask */
    float *z, *wts;              /* router [R, E], [R, K] */
    int32_t *idx;                /* [R, K] */
    float *xg, *h1, *h3, *act, *fo; /* expert / dense FFN buffers */
    int32_t *grow;               /* [R*K] the rows routed to the experts, gathered expert by expert */
    float *gw;                   /* their routing weights */
    int *first, *count;          /* [E] where each expert's rows start in grow, and how many */
    qt_job *jobs;                /* [2E+4] the products of one MoE pass (qt_matmul_batch) */
};

static float *zalloc(size_t floats, int *fail) {
    float *p = dsc_alloc(floats * sizeof(float));
    if (!p) *fail = 1;
    return p;
}

/* Below this much work a pass is too small to share between threads by any measure: GRPO then
 * runs one engine a thread side by side (engine_pass_is_small), and a pass never uses more than
 * one. On the Intel machine of sessions 1-8 the `small` model decoded 64 rows at about 2,400
 * tokens/s on one thread and 1,100 on two. */
#define PARALLEL_MIN_PASS_FLOPS 2e9

bool engine_pass_is_small(const engine *e, int rows) { return e->flops_per_token * rows < PARALLEL_MIN_PASS_FLOPS; }

/* Below PARALLEL_MIN_PASS_FLOPS a pass still runs on all threads when their fork and join are
 * cheap here: a pass is about PASS_REGIONS_PER_LAYER parallel regions a layer, and goes parallel
 * when their cost is under a quarter of the pass's work at SERIAL_FLOPS a second on one thread.
 * The cost is measured when the engine is made: on 2 Zen 4 vCPUs a region takes 0.6 us and the
 * `small` model decodes 1 row at 4,570 tokens/s on two threads against 3,700 on one (16 rows
 * 7,250 against 5,550). */
#define PASS_REGIONS_PER_LAYER 12
#define SERIAL_FLOPS 2e10

/* Seconds of one fork and join of all threads: the 8th fastest of 31 empty parallel regions
 * after a warm-up (a lower quantile than the median: a neighbour's burst during the 31 must not
 * decide how every pass of this engine runs). */
static double fork_join_seconds(void) {
    if (omp_get_max_threads() < 2) return 0;
    double t[31];
    volatile int sink = 0;
    for (int k = -8; k < 31; k++) {
        double t0 = omp_get_wtime();
#pragma omp parallel
        {
            if (omp_get_thread_num() == 0) sink = sink + 1;
        }
        if (k >= 0) t[k] = omp_get_wtime() - t0;
    }
    for (int i = 1; i < 31; i++) /* insertion sort: 31 values */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double v = t[j];
            t[j] = t[j - 1];
            t[j - 1] = v;
        }
    return t[7];
}

const dsc_config *engine_config(const engine *e) { return &e->cfg; }
int engine_max_rows(const engine *e) { return e->opt.max_rows; }
int engine_max_ctx(const engine *e) { return e->opt.max_ctx; }

static double qt_bytes(const qtensor *t) { return t->rows > 0 ? (double)t->rows * qt_row_bytes(t->type, t->cols) : 0; }
static double ffn_bytes(const iffn *f) { return qt_bytes(&f->w1) + qt_bytes(&f->w3) + qt_bytes(&f->w2); }

double engine_decode_weight_bytes(const engine *e) {
    const dsc_config *c = &e->cfg;
    const iweights *w = &e->w;
    double bytes = qt_bytes(&w->head) + (double)qt_row_bytes(w->embed.type, w->embed.cols);
    for (int l = 0; l < e->nb; l++) {
        const iblock *b = &w->blocks[l];
        const iattn *a = &b->attn;
        bytes += qt_bytes(&a->wq_a) + qt_bytes(&a->wq_b) + qt_bytes(&a->wkv_a) + qt_bytes(&a->wk_t) +
                 qt_bytes(&a->wv) + qt_bytes(&a->wo) + qt_bytes(&a->idx_wq_b) + qt_bytes(&a->idx_wk) +
                 qt_bytes(&a->idx_weights_proj);
        if (!b->is_moe) {
            bytes += ffn_bytes(&b->mlp);
            continue;
        }
        double experts = 0;
        for (int x = 0; x < c->n_routed_experts; x++) experts += ffn_bytes(&b->experts[x]);
        bytes += qt_bytes(&b->gate) + ffn_bytes(&b->shared) + experts * c->num_experts_per_tok / c->n_routed_experts;
    }
    return bytes;
}

size_t engine_kv_bytes_per_token(const engine *e) {
    const dsc_config *c = &e->cfg;
    size_t per = (size_t)c->kv_lora_rank + c->qk_rope_head_dim + (c->index_n_heads > 0 ? c->index_head_dim : 0);
    return per * sizeof(float) * e->ncache;
}

void engine_free(engine *e) {
    if (!e) return;
    iweights_free(&e->w);
    rope_table_free(&e->rope);
    free(e->seq_len);
    free(e->row_seq);
    free(e->row_pos);
    free(e->row_tok);
    free(e->grow);
    free(e->first);
    free(e->count);
    free(e->jobs);
    free(e->idx);
    free(e->allow);
    float *bufs[] = {e->kv, e->pe, e->ik, e->xa, e->xb, e->u, e->an, e->y, e->hn, e->mhc_mem, e->mhc_scratch,
                     e->cq, e->q, e->kva, e->qlat, e->olat, e->hx, e->o, e->S, e->qI, e->kI, e->wI, e->iscore, e->z,
                     e->wts, e->xg, e->h1, e->h3, e->act, e->fo, e->gw};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) dsc_free(bufs[i]);
    free(e);
}

dsc_status engine_create(iweights *w, const engine_options *o, engine **out) {
    *out = NULL;
    const dsc_config *c = &w->cfg;
    if (o->max_seqs < 1 || o->max_rows < 1 || o->max_ctx < 1)
        return dsc_set_error("engine: max_seqs, max_rows and max_ctx must be >= 1");
    if (o->max_ctx > c->max_position_embeddings)
        return dsc_set_error("engine: max_ctx %d exceeds max_position_embeddings %d", o->max_ctx,
                             c->max_position_embeddings);
    engine *e = calloc(1, sizeof *e);
    if (!e) return dsc_set_error("out of memory");
    e->w = *w;
    memset(w, 0, sizeof *w);
    e->cfg = e->w.cfg;
    c = &e->cfg;
    e->opt = *o;
    dsc_config_stats cs;
    e->flops_per_token = dsc_config_stats_compute(c, &cs) == DSC_OK ? cs.flops_per_token : 1e12;
    e->nb = c->num_hidden_layers;
    e->serial_pass_flops = 4.0 * PASS_REGIONS_PER_LAYER * e->nb * fork_join_seconds() * SERIAL_FLOPS;
    if (e->serial_pass_flops > PARALLEL_MIN_PASS_FLOPS) e->serial_pass_flops = PARALLEL_MIN_PASS_FLOPS;
    e->ncache = e->nb + (c->num_nextn_predict_layers > 0 ? 1 : 0);
    int R = o->max_rows, d = c->hidden_size, n = cfg_streams(c), H = c->num_attention_heads;
    int rq = c->q_lora_rank, rkv = c->kv_lora_rank, dr = c->qk_rope_head_dim, dqk = cfg_qk_head_dim(c);
    int E = c->n_routed_experts, K = c->num_experts_per_tok;
    size_t slots = (size_t)o->max_seqs * e->ncache * o->max_ctx;
    int fail = 0;
    if (rope_table_init(&e->rope, c, o->max_ctx)) fail = 1;
    e->seq_len = malloc(sizeof(int) * o->max_seqs);
    e->row_seq = malloc(sizeof(int) * R);
    e->row_pos = malloc(sizeof(int) * R);
    e->row_tok = malloc(sizeof(int32_t) * R);
    e->grow = malloc(sizeof(int32_t) * (size_t)R * (K > 0 ? K : 1));
    e->idx = malloc(sizeof(int32_t) * (size_t)R * (K > 0 ? K : 1));
    e->allow = malloc((size_t)R * o->max_ctx);
    if (!e->seq_len || !e->row_seq || !e->row_pos || !e->row_tok || !e->grow || !e->idx || !e->allow) fail = 1;
    e->kv = zalloc(slots * rkv, &fail);
    e->pe = zalloc(slots * dr, &fail);
    if (c->index_n_heads > 0) e->ik = zalloc(slots * c->index_head_dim, &fail);
    e->xa = zalloc((size_t)R * n * d, &fail);
    e->xb = zalloc((size_t)R * n * d, &fail);
    e->u = zalloc((size_t)R * d, &fail);
    e->an = zalloc((size_t)R * d, &fail);
    e->y = zalloc((size_t)R * d, &fail);
    e->hn = zalloc((size_t)R * d, &fail);
    if (cfg_has_mhc(c)) {
        e->mhc_mem = zalloc(mhc_acts_floats(c, R), &fail);
        e->mhc_scratch = zalloc(mhc_scratch_floats(c, R), &fail);
        if (e->mhc_mem) mhc_acts_bind(&e->mhc, e->mhc_mem, c, R);
    }
    e->cq = zalloc((size_t)R * (rq > 0 ? rq : 1), &fail);
    e->q = zalloc((size_t)R * H * dqk, &fail);
    e->kva = zalloc((size_t)R * (rkv + dr), &fail);
    e->qlat = zalloc((size_t)R * H * rkv, &fail);
    e->olat = zalloc((size_t)R * H * rkv, &fail);
    e->hx = zalloc((size_t)R * H * (c->qk_nope_head_dim > c->v_head_dim ? c->qk_nope_head_dim : c->v_head_dim), &fail);
    e->o = zalloc((size_t)R * H * c->v_head_dim, &fail);
    e->S = zalloc((size_t)R * H * o->max_ctx, &fail);
    if (c->index_n_heads > 0) {
        e->qI = zalloc((size_t)R * c->index_n_heads * c->index_head_dim, &fail);
        e->kI = zalloc((size_t)R * c->index_head_dim, &fail);
        e->wI = zalloc((size_t)R * c->index_n_heads, &fail);
        e->iscore = zalloc((size_t)o->max_ctx * 2, &fail);
    }
    int I = c->intermediate_size > c->moe_intermediate_size * (c->n_shared_experts > 1 ? c->n_shared_experts : 1)
                ? c->intermediate_size
                : c->moe_intermediate_size * (c->n_shared_experts > 1 ? c->n_shared_experts : 1);
    if (I < 2 * d) I = 2 * d; /* act also holds the MTP concatenation [R, 2d] */
    e->z = zalloc((size_t)R * (E > 0 ? E : 1), &fail);
    e->wts = zalloc((size_t)R * (K > 0 ? K : 1), &fail);
    /* MoE: the R*K routed rows and the R shared rows side by side (feed_forward) */
    size_t moe_h = (size_t)R * K * c->moe_intermediate_size + (size_t)R * c->moe_intermediate_size * c->n_shared_experts;
    size_t hsz = (size_t)R * I > moe_h ? (size_t)R * I : moe_h;
    e->xg = zalloc((size_t)R * (K > 0 ? K : 1) * d, &fail);
    e->h1 = zalloc(hsz, &fail);
    e->h3 = zalloc(hsz, &fail);
    e->act = zalloc(hsz, &fail);
    e->fo = zalloc((size_t)R * (K > 0 ? K : 1) * d, &fail);
    e->gw = zalloc((size_t)R * (K > 0 ? K : 1), &fail);
    e->first = calloc((size_t)(E > 0 ? E : 1), sizeof(int));
    e->count = calloc((size_t)(E > 0 ? E : 1), sizeof(int));
    e->jobs = calloc((size_t)2 * (E > 0 ? E : 1) + 4, sizeof(qt_job));
    if (!e->first || !e->count || !e->jobs) fail = 1;
    if (fail) {
        engine_free(e);
        return dsc_set_error("engine: out of memory (KV cache for %d sequences x %d tokens: %.2f GiB)", o->max_seqs,
                             o->max_ctx, slots * (rkv + dr) * 4.0 / (1 << 30));
    }
    for (int s = 0; s < o->max_seqs; s++) e->seq_len[s] = -1;
    *out = e;
    return DSC_OK;
}

int engine_seq_new(engine *e) {
    for (int s = 0; s < e->opt.max_seqs; s++)
        if (e->seq_len[s] < 0) {
            e->seq_len[s] = 0;
            return s;
        }
    return -1;
}

void engine_seq_free(engine *e, int seq) {
    if (seq >= 0 && seq < e->opt.max_seqs) e->seq_len[seq] = -1;
}

int engine_free_seqs(const engine *e) {
    int n = 0;
    for (int s = 0; s < e->opt.max_seqs; s++) n += e->seq_len[s] < 0;
    return n;
}

int engine_seq_fork(engine *e, int src) {
    if (src < 0 || src >= e->opt.max_seqs || e->seq_len[src] < 0) return -1;
    int dst = engine_seq_new(e);
    if (dst < 0) return -1;
    const dsc_config *c = &e->cfg;
    size_t C = (size_t)e->opt.max_ctx, len = (size_t)e->seq_len[src];
    size_t dims[3] = {(size_t)c->kv_lora_rank, (size_t)c->qk_rope_head_dim, e->ik ? (size_t)c->index_head_dim : 0};
    float *caches[3] = {e->kv, e->pe, e->ik};
    for (int k = 0; k < 3; k++) {
        if (!caches[k] || dims[k] == 0) continue;
        for (int l = 0; l < e->ncache; l++)
            memcpy(caches[k] + ((size_t)dst * e->ncache + l) * C * dims[k],
                   caches[k] + ((size_t)src * e->ncache + l) * C * dims[k], sizeof(float) * len * dims[k]);
    }
    e->seq_len[dst] = (int)len;
    return dst;
}

int engine_seq_len(const engine *e, int seq) { return seq >= 0 && seq < e->opt.max_seqs ? e->seq_len[seq] : -1; }

void engine_seq_truncate(engine *e, int seq, int len) {
    if (seq >= 0 && seq < e->opt.max_seqs && len >= 0 && len < e->seq_len[seq]) e->seq_len[seq] = len;
}

const float *engine_last_hidden(const engine *e) { return e->hn; }

/* ---------------------------------------------------------------------------------------------
 * DSA: which cached keys each row may attend to (only when its context exceeds index_topk)
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    float s;
    int j;
} scored;

static int by_score(const void *pa, const void *pb) {
    const scored *a = pa, *b = pb;
    if (a->s > b->s) return -1;
    if (a->s < b->s) return 1;
    return (a->j > b->j) - (a->j < b->j);
}

/* The indexer's keys of the pass's rows go into the indexer cache; rows whose context is longer
 * than index_topk get their selection in e->allow. Returns whether any row is sparse. */
static bool indexer(engine *e, int l, const iattn *a, int R) {
    const dsc_config *c = &e->cfg;
    int HI = c->index_n_heads, dI = c->index_head_dim, topk = c->index_topk, C = e->opt.max_ctx;
    bool inter = c->index_rope_interleaved;
    qt_matmul(e->qI, e->cq, &a->idx_wq_b, R, false);
    qt_matmul(e->kI, e->an, &a->idx_wk, R, false);
    layernorm_forward(e->kI, NULL, NULL, e->kI, a->idx_k_norm_w, a->idx_k_norm_b, R, dI, 1e-6f);
    qt_matmul(e->wI, e->an, &a->idx_weights_proj, R, false);
    float wscale = 1.0f / sqrtf((float)HI) / sqrtf((float)dI);
    bool any = false;
    for (int r = 0; r < R; r++) {
        int s = e->row_seq[r], pos = e->row_pos[r];
        for (int h = 0; h < HI; h++) rope_apply(e->qI + ((size_t)r * HI + h) * dI, &e->rope, pos, inter, false);
        float *k = e->kI + (size_t)r * dI;
        rope_apply(k, &e->rope, pos, inter, false);
        memcpy(e->ik + (((size_t)s * e->ncache + l) * C + pos) * dI, k, sizeof(float) * dI);
        any |= pos + 1 > topk;
    }
    if (!any) return false;
    for (int r = 0; r < R; r++) {
        int s = e->row_seq[r], pos = e->row_pos[r];
        unsigned char *allow = e->allow + (size_t)r * C;
        if (pos + 1 <= topk) {
            memset(allow, 1, (size_t)pos + 1);
            continue;
        }
        /* keys of this sequence up to pos (rows later in the pass have written theirs already:
         * a row only reads positions <= its own) */
        const float *keys = e->ik + ((size_t)s * e->ncache + l) * C * dI;
        scored *cand = (scored *)e->iscore;
        for (int j = 0; j <= pos; j++) {
            float sum = 0;
            for (int h = 0; h < HI; h++) {
                const float *qh = e->qI + ((size_t)r * HI + h) * dI;
                float dot = 0;
                for (int t = 0; t < dI; t++) dot += qh[t] * keys[(size_t)j * dI + t];
                sum += e->wI[(size_t)r * HI + h] * wscale * (dot > 0 ? dot : 0);
            }
            cand[j].s = sum;
            cand[j].j = j;
        }
        qsort(cand, (size_t)pos + 1, sizeof *cand, by_score);
        memset(allow, 0, (size_t)pos + 1);
        for (int t = 0; t < topk; t++) allow[cand[t].j] = 1;
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Attention (absorbed MLA over the latent cache)
 * ------------------------------------------------------------------------------------------- */

/* y[r, h*m..] = W[h] x[r, h*stride..(h*stride+k)] for each head h, with W's rows h*m.. (m = rows / H):
 * x gathered into xh [H][R][k], products into yh [H][R][m], scattered into y [R, H*m]. Heads run
 * side by side, each product on one thread (H >= the cores; a decode row reads each W once). */
static void per_head(int R, int H, const float *x, int stride, int k, const qtensor *W, float *xh, float *yh, float *y) {
    int m = W->rows / H;
    size_t rb = qt_row_bytes(W->type, W->cols);
#pragma omp parallel for schedule(static)
    for (int h = 0; h < H; h++) {
        float *xs = xh + (size_t)h * R * k, *ys = yh + (size_t)h * R * m;
        for (int r = 0; r < R; r++) memcpy(xs + (size_t)r * k, x + ((size_t)r * H + h) * stride, sizeof(float) * k);
        qtensor Wh = {W->type, m, W->cols, (const uint8_t *)W->data + (size_t)h * m * rb, NULL};
        qt_matmul(ys, xs, &Wh, R, false);
        for (int r = 0; r < R; r++) memcpy(y + ((size_t)r * H + h) * m, ys + (size_t)r * m, sizeof(float) * m);
    }
}

static void attention(engine *e, int l, const iattn *a, int R, float *out) {
    const dsc_config *c = &e->cfg;
    int H = c->num_attention_heads, rq = c->q_lora_rank, rkv = c->kv_lora_rank, dr = c->qk_rope_head_dim;
    int dn = c->qk_nope_head_dim, dqk = dn + dr, C = e->opt.max_ctx;
    float scale = mla_softmax_scale(c);
    /* queries (low-rank: down-projection, norm, up-projection), and the new tokens' latent and
     * rope key, which go into the cache; the projections of the same input in one pass */
    qt_job proj[2] = {{e->kva, e->an, &a->wkv_a, R, false},
                      {rq > 0 ? e->cq : e->q, e->an, rq > 0 ? &a->wq_a : &a->wq_b, R, false}};
    qt_matmul_batch(proj, 2);
    if (rq > 0) {
        rmsnorm_forward(e->cq, NULL, e->cq, a->q_norm, R, rq, c->rms_norm_eps);
        qt_matmul(e->q, e->cq, &a->wq_b, R, false);
    }
    for (int r = 0; r < R; r++) {
        int s = e->row_seq[r], pos = e->row_pos[r];
        size_t slot = ((size_t)s * e->ncache + l) * C + pos;
        float *kv = e->kv + slot * rkv, *pe = e->pe + slot * dr;
        rmsnorm_forward(kv, NULL, e->kva + (size_t)r * (rkv + dr), a->kv_norm, 1, rkv, c->rms_norm_eps);
        memcpy(pe, e->kva + (size_t)r * (rkv + dr) + rkv, sizeof(float) * dr);
        rope_apply(pe, &e->rope, pos, true, false);
        for (int h = 0; h < H; h++) rope_apply(e->q + ((size_t)r * H + h) * dqk + dn, &e->rope, pos, true, false);
    }
    bool sparse = c->index_n_heads > 0 && indexer(e, l, a, R);
    /* absorb W_UK into the queries: q_lat[r,h] = q_nope[r,h] · W_UK[h] = wk_t[h] q_nope[r,h] */
    per_head(R, H, e->q, dqk, dn, &a->wk_t, e->hx, e->olat, e->qlat);
    /* rows of one sequence are consecutive in a pass: one score matrix per run of rows */
    for (int r0 = 0; r0 < R;) {
        int s = e->row_seq[r0], r1 = r0 + 1;
        while (r1 < R && e->row_seq[r1] == s) r1++;
        int M = (r1 - r0) * H, T = e->row_pos[r1 - 1] + 1;
        const float *kv = e->kv + ((size_t)s * e->ncache + l) * C * rkv, *pe = e->pe + ((size_t)s * e->ncache + l) * C * dr;
        /* S[(r,h), t] = q_lat·kv[t] + q_pe·pe[t] */
        dsc_sgemm(false, true, M, T, rkv, 1.0f, e->qlat + (size_t)r0 * H * rkv, rkv, kv, rkv, 0.0f, e->S, T);
        for (int r = r0; r < r1; r++) /* the rope part: H rows of dr, strided in q */
            dsc_sgemm(false, true, H, T, dr, 1.0f, e->q + (size_t)r * H * dqk + dn, dqk, pe, dr, 1.0f,
                      e->S + (size_t)(r - r0) * H * T, T);
#pragma omp parallel for schedule(static) if (M * T > 16384)
        for (int i = 0; i < M; i++) {
            int r = r0 + i / H, pos = e->row_pos[r];
            const unsigned char *allow = sparse ? e->allow + (size_t)r * C : NULL;
            float *row = e->S + (size_t)i * T, mx = -INFINITY;
            for (int t = 0; t <= pos; t++)
                if (!allow || allow[t]) mx = fmaxf(mx, row[t] * scale);
            float sum = 0;
#pragma omp simd reduction(+ : sum)
            for (int t = 0; t <= pos; t++) {
                float p = (!allow || allow[t]) ? dsc_expf(row[t] * scale - mx) : 0.0f;
                row[t] = p;
                sum += p;
            }
            float inv = 1.0f / sum;
            for (int t = 0; t <= pos; t++) row[t] *= inv;
            for (int t = pos + 1; t < T; t++) row[t] = 0.0f;
        }
        /* o_lat = P · kv */
        dsc_sgemm(false, false, M, rkv, T, 1.0f, e->S, T, kv, rkv, 0.0f, e->olat + (size_t)r0 * H * rkv, rkv);
        r0 = r1;
    }
    /* o[r,h] = W_UV[h] · o_lat[r,h]   ([dv, rkv] x [rkv]) */
    per_head(R, H, e->olat, rkv, rkv, &a->wv, e->qlat, e->hx, e->o);
    qt_matmul(out, e->o, &a->wo, R, false);
}

/* ---------------------------------------------------------------------------------------------
 * Feed-forward: dense SwiGLU, or MoE over the selected experts only
 * ------------------------------------------------------------------------------------------- */

static void swiglu_rows(engine *e, const iffn *f, const float *x, int N, float *out, bool accumulate) {
    int I = f->w1.rows;
    qt_job gate_up[2] = {{e->h1, x, &f->w1, N, false}, {e->h3, x, &f->w3, N, false}};
    qt_matmul_batch(gate_up, 2);
    swiglu_forward(e->act, e->h1, e->h3, (long)N * I);
    qt_matmul(out, e->act, &f->w2, N, accumulate);
}

static void feed_forward(engine *e, const iblock *b, int R, float *out) {
    const dsc_config *c = &e->cfg;
    int d = c->hidden_size;
    if (!b->is_moe) {
        swiglu_rows(e, &b->mlp, e->an, R, out, false);
        return;
    }
    int E = c->n_routed_experts, K = c->num_experts_per_tok, Ie = c->moe_intermediate_size;
    int Is = b->shared.w1.rows;
    qt_matmul(e->z, e->an, &b->gate, R, false);
    moe_route_logits(c, b->gate_bias, e->z, R, e->idx, e->wts);
    /* the rows routed to each expert, gathered expert after expert: expert x owns rows
     * [first[x], first[x] + count[x]) of xg, h1, h3, act and fo */
    int n = 0;
    for (int x = 0; x < E; x++) {
        e->first[x] = n;
        for (int r = 0; r < R; r++)
            for (int k = 0; k < K; k++)
                if (e->idx[(size_t)r * K + k] == x) {
                    e->grow[n] = r;
                    e->gw[n] = e->wts[(size_t)r * K + k];
                    memcpy(e->xg + (size_t)n * d, e->an + (size_t)r * d, sizeof(float) * d);
                    n++;
                }
        e->count[x] = n - e->first[x];
    }
    /* gate and up of the shared experts and of every selected expert in one pass, then down:
     * only the selected experts' weights are read, and the threads stream through all of them
     * without a join between two experts. The shared experts' rows follow the routed ones. */
    float *sh1 = e->h1 + (size_t)n * Ie, *sh3 = e->h3 + (size_t)n * Ie, *sha = e->act + (size_t)n * Ie;
    int nj = 0;
    if (Is > 0) {
        e->jobs[nj++] = (qt_job){sh1, e->an, &b->shared.w1, R, false};
        e->jobs[nj++] = (qt_job){sh3, e->an, &b->shared.w3, R, false};
    }
    for (int x = 0; x < E; x++)
        if (e->count[x]) {
            const iffn *f = &b->experts[x];
            size_t o = (size_t)e->first[x];
            e->jobs[nj++] = (qt_job){e->h1 + o * Ie, e->xg + o * d, &f->w1, e->count[x], false};
            e->jobs[nj++] = (qt_job){e->h3 + o * Ie, e->xg + o * d, &f->w3, e->count[x], false};
        }
    qt_matmul_batch(e->jobs, nj);
    swiglu_forward(e->act, e->h1, e->h3, (long)n * Ie);
    if (Is > 0) swiglu_forward(sha, sh1, sh3, (long)R * Is);
    nj = 0;
    if (Is > 0) e->jobs[nj++] = (qt_job){out, sha, &b->shared.w2, R, false};
    else memset(out, 0, sizeof(float) * (size_t)R * d);
    for (int x = 0; x < E; x++)
        if (e->count[x]) {
            size_t o = (size_t)e->first[x];
            e->jobs[nj++] = (qt_job){e->fo + o * d, e->act + o * Ie, &b->experts[x].w2, e->count[x], false};
        }
    qt_matmul_batch(e->jobs, nj);
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)e->grow[i] * d, *f = e->fo + (size_t)i * d, wgt = e->gw[i];
        for (int j = 0; j < d; j++) o[j] += wgt * f[j];
    }
}

/* ---------------------------------------------------------------------------------------------
 * The pass
 * ------------------------------------------------------------------------------------------- */

/* One sub-layer around F: plain residual x += F(RMSNorm(x)), or mHC. x_in/x_out: [R, n, d]. */
typedef enum { SUB_ATTN, SUB_FFN } sublayer;

static void sublayer_pass(engine *e, int l, sublayer which, int R, float *x_in, float *x_out) {
    const dsc_config *c = &e->cfg;
    const iblock *b = &e->w.blocks[l];
    int d = c->hidden_size;
    const float *norm_w = which == SUB_ATTN ? b->attn_norm : b->ffn_norm;
    if (cfg_has_mhc(c)) {
        const imhc *im = which == SUB_ATTN ? &b->attn_mhc : &b->ffn_mhc;
        mhc_weights mw = {(float *)im->phi, (float *)im->bias, (float *)im->alpha};
        mhc_pre(c, &mw, &e->mhc, e->u, x_in, R, e->mhc_scratch);
        rmsnorm_forward(e->an, NULL, e->u, norm_w, R, d, c->rms_norm_eps);
    } else {
        rmsnorm_forward(e->an, NULL, x_in, norm_w, R, d, c->rms_norm_eps);
    }
    if (which == SUB_ATTN) attention(e, l, &b->attn, R, e->y);
    else feed_forward(e, b, R, e->y);
    if (cfg_has_mhc(c)) {
        mhc_post(c, &e->mhc, x_out, x_in, e->y, R);
    } else {
        size_t nd = (size_t)R * d;
        for (size_t i = 0; i < nd; i++) x_out[i] = x_in[i] + e->y[i];
    }
}

/* Runs the rows set up in row_seq/row_pos/row_tok; the logits of every row go to logits [R, V]
 * (NULL: none; e->hn keeps the normed final states either way). */
static void forward_rows_all(engine *e, int R, float *logits);

static void forward_rows(engine *e, int R, float *logits) {
    if (e->flops_per_token * R >= e->serial_pass_flops || omp_in_parallel()) {
        forward_rows_all(e, R, logits);
        return;
    }
    int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    forward_rows_all(e, R, logits);
    omp_set_num_threads(nt);
}

static void forward_rows_all(engine *e, int R, float *logits) {
    const dsc_config *c = &e->cfg;
    int d = c->hidden_size, n = cfg_streams(c);
    for (int r = 0; r < R; r++) qt_dequant_row(e->u + (size_t)r * d, &e->w.embed, e->row_tok[r]);
    mhc_expand(e->xa, e->u, R, n, d);
    float *x = e->xa, *xo = e->xb;
    for (int l = 0; l < e->nb; l++) {
        sublayer_pass(e, l, SUB_ATTN, R, x, xo);
        sublayer_pass(e, l, SUB_FFN, R, xo, x);
    }
    mhc_reduce(e->u, x, R, n, d);
    rmsnorm_forward(e->hn, NULL, e->u, e->w.norm, R, d, c->rms_norm_eps);
    if (logits) qt_matmul(logits, e->hn, &e->w.head, R, false);
}

bool engine_has_mtp(const engine *e) { return e->ncache > e->nb; }

dsc_status engine_mtp(engine *e, int seq, const float *g, const int32_t *next, int R, int start_pos, float *logits) {
    const dsc_config *c = &e->cfg;
    if (!engine_has_mtp(e)) return dsc_set_error("this model has no MTP module loaded");
    if (R < 1 || R > e->opt.max_rows || start_pos < 0 || start_pos + R > e->opt.max_ctx)
        return dsc_set_error("mtp: %d rows at position %d do not fit", R, start_pos);
    int d = c->hidden_size, n = cfg_streams(c), L = e->nb;
    const iblock *b = &e->w.blocks[L];
    float *en = e->an, *gn = e->y, *cat = e->act; /* act holds [R, 2d]: at least max(I) >= ... see create */
    for (int r = 0; r < R; r++) {
        e->row_seq[r] = seq;
        e->row_pos[r] = start_pos + r;
        qt_dequant_row(en + (size_t)r * d, &e->w.embed, next[r]);
    }
    rmsnorm_forward(en, NULL, en, b->enorm, R, d, c->rms_norm_eps);
    rmsnorm_forward(gn, NULL, g, b->hnorm, R, d, c->rms_norm_eps);
    for (int r = 0; r < R; r++) { /* embedding first */
        memcpy(cat + (size_t)r * 2 * d, en + (size_t)r * d, sizeof(float) * d);
        memcpy(cat + (size_t)r * 2 * d + d, gn + (size_t)r * d, sizeof(float) * d);
    }
    qt_matmul(e->u, cat, &b->eh_proj, R, false);
    mhc_expand(e->xa, e->u, R, n, d);
    sublayer_pass(e, L, SUB_ATTN, R, e->xa, e->xb);
    sublayer_pass(e, L, SUB_FFN, R, e->xb, e->xa);
    mhc_reduce(e->u, e->xa, R, n, d);
    rmsnorm_forward(e->u, NULL, e->u, b->head_norm, R, d, c->rms_norm_eps);
    if (logits) qt_matmul(logits, e->u, &e->w.head, R, false);
    return DSC_OK;
}

static int check_token(const engine *e, int32_t t) {
    if (t < 0 || t >= e->cfg.vocab_size)
        return dsc_set_error("token %d is outside the vocabulary [0, %d)", t, e->cfg.vocab_size);
    return DSC_OK;
}

dsc_status engine_prefill(engine *e, int seq, const int32_t *tokens, int n, float *logits, float *all_logits) {
    if (seq < 0 || seq >= e->opt.max_seqs || e->seq_len[seq] < 0) return dsc_set_error("prefill: no sequence %d", seq);
    if (e->seq_len[seq] + n > e->opt.max_ctx)
        return dsc_set_error("prefill: %d + %d tokens exceed the context of %d", e->seq_len[seq], n, e->opt.max_ctx);
    for (int i = 0; i < n; i++)
        if (check_token(e, tokens[i])) return DSC_ERR;
    int V = e->cfg.vocab_size;
    for (int i0 = 0; i0 < n; i0 += e->opt.max_rows) {
        int R = n - i0 < e->opt.max_rows ? n - i0 : e->opt.max_rows;
        for (int r = 0; r < R; r++) {
            e->row_seq[r] = seq;
            e->row_pos[r] = e->seq_len[seq] + r;
            e->row_tok[r] = tokens[i0 + r];
        }
        bool last_chunk = i0 + R == n;
        if (all_logits) {
            forward_rows(e, R, all_logits + (size_t)i0 * V);
        } else {
            forward_rows(e, R, NULL);
            if (last_chunk && logits) /* only the last row goes through the head */
                qt_matmul(logits, e->hn + (size_t)(R - 1) * e->cfg.hidden_size, &e->w.head, 1, false);
        }
        e->seq_len[seq] += R;
    }
    if (all_logits && logits) memcpy(logits, all_logits + (size_t)(n - 1) * V, sizeof(float) * V);
    return DSC_OK;
}

dsc_status engine_decode(engine *e, const int *seqs, const int32_t *tokens, int n, float *logits) {
    if (n < 1 || n > e->opt.max_rows) return dsc_set_error("decode: %d sequences (1..%d expected)", n, e->opt.max_rows);
    for (int r = 0; r < n; r++) {
        int s = seqs[r];
        if (s < 0 || s >= e->opt.max_seqs || e->seq_len[s] < 0) return dsc_set_error("decode: no sequence %d", s);
        if (e->seq_len[s] + 1 > e->opt.max_ctx)
            return dsc_set_error("decode: sequence %d is full (%d tokens)", s, e->opt.max_ctx);
        for (int q = 0; q < r; q++)
            if (seqs[q] == s) return dsc_set_error("decode: sequence %d appears twice in one step", s);
        if (check_token(e, tokens[r])) return DSC_ERR;
        e->row_seq[r] = s;
        e->row_pos[r] = e->seq_len[s];
        e->row_tok[r] = tokens[r];
    }
    forward_rows(e, n, logits);
    for (int r = 0; r < n; r++) e->seq_len[seqs[r]]++;
    return DSC_OK;
}
