/* model.c: the whole model: creation and initialisation, the forward pass (embedding, blocks,
 * final norm, head), the training pass with MTP and every loss term, and the backward pass in
 * reverse order. Exact maths: docs/MODEL.md §3, §9, §10.
 *
 * Memory: the activations of one pass live in a workspace sized for B x T, allocated on first
 * use and grown when a larger batch arrives; the head's [N, V] logits buffer is shared by the
 * main model and every MTP depth (each turns its logits into their gradient right away). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "base/prof.h"
#include "base/rng.h"
#include "kernels/kernels.h"
#include "model/block.h"
#include "model/config.h"
#include "model/loss.h"
#include "model/model.h"
#include "model/norm.h"

/* Per MTP depth: what its forward pass keeps. */
typedef struct {
    float *en, *en_rstd;   /* RMSNorm(Embed[z[t+k]]; enorm)      [N,d], [N] */
    float *gn, *gn_rstd;   /* RMSNorm(g_{k-1}; hnorm)             [N,d], [N] */
    float *cat;            /* [en ; gn]                           [N, 2d] */
    float *hp;             /* eh_proj output h'                   [N, d] */
    float *x_in, *x_out;   /* block streams                       [N, n, d] */
    float *h;              /* reduced block output                [N, d] */
    float *g, *g_rstd;     /* RMSNorm(h; shared_head.norm)        [N, d], [N] */
    float *dg;             /* ∂L/∂g from this depth's head        [N, d] */
    int32_t *in_tok;       /* z[t+k]                              [N] */
    int32_t *tgt;          /* targets[t+k] or -1                  [N] */
} mtp_acts;

typedef struct model_workspace {
    int B, T;
    float *mem;
    size_t floats;
    float *h0;             /* embedding output                    [N, d] */
    float **streams;       /* main residual streams 0..L          [N, n, d] each */
    block_acts *acts;      /* [L + D] */
    float *h, *hn, *hn_rstd; /* reduced output, final norm        [N,d], [N,d], [N] */
    float *logits;         /* head output / its gradient          [N, V] */
    float *dhn;            /* ∂L/∂hn                              [N, d] */
    float *dstream_a, *dstream_b; /* stream gradients             [N, n, d] */
    float *dvec;           /* [N, 2d] gradient of MTP concat / misc */
    mtp_acts *mtp;         /* [D] */
    float *scratch;
} model_workspace;

int model_max_positions(const dsc_config *c) { return c->max_position_embeddings; }

/* ----------------------------------------------------------------------------------------------
 * Creation, initialisation, tensor access
 * -------------------------------------------------------------------------------------------- */

dsc_status dsc_model_create(const dsc_config *cfg, dsc_model **out) {
    *out = NULL;
    if (dsc_config_validate(cfg)) return DSC_ERR;
    dsc_model *m = calloc(1, sizeof *m);
    if (!m) return dsc_set_error("out of memory");
    m->cfg = *cfg;
    const dsc_config *c = &m->cfg;
    int nb = c->num_hidden_layers + c->num_nextn_predict_layers;
    m->n_floats = params_layout(c, NULL, NULL, NULL, NULL);
    double gib = m->n_floats * 4.0 * 2 / (1 << 30);
    if (gib > 256) {
        free(m);
        return dsc_set_error("model too large to hold in fp32 for training: %.0f GiB of parameters and gradients",
                             gib);
    }
    m->descs = calloc((size_t)params_max_descs(c), sizeof *m->descs);
    m->w.blocks = calloc((size_t)nb, sizeof(block_weights));
    m->g.blocks = calloc((size_t)nb, sizeof(block_weights));
    m->expert_load = calloc((size_t)nb * (c->n_routed_experts > 0 ? c->n_routed_experts : 1), sizeof(int64_t));
    m->params = dsc_alloc(m->n_floats * sizeof(float));
    m->grads = m->params ? dsc_alloc(m->n_floats * sizeof(float)) : NULL;
    if (!m->descs || !m->w.blocks || !m->g.blocks || !m->expert_load || !m->params || !m->grads) {
        size_t n = m->n_floats;
        dsc_model_free(m);
        return dsc_set_error("out of memory creating a model of %zu parameters", n);
    }
    params_layout(c, m->params, &m->w, m->descs, &m->n_descs);
    params_layout(c, m->grads, &m->g, NULL, NULL);
    *out = m;
    return DSC_OK;
}

