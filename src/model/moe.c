/* moe.c: DeepSeekMoE forward and backward (docs/MODEL.md §6). The router picks K experts per row;
 * the (row, slot) pairs are then grouped by expert so that each expert runs its SwiGLU as three
 * GEMMs over one contiguous block of gathered rows, and the weighted outputs are scattered back.
 * Also: the shared experts, expert loads, the sequence-wise balance loss and the bias update. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "kernels/kernels.h"
#include "model/moe.h"

/* ------------------------------------------------------------------------------------------------
 * Sizes and buffer layout
 * ---------------------------------------------------------------------------------------------- */

typedef struct {
    int N, d, E, K, Ie, S; /* rows, hidden, experts, experts per row, expert width, shared width */
    size_t NK;             /* (row, slot) pairs */
} moe_dims;

static moe_dims dims_of(const dsc_config *c, int B, int T) {
    moe_dims m;
    m.N = B * T;
    m.d = c->hidden_size;
    m.E = c->n_routed_experts;
    m.K = c->num_experts_per_tok;
    m.Ie = c->moe_intermediate_size;
    m.S = c->n_shared_experts * c->moe_intermediate_size;
    m.NK = (size_t)m.N * m.K;
    return m;
}

/* Hands out n floats at *off of mem (mem NULL: only counts); every slot starts 64-byte aligned. */
static float *take(float *mem, size_t *off, size_t n) {
    float *p = mem && n ? mem + *off : NULL;
    *off += dsc_round_floats(n);
    return p;
}

static size_t acts_layout(const dsc_config *c, int B, int T, moe_acts *a, float *mem) {
    moe_dims m = dims_of(c, B, T);
    size_t off = 0;
    moe_acts t;
    memset(&t, 0, sizeof t);
    t.scores = take(mem, &off, (size_t)m.N * m.E);
    t.idx = (int32_t *)take(mem, &off, m.NK); /* int32 in float-sized slots */
    t.weights = take(mem, &off, m.NK);
    t.order = (int32_t *)take(mem, &off, m.NK);
    t.offsets = (int32_t *)take(mem, &off, (size_t)m.E + 1);
    t.h1 = take(mem, &off, m.NK * m.Ie);
    t.h3 = take(mem, &off, m.NK * m.Ie);
    t.eout = take(mem, &off, m.NK * m.d);
    t.sh1 = take(mem, &off, (size_t)m.N * m.S);
    t.sh3 = take(mem, &off, (size_t)m.N * m.S);
    t.f = take(mem, &off, (size_t)B * m.E);
    if (a) *a = t;
    return off;
}

size_t moe_acts_floats(const dsc_config *c, int B, int T) { return acts_layout(c, B, T, NULL, NULL); }

void moe_acts_bind(moe_acts *a, float *mem, const dsc_config *c, int B, int T) { acts_layout(c, B, T, a, mem); }

/* The work of one pass is a list of tasks (routed experts and chunks of shared-expert rows);
 * sched holds them in the order they run. */
typedef struct {
    int64_t work; /* multiply-adds / d: rows x width */
    int32_t task; /* expert e (< E) or shared chunk task - E */
    int32_t pad;
} moe_task;

/* Scratch, shared by forward and backward (they never run at once on the same scratch):
 *   inv     position in `order` of every pair                      [NK] int32
 *   cursor  counting-sort cursors (forward)                        [E+1] int32
 *   sched   the tasks                                              [E+N] moe_task
 *   dw      d(loss)/d(weights) (backward)                          [NK]
 *   dz      d(loss)/d(router logits) (backward)                    [N, E]
 *   xg      gathered input rows of the experts, in `order` order   [NK, d]
 *   act     silu(h1)*h3, then dh1 (backward)                       [NK, Ie]
 *   dY      w_k·dout gathered, then d(loss)/d(xg) (backward)       [NK, d]
 *   dact    d(act), then dh3 (backward)                            [NK, Ie]
 *   sact    shared experts: silu(h1)*h3                            [N, S]
 *   sdh1, sdh3  shared experts: dh1, dh3 (backward)                [N, S] each */
typedef struct {
    int32_t *inv, *cursor;
    moe_task *sched;
    float *dw, *dz, *xg, *act, *dY, *dact, *sact, *sdh1, *sdh3;
} moe_scratch;

