/* test_moe.c: the DeepSeekMoE module (src/model/moe.c): router decisions on hand-made scores,
 * loads, the bias update and the balance loss on hand-computed examples, the expert-grouped
 * forward against a naive per-row loop, and finite-difference checks of every gradient. */
#include <omp.h>
#include <stdint.h>

#include "model/moe.h"
#include "testutil.h"

/* ------------------------------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------------------------------- */

static dsc_config moe_config(int d, int E, int K, int G, int TG, int Ie, int S, dsc_score_func f, bool bias,
                             bool norm, float rsf) {
    dsc_config c;
    memset(&c, 0, sizeof c);
    c.hidden_size = d;
    c.n_routed_experts = E;
    c.num_experts_per_tok = K;
    c.n_group = G;
    c.topk_group = TG;
    c.moe_intermediate_size = Ie;
    c.n_shared_experts = S;
    c.scoring_func = f;
    c.expert_bias = bias;
    c.norm_topk_prob = norm;
    c.routed_scaling_factor = rsf;
    return c;
}

/* Routes one row whose scores are the given s (sigmoid) or logits z (softmax): the gate is the
 * identity (d = E) and x is logit(s) or z. */
static void route_one(const dsc_config *c, const float *v, const float *bias, float *scores, int32_t *idx,
                      float *weights) {
    int E = c->n_routed_experts;
    float *gate = calloc((size_t)E * E, sizeof(float)), *x = malloc(sizeof(float) * E);
    for (int e = 0; e < E; e++) {
        gate[e * E + e] = 1;
        x[e] = c->scoring_func == DSC_SCORE_SIGMOID ? logf(v[e] / (1 - v[e])) : v[e];
    }
    moe_weights w = {.gate = gate, .bias = (float *)bias};
    moe_route(c, &w, x, 1, scores, idx, weights);
    free(gate);
    free(x);
}

static void check_route(const char *what, const dsc_config *c, const float *v, const float *bias,
                        const int32_t *want_idx, const float *want_w) {
    float scores[64], weights[8];
    int32_t idx[8];
    route_one(c, v, bias, scores, idx, weights);
    for (int k = 0; k < c->num_experts_per_tok; k++) {
        CHECK(idx[k] == want_idx[k], "%s: slot %d picks expert %d, want %d", what, k, idx[k], want_idx[k]);
        CHECK(fabsf(weights[k] - want_w[k]) <= 1e-5f * fmaxf(1, fabsf(want_w[k])), "%s: weight %d = %.7g, want %.7g",
              what, k, (double)weights[k], (double)want_w[k]);
    }
}

/* ------------------------------------------------------------------------------------------------
 * 1. Router decisions
 * ---------------------------------------------------------------------------------------------- */