static void workspace_free(model_workspace *ws) {
    if (!ws) return;
    dsc_free(ws->mem);
    free(ws->streams);
    free(ws->acts);
    free(ws->mtp);
    free(ws);
}

void dsc_model_free(dsc_model *m) {
    if (!m) return;
    workspace_free(m->ws);
    rope_table_free(&m->rope);
    dsc_free(m->params);
    dsc_free(m->grads);
    free(m->descs);
    free(m->w.blocks);
    free(m->g.blocks);
    free(m->expert_load);
    free(m);
}

const dsc_config *dsc_model_config(const dsc_model *m) { return &m->cfg; }

size_t dsc_model_num_params(const dsc_model *m) {
    size_t n = 0;
    for (int i = 0; i < m->n_descs; i++) n += m->descs[i].numel;
    return n;
}

int dsc_model_num_tensors(const dsc_model *m) { return m->n_descs; }
const char *dsc_model_tensor_name(const dsc_model *m, int i) { return m->descs[i].name; }

int dsc_model_tensor_info(const dsc_model *m, int i, int64_t shape[4], float **data, float **grad) {
    const tensor_desc *t = &m->descs[i];
    if (shape) memcpy(shape, t->shape, sizeof t->shape);
    if (data) *data = m->params + t->offset;
    if (grad) *grad = m->grads + t->offset;
    return t->ndim;
}

void dsc_model_zero_grad(dsc_model *m) { memset(m->grads, 0, m->n_floats * sizeof(float)); }

void dsc_model_scale_grads(dsc_model *m, float s) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < m->n_floats; i++) m->grads[i] *= s;
}

int dsc_model_expert_loads(const dsc_model *m, int64_t *out) {
    const dsc_config *c = &m->cfg;
    int E = c->n_routed_experts;
    if (E > 0) memcpy(out, m->expert_load, sizeof(int64_t) * (size_t)(c->num_hidden_layers + c->num_nextn_predict_layers) * E);
    return E;
}

dsc_status dsc_model_init(dsc_model *m, uint64_t seed) {
    const dsc_config *c = &m->cfg;
    int n = cfg_streams(c);
    for (int i = 0; i < m->n_descs; i++) {
        const tensor_desc *t = &m->descs[i];
        float *p = m->params + t->offset;
        dsc_rng r;
        dsc_rng_seed(&r, seed * 0x9E3779B97F4A7C15ull + (uint64_t)i); /* one stream per tensor */
        switch (t->init) {
        case INIT_NORMAL:
            for (size_t j = 0; j < t->numel; j++) p[j] = c->initializer_range * dsc_rng_normal(&r);
            break;
        case INIT_MHC_PHI:
            for (size_t j = 0; j < t->numel; j++) p[j] = c->mhc_phi_init_std * dsc_rng_normal(&r);
            break;
        case INIT_ONES:
            for (size_t j = 0; j < t->numel; j++) p[j] = 1.0f;
            break;
        case INIT_ZEROS:
            memset(p, 0, t->numel * sizeof(float));
            break;
        case INIT_MHC_ALPHA:
            for (size_t j = 0; j < t->numel; j++) p[j] = c->mhc_alpha_init;
            break;
        case INIT_MHC_BIAS:
            /* H_pre = 1/n each (sums to 1), H_post = 1, H_res near the identity */
            for (int j = 0; j < n; j++) p[j] = -logf((float)(n - 1));
            for (int j = n; j < 2 * n; j++) p[j] = 0.0f;
            for (int k = 0; k < n; k++)
                for (int j = 0; j < n; j++) p[2 * n + k * n + j] = k == j ? c->mhc_res_diag_init : 0.0f;
            break;
        }
    }
    memset(m->expert_load, 0, sizeof(int64_t) * (size_t)(c->num_hidden_layers + c->num_nextn_predict_layers) *
                                  (c->n_routed_experts > 0 ? c->n_routed_experts : 1));
    return DSC_OK;
}

/* ----------------------------------------------------------------------------------------------
 * Workspace
 * -------------------------------------------------------------------------------------------- */

