/* test_mla.c: finite-difference checks of MLA's backward pass (every weight and the input), for
 * low-rank and plain queries, with and without YaRN, and with the DSA selection masking; plus
 * RMSNorm, RoPE and the DSA indexer's top-k behaviour. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "model/config.h"
#include "model/mla.h"
#include "model/norm.h"
#include "model/rope.h"
#include "testutil.h"

typedef struct {
    dsc_config c;
    int B, T;
    mla_weights w, g;
    float *wmem, *gmem;
    size_t wn;
    rope_table rope;
    mla_acts a;
    float *amem, *scratch, *x, *dx, *out, *r;
} mla_case;

/* Lays out the weights of one MLA layer in one buffer (same order for weights and grads). */
static size_t layout(const dsc_config *c, float *base, mla_weights *w) {
    int d = c->hidden_size, H = c->num_attention_heads, dqk = cfg_qk_head_dim(c), rq = c->q_lora_rank;
    int rkv = c->kv_lora_rank, dr = c->qk_rope_head_dim;
    size_t off = 0;
#define PUT(field, n)                                                                                                  \
    do {                                                                                                               \
        w->field = base ? base + off : NULL;                                                                           \
        off += (n);                                                                                                    \
    } while (0)
    memset(w, 0, sizeof *w);
    if (rq > 0) {
        PUT(wq_a, (size_t)rq * d);
        PUT(q_norm, rq);
        PUT(wq_b, (size_t)H * dqk * rq);
    } else {
        PUT(wq_b, (size_t)H * dqk * d);
    }
    PUT(wkv_a, (size_t)(rkv + dr) * d);
    PUT(kv_norm, rkv);
    PUT(wkv_b, (size_t)H * (c->qk_nope_head_dim + c->v_head_dim) * rkv);
    PUT(wo, (size_t)d * H * c->v_head_dim);
    if (c->index_n_heads > 0) {
        PUT(idx.wq_b, (size_t)c->index_n_heads * c->index_head_dim * rq);
        PUT(idx.wk, (size_t)c->index_head_dim * d);
        PUT(idx.k_norm_w, c->index_head_dim);
        PUT(idx.k_norm_b, c->index_head_dim);
        PUT(idx.weights_proj, (size_t)c->index_n_heads * d);
    }
#undef PUT
    return off;
}

static void case_init(mla_case *k, const dsc_config *c, int B, int T, uint64_t seed) {
    memset(k, 0, sizeof *k);
    k->c = *c;
    k->B = B;
    k->T = T;
    dsc_rng r;
    dsc_rng_seed(&r, seed);
    k->wn = layout(c, NULL, &k->w);
    k->wmem = dsc_alloc(k->wn * 4);
    k->gmem = dsc_alloc(k->wn * 4);
    layout(c, k->wmem, &k->w);
    layout(c, k->gmem, &k->g);
    tu_fill_normal(&r, k->wmem, k->wn, 0.3f);
    size_t N = (size_t)B * T, d = c->hidden_size;
    rope_table_init(&k->rope, c, T);
    k->amem = dsc_alloc(mla_acts_floats(c, B, T) * 4);
    mla_acts_bind(&k->a, k->amem, c, B, T);
    k->scratch = dsc_alloc(mla_scratch_floats(c, B, T) * 4);
    k->x = dsc_alloc(N * d * 4);
    k->dx = dsc_alloc(N * d * 4);
    k->out = dsc_alloc(N * d * 4);
    k->r = dsc_alloc(N * d * 4);
    tu_fill_normal(&r, k->x, N * d, 1.0f);
    tu_fill_normal(&r, k->r, N * d, 1.0f);
}

static void case_free(mla_case *k) {
    dsc_free(k->wmem);
    dsc_free(k->gmem);
    dsc_free(k->amem);
    dsc_free(k->scratch);
    dsc_free(k->x);
    dsc_free(k->dx);
    dsc_free(k->out);
    dsc_free(k->r);
    rope_table_free(&k->rope);
}