static size_t scratch_layout(const dsc_config *c, int B, int T, moe_scratch *s, float *mem) {
    moe_dims m = dims_of(c, B, T);
    size_t off = 0;
    moe_scratch t;
    t.inv = (int32_t *)take(mem, &off, m.NK);
    t.cursor = (int32_t *)take(mem, &off, (size_t)m.E + 1);
    t.sched = (moe_task *)take(mem, &off, ((size_t)m.E + m.N) * (sizeof(moe_task) / sizeof(float)));
    t.dw = take(mem, &off, m.NK);
    t.dz = take(mem, &off, (size_t)m.N * m.E);
    t.xg = take(mem, &off, m.NK * m.d);
    t.act = take(mem, &off, m.NK * m.Ie);
    t.dY = take(mem, &off, m.NK * m.d);
    t.dact = take(mem, &off, m.NK * m.Ie);
    t.sact = take(mem, &off, (size_t)m.N * m.S);
    t.sdh1 = take(mem, &off, (size_t)m.N * m.S);
    t.sdh3 = take(mem, &off, (size_t)m.N * m.S);
    if (s) *s = t;
    return off;
}

size_t moe_scratch_floats(const dsc_config *c, int B, int T) { return scratch_layout(c, B, T, NULL, NULL); }

/* ------------------------------------------------------------------------------------------------
 * Task schedule
 *
 * Measured on 2 cores with the `small` preset sizes (N=2048, d=256, E=16, K=2, Ie=128, S=128):
 * running the experts one per thread (each GEMM single-threaded) beats running them one after
 * another with every GEMM split over both threads: forward 6.8 ms and backward 14.2 ms against
 * 17.8 and 32.2 ms (one thread: 13.7 and 26.9 ms). No barrier per GEMM, and far more robust when
 * other processes share the cores. The shared experts join the same loop as chunks of rows of
 * about one expert's work each. Tasks are handed out largest first; one with more than its share
 * of all the work (1/threads) would leave the other threads idle, so it runs before the rest,
 * alone, with multithreaded GEMMs.
 * ---------------------------------------------------------------------------------------------- */

static int cmp_task(const void *pa, const void *pb) {
    const moe_task *a = pa, *b = pb;
    if (a->work != b->work) return a->work > b->work ? -1 : 1;
    return (a->task > b->task) - (a->task < b->task);
}

/* Fills sched with the tasks, largest first (ties: lower task first); *n_tasks, *chunk (shared
 * rows per chunk), *par (whether tasks run one per thread). Returns how many leading tasks are
 * heavy (run alone). */
static int task_schedule(const moe_dims *m, const int32_t *offsets, moe_task *sched, int *n_tasks, int *chunk,
                         int *par) {
    int nt = dsc_num_threads(), n = 0;
    *par = !omp_in_parallel() && nt > 1;
    int64_t total = 0;
    for (int e = 0; e < m->E; e++) {
        int64_t rows = offsets[e + 1] - offsets[e];
        if (rows == 0) continue;
        sched[n++] = (moe_task){rows * m->Ie, e, 0};
        total += rows * m->Ie;
    }
    *chunk = m->N;
    if (m->S > 0 && *par) { /* chunks of about one average expert's work, at least 16 rows */
        int64_t per_expert = (int64_t)m->NK * m->Ie / m->E;
        int64_t rows = per_expert / m->S;
        *chunk = (int)(rows < 16 ? 16 : rows > m->N ? m->N : rows);
    }
    for (int r0 = 0, i = 0; m->S > 0 && r0 < m->N; r0 += *chunk, i++) {
        int rows = m->N - r0 < *chunk ? m->N - r0 : *chunk;
        sched[n++] = (moe_task){(int64_t)rows * m->S, m->E + i, 0};
        total += (int64_t)rows * m->S;
    }
    qsort(sched, (size_t)n, sizeof(moe_task), cmp_task);
    *n_tasks = n;
    int heavy = 0;
    if (*par)
        while (heavy < n && sched[heavy].work * nt > total) heavy++;
    return heavy;
}

/* ------------------------------------------------------------------------------------------------
 * Router
 * ---------------------------------------------------------------------------------------------- */

static inline float sel_of(const float *s, const float *b, int e) { return b ? s[e] + b[e] : s[e]; }

/* (v1, i1) ranks before (v2, i2): higher value first, ties to the lower index. */
static inline int ranks_before(float v1, int i1, float v2, int i2) { return v1 > v2 || (v1 == v2 && i1 < i2); }

