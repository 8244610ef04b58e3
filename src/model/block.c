/* block.c: a decoder block = attention sub-layer + feed-forward sub-layer, each wrapped in a
 * plain residual (x + F(RMSNorm(x))) or in mHC (docs/MODEL.md §4, §8). Forward and backward. */
#include <string.h>

#include "base/mem.h"
#include "base/prof.h"
#include "model/block.h"
#include "model/config.h"
#include "model/ffn.h"
#include "model/norm.h"

size_t block_acts_floats(const dsc_config *c, int l, int B, int T) {
    size_t N = (size_t)B * T, d = c->hidden_size, n = cfg_streams(c);
    size_t s = dsc_round_floats(N * n * d) + 4 * dsc_round_floats(N * d) + 2 * dsc_round_floats(N);
    if (cfg_has_mhc(c)) s += 2 * dsc_round_floats(N * d) + 2 * mhc_acts_floats(c, (int)N);
    s += mla_acts_floats(c, B, T);
    if (cfg_layer_is_moe(c, l)) s += moe_acts_floats(c, B, T);
    else s += 2 * dsc_round_floats(N * c->intermediate_size);
    return s;
}

void block_acts_bind(block_acts *a, float *mem, const dsc_config *c, int l, int B, int T) {
    size_t N = (size_t)B * T, d = c->hidden_size, n = cfg_streams(c);
    memset(a, 0, sizeof *a);
#define TAKE(ptr, cnt)                                                                                                 \
    do {                                                                                                               \
        (ptr) = mem;                                                                                                   \
        mem += dsc_round_floats(cnt);                                                                                  \
    } while (0)
    TAKE(a->x_mid, N * n * d);
    TAKE(a->an, N * d);
    TAKE(a->fn, N * d);
    TAKE(a->y_a, N * d);
    TAKE(a->y_f, N * d);
    TAKE(a->an_rstd, N);
    TAKE(a->fn_rstd, N);
    if (cfg_has_mhc(c)) {
        TAKE(a->u_a, N * d);
        TAKE(a->u_f, N * d);
        mhc_acts_bind(&a->mhc_a, mem, c, (int)N);
        mem += mhc_acts_floats(c, (int)N);
        mhc_acts_bind(&a->mhc_f, mem, c, (int)N);
        mem += mhc_acts_floats(c, (int)N);
    }
    mla_acts_bind(&a->attn, mem, c, B, T);
    mem += mla_acts_floats(c, B, T);
    if (cfg_layer_is_moe(c, l)) {
        moe_acts_bind(&a->moe, mem, c, B, T);
    } else {
        TAKE(a->h1, N * c->intermediate_size);
        TAKE(a->h3, N * c->intermediate_size);
    }
#undef TAKE
}

size_t block_scratch_floats(const dsc_config *c, int B, int T) {
    size_t N = (size_t)B * T, d = c->hidden_size;
    size_t s = mla_scratch_floats(c, B, T);
    size_t ffn = 2 * N * (size_t)(c->intermediate_size > 0 ? c->intermediate_size : 1);
    if (ffn > s) s = ffn;
    if (c->n_routed_experts > 0) {
        size_t m = moe_scratch_floats(c, B, T);
        if (m > s) s = m;
    }
    if (cfg_has_mhc(c)) {
        size_t h = mhc_scratch_floats(c, (int)N);
        if (h > s) s = h;
    }
    /* plus the gradient of a normed sub-layer input and of a sub-layer input, [N,d] each */
    return s + 2 * dsc_round_floats(N * d);
}

/* The feed-forward sub-layer proper: dense SwiGLU or MoE. */
static void ffn_sublayer_forward(const dsc_config *c, int l, const block_weights *w, block_acts *a, int B, int T,
                                 int64_t *load, float *balance, float *scratch) {
    int N = B * T, d = c->hidden_size;
    if (w->is_moe) moe_forward(c, &w->moe, &a->moe, a->y_f, a->fn, B, T, load, balance, scratch);
    else ffn_forward(a->y_f, a->h1, a->h3, scratch, &w->mlp, a->fn, N, d, c->intermediate_size, false);
}