static int ensure_workspace(dsc_model *m, int B, int T) {
    const dsc_config *c = &m->cfg;
    if (T > c->max_position_embeddings)
        return dsc_set_error("sequence of %d tokens is longer than max_position_embeddings (%d)", T,
                             c->max_position_embeddings);
    if (m->rope.max_pos < T) {
        rope_table_free(&m->rope);
        int want = T < 256 ? 256 : T;
        if (want > c->max_position_embeddings) want = c->max_position_embeddings;
        if (rope_table_init(&m->rope, c, want)) return DSC_ERR;
    }
    model_workspace *ws = m->ws;
    if (ws && ws->B == B && ws->T == T) return DSC_OK;

    int L = c->num_hidden_layers, D = c->num_nextn_predict_layers, n = cfg_streams(c);
    size_t N = (size_t)B * T, d = c->hidden_size, V = c->vocab_size;
    size_t S = dsc_round_floats(N * n * d), Nd = dsc_round_floats(N * d), Nr = dsc_round_floats(N);
    size_t total = Nd                         /* h0 */
                   + (size_t)(L + 1) * S      /* streams */
                   + 3 * Nd + Nr              /* h, hn, dhn, hn_rstd */
                   + dsc_round_floats(N * V)  /* logits */
                   + 2 * S                    /* dstream a/b */
                   + 2 * Nd;                  /* dvec [N, 2d] */
    for (int l = 0; l < L + D; l++) total += block_acts_floats(c, l, B, T);
    total += (size_t)D * (8 * Nd + 3 * Nr + 2 * S + 2 * Nr); /* mtp_acts */
    total += block_scratch_floats(c, B, T);

    /* A batch of another shape that fits re-lays the views over the same memory: SFT and RL
     * batches change T every step, and a fresh allocation each time costs its page faults. */
    if (!ws || ws->floats < total) {
        workspace_free(ws);
        m->ws = NULL;
        ws = calloc(1, sizeof *ws);
        if (!ws) return dsc_set_error("out of memory");
        ws->floats = total;
        ws->mem = dsc_alloc(total * sizeof(float));
        ws->streams = calloc((size_t)L + 1, sizeof(float *));
        ws->acts = calloc((size_t)(L + D), sizeof(block_acts));
        ws->mtp = calloc((size_t)(D > 0 ? D : 1), sizeof(mtp_acts));
        if (!ws->mem || !ws->streams || !ws->acts || !ws->mtp) {
            workspace_free(ws);
            return dsc_set_error("out of memory: activations for %d x %d tokens need %.2f GiB", B, T,
                                 total * 4.0 / (1 << 30));
        }
    }
    ws->B = B;
    ws->T = T;
    float *p = ws->mem;
#define TAKE(ptr, cnt)                                                                                                 \
    do {                                                                                                               \
        (ptr) = (void *)p;                                                                                             \
        p += (cnt);                                                                                                    \
    } while (0)
    TAKE(ws->h0, Nd);
    for (int l = 0; l <= L; l++) TAKE(ws->streams[l], S);
    TAKE(ws->h, Nd);
    TAKE(ws->hn, Nd);
    TAKE(ws->dhn, Nd);
    TAKE(ws->hn_rstd, Nr);
    TAKE(ws->logits, dsc_round_floats(N * V));
    TAKE(ws->dstream_a, S);
    TAKE(ws->dstream_b, S);
    TAKE(ws->dvec, 2 * Nd);
    for (int l = 0; l < L + D; l++) {
        block_acts_bind(&ws->acts[l], p, c, l, B, T);
        p += block_acts_floats(c, l, B, T);
    }
    for (int k = 0; k < D; k++) {
        mtp_acts *a = &ws->mtp[k];
        TAKE(a->en, Nd);
        TAKE(a->gn, Nd);
        TAKE(a->cat, 2 * Nd);
        TAKE(a->hp, Nd);
        TAKE(a->h, Nd);
        TAKE(a->g, Nd);
        TAKE(a->dg, Nd);
        TAKE(a->en_rstd, Nr);
        TAKE(a->gn_rstd, Nr);
        TAKE(a->g_rstd, Nr);
        TAKE(a->x_in, S);
        TAKE(a->x_out, S);
        TAKE(a->in_tok, Nr);
        TAKE(a->tgt, Nr);
    }
    TAKE(ws->scratch, block_scratch_floats(c, B, T));
#undef TAKE
    m->ws = ws;
    return DSC_OK;
}