static double case_loss(void *ctx) {
    mla_case *k = ctx;
    size_t n = (size_t)k->B * k->T * k->c.hidden_size;
    mla_forward(&k->c, &k->w, &k->rope, &k->a, k->out, k->x, k->B, k->T, k->scratch);
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)k->r[i] * k->out[i];
    return s;
}

static void run_case(const char *name, const dsc_config *c, int B, int T, uint64_t seed) {
    mla_case k;
    case_init(&k, c, B, T, seed);
    case_loss(&k);
    memset(k.gmem, 0, k.wn * 4);
    size_t n = (size_t)B * T * c->hidden_size;
    memset(k.dx, 0, n * 4);
    mla_backward(c, &k.w, &k.g, &k.rope, &k.a, k.dx, k.r, B, T, k.scratch);
    dsc_rng r;
    dsc_rng_seed(&r, seed + 7);
    char what[128];
    /* With a sparse DSA selection, x, wq_a and q_norm also feed the indexer, whose top-k choice
     * is piecewise constant: a finite difference may flip it. Those three are checked in the
     * dense cases; here only the weights behind the selection. */
    bool sparse = c->index_n_heads > 0 && T > c->index_topk;
    snprintf(what, sizeof what, "%s: input", name);
    if (!sparse) tu_gradcheck(what, case_loss, &k, k.x, k.dx, n, 1e-2f, 3, 4, 2e-3, &r);
    /* every weight tensor (the indexer's get no gradient: it only selects) */
    int d = c->hidden_size, H = c->num_attention_heads, dqk = cfg_qk_head_dim(c), rq = c->q_lora_rank;
    int rkv = c->kv_lora_rank, dr = c->qk_rope_head_dim;
    struct {
        const char *name;
        float *w, *g;
        size_t n;
    } t[] = {
        {"wq_a", k.w.wq_a, k.g.wq_a, (size_t)rq * d},
        {"q_norm", k.w.q_norm, k.g.q_norm, (size_t)rq},
        {"wq_b", k.w.wq_b, k.g.wq_b, (size_t)H * dqk * (rq > 0 ? rq : d)},
        {"wkv_a", k.w.wkv_a, k.g.wkv_a, (size_t)(rkv + dr) * d},
        {"kv_norm", k.w.kv_norm, k.g.kv_norm, (size_t)rkv},
        {"wkv_b", k.w.wkv_b, k.g.wkv_b, (size_t)H * (c->qk_nope_head_dim + c->v_head_dim) * rkv},
        {"wo", k.w.wo, k.g.wo, (size_t)d * H * c->v_head_dim},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        if (!t[i].w || (sparse && i < 2)) continue;
        snprintf(what, sizeof what, "%s: %s", name, t[i].name);
        tu_gradcheck(what, case_loss, &k, t[i].w, t[i].g, t[i].n, 1e-2f, 3, 4, 2e-3, &r);
    }
    case_free(&k);
}

static dsc_config base_config(void) {
    dsc_config c;
    dsc_config_preset("tiny", &c);
    c.mhc_expansion_rate = 0;
    c.index_n_heads = 0;
    c.hidden_size = 16;
    c.num_attention_heads = 2;
    c.q_lora_rank = 12;
    c.kv_lora_rank = 10;
    c.qk_nope_head_dim = 6;
    c.qk_rope_head_dim = 4;
    c.v_head_dim = 5;
    return c;
}