void block_forward(const dsc_config *c, int l, const block_weights *w, const rope_table *rope, block_acts *a,
                   float *x_out, const float *x_in, int B, int T, int64_t *load, float *balance, float *scratch) {
    int N = B * T, d = c->hidden_size;
    size_t nd = (size_t)N * d;
    a->x_in = x_in;
    PROF_BEGIN();
    if (!cfg_has_mhc(c)) {
        /* x_mid = x_in + MLA(RMSNorm(x_in));  x_out = x_mid + FFN(RMSNorm(x_mid)) */
        rmsnorm_forward(a->an, a->an_rstd, x_in, w->attn_norm, N, d, c->rms_norm_eps);
        PROF_END(PROF_NORM);
        mla_forward(c, &w->attn, rope, &a->attn, a->y_a, a->an, B, T, scratch);
        PROF_END(PROF_ATTN_FWD);
        for (size_t i = 0; i < nd; i++) a->x_mid[i] = x_in[i] + a->y_a[i];
        rmsnorm_forward(a->fn, a->fn_rstd, a->x_mid, w->ffn_norm, N, d, c->rms_norm_eps);
        PROF_END(PROF_NORM);
        ffn_sublayer_forward(c, l, w, a, B, T, load, balance, scratch);
        PROF_END(PROF_FFN_FWD);
        for (size_t i = 0; i < nd; i++) x_out[i] = a->x_mid[i] + a->y_f[i];
        PROF_END(PROF_NORM);
        return;
    }
    /* mHC: x_mid = H_res x_in + H_post ⊗ MLA(RMSNorm(H_pre·x_in)), and the same for the FFN */
    mhc_pre(c, &w->attn_mhc, &a->mhc_a, a->u_a, x_in, N, scratch);
    PROF_END(PROF_MHC);
    rmsnorm_forward(a->an, a->an_rstd, a->u_a, w->attn_norm, N, d, c->rms_norm_eps);
    PROF_END(PROF_NORM);
    mla_forward(c, &w->attn, rope, &a->attn, a->y_a, a->an, B, T, scratch);
    PROF_END(PROF_ATTN_FWD);
    mhc_post(c, &a->mhc_a, a->x_mid, x_in, a->y_a, N);
    mhc_pre(c, &w->ffn_mhc, &a->mhc_f, a->u_f, a->x_mid, N, scratch);
    PROF_END(PROF_MHC);
    rmsnorm_forward(a->fn, a->fn_rstd, a->u_f, w->ffn_norm, N, d, c->rms_norm_eps);
    PROF_END(PROF_NORM);
    ffn_sublayer_forward(c, l, w, a, B, T, load, balance, scratch);
    PROF_END(PROF_FFN_FWD);
    mhc_post(c, &a->mhc_f, x_out, a->x_mid, a->y_f, N);
    PROF_END(PROF_MHC);
}

void block_backward(const dsc_config *c, int l, const block_weights *w, const block_weights *g,
                    const rope_table *rope, block_acts *a, float *dx_in, float *dx_out, int B, int T,
                    float balance_weight, float *scratch) {
    int N = B * T, d = c->hidden_size, n = cfg_streams(c);
    size_t nd = (size_t)N * d, stream = nd * n;
    float *dnormed = scratch;                          /* [N, d] grad of an / fn */
    float *dsub = scratch + dsc_round_floats(nd);      /* [N, d] grad of y (plain) or u (mHC) */
    float *work = dsub + dsc_round_floats(nd);         /* module scratch */
    float *dx_mid = dx_in;                             /* dx_in holds dx_mid until the attention part */

    /* ---- feed-forward sub-layer ---- */
    PROF_BEGIN();
    const float *dy_f;
    if (!cfg_has_mhc(c)) {
        memcpy(dx_mid, dx_out, sizeof(float) * stream); /* residual path */
        dy_f = dx_out;
    } else {
        memset(dx_mid, 0, sizeof(float) * stream);
        mhc_backward_post(c, &a->mhc_f, dx_mid, dsub, dx_out, a->x_mid, a->y_f, N);
        dy_f = dsub;
    }
    PROF_END(PROF_MHC);
    memset(dnormed, 0, sizeof(float) * nd);
    if (w->is_moe)
        moe_backward(c, &w->moe, &g->moe, &a->moe, dnormed, dy_f, B, T, balance_weight, work);
    else
        ffn_backward(dnormed, &g->mlp, dy_f, &w->mlp, a->fn, a->h1, a->h3, work, N, d, c->intermediate_size);
    PROF_END(PROF_FFN_BWD);
    if (!cfg_has_mhc(c)) {
        rmsnorm_backward(dx_mid, g->ffn_norm, dnormed, a->x_mid, w->ffn_norm, a->fn_rstd, N, d);
        PROF_END(PROF_NORM);
    } else {
        memset(dsub, 0, sizeof(float) * nd);
        rmsnorm_backward(dsub, g->ffn_norm, dnormed, a->u_f, w->ffn_norm, a->fn_rstd, N, d);
        PROF_END(PROF_NORM);
        mhc_backward_pre(c, &w->ffn_mhc, &g->ffn_mhc, &a->mhc_f, dx_mid, dsub, a->x_mid, N, work);
        PROF_END(PROF_MHC);
    }

    /* ---- attention sub-layer: dx_mid -> dx_in (dx_out is free now: it becomes dx_mid's copy) ---- */
    memcpy(dx_out, dx_mid, sizeof(float) * stream);
    float *dmid = dx_out;
    const float *dy_a;
    if (!cfg_has_mhc(c)) {
        memcpy(dx_in, dmid, sizeof(float) * stream);
        dy_a = dmid;
    } else {
        memset(dx_in, 0, sizeof(float) * stream);
        mhc_backward_post(c, &a->mhc_a, dx_in, dsub, dmid, a->x_in, a->y_a, N);
        dy_a = dsub;
    }
    PROF_END(PROF_MHC);
    memset(dnormed, 0, sizeof(float) * nd);
    mla_backward(c, &w->attn, &g->attn, rope, &a->attn, dnormed, dy_a, B, T, work);
    PROF_END(PROF_ATTN_BWD);
    if (!cfg_has_mhc(c)) {
        rmsnorm_backward(dx_in, g->attn_norm, dnormed, a->x_in, w->attn_norm, a->an_rstd, N, d);
        PROF_END(PROF_NORM);
    } else {
        memset(dsub, 0, sizeof(float) * nd);
        rmsnorm_backward(dsub, g->attn_norm, dnormed, a->u_a, w->attn_norm, a->an_rstd, N, d);
        PROF_END(PROF_NORM);
        mhc_backward_pre(c, &w->attn_mhc, &g->attn_mhc, &a->mhc_a, dx_in, dsub, a->x_in, N, work);
        PROF_END(PROF_MHC);
    }
}
