/* test_rl.c: the pieces of reinforcement learning around the loss: rule-based rewards on tricky
 * completions (extra text, unbalanced tags, unfinished output, division by zero, huge numbers),
 * task sources (built-in and JSONL, bad files), engine_seq_fork, and batched generation: each
 * completion is the same whatever the number of sequences decoded side by side, and greedy
 * batched completions equal the engine's one-sequence decode. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/batchgen.h"
#include "infer/engine.h"
#include "infer/iweights.h"
#include "model/loss.h"
#include "testutil.h"
#include "testmodel.h"
#include "train/tasks.h"

#define EOS "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"

static dsc_problem arith(const char *prompt, const char *answer) {
    dsc_problem p;
    memset(&p, 0, sizeof p);
    p.task = DSC_TASK_ARITHMETIC;
    snprintf(p.prompt, sizeof p.prompt, "%s", prompt);
    snprintf(p.answer, sizeof p.answer, "%s", answer);
    return p;
}

static dsc_problem countdown(const int64_t *nums, int n, int64_t target) {
    dsc_problem p;
    memset(&p, 0, sizeof p);
    p.task = DSC_TASK_COUNTDOWN;
    p.n_numbers = n;
    for (int i = 0; i < n; i++) p.numbers[i] = nums[i];
    p.target = target;
    snprintf(p.prompt, sizeof p.prompt, "countdown");
    return p;
}

static void expect(const dsc_problem *p, const char *completion, bool finished, bool correct, bool formatted) {
    reward_options ro;
    reward_default_options(&ro);
    reward_result r;
    CHECK(reward_score(&ro, p, completion, finished, &r) == DSC_OK, "reward_score failed: %s", dsc_last_error());
    CHECK(r.correct == correct, "correct: got %d want %d for \"%s\" (finished %d)", r.correct, correct, completion,
          finished);
    CHECK(r.formatted == formatted, "formatted: got %d want %d for \"%s\"", r.formatted, formatted, completion);
    float want = (correct ? ro.accuracy : 0.0f) + (formatted ? ro.format : 0.0f);
    CHECK(r.reward == want, "reward %g, want %g for \"%s\"", r.reward, want, completion);
}

static void test_rewards(void) {
    dsc_problem a = arith("What is 17 + 25?", "42");
    expect(&a, "17 + 25 = 42\n</think>\n42" EOS, true, true, true);
    expect(&a, "17 + 25 = 42\n</think>\n42", true, true, true);            /* EOS text optional */
    expect(&a, "17 + 25 = 42\n</think>\n 42 \n" EOS, true, true, true);    /* white space */
    expect(&a, "17 + 25 = 42\n</think>\n42", false, false, false);         /* cut at the limit */
    expect(&a, "17 + 25 = 42\n</think>\nthe answer is 42" EOS, true, false, true); /* extra text */
    expect(&a, "17 + 25 = 42\n</think>\n43" EOS, true, false, true);       /* wrong */
    expect(&a, "</think>\n42" EOS, true, true, false);                     /* no reasoning */
    expect(&a, "hmm\n</think>\n" EOS, true, false, false);                  /* no answer */
    expect(&a, "x\n</think>\n41\n</think>\n42" EOS, true, true, false);    /* two closing tags: last counts */
    expect(&a, "x\n<think>\ny\n</think>\n42" EOS, true, true, false);      /* a second opening tag */
    expect(&a, "x\n</think>\n<think>42" EOS, true, false, false);          /* unfinished new think */
    expect(&a, "42" EOS, true, false, false);                              /* reasoning never closed */
    expect(&a, "", true, false, false);
    expect(&a, "x\n</think>\n99999999999999999999999999999" EOS, true, false, true); /* huge number */
    dsc_problem neg = arith("What is 3 - 5?", "-2");
    expect(&neg, "y\n</think>\n-2" EOS, true, true, true);
    expect(&neg, "y\n</think>\n- 2" EOS, true, false, true);
    expect(&neg, "y\n</think>\n--2" EOS, true, false, true);

    int64_t nums[4] = {25, 5, 3, 7};
    dsc_problem c = countdown(nums, 4, 128);
    expect(&c, "s\n</think>\n25 * 5 + 3" EOS, true, true, true);
    expect(&c, "s\n</think>\n(25 * 5) + 3 = 128" EOS, true, true, true);
    expect(&c, "s\n</think>\n25 * 5 + 3 = 127" EOS, true, false, true);     /* wrong claimed value */
    expect(&c, "s\n</think>\n25 * 5 + 3 + 0" EOS, true, false, true);       /* 0 not given */
    expect(&c, "s\n</think>\n25 * 5 + 3 + 3 - 3" EOS, true, false, true);   /* 3 used three times */
    expect(&c, "s\n</think>\n7 / (5 - 5) + 128" EOS, true, false, true);    /* division by zero */
    expect(&c, "s\n</think>\n((((25 * 5 + 3)" EOS, true, false, true);      /* unbalanced parentheses */
    expect(&c, "s\n</think>\n-25 * 5 + 3" EOS, true, false, true);          /* unary minus */
    char deep[512] = "s\n</think>\n";
    for (int i = 0; i < 100; i++) strcat(deep, "(");
    strcat(deep, "3");
    for (int i = 0; i < 100; i++) strcat(deep, ")");
    strcat(deep, EOS);
    expect(&c, deep, true, false, true);                                     /* nesting too deep */
    int64_t big[3] = {1000000000, 1000000000, 1000000000};
    dsc_problem cb = countdown(big, 3, 10);
    expect(&cb, "s\n</think>\n1000000000 * 1000000000 * 1000000000" EOS, true, false, true); /* overflow */
}

