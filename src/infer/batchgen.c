/* batchgen.c: many completions at once (batchgen.h). Work proceeds in waves of prompts: a wave
 * takes as many prompts as the engine has free slots for all their copies; each prompt is
 * prefilled into one sequence, which is forked copies-1 times; then unfinished sequences decode
 * together, max_rows per pass, until all finished or hit max_tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/error.h"
#include "base/rng.h"
#include "infer/batchgen.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

void batchgen_free(batchgen_completion *c, int n) {
    if (!c) return;
    for (int i = 0; i < n; i++) {
        free(c[i].tokens);
        c[i].tokens = NULL;
    }
}

/* Appends token t to completion c (sequence state in flight). */
static void push(batchgen_completion *c, int32_t t, const batchgen_options *o) {
    c->tokens[c->n++] = t;
    if (t == o->eos) c->finished = true;
}

static bool done(const batchgen_completion *c, const batchgen_options *o) {
    return c->finished || c->n >= o->max_tokens;
}

dsc_status generate_batch(engine *e, const int32_t *const *prompts, const int *prompt_len, int n_prompts, int copies,
                          const batchgen_options *o, batchgen_completion *out, batchgen_stats *stats) {
    const dsc_config *c = engine_config(e);
    int V = c->vocab_size, R = engine_max_rows(e);
    int total = n_prompts * copies;
    batchgen_stats st = {0};
    if (n_prompts < 0 || copies < 1 || o->max_tokens < 1)
        return dsc_set_error("generate_batch: expected prompts >= 0, copies >= 1, max_tokens >= 1; found %d, %d, %d",
                             n_prompts, copies, o->max_tokens);
    for (int i = 0; i < total; i++) {
        out[i].n = 0;
        out[i].finished = false;
        out[i].tokens = malloc(sizeof(int32_t) * o->max_tokens);
        if (!out[i].tokens) {
            batchgen_free(out, i);
            return dsc_set_error("out of memory (completions)");
        }
    }
    int *seq = malloc(sizeof(int) * total);
    int *act = malloc(sizeof(int) * total);   /* completion index of each active row */
    int *rseq = malloc(sizeof(int) * (size_t)R);
    int32_t *rtok = malloc(sizeof(int32_t) * (size_t)R);
    float *logits = malloc(sizeof(float) * (size_t)V * (R > 1 ? R : 1));
    void *scratch = malloc(sizeof(float) * 2 * (size_t)V);
    dsc_rng *rng = malloc(sizeof(dsc_rng) * (total > 0 ? total : 1));
    dsc_status rc = DSC_OK;
    if (!seq || !act || !rseq || !rtok || !logits || !scratch || !rng) {
        rc = dsc_set_error("out of memory (batched generation)");
        goto out;
    }
    for (int i = 0; i < total; i++) {
        seq[i] = -1;
        dsc_rng_seed(&rng[i], o->seed * 0x9E3779B97F4A7C15ull + o->first_index + (uint64_t)i);
    }
    /* free slots now (the caller may hold sequences of its own); more than all copies never help */
    int free_slots = engine_free_seqs(e);
    if (free_slots > total) free_slots = total;
    int per_wave = free_slots / copies;
    if (n_prompts > 0 && per_wave < 1) {
        rc = dsc_set_error("generate_batch: %d copies need %d free sequences, the engine has %d", copies, copies,
                           free_slots);
        goto out;
    }
    for (int p0 = 0; p0 < n_prompts; p0 += per_wave) {
        int p1 = p0 + per_wave < n_prompts ? p0 + per_wave : n_prompts;
        double t0 = now_s();
        for (int p = p0; p < p1; p++) {
            int s0 = engine_seq_new(e);
            if (s0 < 0) {
                rc = dsc_set_error("generate_batch: no free sequence");
                goto out;
            }
            seq[p * copies] = s0;
            if (engine_prefill(e, s0, prompts[p], prompt_len[p], logits, NULL)) {
                rc = DSC_ERR;
                goto out;
            }
            st.prompt_tokens += prompt_len[p];
            for (int k = 0; k < copies; k++) {
                int i = p * copies + k;
                if (k > 0 && (seq[i] = engine_seq_fork(e, s0)) < 0) {
                    rc = dsc_set_error("generate_batch: no free sequence to fork");
                    goto out;
                }
                push(&out[i], sampler_pick(logits, V, &o->sampler, &rng[i], scratch), o);
                st.generated++;
            }
        }
        double t1 = now_s();
        st.prefill_s += t1 - t0;
        /* decode: every unfinished completion of the wave, R rows per pass */
        for (;;) {
            int n_act = 0;
            for (int i = p0 * copies; i < p1 * copies; i++)
                if (!done(&out[i], o)) act[n_act++] = i;
            if (n_act == 0) break;
            for (int a0 = 0; a0 < n_act; a0 += R) {
                int n = n_act - a0 < R ? n_act - a0 : R;
                for (int r = 0; r < n; r++) {
                    const batchgen_completion *ci = &out[act[a0 + r]];
                    rseq[r] = seq[act[a0 + r]];
                    rtok[r] = ci->tokens[ci->n - 1];
                }
                if (engine_decode(e, rseq, rtok, n, logits)) {
                    rc = DSC_ERR;
                    goto out;
                }
                st.passes++;
                st.mean_rows += n;
                for (int r = 0; r < n; r++) {
                    int i = act[a0 + r];
                    push(&out[i], sampler_pick(logits + (size_t)r * V, V, &o->sampler, &rng[i], scratch), o);
                }
                st.generated += n;
            }
        }
        st.decode_s += now_s() - t1;
        for (int i = p0 * copies; i < p1 * copies; i++) {
            engine_seq_free(e, seq[i]);
            seq[i] = -1;
        }
    }
    if (st.passes) st.mean_rows /= st.passes;
out:
    if (seq)
        for (int i = 0; i < total; i++)
            if (seq[i] >= 0) engine_seq_free(e, seq[i]);
    if (rc) batchgen_free(out, total);
    if (stats) *stats = st;
    free(seq);
    free(act);
    free(rseq);
    free(rtok);
    free(logits);
    free(scratch);
    free(rng);
    return rc;
}