static void test_router(void) {
    /* Groups of two: top-2 sums 1.0, 1.15, 1.2, 0.4; maxima 0.9, 0.6, 0.7, 0.2. */
    const float s[8] = {0.9f, 0.1f, 0.6f, 0.55f, 0.7f, 0.5f, 0.2f, 0.2f};
    const float zero[8] = {0};
    float r = 2.5f;
    {   /* with the bias: groups 2 and 1 by top-2 sum; expert 0 (the best score) is masked */
        dsc_config c = moe_config(8, 8, 2, 4, 2, 4, 0, DSC_SCORE_SIGMOID, true, true, r);
        check_route("groups top-2 sum", &c, s, zero, (int32_t[]){4, 2}, (float[]){r * 0.7f / 1.3f, r * 0.6f / 1.3f});
    }
    {   /* without the bias: groups 0 and 2 by their maxima */
        dsc_config c = moe_config(8, 8, 2, 4, 2, 4, 0, DSC_SCORE_SIGMOID, false, true, r);
        check_route("groups max", &c, s, NULL, (int32_t[]){0, 4}, (float[]){r * 0.9f / 1.6f, r * 0.7f / 1.6f});
    }
    {   /* one group keeps everything */
        dsc_config c = moe_config(8, 8, 3, 1, 1, 4, 0, DSC_SCORE_SIGMOID, false, true, r);
        check_route("no groups", &c, s, NULL, (int32_t[]){0, 4, 2},
                    (float[]){r * 0.9f / 2.2f, r * 0.7f / 2.2f, r * 0.6f / 2.2f});
    }
    {   /* the bias moves expert 6 (s = 0.2, sel = 0.8) into the picks; its weight uses s */
        const float b[8] = {0, 0, 0, 0, 0, 0, 0.6f, 0};
        dsc_config c = moe_config(8, 8, 2, 1, 1, 4, 0, DSC_SCORE_SIGMOID, true, true, r);
        check_route("bias selects only", &c, s, b, (int32_t[]){0, 6}, (float[]){r * 0.9f / 1.1f, r * 0.2f / 1.1f});
        c.norm_topk_prob = false;
        check_route("norm_topk_prob off", &c, s, b, (int32_t[]){0, 6}, (float[]){r * 0.9f, r * 0.2f});
        /* with groups the bias also enters the group scores: group 3 = 0.2 + 0.8 */
        const float b2[8] = {0, 0, 0, 0, 0, 0, 0.6f, 0.7f};
        c = moe_config(8, 8, 2, 4, 1, 4, 0, DSC_SCORE_SIGMOID, true, true, r);
        check_route("bias in group score", &c, s, b2, (int32_t[]){7, 6}, (float[]){r * 0.5f, r * 0.5f});
    }
    {   /* softmax scoring: weights are the softmax probabilities (normalised or not) */
        const float z[6] = {1.0f, 2.0f, 0.5f, 3.0f, -1.0f, 0.0f};
        double sum = 0, p[6];
        for (int e = 0; e < 6; e++) sum += exp(z[e]);
        for (int e = 0; e < 6; e++) p[e] = exp(z[e]) / sum;
        dsc_config c = moe_config(6, 6, 2, 1, 1, 4, 0, DSC_SCORE_SOFTMAX, false, false, 1.0f);
        check_route("softmax", &c, z, NULL, (int32_t[]){3, 1}, (float[]){(float)p[3], (float)p[1]});
        c.norm_topk_prob = true;
        c.routed_scaling_factor = 2.0f;
        check_route("softmax normalised", &c, z, NULL, (int32_t[]){3, 1},
                    (float[]){(float)(2 * p[3] / (p[3] + p[1])), (float)(2 * p[1] / (p[3] + p[1]))});
        float scores[6], weights[2];
        int32_t idx[2];
        route_one(&c, z, NULL, scores, idx, weights);
        for (int e = 0; e < 6; e++)
            CHECK(fabs(scores[e] - p[e]) < 1e-6, "softmax score %d = %g, want %g", e, (double)scores[e], p[e]);
    }
    {   /* the picks come in decreasing order */
        const float s4[4] = {0.1f, 0.3f, 0.9f, 0.5f};
        dsc_config c = moe_config(4, 4, 3, 1, 1, 4, 0, DSC_SCORE_SIGMOID, false, false, 1.0f);
        check_route("decreasing order", &c, s4, NULL, (int32_t[]){2, 3, 1}, (float[]){0.9f, 0.5f, 0.3f});
    }
    {   /* ties go to the lower index, for experts and for groups */
        const float t[8] = {0.3f, 0.7f, 0.7f, 0.3f, 0.7f, 0.3f, 0.3f, 0.3f};
        dsc_config c = moe_config(8, 8, 3, 1, 1, 4, 0, DSC_SCORE_SIGMOID, false, false, 1.0f);
        check_route("expert ties", &c, t, NULL, (int32_t[]){1, 2, 4}, (float[]){0.7f, 0.7f, 0.7f});
        /* groups 0 and 1 tie at max 0.7 (and group 2 too): only group 0 is kept with TG = 1, so
         * expert 0 (0.3) comes before experts 2 and 4 (0.7) */
        c = moe_config(8, 8, 2, 4, 1, 4, 0, DSC_SCORE_SIGMOID, false, false, 1.0f);
        check_route("group ties", &c, t, NULL, (int32_t[]){1, 0}, (float[]){0.7f, 0.3f});
        const float half[8] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
        c = moe_config(8, 8, 2, 4, 2, 4, 0, DSC_SCORE_SIGMOID, true, true, 1.0f);
        check_route("all tied", &c, half, zero, (int32_t[]){0, 1}, (float[]){0.5f, 0.5f});
    }
    {   /* NaN scores still give K distinct valid experts (no out-of-bounds downstream) */
        dsc_config c = moe_config(4, 4, 2, 2, 1, 4, 0, DSC_SCORE_SIGMOID, true, true, 1.0f);
        float gate[16] = {0}, x[4] = {NAN, NAN, NAN, NAN}, scores[4], weights[2], b[4] = {0};
        int32_t idx[2] = {-7, -7};
        for (int e = 0; e < 4; e++) gate[e * 4 + e] = 1;
        moe_weights w = {.gate = gate, .bias = b};
        moe_route(&c, &w, x, 1, scores, idx, weights);
        CHECK(idx[0] >= 0 && idx[0] < 4 && idx[1] >= 0 && idx[1] < 4 && idx[0] != idx[1], "NaN row: idx %d %d",
              idx[0], idx[1]);
    }
}