static void test_task_sources(void) {
    task_source s;
    dsc_synth_options so;
    dsc_synth_default_options(&so);
    so.max_digits = 2;
    CHECK(task_source_builtin(&s, DSC_TASK_ARITHMETIC, &so, 7) == DSC_OK, "builtin: %s", dsc_last_error());
    dsc_problem p1, p2, h;
    CHECK(task_source_get(&s, DSC_SPLIT_TRAIN, 5, &p1) == DSC_OK && task_source_get(&s, DSC_SPLIT_TRAIN, 5, &p2) == DSC_OK,
          "get");
    CHECK(!strcmp(p1.prompt, p2.prompt), "problem 5 twice: \"%s\" vs \"%s\"", p1.prompt, p2.prompt);
    CHECK(task_source_get(&s, DSC_SPLIT_HELDOUT, 0, &h) == DSC_OK && dsc_synth_is_heldout(&h), "held-out problem");
    CHECK(!dsc_synth_is_heldout(&p1), "a train problem is not held out");
    task_source_free(&s);
    so.max_digits = 0;
    CHECK(task_source_builtin(&s, DSC_TASK_ARITHMETIC, &so, 7) != DSC_OK, "max_digits 0 refused");

    const char *path = "test_rl_tasks.jsonl";
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"prompt\": \"What is 2 + 2?\", \"answer\": \"4\", \"checker\": \"arithmetic\"}\n\n"
               "{\"prompt\": \"Reach 10\", \"answer\": \"5 * 2\", \"checker\": \"countdown\", \"numbers\": [5, 2], "
               "\"target\": 10}\n");
    fclose(f);
    CHECK(task_source_jsonl(&s, path) == DSC_OK && s.n_items == 2, "jsonl: %s", dsc_last_error());
    CHECK(task_source_get(&s, DSC_SPLIT_TRAIN, 2, &p1) == DSC_OK && p1.task == DSC_TASK_ARITHMETIC &&
              !strcmp(p1.prompt, "What is 2 + 2?") && !strcmp(p1.answer, "4"),
          "line 1 again at index 2 (the blank line skipped)");
    CHECK(task_source_get(&s, DSC_SPLIT_TRAIN, 3, &p1) == DSC_OK && p1.task == DSC_TASK_COUNTDOWN, "index wraps");
    reward_options ro;
    reward_default_options(&ro);
    reward_result r;
    CHECK(reward_score(&ro, &p1, "t\n</think>\n2 * 5" EOS, true, &r) == DSC_OK && r.correct, "jsonl countdown");
    task_source_free(&s);
    f = fopen(path, "w");
    fprintf(f, "{\"prompt\": \"What is 2 + 2?\", \"answer\": \"4\", \"checker\": \"arithmetic\"}\n{\"prompt\": 3}\n");
    fclose(f);
    CHECK(task_source_jsonl(&s, path) != DSC_OK && strstr(dsc_last_error(), ":2:"), "bad line named: %s",
          dsc_last_error());
    f = fopen(path, "w");
    fclose(f);
    CHECK(task_source_jsonl(&s, path) != DSC_OK, "empty file refused");
    CHECK(task_source_jsonl(&s, "no/such/file.jsonl") != DSC_OK, "missing file refused");
    remove(path);
}

static engine *make_engine(dsc_model *m, int max_seqs, int max_rows) {
    tensor_source src;
    tensor_source_from_model(&src, m);
    iweights w;
    memset(&w, 0, sizeof w);
    engine *e = NULL;
    engine_options eo = {max_seqs, 64, max_rows};
    if (iweights_build(&w, dsc_model_config(m), &src, false) || engine_create(&w, &eo, &e)) {
        iweights_free(&w);
        return NULL;
    }
    return e;
}