/* ----------------------------------------------------------------------------------------------
 * Forward pieces
 * -------------------------------------------------------------------------------------------- */

static int check_tokens(const dsc_config *c, const int32_t *tokens, int n, const char *what, bool allow_ignore) {
    for (int i = 0; i < n; i++) {
        if (tokens[i] >= c->vocab_size || tokens[i] < (allow_ignore ? -1 : 0))
            return dsc_set_error("%s[%d] = %d is outside the vocabulary [0, %d)", what, i, tokens[i], c->vocab_size);
    }
    return DSC_OK;
}

static void embed_forward(float *h, const float *E, const int32_t *tok, int N, int d) {
    for (int i = 0; i < N; i++) memcpy(h + (size_t)i * d, E + (size_t)tok[i] * d, sizeof(float) * d);
}

static void embed_backward(float *dE, const float *dh, const int32_t *tok, int N, int d) {
    for (int i = 0; i < N; i++) {
        float *row = dE + (size_t)tok[i] * d;
        const float *g = dh + (size_t)i * d;
        for (int j = 0; j < d; j++) row[j] += g[j];
    }
}

/* The checks every pass starts with (targets may be NULL), then the workspace for B x T. */
static int begin_pass(dsc_model *m, const int32_t *tokens, const int32_t *targets, int B, int T) {
    const dsc_config *c = &m->cfg;
    if (B <= 0 || T <= 0) return dsc_set_error("expected at least one token, found B=%d T=%d", B, T);
    if (check_tokens(c, tokens, B * T, "tokens", false) ||
        (targets && check_tokens(c, targets, B * T, "targets", true)) || ensure_workspace(m, B, T))
        return DSC_ERR;
    return DSC_OK;
}

/* Main model up to the final normed hidden state ws->hn. */
static void main_forward(dsc_model *m, const int32_t *tokens, int B, int T, bool count_loads, float *balance) {
    const dsc_config *c = &m->cfg;
    model_workspace *ws = m->ws;
    int N = B * T, d = c->hidden_size, n = cfg_streams(c), E = c->n_routed_experts;
    PROF_BEGIN();
    embed_forward(ws->h0, m->w.embed, tokens, N, d);
    mhc_expand(ws->streams[0], ws->h0, N, n, d);
    PROF_END(PROF_EMBED);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        int64_t *load = count_loads && m->w.blocks[l].is_moe ? m->expert_load + (size_t)l * E : NULL;
        block_forward(c, l, &m->w.blocks[l], &m->rope, &ws->acts[l], ws->streams[l + 1], ws->streams[l], B, T, load,
                      balance, ws->scratch);
    }
    prof_t0_ = prof_enabled() ? prof_now() : 0;
    mhc_reduce(ws->h, ws->streams[c->num_hidden_layers], N, n, d);
    rmsnorm_forward(ws->hn, ws->hn_rstd, ws->h, m->w.norm, N, d, c->rms_norm_eps);
    PROF_END(PROF_NORM);
}

/* Main model backward from ws->dhn (∂L/∂hn) to the embedding; gradients are added. */
static void main_backward(dsc_model *m, const int32_t *tokens, int B, int T) {
    const dsc_config *c = &m->cfg;
    model_workspace *ws = m->ws;
    int N = B * T, d = c->hidden_size, n = cfg_streams(c), L = c->num_hidden_layers;
    size_t Nd = (size_t)N * d;
    float *dh = ws->dvec;
    memset(dh, 0, sizeof(float) * Nd);
    rmsnorm_backward(dh, m->g.norm, ws->dhn, ws->h, m->w.norm, ws->hn_rstd, N, d);
    float *dcur = ws->dstream_a, *dnext = ws->dstream_b;
    memset(dcur, 0, sizeof(float) * Nd * n);
    mhc_reduce_backward(dcur, dh, N, n, d);
    for (int l = L - 1; l >= 0; l--) {
        block_backward(c, l, &m->w.blocks[l], &m->g.blocks[l], &m->rope, &ws->acts[l], dnext, dcur, B, T,
                       c->aux_loss_alpha, ws->scratch);
        float *t = dcur;
        dcur = dnext;
        dnext = t;
    }
    memset(dh, 0, sizeof(float) * Nd);
    mhc_expand_backward(dh, dcur, N, n, d);
    embed_backward(m->g.embed, dh, tokens, N, d);
}