/* ------------------------------------------------------------------------------------------------
 * A module instance: weights, gradients, activations, scratch, each in its own exact-size
 * allocation so that ASan sees any overrun of the sizes moe.c reports.
 * ---------------------------------------------------------------------------------------------- */

typedef struct {
    dsc_config c;
    int B, T, N;
    moe_weights w, g;
    float *x, *dx, *r, *out, *acts, *scratch;
    moe_acts a;
    float alpha;        /* weight of the balance loss in the test loss */
    int32_t *base_idx;  /* the selection at the unperturbed point */
    int flips;          /* selections that changed during finite differences */
    bool balance_only;  /* loss = alpha * balance (recomputed in double) */
} fixture;

typedef struct { float **p, **gp; size_t n; const char *name; } tensor_ref;

static int tensors(fixture *f, tensor_ref *t) {
    const dsc_config *c = &f->c;
    size_t d = c->hidden_size, E = c->n_routed_experts, Ie = c->moe_intermediate_size;
    size_t S = (size_t)c->n_shared_experts * Ie;
    int n = 0;
    t[n++] = (tensor_ref){&f->x, &f->dx, (size_t)f->N * d, "x"};
    t[n++] = (tensor_ref){&f->w.gate, &f->g.gate, E * d, "gate"};
    t[n++] = (tensor_ref){&f->w.w1, &f->g.w1, E * Ie * d, "experts.gate_proj"};
    t[n++] = (tensor_ref){&f->w.w3, &f->g.w3, E * Ie * d, "experts.up_proj"};
    t[n++] = (tensor_ref){&f->w.w2, &f->g.w2, E * d * Ie, "experts.down_proj"};
    if (S) {
        t[n++] = (tensor_ref){&f->w.shared.w1, &f->g.shared.w1, S * d, "shared.gate_proj"};
        t[n++] = (tensor_ref){&f->w.shared.w3, &f->g.shared.w3, S * d, "shared.up_proj"};
        t[n++] = (tensor_ref){&f->w.shared.w2, &f->g.shared.w2, d * S, "shared.down_proj"};
    }
    return n;
}

static void fixture_init(fixture *f, dsc_config c, int B, int T, float alpha, dsc_rng *rng) {
    memset(f, 0, sizeof *f);
    f->c = c;
    f->B = B;
    f->T = T;
    f->N = B * T;
    f->alpha = alpha;
    int d = c.hidden_size, E = c.n_routed_experts;
    tensor_ref t[8];
    int nt = tensors(f, t);
    for (int i = 0; i < nt; i++) {
        *t[i].p = malloc(sizeof(float) * t[i].n);
        *t[i].gp = calloc(t[i].n, sizeof(float));
    }
    /* scales keep every activation O(1): z std ~ 1.5, hidden pre-activations std ~ 1 */
    tu_fill_normal(rng, f->x, (size_t)f->N * d, 1.0f);
    tu_fill_normal(rng, f->w.gate, (size_t)E * d, 1.5f / sqrtf((float)d));
    for (int i = 2; i < nt; i++) tu_fill_normal(rng, *t[i].p, t[i].n, 1.0f / sqrtf((float)d));
    if (c.expert_bias) {
        f->w.bias = malloc(sizeof(float) * E);
        f->g.bias = malloc(sizeof(float) * E);
        tu_fill_normal(rng, f->w.bias, E, 0.1f);
        for (int e = 0; e < E; e++) f->g.bias[e] = 42.0f; /* sentinel: no gradient goes here */
    }
    f->r = malloc(sizeof(float) * f->N * d);
    tu_fill_normal(rng, f->r, (size_t)f->N * d, 1.0f);
    f->out = malloc(sizeof(float) * f->N * d);
    f->acts = malloc(sizeof(float) * moe_acts_floats(&c, B, T));
    f->scratch = malloc(sizeof(float) * moe_scratch_floats(&c, B, T));
    moe_acts_bind(&f->a, f->acts, &f->c, B, T);
    f->base_idx = malloc(sizeof(int32_t) * f->N * c.num_experts_per_tok);
}