/* A group's score: the sum of its two best selection scores with the bias, else its best one. */
static float group_score(const float *s, const float *b, int g, int per, int top2) {
    float m1 = -INFINITY, m2 = -INFINITY;
    for (int e = g * per; e < (g + 1) * per; e++) {
        float v = sel_of(s, b, e);
        if (v > m1) {
            m2 = m1;
            m1 = v;
        } else if (v > m2) {
            m2 = v;
        }
    }
    return top2 ? m1 + m2 : m1;
}

/* Picks the K experts of one row (scores s [E], bias b or NULL) into idx [K], in decreasing order
 * of s + b, ties to the lower index. Experts outside the topk_group best groups count as -inf.
 * No buffers: each pass finds the next item after the previous one in the (value desc, index asc)
 * order, so the only state is that previous item (E may be large and this runs per row). */
static void select_row(const dsc_config *c, const float *s, const float *b, int32_t *idx) {
    int E = c->n_routed_experts, K = c->num_experts_per_tok, G = c->n_group, per = E / G;
    int top2 = b != NULL;
    /* The last kept group (gv, gi); a group is kept when it ranks at or before it. */
    float gv = INFINITY;
    int gi = -1;
    if (G > 1) {
        for (int r = 0; r < c->topk_group; r++) {
            float bv = -INFINITY;
            int bi = -1;
            for (int g = 0; g < G; g++) {
                float v = group_score(s, b, g, per, top2);
                if (ranks_before(gv, gi, v, g) && (bi < 0 || ranks_before(v, g, bv, bi))) {
                    bv = v;
                    bi = g;
                }
            }
            if (bi < 0) break; /* only NaN scores left */
            gv = bv;
            gi = bi;
        }
    }
    float pv = INFINITY; /* previous pick */
    int pi = -1;
    for (int k = 0; k < K; k++) {
        float bv = -INFINITY;
        int bi = -1;
        for (int g = 0; g < G; g++) {
            if (G > 1) {
                float v = group_score(s, b, g, per, top2);
                if (!(g == gi || ranks_before(v, g, gv, gi))) continue; /* masked group: -inf */
            }
            for (int e = g * per; e < (g + 1) * per; e++) {
                float v = sel_of(s, b, e);
                if (ranks_before(pv, pi, v, e) && (bi < 0 || ranks_before(v, e, bv, bi))) {
                    bv = v;
                    bi = e;
                }
            }
        }
        if (bi < 0) {
            /* Nothing left (NaN scores): the lowest unused index, as -inf ties would give. Keeps
             * idx valid and distinct whatever the input. */
            for (int e = 0; e < E && bi < 0; e++) {
                int used = 0;
                for (int j = 0; j < k; j++) used |= idx[j] == e;
                if (!used) bi = e;
            }
            bv = -INFINITY;
        }
        idx[k] = bi;
        pv = bv;
        pi = bi;
    }
}

/* z [E] -> s [E] in place. */
static void score_row(dsc_score_func f, float *z, int E) {
    if (f == DSC_SCORE_SIGMOID) {
        for (int e = 0; e < E; e++) z[e] = 1.0f / (1.0f + expf(-z[e]));
        return;
    }
    float mx = -INFINITY, sum = 0;
    for (int e = 0; e < E; e++) mx = fmaxf(mx, z[e]);
    for (int e = 0; e < E; e++) {
        z[e] = expf(z[e] - mx);
        sum += z[e];
    }
    for (int e = 0; e < E; e++) z[e] /= sum;
}

void moe_route_logits(const dsc_config *c, const float *bias, float *scores, int N, int32_t *idx, float *weights) {
    int E = c->n_routed_experts, K = c->num_experts_per_tok;
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && N >= 64)
    for (int r = 0; r < N; r++) {
        float *s = scores + (size_t)r * E;
        int32_t *ix = idx + (size_t)r * K;
        float *wt = weights + (size_t)r * K;
        score_row(c->scoring_func, s, E);
        select_row(c, s, bias, ix);
        float sum = 0;
        for (int k = 0; k < K; k++) sum += s[ix[k]];
        for (int k = 0; k < K; k++) {
            float v = c->norm_topk_prob ? s[ix[k]] / sum : s[ix[k]]; /* no epsilon (DeepSeek's code) */
            wt[k] = v * c->routed_scaling_factor;
        }
    }
}