dsc_status dsc_model_logits(dsc_model *m, const int32_t *tokens, int B, int T, float *logits) {
    const dsc_config *c = &m->cfg;
    if (begin_pass(m, tokens, NULL, B, T)) return DSC_ERR;
    main_forward(m, tokens, B, T, false, NULL);
    dsc_linear_forward(logits, m->ws->hn, m->w.head, B * T, c->hidden_size, c->vocab_size, false);
    return DSC_OK;
}

dsc_status dsc_model_loss(dsc_model *m, const int32_t *tokens, const int32_t *targets, int B, int T,
                          dsc_losses *out) {
    const dsc_config *c = &m->cfg;
    memset(out, 0, sizeof *out);
    if (begin_pass(m, tokens, targets, B, T)) return DSC_ERR;
    main_forward(m, tokens, B, T, false, NULL);
    float *logits = m->ws->logits;
    dsc_linear_forward(logits, m->ws->hn, m->w.head, B * T, c->hidden_size, c->vocab_size, false);
    int64_t count = ce_count_targets(targets, B * T);
    double sum = ce_forward_backward(logits, targets, B * T, c->vocab_size, 0.0f);
    out->ce = out->total = count > 0 ? (float)(sum / count) : 0.0f;
    out->n_targets = count;
    return DSC_OK;
}

/* Head + cross-entropy for normed states g [N,d]: returns the summed loss; when weight != 0 the
 * gradient weight·∂CE_mean/∂g is written to dg (overwritten) and the head gradient accumulated. */
static double head_loss(dsc_model *m, const float *g, const int32_t *targets, int N, int64_t count, float weight,
                        float *dg) {
    const dsc_config *c = &m->cfg;
    int d = c->hidden_size, V = c->vocab_size;
    float *logits = m->ws->logits;
    PROF_BEGIN();
    dsc_linear_forward(logits, g, m->w.head, N, d, V, false);
    float scale = count > 0 ? weight / (float)count : 0.0f;
    double sum = ce_forward_backward(logits, targets, N, V, scale);
    if (scale != 0.0f) {
        dsc_linear_backward_weight(m->g.head, logits, g, N, d, V);
        dsc_linear_backward_input(dg, logits, m->w.head, N, d, V, false);
    } else {
        memset(dg, 0, sizeof(float) * (size_t)N * d);
    }
    PROF_END(PROF_HEAD_LOSS);
    return sum;
}

/* ----------------------------------------------------------------------------------------------
 * Training pass
 * -------------------------------------------------------------------------------------------- */