static void fixture_free(fixture *f) {
    tensor_ref t[8];
    int nt = tensors(f, t);
    for (int i = 0; i < nt; i++) {
        free(*t[i].p);
        free(*t[i].gp);
    }
    free(f->w.bias);
    free(f->g.bias);
    free(f->r);
    free(f->out);
    free(f->acts);
    free(f->scratch);
    free(f->base_idx);
}

/* L = Σ r ⊙ MoE(x) + alpha · balance, counting selection changes against base_idx. */
static double fixture_loss(void *ctx) {
    fixture *f = ctx;
    float bal = 0;
    moe_forward(&f->c, &f->w, &f->a, f->out, f->x, f->B, f->T, NULL, &bal, f->scratch);
    double L = 0;
    for (size_t i = 0; i < (size_t)f->N * f->c.hidden_size; i++) L += (double)f->r[i] * f->out[i];
    /* a changed set of picks is a flip; a changed order among the picks is not (the sum does
     * not depend on it) */
    int K = f->c.num_experts_per_tok;
    for (int r = 0; r < f->N; r++)
        for (int k = 0; k < K; k++) {
            int found = 0;
            for (int j = 0; j < K; j++) found |= f->a.idx[r * K + k] == f->base_idx[r * K + j];
            f->flips += !found;
        }
    if (f->balance_only) { /* in double from the scores: the float balance would limit the step */
        int E = f->c.n_routed_experts, T = f->T;
        double total = 0;
        for (int r = 0; r < f->N; r++) {
            const float *s = f->a.scores + (size_t)r * E, *fb = f->a.f + (size_t)(r / T) * E;
            double sum = 0, fs = 0;
            for (int e = 0; e < E; e++) {
                sum += s[e];
                fs += (double)fb[e] * s[e];
            }
            total += fs / sum;
        }
        total /= (double)f->N;
        CHECK(fabs(total - bal) <= 1e-6 * fmax(1, fabs(total)), "balance %.8g vs %.8g recomputed", (double)bal, total);
        return (double)f->alpha * total;
    }
    return L + (double)f->alpha * bal;
}

static void fixture_grads(fixture *f) {
    fixture_loss(f);
    moe_backward(&f->c, &f->w, &f->g, &f->a, f->dx, f->r, f->B, f->T, f->alpha, f->scratch);
}

/* The smallest distance of any row's routing decision from a tie: between the last kept group
 * and the first dropped one, and between the K-th pick and the best unpicked kept expert. */
static double routing_margin(fixture *f) {
    const dsc_config *c = &f->c;
    int E = c->n_routed_experts, K = c->num_experts_per_tok, G = c->n_group, per = E / G;
    float bal = 0;
    moe_forward(c, &f->w, &f->a, f->out, f->x, f->B, f->T, NULL, &bal, f->scratch);
    double margin = INFINITY;
    for (int r = 0; r < f->N; r++) {
        double sel[64], gs[64];
        int kept[64];
        for (int e = 0; e < E; e++) sel[e] = f->a.scores[r * E + e] + (f->w.bias ? f->w.bias[e] : 0);
        for (int g = 0; g < G; g++) {
            double m1 = -INFINITY, m2 = -INFINITY;
            for (int e = g * per; e < (g + 1) * per; e++) {
                if (sel[e] > m1) {
                    m2 = m1;
                    m1 = sel[e];
                } else if (sel[e] > m2) {
                    m2 = sel[e];
                }
            }
            gs[g] = f->w.bias ? m1 + m2 : m1;
        }
        /* the TG-th and (TG+1)-th best group scores must be apart */
        double gsorted[64];
        memcpy(gsorted, gs, sizeof(double) * G);
        for (int i = 1; i < G; i++)
            for (int j = i; j > 0 && gsorted[j] > gsorted[j - 1]; j--) {
                double t = gsorted[j];
                gsorted[j] = gsorted[j - 1];
                gsorted[j - 1] = t;
            }
        if (G > c->topk_group) margin = fmin(margin, gsorted[c->topk_group - 1] - gsorted[c->topk_group]);
        for (int g = 0; g < G; g++) kept[g] = G == 1 || gs[g] >= gsorted[c->topk_group - 1];
        const int32_t *ix = f->a.idx + (size_t)r * K;
        double kth = INFINITY, best_out = -INFINITY;
        for (int k = 0; k < K; k++) kth = fmin(kth, sel[ix[k]]);
        for (int e = 0; e < E; e++) {
            int picked = 0;
            for (int k = 0; k < K; k++) picked |= ix[k] == e;
            if (!picked && kept[e / per]) best_out = fmax(best_out, sel[e]);
        }
        margin = fmin(margin, kth - best_out);
    }
    return margin;
}