void moe_route(const dsc_config *c, const moe_weights *w, const float *x, int N, float *scores, int32_t *idx,
               float *weights) {
    int d = c->hidden_size, E = c->n_routed_experts;
    dsc_linear_forward(scores, x, w->gate, N, d, E, false); /* z [N,E] */
    moe_route_logits(c, w->bias, scores, N, idx, weights);
}

/* ------------------------------------------------------------------------------------------------
 * Pair grouping, loads, balance loss
 * ---------------------------------------------------------------------------------------------- */

/* Counting sort of the pairs p = row*K + slot by expert (stable: rows ascending within an
 * expert). offsets [E+1], order [NK], inv [NK] (inverse of order), cursor [E+1] scratch. */
static void group_pairs(const int32_t *idx, size_t NK, int E, int32_t *offsets, int32_t *order, int32_t *inv,
                        int32_t *cursor) {
    memset(cursor, 0, sizeof(int32_t) * ((size_t)E + 1));
    for (size_t p = 0; p < NK; p++) cursor[idx[p] + 1]++;
    for (int e = 0; e < E; e++) cursor[e + 1] += cursor[e];
    memcpy(offsets, cursor, sizeof(int32_t) * ((size_t)E + 1));
    for (size_t p = 0; p < NK; p++) {
        int32_t q = cursor[idx[p]]++;
        order[q] = (int32_t)p;
        inv[p] = q;
    }
}

/* f[b,i] = E/(K*T) * (rows of sequence b choosing i); returns mean over b of Σ_i f_i P_i with
 * P_i = (1/T) Σ_t s_{i,t} / Σ_j s_{j,t}. */
static double balance_forward(float *f, const float *scores, const int32_t *idx, int B, int T, int E, int K) {
    double total = 0;
    for (int b = 0; b < B; b++) {
        float *fb = f + (size_t)b * E;
        memset(fb, 0, sizeof(float) * (size_t)E);
        for (int t = 0; t < T; t++)
            for (int k = 0; k < K; k++) fb[idx[((size_t)b * T + t) * K + k]] += 1.0f;
        for (int i = 0; i < E; i++) fb[i] *= (float)E / ((float)K * (float)T);
        double L = 0;
        for (int t = 0; t < T; t++) {
            const float *s = scores + ((size_t)b * T + t) * E;
            double sum = 0, fs = 0;
            for (int i = 0; i < E; i++) {
                sum += s[i];
                fs += (double)fb[i] * s[i];
            }
            L += fs / sum;
        }
        total += L / T;
    }
    return total / B;
}

/* ------------------------------------------------------------------------------------------------
 * The tasks, forward and backward. A routed expert e works on the pairs q in
 * [offsets[e], offsets[e+1]) of `order`; every buffer is indexed by q, so experts never touch each
 * other's rows and can run on different threads (the weight gradients of expert e are its own
 * too). A shared chunk works on rows [r0, r0+rows): its outputs (out, dx) are its rows alone;
 * its weight gradients are summed over all rows after the loop.
 * ---------------------------------------------------------------------------------------------- */

typedef struct {
    const dsc_config *c;
    const moe_weights *w, *g;
    const moe_acts *a;
    const moe_scratch *sc;
    const float *x, *dout;
    float *out, *dx;
    int N, chunk;
} task_ctx;

static void expert_forward(const task_ctx *t, int e) {
    const dsc_config *c = t->c;
    const moe_acts *a = t->a;
    const moe_weights *w = t->w;
    int d = c->hidden_size, Ie = c->moe_intermediate_size, K = c->num_experts_per_tok;
    size_t q0 = (size_t)a->offsets[e];
    int n = a->offsets[e + 1] - a->offsets[e];
    float *xg = t->sc->xg + q0 * d; /* [n,d] */
    for (int i = 0; i < n; i++)
        memcpy(xg + (size_t)i * d, t->x + (size_t)(a->order[q0 + i] / K) * d, sizeof(float) * (size_t)d);
    ffn_weights we = {w->w1 + (size_t)e * Ie * d, w->w3 + (size_t)e * Ie * d, w->w2 + (size_t)e * d * Ie};
    ffn_forward(a->eout + q0 * d, a->h1 + q0 * Ie, a->h3 + q0 * Ie, t->sc->act + q0 * Ie, &we, xg, n, d, Ie, false);
}