dsc_status dsc_model_forward_backward(dsc_model *m, const int32_t *tokens, const int32_t *targets, int B, int T,
                                      dsc_losses *out) {
    const dsc_config *c = &m->cfg;
    if (begin_pass(m, tokens, targets, B, T)) return DSC_ERR;
    model_workspace *ws = m->ws;
    int N = B * T, d = c->hidden_size, n = cfg_streams(c), L = c->num_hidden_layers, D = c->num_nextn_predict_layers;
    int E = c->n_routed_experts;
    size_t Nd = (size_t)N * d;
    float balance = 0;
    memset(out, 0, sizeof *out);

    /* ---- main model, head and loss ---- */
    main_forward(m, tokens, B, T, true, &balance);
    int64_t count = ce_count_targets(targets, N);
    double ce_sum = head_loss(m, ws->hn, targets, N, count, 1.0f, ws->dhn);
    out->ce = count > 0 ? (float)(ce_sum / count) : 0.0f;
    out->n_targets = count;

    /* ---- MTP depths, forward (each head's gradient is taken right away) ---- */
    double mtp_total = 0;
    for (int k = 1; k <= D; k++) {
        mtp_acts *a = &ws->mtp[k - 1];
        int l = L + k - 1;
        const block_weights *bw = &m->w.blocks[l];
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                int i = b * T + t, src = t + k;
                int32_t z = src < T ? tokens[b * T + src] : src == T ? targets[b * T + T - 1] : 0;
                a->in_tok[i] = z < 0 ? 0 : z;
                a->tgt[i] = t + k < T ? targets[b * T + t + k] : -1;
            }
        const float *g_prev = k == 1 ? ws->hn : ws->mtp[k - 2].g;
        embed_forward(a->en, m->w.embed, a->in_tok, N, d);
        rmsnorm_forward(a->en, a->en_rstd, a->en, bw->enorm, N, d, c->rms_norm_eps);
        rmsnorm_forward(a->gn, a->gn_rstd, g_prev, bw->hnorm, N, d, c->rms_norm_eps);
        for (int i = 0; i < N; i++) { /* embedding first */
            memcpy(a->cat + (size_t)i * 2 * d, a->en + (size_t)i * d, sizeof(float) * d);
            memcpy(a->cat + (size_t)i * 2 * d + d, a->gn + (size_t)i * d, sizeof(float) * d);
        }
        dsc_linear_forward(a->hp, a->cat, bw->eh_proj, N, 2 * d, d, false);
        mhc_expand(a->x_in, a->hp, N, n, d);
        int64_t *load = bw->is_moe ? m->expert_load + (size_t)l * E : NULL;
        block_forward(c, l, bw, &m->rope, &ws->acts[l], a->x_out, a->x_in, B, T, load, &balance, ws->scratch);
        mhc_reduce(a->h, a->x_out, N, n, d);
        rmsnorm_forward(a->g, a->g_rstd, a->h, bw->head_norm, N, d, c->rms_norm_eps);
        int64_t cnt = ce_count_targets(a->tgt, N);
        double s = head_loss(m, a->g, a->tgt, N, cnt, c->mtp_loss_weight / D, a->dg);
        mtp_total += cnt > 0 ? s / cnt : 0.0;
    }
    out->mtp = D > 0 ? (float)(mtp_total / D) : 0.0f;
    out->balance = balance;
    out->total = out->ce + c->mtp_loss_weight * out->mtp + c->aux_loss_alpha * out->balance;

    /* ---- MTP depths, backward (deepest first: depth k+1 feeds gradient into g_k) ---- */
    for (int k = D; k >= 1; k--) {
        mtp_acts *a = &ws->mtp[k - 1];
        int l = L + k - 1;
        const block_weights *bw = &m->w.blocks[l];
        const block_weights *bg = &m->g.blocks[l];
        float *dh = ws->dvec; /* [N,d] */
        memset(dh, 0, sizeof(float) * Nd);
        rmsnorm_backward(dh, bg->head_norm, a->dg, a->h, bw->head_norm, a->g_rstd, N, d);
        memset(ws->dstream_a, 0, sizeof(float) * Nd * n);
        mhc_reduce_backward(ws->dstream_a, dh, N, n, d);
        block_backward(c, l, bw, bg, &m->rope, &ws->acts[l], ws->dstream_b, ws->dstream_a, B, T, c->aux_loss_alpha,
                       ws->scratch);
        float *dhp = ws->dvec;
        memset(dhp, 0, sizeof(float) * Nd);
        mhc_expand_backward(dhp, ws->dstream_b, N, n, d);
        float *dcat = ws->dstream_a; /* [N, 2d] fits in a stream buffer when n >= 2; else use scratch */
        if (n < 2) dcat = ws->scratch;
        dsc_linear_backward_weight(bg->eh_proj, dhp, a->cat, N, 2 * d, d);
        dsc_linear_backward_input(dcat, dhp, bw->eh_proj, N, 2 * d, d, false);
        /* split the concat gradient: embedding half, hidden half */
        float *den = ws->dvec, *dgn = ws->dvec + Nd;
        for (int i = 0; i < N; i++) {
            memcpy(den + (size_t)i * d, dcat + (size_t)i * 2 * d, sizeof(float) * d);
            memcpy(dgn + (size_t)i * d, dcat + (size_t)i * 2 * d + d, sizeof(float) * d);
        }
        /* hidden half -> the previous depth's g (k = 1: the main model's hn) */
        float *dg_prev = k == 1 ? ws->dhn : ws->mtp[k - 2].dg;
        const float *g_prev = k == 1 ? ws->hn : ws->mtp[k - 2].g;
        rmsnorm_backward(dg_prev, bg->hnorm, dgn, g_prev, bw->hnorm, a->gn_rstd, N, d);
        /* embedding half: RMSNorm(Embed[z]; enorm) -> the embedding rows. The raw embedding rows
         * are needed for the norm's backward: recompute them into dgn's buffer (free now). */
        float *e_raw = dgn;
        embed_forward(e_raw, m->w.embed, a->in_tok, N, d);
        float *de = dcat; /* free now */
        memset(de, 0, sizeof(float) * Nd);
        rmsnorm_backward(de, bg->enorm, den, e_raw, bw->enorm, a->en_rstd, N, d);
        embed_backward(m->g.embed, de, a->in_tok, N, d);
    }

    main_backward(m, tokens, B, T);
    return DSC_OK;
}