static void test_batchgen(void) {
    dsc_config c;
    dsc_config_preset("tiny", &c);
    c.num_nextn_predict_layers = 0;
    dsc_model *m = tu_random_model(&c, 11);
    CHECK(m != NULL, "model");
    if (!m) return;
    int32_t p0[5] = {1, 5, 9, 2, 7}, p1[3] = {4, 4, 8}, p2[7] = {3, 1, 4, 1, 5, 9, 2};
    const int32_t *prompts[3] = {p0, p1, p2};
    int lens[3] = {5, 3, 7};
    batchgen_options bo = {{1.0f, 0, 1.0f, 0.0f}, 12, 3, 42, 0};
    /* the same completions whether 12 sequences run at once (rows 12 or 5) or 4 at a time */
    batchgen_completion a[12], b[12], g[3];
    engine *e1 = make_engine(m, 12, 12), *e2 = make_engine(m, 4, 3), *e3 = make_engine(m, 12, 5);
    CHECK(e1 && e2 && e3, "engines: %s", dsc_last_error());
    if (!e1 || !e2 || !e3) goto out;
    batchgen_stats st;
    CHECK(generate_batch(e1, prompts, lens, 3, 4, &bo, a, &st) == DSC_OK, "batch 1: %s", dsc_last_error());
    CHECK(st.generated > 12 && st.passes > 0 && st.prompt_tokens == 15, "stats: generated %ld passes %ld prompt %ld",
          st.generated, st.passes, st.prompt_tokens);
    for (int round = 0; round < 2; round++) {
        engine *e = round == 0 ? e2 : e3;
        CHECK(generate_batch(e, prompts, lens, 3, 4, &bo, b, NULL) == DSC_OK, "batch 2: %s", dsc_last_error());
        for (int i = 0; i < 12; i++) {
            bool same = a[i].n == b[i].n && a[i].finished == b[i].finished &&
                        !memcmp(a[i].tokens, b[i].tokens, sizeof(int32_t) * a[i].n);
            CHECK(same, "completion %d differs with another batch shape (round %d)", i, round);
            CHECK(a[i].n == 12 || (a[i].finished && a[i].tokens[a[i].n - 1] == 3), "completion %d ends badly", i);
        }
        batchgen_free(b, 12);
    }
    /* split over engines side by side (2 and 3 parts, threads as the runtime allows): the same
     * completions, and the stats add up */
    for (int parts = 2; parts <= 3; parts++) {
        engine *es[3] = {make_engine(m, 4, 4), make_engine(m, 8, 3), make_engine(m, 4, 2)};
        CHECK(es[0] && es[1] && es[2], "engines for the split: %s", dsc_last_error());
        if (!es[0] || !es[1] || !es[2]) {
            for (int k = 0; k < 3; k++) engine_free(es[k]);
            break;
        }
        batchgen_stats ps;
        CHECK(generate_batch_parallel(es, parts, prompts, lens, 3, 4, &bo, b, &ps) == DSC_OK, "split %d: %s", parts,
              dsc_last_error());
        for (int i = 0; i < 12; i++)
            CHECK(a[i].n == b[i].n && !memcmp(a[i].tokens, b[i].tokens, sizeof(int32_t) * a[i].n),
                  "completion %d differs when split over %d engines", i, parts);
        CHECK(ps.generated == st.generated && ps.prompt_tokens == 15 && ps.passes > 0,
              "split stats: generated %ld (one engine %ld), prompt %ld", ps.generated, st.generated, ps.prompt_tokens);
        batchgen_free(b, 12);
        for (int k = 0; k < 3; k++) engine_free(es[k]);
    }
    /* a part that fails (an engine with too few sequences for 4 copies) fails the call, naming why */
    {
        engine *es[2] = {make_engine(m, 8, 4), make_engine(m, 2, 2)};
        CHECK(es[0] && es[1], "engines: %s", dsc_last_error());
        if (es[0] && es[1])
            CHECK(generate_batch_parallel(es, 2, prompts, lens, 3, 4, &bo, b, NULL) == DSC_ERR &&
                      strstr(dsc_last_error(), "copies") != NULL,
                  "a failing part: %s", dsc_last_error());
        for (int k = 0; k < 2; k++) engine_free(es[k]);
    }
    /* copies of one prompt differ (own generators), at least somewhere */
    bool differ = false;
    for (int k = 1; k < 4; k++)
        differ = differ || a[k].n != a[0].n || memcmp(a[k].tokens, a[0].tokens, sizeof(int32_t) * a[0].n);
    CHECK(differ, "the 4 samples of prompt 0 are all identical");
    batchgen_free(a, 12);

    /* greedy batched == one sequence at a time through engine_prefill/engine_decode */
    bo.sampler.temperature = 0;
    bo.eos = -1;
    CHECK(generate_batch(e3, prompts, lens, 3, 1, &bo, g, NULL) == DSC_OK, "greedy: %s", dsc_last_error());
    float *logits = malloc(sizeof(float) * c.vocab_size);
    for (int p = 0; p < 3; p++) {
        int s = engine_seq_new(e1);
        engine_prefill(e1, s, prompts[p], lens[p], logits, NULL);
        for (int t = 0; t < bo.max_tokens; t++) {
            int32_t best = 0;
            for (int v = 1; v < c.vocab_size; v++)
                if (logits[v] > logits[best]) best = v;
            CHECK(g[p].tokens[t] == best, "greedy prompt %d token %d: %d vs %d", p, t, g[p].tokens[t], best);
            engine_decode(e1, &s, &best, 1, logits);
        }
        /* a fork continues exactly like its source */
        int f = engine_seq_fork(e1, s);
        CHECK(f >= 0 && engine_seq_len(e1, f) == engine_seq_len(e1, s), "fork length");
        float *l2 = malloc(sizeof(float) * c.vocab_size);
        int32_t tok = 5;
        engine_decode(e1, &s, &tok, 1, logits);
        engine_decode(e1, &f, &tok, 1, l2);
        CHECK(memcmp(logits, l2, sizeof(float) * c.vocab_size) == 0, "forked sequence decodes differently");
        free(l2);
        engine_seq_free(e1, f);
        engine_seq_free(e1, s);
    }
    CHECK(engine_seq_fork(e1, 99) == -1 && engine_seq_fork(e1, 0) == -1, "fork of no sequence refused");
    free(logits);
    batchgen_free(g, 3);
out:
    engine_free(e1);
    engine_free(e2);
    engine_free(e3);
    dsc_model_free(m);
}