static void test_rmsnorm(void) {
    dsc_rng r;
    dsc_rng_seed(&r, 3);
    int N = 3, C = 7;
    float x[21], w[7], y[21], rstd[3], dy[21], dx[21] = {0}, dw[7] = {0};
    tu_fill_normal(&r, x, 21, 1);
    tu_fill_normal(&r, w, 7, 1);
    tu_fill_normal(&r, dy, 21, 1);
    rmsnorm_forward(y, rstd, x, w, N, C, 1e-6f);
    rmsnorm_backward(dx, dw, dy, x, w, rstd, N, C);
    /* numeric derivative in double of Σ dy·y */
    for (int i = 0; i < 21; i++) {
        double h = 1e-3, lp = 0, lm = 0;
        float save = x[i];
        x[i] = save + (float)h;
        rmsnorm_forward(y, rstd, x, w, N, C, 1e-6f);
        for (int j = 0; j < 21; j++) lp += (double)dy[j] * y[j];
        x[i] = save - (float)h;
        rmsnorm_forward(y, rstd, x, w, N, C, 1e-6f);
        for (int j = 0; j < 21; j++) lm += (double)dy[j] * y[j];
        x[i] = save;
        double num = (lp - lm) / (2 * h);
        CHECK(fabs(num - dx[i]) < 2e-3 * (1 + fabs(num)), "rmsnorm dx[%d]: numeric %g analytic %g", i, num, dx[i]);
    }
}

static void test_rope_inverse(void) {
    dsc_config c = base_config();
    c.yarn = true;
    c.rope_factor = 40;
    c.original_max_position_embeddings = 16;
    c.qk_rope_head_dim = 8;
    rope_table rt;
    rope_table_init(&rt, &c, 64);
    float x[8], y[8];
    dsc_rng r;
    dsc_rng_seed(&r, 5);
    tu_fill_normal(&r, x, 8, 1);
    for (int inter = 0; inter < 2; inter++) {
        memcpy(y, x, sizeof y);
        rope_apply(y, &rt, 37, inter, false);
        double n0 = 0, n1 = 0;
        for (int i = 0; i < 8; i++) n0 += x[i] * x[i], n1 += y[i] * y[i];
        CHECK(fabs(n0 - n1) < 1e-5 * n0, "rope keeps the norm");
        rope_apply(y, &rt, 37, inter, true);
        for (int i = 0; i < 8; i++) CHECK(fabs(y[i] - x[i]) < 1e-5, "rope inverse restores x[%d]", i);
    }
    rope_table_free(&rt);
}

/* DeepSeek-V3's YaRN frequencies and softmax scale (docs: low = 10, high = 23). */
static void test_yarn_v3(void) {
    dsc_config c;
    dsc_config_preset("deepseek-v3", &c);
    rope_table rt;
    rope_table_init(&rt, &c, 2);
    struct {
        int i;
        double want;
    } ref[] = {{0, 1.0}, {10, 0.0562341288}, {11, 0.0390069261}, {16, 0.00550000044}, {22, 1.7782794e-4},
               {23, 3.33380376e-5}, {31, 3.33380376e-6}};
    for (int k = 0; k < 7; k++)
        CHECK(fabs(rt.theta[ref[k].i] - ref[k].want) <= 2e-7 * ref[k].want + 1e-12, "YaRN theta[%d] = %.9g, want %.9g",
              ref[k].i, rt.theta[ref[k].i], ref[k].want);
    CHECK(fabs(mla_softmax_scale(&c) - 0.1352337788608801) < 1e-7, "V3 softmax scale %.10f", mla_softmax_scale(&c));
    dsc_config_preset("deepseek-v2-lite", &c);
    CHECK(fabs(mla_softmax_scale(&c) - 0.1147213867929261) < 1e-7, "V2-Lite softmax scale %.10f",
          mla_softmax_scale(&c));
    rope_table_free(&rt);
}

int main(void) {
    test_rmsnorm();
    test_rope_inverse();
    test_yarn_v3();
    dsc_config c = base_config();
    run_case("lowrank-q", &c, 2, 7, 11);
    c.q_lora_rank = 0;
    run_case("plain-q", &c, 2, 6, 12);
    c = base_config();
    c.yarn = true;
    c.rope_factor = 40;
    c.mscale_all_dim = 0.707;
    c.original_max_position_embeddings = 4;
    run_case("yarn", &c, 1, 9, 13);
    c = base_config();
    c.index_n_heads = 2;
    c.index_head_dim = 6;
    c.index_topk = 3; /* T = 8 > 3: sparse attention */
    run_case("dsa-sparse", &c, 2, 8, 14);
    return tu_finish("test_mla");
}