/* Per pair q (row r, slot k):  dY[q] = w[r,k]·dout[r]   (the expert output's gradient)
 *                              dw[r,k] = dout[r]·eout[q] (the weight's gradient, for the router)
 * then the SwiGLU backward on the block, leaving d(loss)/d(xg) in dY. */
static void expert_backward(const task_ctx *t, int e) {
    const dsc_config *c = t->c;
    const moe_acts *a = t->a;
    const moe_weights *w = t->w, *g = t->g;
    const moe_scratch *sc = t->sc;
    int d = c->hidden_size, Ie = c->moe_intermediate_size, K = c->num_experts_per_tok;
    size_t q0 = (size_t)a->offsets[e];
    int n = a->offsets[e + 1] - a->offsets[e];
    for (int i = 0; i < n; i++) {
        size_t q = q0 + i, p = (size_t)a->order[q], r = p / K;
        const float *dor = t->dout + r * d, *eo = a->eout + q * d;
        float *dy = sc->dY + q * d, wk = a->weights[p];
        double dot = 0;
        for (int j = 0; j < d; j++) {
            dy[j] = wk * dor[j];
            dot += (double)dor[j] * eo[j];
        }
        sc->dw[p] = (float)dot;
        memcpy(sc->xg + q * d, t->x + r * d, sizeof(float) * (size_t)d);
    }
    const float *W1 = w->w1 + (size_t)e * Ie * d, *W3 = w->w3 + (size_t)e * Ie * d;
    const float *W2 = w->w2 + (size_t)e * d * Ie;
    const float *h1 = a->h1 + q0 * Ie, *h3 = a->h3 + q0 * Ie, *xe = sc->xg + q0 * d;
    float *dye = sc->dY + q0 * d, *ae = sc->act + q0 * Ie, *dae = sc->dact + q0 * Ie;
    swiglu_forward(ae, h1, h3, (long)n * Ie);                                   /* act [n,Ie] */
    dsc_linear_backward_weight(g->w2 + (size_t)e * d * Ie, dye, ae, n, Ie, d); /* dW2 += dYᵀ act */
    dsc_linear_backward_input(dae, dye, W2, n, Ie, d, false);                  /* dact = dY W2 */
    swiglu_backward(ae, dae, dae, h1, h3, (long)n * Ie);                       /* dh1, dh3 */
    dsc_linear_backward_weight(g->w1 + (size_t)e * Ie * d, ae, xe, n, d, Ie);  /* dW1 += dh1ᵀ x */
    dsc_linear_backward_weight(g->w3 + (size_t)e * Ie * d, dae, xe, n, d, Ie); /* dW3 += dh3ᵀ x */
    dsc_linear_backward_input(dye, ae, W1, n, d, Ie, false);                   /* dxg = dh1 W1 */
    dsc_linear_backward_input(dye, dae, W3, n, d, Ie, true);                   /*     + dh3 W3 */
}

/* Shared experts on rows [r0, r0+n): out = SwiGLU(x) (overwrites: the routed sum adds later). */
static void shared_forward(const task_ctx *t, int r0, int n) {
    const moe_acts *a = t->a;
    int d = t->c->hidden_size, S = t->c->n_shared_experts * t->c->moe_intermediate_size;
    size_t o = (size_t)r0 * S;
    ffn_forward(t->out + (size_t)r0 * d, a->sh1 + o, a->sh3 + o, t->sc->sact + o, &t->w->shared,
                t->x + (size_t)r0 * d, n, d, S, false);
}

/* Shared experts on rows [r0, r0+n): act, dh1, dh3 kept for the weight gradients; dx rows +=. */
static void shared_backward(const task_ctx *t, int r0, int n) {
    const moe_acts *a = t->a;
    const ffn_weights *w = &t->w->shared;
    int d = t->c->hidden_size, S = t->c->n_shared_experts * t->c->moe_intermediate_size;
    size_t o = (size_t)r0 * S;
    float *act = t->sc->sact + o, *dh1 = t->sc->sdh1 + o, *dh3 = t->sc->sdh3 + o, *dx = t->dx + (size_t)r0 * d;
    swiglu_forward(act, a->sh1 + o, a->sh3 + o, (long)n * S);
    dsc_linear_backward_input(dh3, t->dout + (size_t)r0 * d, w->w2, n, S, d, false); /* dact = dout W2 */
    swiglu_backward(dh1, dh3, dh3, a->sh1 + o, a->sh3 + o, (long)n * S);
    dsc_linear_backward_input(dx, dh1, w->w1, n, d, S, true); /* dx += dh1 W1 + dh3 W3 */
    dsc_linear_backward_input(dx, dh3, w->w3, n, d, S, true);
}

