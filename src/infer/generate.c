/* generate.c: the decode loop, plain and speculative (see generate.h).
 *
 * Speculative step with a depth-1 MTP draft d for position p+1 after the current token x at p:
 * the main model runs rows [x, d] in one pass; y ~ main(p) is sampled; if y == d the draft is
 * kept and z ~ main(p+1) is the next token (two tokens for one pass), otherwise y is kept and
 * d's cache entry is rolled back. Either way every emitted token is a sample of the main model
 * given the exact prefix, so the output distribution is that of plain decoding. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/error.h"
#include "infer/generate.h"

void gen_options_default(gen_options *o) {
    memset(o, 0, sizeof *o);
    o->sampler = (sampler_options){0.8f, 40, 0.95f, 0.0f};
    o->repeat_penalty = 1.0f;
    o->repeat_last_n = 64;
    o->max_tokens = 128;
    o->seed = 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

typedef struct {
    engine *e;
    const gen_options *o;
    dsc_rng rng;
    int V, d;
    int32_t *hist;     /* prompt + generated tokens */
    int n_hist;
    float *work;       /* [V] penalised logits */
    void *scratch;     /* sampler scratch */
} gen_ctx;

/* Samples from logits after the repetition penalty over the recent history. */
static int32_t pick(gen_ctx *g, const float *logits) {
    const gen_options *o = g->o;
    const float *l = logits;
    if (o->repeat_penalty != 1.0f && o->repeat_last_n > 0) {
        memcpy(g->work, logits, sizeof(float) * g->V);
        int from = g->n_hist - o->repeat_last_n;
        for (int i = from < 0 ? 0 : from; i < g->n_hist; i++) {
            float *v = &g->work[g->hist[i]];
            *v = *v > 0 ? *v / o->repeat_penalty : *v * o->repeat_penalty;
        }
        l = g->work;
    }
    return sampler_pick(l, g->V, &o->sampler, &g->rng, g->scratch);
}

static int argmax(const float *l, int V) {
    int b = 0;
    for (int v = 1; v < V; v++)
        if (l[v] > l[b]) b = v;
    return b;
}

dsc_status generate(engine *e, const int32_t *prompt, int n, const gen_options *o, gen_callback cb, void *user,
                    gen_stats *st) {
    const dsc_config *c = engine_config(e);
    memset(st, 0, sizeof *st);
    if (n < 1) return dsc_set_error("generate: the prompt is empty (at least one token, e.g. BOS)");
    if (o->speculative && !engine_has_mtp(e))
        return dsc_set_error("generate: speculative decoding needs the model's MTP module (num_nextn_predict_layers > 0)");
    int seq = engine_seq_new(e);
    if (seq < 0) return dsc_set_error("generate: no free sequence in the engine");
    gen_ctx g = {e, o, {{0}}, c->vocab_size, c->hidden_size, NULL, 0, NULL, NULL};
    dsc_rng_seed(&g.rng, o->seed);
    int cap = n + o->max_tokens + 2;
    g.hist = malloc(sizeof(int32_t) * cap);
    g.work = malloc(sizeof(float) * g.V);
    g.scratch = malloc((size_t)g.V * 8);
    float *logits = malloc(sizeof(float) * 2 * g.V);
    float *hid = malloc(sizeof(float) * (size_t)(n > 2 ? n : 2) * g.d); /* main hidden states to draft from */
    float *mtp_logits = malloc(sizeof(float) * (size_t)(n > 2 ? n : 2) * g.V);
    int32_t *next = malloc(sizeof(int32_t) * (n > 2 ? n : 2));
    int rc = DSC_ERR;
    if (!g.hist || !g.work || !g.scratch || !logits || !hid || !mtp_logits || !next) {
        dsc_set_error("generate: out of memory");
        goto done;
    }
    memcpy(g.hist, prompt, sizeof(int32_t) * n);
    g.n_hist = n;
    st->prompt_tokens = n;

    /* prefill, keeping every position's hidden state when drafting will need them */
    double t0 = now_s();
    int chunk = engine_max_rows(e); /* one engine pass per chunk: its hidden states are all kept */
    for (int i0 = 0; i0 < n; i0 += chunk) {
        int k = n - i0 < chunk ? n - i0 : chunk;
        if (engine_prefill(e, seq, prompt + i0, k, i0 + k == n ? logits : NULL, NULL)) goto done;
        if (o->speculative) memcpy(hid + (size_t)i0 * g.d, engine_last_hidden(e), sizeof(float) * k * g.d);
    }
    st->prefill_s = now_s() - t0;
    t0 = now_s();
    int32_t x = pick(&g, logits), draft = -1;
    if (o->speculative) { /* MTP over the prompt: row t pairs hidden t with token t+1 */
        for (int t = 0; t < n; t++) next[t] = t + 1 < n ? prompt[t + 1] : x;
        for (int i0 = 0; i0 < n; i0 += chunk) {
            int k = n - i0 < chunk ? n - i0 : chunk;
            if (engine_mtp(e, seq, hid + (size_t)i0 * g.d, next + i0, k, i0, mtp_logits)) goto done;
        }
        draft = argmax(mtp_logits + (size_t)((n - 1) % chunk) * g.V, g.V);
    }
    for (;;) {
        /* emit x (the token at position p = current length) */
        g.hist[g.n_hist++] = x;
        st->generated++;
        if (cb && cb(x, user)) break;
        if (st->generated >= o->max_tokens) break;
        int p = engine_seq_len(e, seq);
        if (!o->speculative) {
            if (engine_decode(e, &seq, &x, 1, logits)) goto done;
            st->main_passes++;
            x = pick(&g, logits);
            continue;
        }
        int32_t rows[2] = {x, draft};
        if (engine_prefill(e, seq, rows, 2, NULL, logits)) {
            /* no room left for the draft row (the context is full but for one token): finish plainly */
            if (engine_decode(e, &seq, &x, 1, logits)) goto done;
            st->main_passes++;
            x = pick(&g, logits);
            continue;
        }
        st->main_passes++;
        st->drafts++;
        memcpy(hid, engine_last_hidden(e), sizeof(float) * 2 * g.d);
        int32_t y = pick(&g, logits);
        if (y == draft) {
            st->accepted++;
            g.hist[g.n_hist++] = y;
            st->generated++;
            if ((cb && cb(y, user)) || st->generated >= o->max_tokens) break;
            int32_t z = pick(&g, logits + g.V);
            int32_t nx[2] = {y, z};
            if (engine_mtp(e, seq, hid, nx, 2, p, mtp_logits)) goto done;
            draft = argmax(mtp_logits + g.V, g.V);
            x = z;
        } else {
            engine_seq_truncate(e, seq, p + 1); /* the draft's entry is dropped */
            if (engine_mtp(e, seq, hid, &y, 1, p, mtp_logits)) goto done;
            draft = argmax(mtp_logits, g.V);
            x = y;
        }
    }
    st->decode_s = now_s() - t0;
    rc = DSC_OK;
done:
    engine_seq_free(e, seq);
    free(g.hist);
    free(g.work);
    free(g.scratch);
    free(logits);
    free(hid);
    free(mtp_logits);
    free(next);
    return rc;
}
