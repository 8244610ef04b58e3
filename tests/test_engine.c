/* test_engine.c: the inference engine against the training forward pass. The engine runs MLA in
 * its absorbed form over the latent cache, in prefill chunks and decode steps; the training pass
 * (dsc_model_logits) runs naive attention over the whole sequence at once. Logits must agree
 * for every position (absorbed == naive, prefill-then-decode == one full pass), for batched
 * decode of several sequences, and after rolling a sequence back. Configs cover mHC, MoE with
 * groups and bias, softmax + plain q + YaRN, dense, tied embeddings, and the DSA indexer with
 * sparse attention. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsc.h"
#include "infer/engine.h"
#include "testutil.h"
#include "testmodel.h"

#define TOL 1e-4


static engine *make_engine(dsc_model *m, int max_seqs, int max_ctx, int max_rows) {
    iweights w;
    tensor_source src;
    tensor_source_from_model(&src, m);
    if (iweights_build(&w, dsc_model_config(m), &src, false)) {
        CHECK(0, "iweights_build: %s", dsc_last_error());
        return NULL;
    }
    engine *e;
    engine_options o = {max_seqs, max_ctx, max_rows};
    if (engine_create(&w, &o, &e)) {
        CHECK(0, "engine_create: %s", dsc_last_error());
        iweights_free(&w);
        return NULL;
    }
    return e;
}

static void run(const char *label, dsc_config *c, int T, int prefill, uint64_t seed) {
    dsc_model *m = tu_random_model(c, seed);
    if (!m) return;
    dsc_rng r;
    dsc_rng_seed(&r, seed + 1);
    int V = c->vocab_size;
    int32_t *tok = malloc(sizeof(int32_t) * 2 * T);
    for (int i = 0; i < 2 * T; i++) tok[i] = (int32_t)(dsc_rng_u64(&r) % V);
    float *ref = malloc(sizeof(float) * 2 * T * V), *got = malloc(sizeof(float) * 2 * T * V);
    CHECK(dsc_model_logits(m, tok, 2, T, ref) == DSC_OK, "%s: logits", label);

    engine *e = make_engine(m, 3, T + 4, 5);
    if (!e) goto out;
    /* sequence 0: prefill (chunks of 5) then decode one token at a time */
    int s0 = engine_seq_new(e);
    CHECK(engine_prefill(e, s0, tok, prefill, NULL, got) == DSC_OK, "%s: prefill: %s", label, dsc_last_error());
    for (int t = prefill; t < T; t++)
        CHECK(engine_decode(e, &s0, tok + t, 1, got + (size_t)t * V) == DSC_OK, "%s: decode", label);
    char what[96];
    snprintf(what, sizeof what, "%s: prefill %d + decode %d vs full pass", label, prefill, T - prefill);
    tu_check_close(what, got, ref, (size_t)T * V, TOL);

    /* sequences 1 and 2 decoded together, one token each per step, after short prefills */
    int s1 = engine_seq_new(e), s2 = engine_seq_new(e);
    float *b1 = malloc(sizeof(float) * T * V), *b2 = malloc(sizeof(float) * T * V), *two = malloc(sizeof(float) * 2 * V);
    engine_prefill(e, s1, tok + T, 2, NULL, b1);
    engine_prefill(e, s2, tok, 3, NULL, b2);
    for (int t = 2; t < T; t++) {
        int seqs[2] = {s1, s2};
        int32_t next[2] = {tok[T + t], tok[t + 1 < T ? t + 1 : 0]};
        int n = t + 1 < T ? 2 : 1;
        CHECK(engine_decode(e, seqs, next, n, two) == DSC_OK, "%s: batched decode: %s", label, dsc_last_error());
        memcpy(b1 + (size_t)t * V, two, sizeof(float) * V);
        if (n == 2) memcpy(b2 + (size_t)(t + 1) * V, two + V, sizeof(float) * V);
    }
    snprintf(what, sizeof what, "%s: batched decode, sequence 1", label);
    tu_check_close(what, b1, ref + (size_t)T * V, (size_t)T * V, TOL);
    snprintf(what, sizeof what, "%s: batched decode, sequence 2", label);
    tu_check_close(what, b2, ref, (size_t)T * V, TOL);

    /* roll sequence 0 back 3 tokens and decode them again: the same logits */
    engine_seq_truncate(e, s0, T - 3);
    CHECK(engine_seq_len(e, s0) == T - 3, "%s: truncate", label);
    for (int t = T - 3; t < T; t++) engine_decode(e, &s0, tok + t, 1, b1 + (size_t)t * V);
    snprintf(what, sizeof what, "%s: decode after rollback", label);
    tu_check_close(what, b1 + (size_t)(T - 3) * V, ref + (size_t)(T - 3) * V, (size_t)3 * V, TOL);

    /* bad input */
    int32_t bad = V;
    CHECK(engine_decode(e, &s0, &bad, 1, two) == DSC_ERR, "%s: out-of-vocabulary token refused", label);
    CHECK(engine_decode(e, &s0, tok, 1, two) == DSC_OK && engine_decode(e, &s0, tok, 1, two) == DSC_OK &&
              engine_decode(e, &s0, tok, 1, two) == DSC_OK && engine_decode(e, &s0, tok, 1, two) == DSC_OK &&
              engine_decode(e, &s0, tok, 1, two) == DSC_ERR,
          "%s: a full sequence refuses another token", label);
    free(b1);
    free(b2);
    free(two);
    engine_free(e);
out:
    free(tok);
    free(ref);
    free(got);
    dsc_model_free(m);
}

int main(void) {
    dsc_config c;
    dsc_config_preset("tiny", &c); /* mHC 4, MoE groups + bias, MTP (unused here), DSA topk 8 */
    run("tiny (mHC, MoE, DSA sparse)", &c, 20, 11, 1);
    c.mhc_expansion_rate = 0;
    c.index_n_heads = 0;
    run("tiny plain residual", &c, 13, 7, 2);
    dsc_config_preset("tiny", &c);
    c.mhc_expansion_rate = 0;
    c.index_n_heads = 0;
    c.scoring_func = DSC_SCORE_SOFTMAX;
    c.expert_bias = false;
    c.norm_topk_prob = false;
    c.n_group = 1;
    c.topk_group = 1;
    c.q_lora_rank = 0;
    c.n_shared_experts = 2;
    c.yarn = true;
    c.rope_factor = 40;
    c.mscale = c.mscale_all_dim = 0.707;
    c.original_max_position_embeddings = 8;
    run("V2-Lite style (softmax, plain q, YaRN)", &c, 16, 9, 3);
    dsc_config_preset("tiny", &c);
    c.n_routed_experts = 0;
    c.index_n_heads = 0;
    c.tie_word_embeddings = true;
    run("dense, tied embeddings, mHC", &c, 12, 12, 4);
    return tu_finish("test_engine");
}