/* ------------------------------------------------------------------------------------------------
 * 2. Loads, bias update, balance loss
 * ---------------------------------------------------------------------------------------------- */

static void test_update_bias(void) {
    float b[4] = {1, 2, 3, 4};
    moe_update_bias(b, (int64_t[]){5, 3, 4, 4}, 4, 0.25f); /* mean 4: over, under, even, even */
    CHECK(b[0] == 0.75f && b[1] == 2.25f && b[2] == 3 && b[3] == 4, "bias update: %g %g %g %g", (double)b[0],
          (double)b[1], (double)b[2], (double)b[3]);
    float b2[3] = {0, 0, 0};
    moe_update_bias(b2, (int64_t[]){1, 2, 3}, 3, 0.5f); /* mean 2 exactly: the middle one stays */
    CHECK(b2[0] == 0.5f && b2[1] == 0 && b2[2] == -0.5f, "bias update 2: %g %g %g", (double)b2[0], (double)b2[1],
          (double)b2[2]);
    float b3[2] = {0, 0};
    moe_update_bias(b3, (int64_t[]){1, 2}, 2, 0.5f); /* mean 1.5 (not an integer) */
    CHECK(b3[0] == 0.5f && b3[1] == -0.5f, "bias update 3: %g %g", (double)b3[0], (double)b3[1]);
}

/* Balance loss on hand-set scores: E = 4, K = 1, two sequences of two rows (identity gate). */
static void test_balance_and_loads(dsc_rng *rng) {
    fixture f;
    dsc_config c = moe_config(4, 4, 1, 1, 1, 2, 0, DSC_SCORE_SIGMOID, false, true, 1.0f);
    fixture_init(&f, c, 2, 2, 0, rng);
    const float s[4][4] = {{0.8f, 0.1f, 0.3f, 0.2f},  /* seq 0: picks 0 */
                           {0.2f, 0.6f, 0.4f, 0.5f},  /*        picks 1 */
                           {0.1f, 0.2f, 0.9f, 0.3f},  /* seq 1: picks 2 */
                           {0.1f, 0.2f, 0.7f, 0.3f}}; /*        picks 2 */
    memset(f.w.gate, 0, sizeof(float) * 16);
    for (int e = 0; e < 4; e++) f.w.gate[e * 4 + e] = 1;
    for (int t = 0; t < 4; t++)
        for (int e = 0; e < 4; e++) f.x[t * 4 + e] = logf(s[t][e] / (1 - s[t][e]));
    int64_t load[4] = {10, 20, 30, 40};
    float bal = 0.5f; /* accumulates */
    moe_forward(&f.c, &f.w, &f.a, f.out, f.x, 2, 2, load, &bal, f.scratch);
    /* seq 0: f = E/(K T)·counts = {2,2,0,0}, L = 2(0.8/1.4 + 0.2/1.7)/2 + 2(0.1/1.4 + 0.6/1.7)/2
     * seq 1: f = {0,0,4,0},                  L = 4(0.9/1.5 + 0.7/1.3)/2 */
    double want = 0.5 + ((0.9 / 1.4 + 0.8 / 1.7) + 2 * (0.9 / 1.5 + 0.7 / 1.3)) / 2;
    CHECK(fabs(bal - want) < 1e-5, "balance %.7g, want %.7g", (double)bal, want);
    CHECK(load[0] == 11 && load[1] == 21 && load[2] == 32 && load[3] == 40, "loads %lld %lld %lld %lld",
          (long long)load[0], (long long)load[1], (long long)load[2], (long long)load[3]);
    const float fwant[8] = {2, 2, 0, 0, 0, 0, 4, 0};
    tu_check_close("balance f", f.a.f, fwant, 8, 1e-6);
    fixture_free(&f);

    /* Perfect balance gives 1: every expert picked equally, identical scores. */
    c = moe_config(4, 4, 2, 1, 1, 2, 0, DSC_SCORE_SOFTMAX, false, true, 1.0f);
    fixture_init(&f, c, 1, 2, 0, rng);
    memset(f.w.gate, 0, sizeof(float) * 16);
    const float xs[8] = {1, 1, 0, 0, 0, 0, 1, 1}; /* picks {0,1} then {2,3} */
    memcpy(f.x, xs, sizeof xs);
    bal = 0;
    moe_forward(&f.c, &f.w, &f.a, f.out, f.x, 1, 2, NULL, &bal, f.scratch);
    CHECK(fabsf(bal - 1) < 1e-6f, "balanced balance %.7g, want 1", (double)bal);
    fixture_free(&f);

    /* Loads on a random batch equal the counts of idx, added to what was there. */
    c = moe_config(16, 16, 4, 4, 2, 8, 1, DSC_SCORE_SIGMOID, true, true, 2.5f);
    fixture_init(&f, c, 3, 20, 0, rng);
    int64_t ld[16], cnt[16] = {0}, total = 0;
    for (int e = 0; e < 16; e++) ld[e] = 7;
    moe_forward(&f.c, &f.w, &f.a, f.out, f.x, 3, 20, ld, NULL, f.scratch);
    for (int p = 0; p < 60 * 4; p++) cnt[f.a.idx[p]]++;
    for (int e = 0; e < 16; e++) {
        CHECK(ld[e] == 7 + cnt[e], "load[%d] = %lld, want %lld", e, (long long)ld[e], (long long)(7 + cnt[e]));
        total += ld[e] - 7;
        CHECK(f.a.offsets[e + 1] - f.a.offsets[e] == cnt[e], "offsets of expert %d", e);
    }
    CHECK(total == 60 * 4, "loads sum to %lld, want %d", (long long)total, 60 * 4);
    fixture_free(&f);
}