static void run_task(const task_ctx *t, int task, bool backward) {
    int E = t->c->n_routed_experts;
    if (task < E) {
        (backward ? expert_backward : expert_forward)(t, task);
        return;
    }
    int r0 = (task - E) * t->chunk, n = t->N - r0 < t->chunk ? t->N - r0 : t->chunk;
    (backward ? shared_backward : shared_forward)(t, r0, n);
}

/* Runs every task: heavy ones alone (multithreaded GEMMs), the rest one per thread. */
static void run_tasks(task_ctx *t, const moe_dims *m, bool backward) {
    int n, par;
    moe_task *sched = t->sc->sched;
    int heavy = task_schedule(m, t->a->offsets, sched, &n, &t->chunk, &par);
    for (int i = 0; i < heavy; i++) run_task(t, sched[i].task, backward);
#pragma omp parallel for schedule(dynamic, 1) if (par)
    for (int i = heavy; i < n; i++) run_task(t, sched[i].task, backward);
}

/* ------------------------------------------------------------------------------------------------
 * Forward
 * ---------------------------------------------------------------------------------------------- */

void moe_forward(const dsc_config *c, const moe_weights *w, moe_acts *a, float *out, const float *x, int B, int T,
                 int64_t *load, float *balance, float *scratch) {
    moe_dims m = dims_of(c, B, T);
    int N = m.N, d = m.d, E = m.E, K = m.K;
    moe_scratch sc;
    scratch_layout(c, B, T, &sc, scratch);
    a->x = x;

    /* 1. route: s [N,E], idx [N,K], weights [N,K]; group the pairs by expert */
    moe_route(c, w, x, N, a->scores, a->idx, a->weights);
    group_pairs(a->idx, m.NK, E, a->offsets, a->order, sc.inv, sc.cursor);
    if (load)
        for (int e = 0; e < E; e++) load[e] += a->offsets[e + 1] - a->offsets[e];
    /* f is always kept: the backward pass may want the balance gradient even if the caller
     * did not ask for the value */
    double bal = balance_forward(a->f, a->scores, a->idx, B, T, E, K);
    if (balance) *balance += (float)bal;

    /* 2. experts: routed ones write eout [NK,d] (in `order` order), shared ones write out [N,d] */
    if (m.S == 0) memset(out, 0, sizeof(float) * (size_t)N * d);
    task_ctx t = {.c = c, .w = w, .a = a, .sc = &sc, .x = x, .out = out, .N = N};
    run_tasks(&t, &m, false);

    /* 3. out[r] += Σ_k w[r,k] · eout[pair (r,k)]: row by row, so no two threads add to one row
     * and the sum order is fixed (deterministic) */
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && N >= 64)
    for (int r = 0; r < N; r++) {
        float *o = out + (size_t)r * d;
        for (int k = 0; k < K; k++) {
            size_t p = (size_t)r * K + k;
            float wk = a->weights[p];
            const float *eo = a->eout + (size_t)sc.inv[p] * d;
            for (int j = 0; j < d; j++) o[j] += wk * eo[j];
        }
    }
}

/* ------------------------------------------------------------------------------------------------
 * Backward
 * ---------------------------------------------------------------------------------------------- */

/* d(loss)/d(z) of one row from d(loss)/d(s) (ds overwritten by dz). */
static void score_row_backward(dsc_score_func f, float *ds, const float *s, int E) {
    if (f == DSC_SCORE_SIGMOID) {
        for (int e = 0; e < E; e++) ds[e] *= s[e] * (1.0f - s[e]);
        return;
    }
    float dot = 0; /* softmax: dz_i = s_i (ds_i - Σ_j s_j ds_j) */
    for (int e = 0; e < E; e++) dot += s[e] * ds[e];
    for (int e = 0; e < E; e++) ds[e] = s[e] * (ds[e] - dot);
}