/* log softmax(x/τ)[t], the entropy, and the gradient of Σ c_i logp_i against double-precision
 * sums and finite differences, at τ = 1 and at the rollout temperatures below it. */
static void test_logprob_temperature(void) {
    enum { N = 3, V = 37 };
    dsc_rng r;
    dsc_rng_seed(&r, 5);
    float x[N * V], g[N * V], lp[N], ent[N], coef[N] = {0.7f, -1.3f, 0.0f};
    int32_t t[N] = {4, 36, -1};
    tu_fill_normal(&r, x, N * V, 2.0f);
    const float temps[3] = {1.0f, 0.7f, 0.3f};
    for (int k = 0; k < 3; k++) {
        float tau = temps[k];
        logprob_forward(x, t, N, V, tau, lp, ent);
        for (int i = 0; i < 2; i++) {
            double mx = -1e300, z = 0, pz = 0;
            for (int v = 0; v < V; v++) mx = fmax(mx, x[i * V + v] / (double)tau);
            for (int v = 0; v < V; v++) z += exp(x[i * V + v] / (double)tau - mx);
            for (int v = 0; v < V; v++) {
                double p = exp(x[i * V + v] / (double)tau - mx) / z;
                pz += p * log(p);
            }
            double want = x[i * V + t[i]] / (double)tau - mx - log(z);
            CHECK(fabs(lp[i] - want) < 1e-5 * (1 + fabs(want)), "tau %g row %d: logp %g, want %g", tau, i, lp[i], want);
            CHECK(fabs(ent[i] + pz) < 1e-5, "tau %g row %d: entropy %g, want %g", tau, i, ent[i], -pz);
        }
        CHECK(lp[2] == 0.0f && ent[2] == 0.0f, "a row without target gets 0");
        memcpy(g, x, sizeof g);
        logprob_backward(g, t, coef, N, V, tau);
        for (int i = 0; i < N; i++)
            for (int v = 0; v < V; v += 5) {
                float save = x[i * V + v], h = 1e-2f, lp1[N], lp2[N];
                x[i * V + v] = save + h;
                logprob_forward(x, t, N, V, tau, lp1, NULL);
                x[i * V + v] = save - h;
                logprob_forward(x, t, N, V, tau, lp2, NULL);
                x[i * V + v] = save;
                double fd = 0;
                for (int j = 0; j < N; j++) fd += coef[j] * ((double)lp1[j] - lp2[j]) / (2 * h);
                CHECK(fabs(g[i * V + v] - fd) < 2e-3 * (1 + fabs(fd)), "tau %g grad[%d,%d] %g, finite difference %g",
                      tau, i, v, g[i * V + v], fd);
            }
    }
}

int main(void) {
    test_logprob_temperature();
    test_rewards();
    test_task_sources();
    test_batchgen();
    return tu_finish("test_rl");
}