/* ------------------------------------------------------------------------------------------------
 * 3. Expert-grouped forward == naive per-row loop
 * ---------------------------------------------------------------------------------------------- */

/* y += scale · SwiGLU(x) for one row, in double. */
static void naive_swiglu(double *y, const float *x, const float *w1, const float *w3, const float *w2, int d, int I,
                         double scale) {
    for (int i = 0; i < I; i++) {
        double a = 0, b = 0;
        for (int j = 0; j < d; j++) {
            a += (double)w1[(size_t)i * d + j] * x[j];
            b += (double)w3[(size_t)i * d + j] * x[j];
        }
        double act = a / (1 + exp(-a)) * b;
        for (int j = 0; j < d; j++) y[j] += scale * act * w2[(size_t)j * I + i];
    }
}

static void test_against_naive(dsc_rng *rng) {
    dsc_config c = moe_config(32, 16, 4, 4, 2, 24, 2, DSC_SCORE_SIGMOID, true, true, 2.5f);
    fixture f;
    fixture_init(&f, c, 3, 32, 0, rng);
    int d = 32, Ie = 24, S = 48, K = 4;
    moe_forward(&f.c, &f.w, &f.a, f.out, f.x, f.B, f.T, NULL, NULL, f.scratch);
    /* the router on its own gives the same decisions */
    float *sc = malloc(sizeof(float) * f.N * 16), *wt = malloc(sizeof(float) * f.N * K);
    int32_t *ix = malloc(sizeof(int32_t) * f.N * K);
    moe_route(&f.c, &f.w, f.x, f.N, sc, ix, wt);
    CHECK(!memcmp(ix, f.a.idx, sizeof(int32_t) * f.N * K), "moe_route and moe_forward disagree on idx");
    float *want = malloc(sizeof(float) * f.N * d);
    int used = 0;
    for (int r = 0; r < f.N; r++) {
        double y[32] = {0};
        const float *x = f.x + (size_t)r * d;
        naive_swiglu(y, x, f.w.shared.w1, f.w.shared.w3, f.w.shared.w2, d, S, 1.0);
        for (int k = 0; k < K; k++) {
            int e = ix[r * K + k];
            naive_swiglu(y, x, f.w.w1 + (size_t)e * Ie * d, f.w.w3 + (size_t)e * Ie * d, f.w.w2 + (size_t)e * d * Ie,
                         d, Ie, wt[r * K + k]);
        }
        for (int j = 0; j < d; j++) want[r * d + j] = (float)y[j];
    }
    for (int e = 0; e < 16; e++) used += f.a.offsets[e + 1] > f.a.offsets[e];
    tu_check_close("grouped forward vs naive", f.out, want, (size_t)f.N * d, 1e-5);
    CHECK(used > 8, "only %d experts used: the comparison is too weak", used);
    /* deterministic: a second run gives the same bits */
    float *again = malloc(sizeof(float) * f.N * d);
    moe_forward(&f.c, &f.w, &f.a, again, f.x, f.B, f.T, NULL, NULL, f.scratch);
    CHECK(!memcmp(again, f.out, sizeof(float) * f.N * d), "forward is not deterministic");
    free(again);
    free(want);
    free(sc);
    free(wt);
    free(ix);
    fixture_free(&f);
}