void moe_backward(const dsc_config *c, const moe_weights *w, const moe_weights *g, const moe_acts *a, float *dx,
                  const float *dout, int B, int T, float balance_weight, float *scratch) {
    moe_dims m = dims_of(c, B, T);
    int N = m.N, d = m.d, E = m.E, K = m.K, S = m.S;
    moe_scratch sc;
    scratch_layout(c, B, T, &sc, scratch);
    const float *x = a->x;
    float *dY = sc.dY;

    /* 1. experts: routed ones leave d(loss)/d(xg) in dY and dw; shared ones add into dx */
    for (size_t q = 0; q < m.NK; q++) sc.inv[a->order[q]] = (int32_t)q;
    task_ctx t = {.c = c, .w = w, .g = g, .a = a, .sc = &sc, .x = x, .dout = dout, .dx = dx, .N = N};
    run_tasks(&t, &m, true);
    /* the shared weight gradients sum over all rows: three large GEMMs, multithreaded */
    if (S > 0) {
        dsc_linear_backward_weight(g->shared.w2, dout, sc.sact, N, S, d); /* dW2 += doutᵀ act */
        dsc_linear_backward_weight(g->shared.w1, sc.sdh1, x, N, d, S);    /* dW1 += dh1ᵀ x */
        dsc_linear_backward_weight(g->shared.w3, sc.sdh3, x, N, d, S);    /* dW3 += dh3ᵀ x */
    }

    /* 2. per row: dx[r] += Σ_k dxg[pair (r,k)]; the router gradient d(loss)/d(s) from the weights
     * and the balance loss, then through the scoring function into dz [N,E] */
    float rsf = c->routed_scaling_factor;
    float bal_scale = balance_weight / ((float)B * (float)T); /* d(mean_b (1/T) Σ_t ...) */
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && N >= 64)
    for (int r = 0; r < N; r++) {
        float *dxr = dx + (size_t)r * d;
        for (int k = 0; k < K; k++) {
            const float *dg = dY + (size_t)sc.inv[(size_t)r * K + k] * d;
            for (int j = 0; j < d; j++) dxr[j] += dg[j];
        }
        const float *s = a->scores + (size_t)r * E;
        const int32_t *ix = a->idx + (size_t)r * K;
        const float *dw = sc.dw + (size_t)r * K;
        float *ds = sc.dz + (size_t)r * E;
        memset(ds, 0, sizeof(float) * (size_t)E);
        /* weights: w_k = rsf·s_k / Z (Z = Σ_j s_j over the picks, or 1 without normalisation)
         *   d/ds_m = rsf·(dw_m / Z − Σ_k dw_k s_k / Z²) */
        if (c->norm_topk_prob) {
            float Z = 0, dws = 0;
            for (int k = 0; k < K; k++) {
                Z += s[ix[k]];
                dws += dw[k] * s[ix[k]];
            }
            for (int k = 0; k < K; k++) ds[ix[k]] += rsf * (dw[k] / Z - dws / (Z * Z));
        } else {
            for (int k = 0; k < K; k++) ds[ix[k]] += rsf * dw[k];
        }
        /* balance: L_b = Σ_i f_i (1/T) Σ_t s_{i,t}/Σ_j s_{j,t}
         *   d/ds_{i,t} = (1/T)(f_i − Σ_j f_j s'_j) / Σ_j s_j  with s' = s/Σs (even for softmax) */
        if (balance_weight != 0.0f) {
            const float *f = a->f + (size_t)(r / T) * E;
            double sum = 0, fs = 0;
            for (int i = 0; i < E; i++) {
                sum += s[i];
                fs += (double)f[i] * s[i];
            }
            float fbar = (float)(fs / sum), inv_sum = (float)(1.0 / sum);
            for (int i = 0; i < E; i++) ds[i] += bal_scale * (f[i] - fbar) * inv_sum;
        }
        score_row_backward(c->scoring_func, ds, s, E);
    }
    /* z = x W_gᵀ: dx += dz W_g, dW_g += dzᵀ x (the correction bias gets no gradient) */
    dsc_linear_backward_input(dx, sc.dz, w->gate, N, d, E, true);
    dsc_linear_backward_weight(g->gate, sc.dz, x, N, d, E);
}

/* ------------------------------------------------------------------------------------------------
 * Aux-loss-free bias update
 * ---------------------------------------------------------------------------------------------- */

void moe_update_bias(float *bias, const int64_t *load, int E, float gamma) {
    double mean = 0;
    for (int i = 0; i < E; i++) mean += (double)load[i];
    mean /= E;
    for (int i = 0; i < E; i++) {
        double diff = mean - (double)load[i];
        float sign = diff > 0 ? 1.0f : diff < 0 ? -1.0f : 0.0f;
        bias[i] += gamma * sign;
    }
}
