/* test_modules.c: finite-difference checks of the small modules on their own: the dense SwiGLU
 * MLP (ffn), the cross-entropy loss with its fused gradient, and the weightless RMSNorm (the mHC
 * coefficient path's). MLA, MoE and mHC have their own tests; the whole model is checked in
 * test_model_grad and against the PyTorch reference in test_reference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/ffn.h"
#include "model/loss.h"
#include "model/norm.h"
#include "testutil.h"

enum { N = 5, D = 12, I = 20, V = 31 };

typedef struct {
    float x[N * D], w1[I * D], w3[I * D], w2[D * I], r[N * D];
    float h1[N * I], h3[N * I], act[N * I], y[N * D];
} ffn_case;

static double ffn_loss(void *ctx) {
    ffn_case *k = ctx;
    ffn_weights w = {k->w1, k->w3, k->w2};
    ffn_forward(k->y, k->h1, k->h3, k->act, &w, k->x, N, D, I, false);
    double s = 0;
    for (int i = 0; i < N * D; i++) s += (double)k->r[i] * k->y[i];
    return s;
}

static void test_ffn(dsc_rng *r) {
    static ffn_case k;
    tu_fill_normal(r, k.x, N * D, 1);
    tu_fill_normal(r, k.w1, I * D, 0.4f);
    tu_fill_normal(r, k.w3, I * D, 0.4f);
    tu_fill_normal(r, k.w2, D * I, 0.4f);
    tu_fill_normal(r, k.r, N * D, 1);
    static float g1[I * D], g3[I * D], g2[D * I], dx[N * D], scratch[2 * N * I];
    ffn_loss(&k);
    ffn_weights w = {k.w1, k.w3, k.w2}, g = {g1, g3, g2};
    ffn_backward(dx, &g, k.r, &w, k.x, k.h1, k.h3, scratch, N, D, I);
    tu_gradcheck("ffn: x", ffn_loss, &k, k.x, dx, N * D, 1e-2f, 4, 6, 2e-3, r);
    tu_gradcheck("ffn: w1", ffn_loss, &k, k.w1, g1, I * D, 1e-2f, 4, 6, 2e-3, r);
    tu_gradcheck("ffn: w3", ffn_loss, &k, k.w3, g3, I * D, 1e-2f, 4, 6, 2e-3, r);
    tu_gradcheck("ffn: w2", ffn_loss, &k, k.w2, g2, D * I, 1e-2f, 4, 6, 2e-3, r);
    /* backward adds: a second call doubles the weight gradient */
    float before = g2[7];
    ffn_backward(dx, &g, k.r, &w, k.x, k.h1, k.h3, scratch, N, D, I);
    CHECK(fabsf(g2[7] - 2 * before) <= 1e-5f * fabsf(before) + 1e-7f, "ffn backward accumulates");
}

typedef struct {
    float logits[N * V], work[N * V];
    int32_t t[N];
} ce_case;

static double ce_loss(void *ctx) {
    ce_case *k = ctx;
    memcpy(k->work, k->logits, sizeof k->work);
    return ce_forward_backward(k->work, k->t, N, V, 0.0f);
}

static void test_ce(dsc_rng *r) {
    static ce_case k;
    tu_fill_normal(r, k.logits, N * V, 2);
    for (int i = 0; i < N; i++) k.t[i] = (int32_t)(dsc_rng_u64(r) % V);
    k.t[2] = -1; /* not counted */
    CHECK(ce_count_targets(k.t, N) == N - 1, "ce counts targets");
    /* value against a direct double computation */
    double want = 0;
    for (int i = 0; i < N; i++) {
        if (k.t[i] < 0) continue;
        double m = -1e300, s = 0;
        for (int v = 0; v < V; v++) m = fmax(m, k.logits[i * V + v]);
        for (int v = 0; v < V; v++) s += exp(k.logits[i * V + v] - m);
        want += m + log(s) - k.logits[i * V + k.t[i]];
    }
    CHECK(fabs(ce_loss(&k) - want) < 1e-5 * want, "ce value %.8g vs %.8g", ce_loss(&k), want);
    static float grad[N * V];
    memcpy(grad, k.logits, sizeof grad);
    ce_forward_backward(grad, k.t, N, V, 1.0f);
    for (int v = 0; v < V; v++) CHECK(grad[2 * V + v] == 0.0f, "no gradient for an ignored row");
    tu_gradcheck("ce: logits", ce_loss, &k, k.logits, grad, N * V, 1e-2f, 4, 8, 2e-3, r);
}

typedef struct {
    float x[N * D], y[N * D], rstd[N], r[N * D];
} rms_case;

static double rms_loss(void *ctx) {
    rms_case *k = ctx;
    rmsnorm_forward(k->y, k->rstd, k->x, NULL, N, D, 1e-20f);
    double s = 0;
    for (int i = 0; i < N * D; i++) s += (double)k->r[i] * k->y[i];
    return s;
}

static void test_rms_weightless(dsc_rng *r) {
    static rms_case k;
    static float dx[N * D];
    tu_fill_normal(r, k.x, N * D, 1.5f);
    tu_fill_normal(r, k.r, N * D, 1);
    rms_loss(&k);
    rmsnorm_backward(dx, NULL, k.r, k.x, NULL, k.rstd, N, D);
    tu_gradcheck("rmsnorm (no weight): x", rms_loss, &k, k.x, dx, N * D, 1e-2f, 4, 6, 2e-3, r);
}

int main(void) {
    dsc_rng r;
    dsc_rng_seed(&r, 77);
    test_ffn(&r);
    test_ce(&r);
    test_rms_weightless(&r);
    return tu_finish("test_modules");
}