dsc_status generate_batch_parallel(engine *const *engines, int n_engines, const int32_t *const *prompts,
                                   const int *prompt_len, int n_prompts, int copies, const batchgen_options *o,
                                   batchgen_completion *out, batchgen_stats *stats) {
    if (n_engines > n_prompts) n_engines = n_prompts > 0 ? n_prompts : 1;
    if (n_engines <= 1) return generate_batch(engines[0], prompts, prompt_len, n_prompts, copies, o, out, stats);
    enum { MAX_PARTS = 64 };
    if (n_engines > MAX_PARTS) n_engines = MAX_PARTS;
    batchgen_stats part[MAX_PARTS];
    dsc_status rc[MAX_PARTS];
    char err[MAX_PARTS][256];
    int first[MAX_PARTS + 1]; /* part k: prompts [first[k], first[k + 1]) */
    for (int k = 0; k <= n_engines; k++) first[k] = (int)((long)n_prompts * k / n_engines);
    double t0 = now_s();
#pragma omp parallel for num_threads(n_engines) schedule(static, 1)
    for (int k = 0; k < n_engines; k++) {
        int p0 = first[k], p1 = first[k + 1];
        batchgen_options ok = *o;
        ok.first_index = o->first_index + (uint64_t)p0 * copies;
        rc[k] = generate_batch(engines[k], prompts + p0, prompt_len + p0, p1 - p0, copies, &ok, out + (size_t)p0 * copies,
                               &part[k]);
        if (rc[k]) snprintf(err[k], sizeof err[k], "%s", dsc_last_error()); /* errors are per thread */
    }
    double wall = now_s() - t0;
    batchgen_stats st = {0};
    dsc_status bad = DSC_OK;
    for (int k = 0; k < n_engines && !bad; k++)
        if (rc[k]) bad = dsc_set_error("%s", err[k]);
    for (int k = 0; k < n_engines; k++) {
        if (bad && !rc[k]) /* failed parts freed theirs */
            batchgen_free(out + (size_t)first[k] * copies, (first[k + 1] - first[k]) * copies);
        st.prompt_tokens += part[k].prompt_tokens;
        st.generated += part[k].generated;
        st.mean_rows += part[k].mean_rows * part[k].passes;
        st.passes += part[k].passes;
        st.prefill_s += part[k].prefill_s;
        st.decode_s += part[k].decode_s;
    }
    /* the parts ran side by side: split the wall time in the proportion of their summed times */
    double sum = st.prefill_s + st.decode_s;
    if (sum > 0) {
        st.prefill_s = wall * st.prefill_s / sum;
        st.decode_s = wall * st.decode_s / sum;
    }
    if (st.passes) st.mean_rows /= st.passes;
    if (stats) *stats = st;
    return bad;
}