/* The one-thread run (tasks in sequence, the shared experts in one piece) and the two-thread run
 * (tasks one per thread, the shared experts in chunks of rows, heavy tasks alone with
 * multithreaded GEMMs) give the same forward and backward. heavy >= 0: every row picks that
 * expert (its bias is large), so it is a heavy task. */
static void check_threads(const char *name, dsc_config c, int B, int T, int heavy, dsc_rng *rng) {
    fixture f;
    fixture_init(&f, c, B, T, 0.5f, rng);
    if (heavy >= 0) f.w.bias[heavy] = 5;
    size_t nd = (size_t)f.N * c.hidden_size;
    tensor_ref t[8];
    int nt = tensors(&f, t), threads = omp_get_max_threads();
    float *ref[8], *out1 = malloc(sizeof(float) * nd);
    omp_set_num_threads(1);
    fixture_grads(&f);
    if (heavy >= 0)
        CHECK(f.a.offsets[heavy + 1] - f.a.offsets[heavy] == f.N, "%s: expert %d has %d of %d rows", name, heavy,
              f.a.offsets[heavy + 1] - f.a.offsets[heavy], f.N);
    memcpy(out1, f.out, sizeof(float) * nd);
    for (int i = 0; i < nt; i++) {
        ref[i] = malloc(sizeof(float) * t[i].n);
        memcpy(ref[i], *t[i].gp, sizeof(float) * t[i].n);
        memset(*t[i].gp, 0, sizeof(float) * t[i].n);
    }
    omp_set_num_threads(2);
    fixture_grads(&f);
    omp_set_num_threads(threads);
    char what[96];
    snprintf(what, sizeof what, "%s: out", name);
    tu_check_close(what, f.out, out1, nd, 1e-6);
    for (int i = 0; i < nt; i++) {
        snprintf(what, sizeof what, "%s: grad %s", name, t[i].name);
        tu_check_close(what, *t[i].gp, ref[i], t[i].n, 1e-5);
        free(ref[i]);
    }
    free(out1);
    fixture_free(&f);
}

static void test_threads(dsc_rng *rng) {
    check_threads("heavy expert", moe_config(64, 8, 1, 1, 1, 64, 0, DSC_SCORE_SIGMOID, true, true, 1.0f), 2, 128, 3,
                  rng);
    /* 256 rows, shared chunks of 256*2*32/16/64 = 16 rows */
    check_threads("shared chunks", moe_config(32, 16, 2, 4, 2, 32, 2, DSC_SCORE_SIGMOID, true, true, 2.5f), 2, 128,
                  -1, rng);
}

/* ------------------------------------------------------------------------------------------------
 * 4. Finite-difference gradient checks
 * ---------------------------------------------------------------------------------------------- */

static double worst_fd = 0;

/* Draws inputs until no routing decision is within min_margin of a tie, computes the analytic
 * gradients, then checks every tensor. balance_only: r = 0, so the loss is alpha·balance alone
 * (the balance gradient then is the whole gradient of x and the gate). */