/* ----------------------------------------------------------------------------------------------
 * Per-token log-probabilities (policy-gradient losses: GRPO)
 * -------------------------------------------------------------------------------------------- */

dsc_status dsc_model_logprobs(dsc_model *m, const int32_t *tokens, const int32_t *targets, int B, int T,
                              float temperature, float *logp, float *entropy) {
    const dsc_config *c = &m->cfg;
    if (begin_pass(m, tokens, targets, B, T)) return DSC_ERR;
    main_forward(m, tokens, B, T, false, NULL);
    dsc_linear_forward(m->ws->logits, m->ws->hn, m->w.head, B * T, c->hidden_size, c->vocab_size, false);
    logprob_forward(m->ws->logits, targets, B * T, c->vocab_size, temperature, logp, entropy);
    return DSC_OK;
}

dsc_status dsc_model_forward_backward_logprob(dsc_model *m, const int32_t *tokens, const int32_t *targets, int B,
                                              int T, float temperature, dsc_logprob_loss_fn loss_fn, void *user,
                                              float *logp_out, float *entropy, double *loss) {
    const dsc_config *c = &m->cfg;
    if (begin_pass(m, tokens, targets, B, T)) return DSC_ERR;
    model_workspace *ws = m->ws;
    int N = B * T, d = c->hidden_size, V = c->vocab_size;
    float *logp = malloc(sizeof(float) * (size_t)N * 2);
    if (!logp) return dsc_set_error("out of memory (%d log-probabilities)", N);
    float *dlogp = logp + N;
    float balance = 0;
    main_forward(m, tokens, B, T, true, &balance);
    dsc_linear_forward(ws->logits, ws->hn, m->w.head, N, d, V, false);
    logprob_forward(ws->logits, targets, N, V, temperature, logp, entropy);
    memset(dlogp, 0, sizeof(float) * N);
    double l = loss_fn(user, logp, N, dlogp);
    if (loss) *loss = l;
    if (logp_out) memcpy(logp_out, logp, sizeof(float) * N);
    logprob_backward(ws->logits, targets, dlogp, N, V, temperature);
    free(logp);
    dsc_linear_backward_weight(m->g.head, ws->logits, ws->hn, N, d, V);
    dsc_linear_backward_input(ws->dhn, ws->logits, m->w.head, N, d, V, false);
    main_backward(m, tokens, B, T);
    return DSC_OK;
}

dsc_status dsc_model_update_expert_bias(dsc_model *m, float gamma) {
    const dsc_config *c = &m->cfg;
    int E = c->n_routed_experts;
    if (E == 0) return DSC_OK;
    int nb = c->num_hidden_layers + c->num_nextn_predict_layers;
    for (int l = 0; l < nb; l++) {
        const block_weights *b = &m->w.blocks[l];
        int64_t *load = m->expert_load + (size_t)l * E;
        if (b->is_moe && b->moe.bias) moe_update_bias(b->moe.bias, load, E, gamma);
        memset(load, 0, sizeof(int64_t) * E);
    }
    return DSC_OK;
}

const void *model_block_acts(const dsc_model *m, int l) { return m->ws ? &m->ws->acts[l] : NULL; }