static void gradcheck_config(const char *name, dsc_config c, int B, int T, float alpha, bool balance_only,
                             uint64_t seed) {
    /* balance only: its gradient is ~1/(B T) of its value, so a larger step keeps the rounding
     * of the loss small; the routing margin grows with it */
    const float h = balance_only ? 1e-2f : 1e-3f;
    const double min_margin = balance_only ? 5e-3 : 1e-3, tol = 1e-3;
    fixture f;
    dsc_rng rng;
    double margin = 0;
    int draws = 0;
    do {
        if (draws) fixture_free(&f);
        dsc_rng_seed(&rng, seed + 1000 * draws);
        fixture_init(&f, c, B, T, alpha, &rng);
        margin = routing_margin(&f);
        draws++;
    } while (margin < min_margin && draws < 100);
    printf("  %s: routing margin %.2e after %d draw(s)\n", name, margin, draws);
    CHECK(margin >= min_margin, "%s: no draw with routing margin >= %g", name, min_margin);
    if (balance_only) {
        memset(f.r, 0, sizeof(float) * f.N * c.hidden_size);
        f.balance_only = true;
    }

    fixture_grads(&f);
    memcpy(f.base_idx, f.a.idx, sizeof(int32_t) * f.N * c.num_experts_per_tok);
    f.flips = 0;
    tensor_ref t[8];
    int nt = tensors(&f, t);
    if (balance_only) nt = 2; /* x and gate; the experts get no gradient from the balance loss */
    for (int i = 0; i < nt; i++) {
        char what[96];
        snprintf(what, sizeof what, "%s: d/d %s", name, t[i].name);
        double e = tu_gradcheck(what, fixture_loss, &f, *t[i].p, *t[i].gp, t[i].n, h, 3, 6, tol, &rng);
        printf("  %-48s worst rel err %.2e\n", what, e);
        if (e > worst_fd) worst_fd = e;
    }
    CHECK(f.flips == 0, "%s: %d routing decisions flipped during finite differences", name, f.flips);

    /* Backward accumulates: a second pass doubles every gradient; the bias gets none. */
    float *first[8];
    for (int i = 0; i < nt; i++) {
        first[i] = malloc(sizeof(float) * t[i].n);
        memcpy(first[i], *t[i].gp, sizeof(float) * t[i].n);
    }
    fixture_grads(&f);
    for (int i = 0; i < nt; i++) {
        for (size_t j = 0; j < t[i].n; j++) first[i][j] *= 2;
        char what[96];
        snprintf(what, sizeof what, "%s: accumulated %s", name, t[i].name);
        tu_check_close(what, *t[i].gp, first[i], t[i].n, 1e-6);
        free(first[i]);
    }
    if (f.g.bias)
        for (int e = 0; e < c.n_routed_experts; e++)
            CHECK(f.g.bias[e] == 42.0f, "%s: the correction bias got a gradient", name);
    fixture_free(&f);
}

static void test_gradients(void) {
    /* DeepSeek-V3 style: sigmoid, groups with top-2 sums, correction bias, normalised weights */
    dsc_config v3 = moe_config(12, 8, 2, 4, 2, 6, 1, DSC_SCORE_SIGMOID, true, true, 2.5f);
    gradcheck_config("sigmoid+groups+bias", v3, 2, 5, 0.5f, false, 11);
    gradcheck_config("sigmoid+groups+bias balance", v3, 2, 5, 1.0f, true, 12);
    /* DeepSeek-V2 style: softmax, no groups, no bias, unnormalised weights */
    dsc_config v2 = moe_config(12, 8, 3, 1, 1, 6, 1, DSC_SCORE_SOFTMAX, false, false, 1.5f);
    gradcheck_config("softmax", v2, 2, 5, 0.5f, false, 13);
    gradcheck_config("softmax balance", v2, 2, 5, 1.0f, true, 14);
    /* softmax with normalised weights, no shared experts */
    dsc_config v2n = moe_config(12, 8, 2, 1, 1, 6, 0, DSC_SCORE_SOFTMAX, false, true, 1.5f);
    gradcheck_config("softmax+norm, no shared", v2n, 2, 5, 0.5f, false, 15);
}

int main(void) {
    dsc_rng rng;
    dsc_rng_seed(&rng, 1234);
    test_router();
    test_update_bias();
    test_balance_and_loads(&rng);
    test_against_naive(&rng);
    test_threads(&rng);
    test_gradients();
    printf("  worst finite-difference error %.2e\n", worst_fd);
    return tu_finish("test_moe");
}
