/* grpo.c: the GRPO loop (grpo.h).
 *
 * Rollouts run on the inference engine built over the policy's own fp32 parameters (no copy but
 * the absorbed kv_b split, rebuilt each step), with batchgen's batched decode: the speed reported
 * is the engine's. A completion of prompt p is trained as one sequence: inputs prompt ++ completion
 * without its last token, targets −1 on the prompt (positions that predict prompt tokens) and the
 * completion's tokens after it, padded with −1 to the longest sequence of the pass.
 *
 * Determinism: problem j of sampling round k of step s is index (s·max_rounds + k)·P + j of the
 * train stream, and completion i of a round samples with seed (seed, s, k, i); so a resumed run
 * draws exactly what the uninterrupted one would have. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "base/error.h"
#include "base/fileio.h"
#include "base/rng.h"
#include "infer/batchgen.h"
#include "infer/engine.h"
#include "infer/iweights.h"
#include "tok/bytelevel.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/grpo.h"
#include "train/plot.h"
#include "train/runlog.h"

void grpo_options_default(grpo_options *o) {
    memset(o, 0, sizeof *o);
    reward_default_options(&o->reward);
    o->prompts = 8;
    o->group = 8;
    o->max_new_tokens = 448; /* a 2-digit long multiplication with signs takes up to ~400 tokens */
    o->max_prompt_tokens = 96;
    o->temperature = 1.0f;
    o->top_p = 1.0f;
    o->minibatches = 1;
    o->micro = 16;
    o->loss = (grpo_loss_options){0.2f, 0.28f, 0.0f, GRPO_AGG_TOKEN, 0};
    o->scale_std = true;
    o->dynamic_sampling = true;
    o->max_rounds = 3;
    o->lr = 1e-4f;
    o->weight_decay = 0.0f;
    o->beta1 = 0.9f;
    o->beta2 = 0.99f;
    o->eps = 1e-8f;
    o->clip = 1.0f;
    o->warmup = 5;
    o->steps = 100;
    o->eval_every = 10;
    o->eval_n = 200;
    o->save_every = 20;
    o->keep = 3;
    o->seed = 1;
}

/* ---------------------------------------------------------------------------------------------
 * Engine over the policy, prompts, completions
 * ------------------------------------------------------------------------------------------- */

static dsc_status build_engine(const dsc_model *m, int max_seqs, int max_ctx, engine **e) {
    const dsc_config *c = dsc_model_config(m);
    tensor_source src;
    tensor_source_from_model(&src, m);
    iweights w;
    memset(&w, 0, sizeof w);
    if (max_ctx > c->max_position_embeddings) max_ctx = c->max_position_embeddings;
    engine_options eo = {max_seqs, max_ctx, max_seqs < 64 ? max_seqs : 64};
    if (iweights_build(&w, c, &src, false) || engine_create(&w, &eo, e)) {
        iweights_free(&w);
        return DSC_ERR;
    }
    return DSC_OK;
}

/* The engines of a batch of rollouts: one per thread when the model's decode passes are too small
 * to share between threads (each engine then decodes its part of the prompts on its own core),
 * else one. Each holds room for max_seqs / n sequences (whole groups of `copies`). */
enum { MAX_ENGINES = 16 };
typedef struct {
    engine *e[MAX_ENGINES];
    int n;
} engine_set;

static void free_engines(engine_set *es) {
    for (int i = 0; i < es->n; i++) engine_free(es->e[i]);
    es->n = 0;
}

static dsc_status build_engines(const dsc_model *m, int max_seqs, int copies, int max_ctx, engine_set *es) {
    int n = omp_get_max_threads(), groups = (max_seqs + copies - 1) / copies;
    n = n > MAX_ENGINES ? MAX_ENGINES : n > groups ? groups : n < 1 ? 1 : n;
    int each = (groups + n - 1) / n * copies;
    es->n = 0;
    if (build_engine(m, n > 1 ? each : max_seqs, max_ctx, &es->e[0])) return DSC_ERR;
    es->n = 1;
    if (n == 1) return DSC_OK;
    if (!engine_pass_is_small(es->e[0], engine_max_rows(es->e[0]))) { /* big passes: one engine, all threads */
        free_engines(es);
        if (build_engine(m, max_seqs, max_ctx, &es->e[0])) return DSC_ERR;
        es->n = 1;
        return DSC_OK;
    }
    for (; es->n < n; es->n++)
        if (build_engine(m, each, max_ctx, &es->e[es->n])) {
            free_engines(es);
            return DSC_ERR;
        }
    return DSC_OK;
}

/* One problem and its prompt tokens. */
typedef struct {
    dsc_problem prob;
    int32_t *ids;
    size_t n;
} prompt_item;

static dsc_status make_prompt(const dsc_tokenizer *tok, const dsc_problem *p, int max_prompt, prompt_item *out) {
    char buf[1024];
    out->prob = *p;
    out->ids = NULL;
    size_t len = dsc_synth_render_prompt(p, buf, sizeof buf);
    if (len >= sizeof buf) return dsc_set_error("prompt of %zu bytes is too long (at most %zu)", len, sizeof buf - 1);
    if (dsc_tokenizer_encode(tok, buf, len, true, &out->ids, &out->n)) return DSC_ERR;
    if ((int)out->n > max_prompt)
        return dsc_set_error("a prompt has %zu tokens, more than --max-prompt-tokens %d: \"%.60s\"", out->n,
                             max_prompt, p->prompt);
    return DSC_OK;
}

/* One JSON line of a scored completion (dsc eval --dump). A sampled completion may hold bytes
 * that are not UTF-8 (byte tokens cut a character): each invalid byte is written as U+FFFD. */
static dsc_status dump_completion(FILE *f, const dsc_problem *p, const char *text, const reward_result *r) {
    size_t n = strlen(text), k = 0;
    char *clean = malloc(3 * n + 1);
    for (size_t i = 0; clean && i < n;) {
        size_t c = utf8_char_len((const uint8_t *)text + i, n - i);
        if (c) {
            memcpy(clean + k, text + i, c);
            k += c, i += c;
        } else {
            memcpy(clean + k, "\xEF\xBF\xBD", 3);
            k += 3, i += 1;
        }
    }
    if (clean) clean[k] = 0;
    json_t *o = clean ? json_pack("{s:s, s:s, s:s, s:b, s:b, s:b}", "prompt", p->prompt, "answer", p->answer,
                                  "completion", clean, "correct", r->correct, "formatted", r->formatted, "finished",
                                  r->finished)
                      : NULL;
    char *line = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    int bad = !line, failed = line && fprintf(f, "%s\n", line) < 0;
    free(line);
    free(clean);
    json_decref(o);
    if (bad) return dsc_set_error("evaluate: could not encode a completion as JSON");
    if (failed) return dsc_set_error("evaluate: could not write a completion: %s", strerror(errno));
    return DSC_OK;
}

/* Samples `copies` completions of each prompt and scores them: rewards/results [n*copies]. */
static dsc_status rollout(const engine_set *es, const dsc_tokenizer *tok, const prompt_item *items, int n, int copies,
                          const batchgen_options *bo, const reward_options *ro, batchgen_completion *comp,
                          reward_result *res, batchgen_stats *st, char *sample, size_t cap, FILE *dump) {
    const int32_t **pp = malloc(sizeof *pp * (n > 0 ? n : 1));
    int *pl = malloc(sizeof *pl * (n > 0 ? n : 1));
    dsc_status rc = DSC_OK;
    if (!pp || !pl) rc = dsc_set_error("out of memory");
    for (int i = 0; rc == DSC_OK && i < n; i++) {
        pp[i] = items[i].ids;
        pl[i] = (int)items[i].n;
    }
    if (rc == DSC_OK) rc = generate_batch_parallel(es->e, es->n, pp, pl, n, copies, bo, comp, st);
    for (int i = 0; rc == DSC_OK && i < n * copies; i++) {
        char *text;
        size_t len;
        if (dsc_tokenizer_decode(tok, comp[i].tokens, comp[i].n, &text, &len)) {
            rc = DSC_ERR;
            break;
        }
        rc = reward_score(ro, &items[i / copies].prob, text, comp[i].finished, &res[i]);
        if (i == 0 && sample) snprintf(sample, cap, "%s\n%s", items[0].prob.prompt, text);
        if (rc == DSC_OK && dump) rc = dump_completion(dump, &items[i / copies].prob, text, &res[i]);
        free(text);
    }
    if (rc) batchgen_free(comp, n * copies);
    free(pp);
    free(pl);
    return rc;
}

static void free_prompts(prompt_item *items, int n) {
    for (int i = 0; i < n; i++) free(items[i].ids);
}

dsc_status grpo_evaluate(dsc_model *m, const dsc_tokenizer *tok, const task_source *src, const eval_options *eo,
                         const reward_options *ro, eval_result *out, char *sample, size_t cap) {
    memset(out, 0, sizeof *out);
    int n = eo->n, k = eo->samples > 0 ? eo->samples : 1;
    if (eo->temperature <= 0) k = 1; /* greedy: one answer a problem */
    if (n < 1) return dsc_set_error("evaluate: expected at least 1 problem, found %d", n);
    prompt_item *items = calloc((size_t)n, sizeof *items);
    batchgen_completion *comp = calloc((size_t)n * k, sizeof *comp);
    reward_result *res = calloc((size_t)n * k, sizeof *res);
    engine_set es = {{NULL}, 0};
    dsc_status rc = DSC_OK;
    if (!items || !comp || !res) rc = dsc_set_error("out of memory");
    for (int i = 0; rc == DSC_OK && i < n; i++) {
        dsc_problem p;
        rc = task_source_get(src, eo->split, (uint64_t)i, &p);
        if (rc == DSC_OK) rc = make_prompt(tok, &p, eo->max_prompt_tokens, &items[i]);
    }
    dsc_special_ids sp;
    dsc_tokenizer_specials(tok, &sp);
    int seqs = n * k < 64 ? n * k : 64;
    if (seqs < k) seqs = k;
    if (rc == DSC_OK) rc = build_engines(m, seqs, k, eo->max_prompt_tokens + eo->max_new_tokens + 1, &es);
    batchgen_options bo = {{eo->temperature, 0, 1.0f, 0.0f}, eo->max_new_tokens, sp.eos, eo->seed, 0};
    batchgen_stats st;
    if (rc == DSC_OK) rc = rollout(&es, tok, items, n, k, &bo, ro, comp, res, &st, sample, cap, eo->dump);
    if (rc == DSC_OK) {
        for (int i = 0; i < n * k; i++) {
            out->accuracy += res[i].correct;
            out->format += res[i].formatted;
            out->finished += res[i].finished;
            out->length += comp[i].n;
        }
        out->accuracy /= n * k; /* pass@1 averaged over the k samples of each problem */
        out->format /= n * k;
        out->finished /= n * k;
        out->length /= n * k;
        out->n = n;
        out->samples = k;
        out->tok_s = st.generated / (st.prefill_s + st.decode_s + 1e-9);
        batchgen_free(comp, n * k);
    }
    free_engines(&es);
    if (items) free_prompts(items, n);
    free(items);
    free(comp);
    free(res);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * The update: sequences, passes, the loss callback
 * ------------------------------------------------------------------------------------------- */

/* One trained sequence: inputs x and targets y of length len (prompt ++ completion, shifted). */
typedef struct {
    int32_t *x, *y;
    int len;
    float adv;
    float *old_logp, *ref_logp;  /* [len] or NULL */
    int n_completion;
} train_seq;

static void free_seqs(train_seq *s, int n) {
    for (int i = 0; i < n; i++) {
        free(s[i].x);
        free(s[i].old_logp);
        free(s[i].ref_logp);
    }
}

static dsc_status make_seq(const prompt_item *p, const batchgen_completion *c, float adv, train_seq *s) {
    int L = (int)p->n + c->n; /* full sequence */
    memset(s, 0, sizeof *s);
    s->len = L - 1;
    s->adv = adv;
    s->x = malloc(sizeof(int32_t) * 2 * (size_t)s->len);
    if (!s->x) return dsc_set_error("out of memory");
    s->y = s->x + s->len;
    for (int t = 0; t < s->len; t++) {
        int32_t cur = t < (int)p->n ? p->ids[t] : c->tokens[t - p->n];
        int32_t nxt = t + 1 < (int)p->n ? p->ids[t + 1] : c->tokens[t + 1 - p->n];
        s->x[t] = cur;
        s->y[t] = t + 1 >= (int)p->n ? nxt : -1;
    }
    s->n_completion = c->n;
    return DSC_OK;
}

/* A pass's padded arrays for sequences idx[0..S). */
typedef struct {
    int S, T;
    int32_t *x, *y;
    float *old_logp, *ref_logp, *adv, *logp, *entropy;
} pass_buf;

static void pack(pass_buf *b, const train_seq *seqs, const int *idx, int S) {
    int T = 1;
    for (int k = 0; k < S; k++) T = seqs[idx[k]].len > T ? seqs[idx[k]].len : T;
    b->S = S;
    b->T = T;
    for (int k = 0; k < S; k++) {
        const train_seq *s = &seqs[idx[k]];
        b->adv[k] = s->adv;
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)k * T + t;
            bool in = t < s->len;
            b->x[i] = in ? s->x[t] : 0;
            b->y[i] = in ? s->y[t] : -1;
            b->old_logp[i] = in && s->old_logp ? s->old_logp[t] : 0.0f;
            b->ref_logp[i] = in && s->ref_logp ? s->ref_logp[t] : 0.0f;
        }
    }
}

/* Orders idx[0..n) by sequence length (ties by index), so that the passes over consecutive
 * sequences pad little: completions run from a few tokens to max_new_tokens. Insertion sort: n
 * is a minibatch. */
static void sort_by_length(int *idx, int n, const train_seq *seqs) {
    for (int i = 1; i < n; i++) {
        int v = idx[i], j = i;
        for (; j > 0; j--) {
            int u = idx[j - 1];
            if (seqs[u].len < seqs[v].len || (seqs[u].len == seqs[v].len && u < v)) break;
            idx[j] = u;
        }
        idx[j] = v;
    }
}

/* Log-probabilities of every sequence under model m into field (old_logp or ref_logp). */
static dsc_status seq_logprobs(dsc_model *m, train_seq *seqs, int n, int micro, float temperature, pass_buf *b,
                               bool ref) {
    int *idx = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    if (!idx) return dsc_set_error("out of memory");
    for (int i = 0; i < n; i++) idx[i] = i;
    sort_by_length(idx, n, seqs);
    dsc_status rc = DSC_OK;
    for (int s0 = 0; rc == DSC_OK && s0 < n; s0 += micro) {
        int S = n - s0 < micro ? n - s0 : micro;
        pack(b, seqs, idx + s0, S);
        if ((rc = dsc_model_logprobs(m, b->x, b->y, S, b->T, temperature, b->logp, NULL))) break;
        for (int k = 0; k < S; k++) {
            train_seq *s = &seqs[idx[s0 + k]];
            float **dst = ref ? &s->ref_logp : &s->old_logp;
            if (!*dst && !(*dst = malloc(sizeof(float) * (size_t)s->len))) {
                rc = dsc_set_error("out of memory");
                break;
            }
            memcpy(*dst, b->logp + (size_t)k * b->T, sizeof(float) * s->len);
        }
    }
    free(idx);
    return rc;
}

typedef struct {
    const grpo_loss_options *lo;
    grpo_batch batch;
    grpo_loss_stats st;  /* filled by the callback */
} loss_ctx;

static double loss_cb(void *user, const float *logp, int N, float *dlogp) {
    loss_ctx *c = user;
    (void)N;
    return grpo_loss(c->lo, &c->batch, logp, dlogp, &c->st);
}

typedef struct {
    double loss, kl, clip_frac, entropy, ratio, grad_norm;
    double nll;                  /* mean −log π_θ of the sampled tokens (≈ the entropy on-policy) */
    double tokens, pass_tokens;
} update_stats;

/* μ minibatches of the sequences (in a seeded order), one optimizer step each. */
static dsc_status update(dsc_model *m, adamw *opt, const grpo_options *o, train_seq *seqs, int n, float lr,
                         uint64_t order_seed, pass_buf *b, update_stats *us) {
    memset(us, 0, sizeof *us);
    int *order = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    if (!order) return dsc_set_error("out of memory");
    for (int i = 0; i < n; i++) order[i] = i;
    dsc_rng r;
    dsc_rng_seed(&r, order_seed);
    dsc_rng_shuffle(&r, order, n);
    int mu = o->minibatches < n ? o->minibatches : n;
    adamw_params ap = {lr, o->beta1, o->beta2, o->eps, o->weight_decay};
    double ent_sum = 0, nll_sum = 0, tok_sum = 0, kl_sum = 0, clip_sum = 0, ratio_sum = 0, loss_sum = 0;
    dsc_status rc = DSC_OK;
    for (int k = 0; rc == DSC_OK && k < mu; k++) {
        int a = (int)((int64_t)n * k / mu), z = (int)((int64_t)n * (k + 1) / mu);
        double mb_tokens = 0;
        for (int i = a; i < z; i++) mb_tokens += seqs[order[i]].n_completion;
        sort_by_length(order + a, z - a, seqs); /* the minibatch's gradient is a sum: any order */
        dsc_model_zero_grad(m);
        for (int s0 = a; rc == DSC_OK && s0 < z; s0 += o->micro) {
            int S = z - s0 < o->micro ? z - s0 : o->micro;
            pack(b, seqs, order + s0, S);
            loss_ctx lc;
            memset(&lc, 0, sizeof lc);
            lc.lo = &o->loss;
            lc.batch = (grpo_batch){S, b->T, b->y, b->adv, o->minibatches > 1 ? b->old_logp : NULL,
                                    o->loss.beta != 0.0f ? b->ref_logp : NULL, mb_tokens, z - a};
            double l;
            rc = dsc_model_forward_backward_logprob(m, b->x, b->y, S, b->T, o->temperature, loss_cb, &lc, b->logp, b->entropy, &l);
            if (rc) break;
            loss_sum += l;
            for (int i = 0; i < S * b->T; i++)
                if (b->y[i] >= 0) {
                    ent_sum += b->entropy[i];
                    nll_sum -= b->logp[i];
                }
            tok_sum += lc.st.tokens;
            kl_sum += lc.st.kl * lc.st.tokens;
            clip_sum += lc.st.clip_frac * lc.st.tokens;
            ratio_sum += lc.st.ratio_mean * lc.st.tokens;
            us->pass_tokens += (double)S * b->T;
        }
        if (rc) break;
        us->grad_norm = adamw_step(opt, m, &ap, o->clip);
        if (o->bias_update > 0) dsc_model_update_expert_bias(m, o->bias_update);
    }
    if (tok_sum > 0) {
        us->entropy = ent_sum / tok_sum;
        us->nll = nll_sum / tok_sum;
        us->kl = kl_sum / tok_sum;
        us->clip_frac = clip_sum / tok_sum;
        us->ratio = ratio_sum / tok_sum;
    }
    us->loss = mu > 0 ? loss_sum / mu : 0;
    us->tokens = tok_sum;
    free(order);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * The loop
 * ------------------------------------------------------------------------------------------- */

static char *hparams_json(const grpo_options *o) {
    json_t *j = json_pack("{s:s, s:s, s:i, s:i, s:i, s:f, s:f, s:i, s:f, s:f, s:f, s:i, s:b, s:b, s:f, s:I}",
                          "algorithm", "grpo", "task", task_source_name(o->train), "prompts", o->prompts, "group",
                          o->group, "max_new_tokens", o->max_new_tokens, "temperature", (double)o->temperature,
                          "lr", (double)o->lr, "minibatches", o->minibatches, "beta", (double)o->loss.beta,
                          "eps_low", (double)o->loss.eps_low, "eps_high", (double)o->loss.eps_high, "agg",
                          (int)o->loss.agg, "scale_std", o->scale_std, "dynamic_sampling", o->dynamic_sampling,
                          "format_reward", (double)o->reward.format, "seed", (json_int_t)o->seed);
    if (!j) return NULL;
    json_object_set_new(j, "model", json_string(o->model_dir ? o->model_dir : ""));
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return s;
}

/* Plot of reward, accuracies and length (as a fraction of the limit) from metrics.jsonl. */
static dsc_status write_plot(const char *metrics, const char *svg, int max_new) {
    FILE *f = fopen(metrics, "r");
    if (!f) return dsc_set_error("%s: cannot read: %s", metrics, strerror(errno));
    enum { NS = 5 };
    int cap = 1024, n[NS] = {0};
    double *xs[NS], *ys[NS];
    for (int k = 0; k < NS; k++) {
        xs[k] = malloc(sizeof(double) * cap);
        ys[k] = malloc(sizeof(double) * cap);
    }
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, NULL);
        if (!j) continue;
        double step = json_number_value(json_object_get(j, "step"));
        const char *keys[NS] = {"reward", "accuracy", "eval_accuracy", "eval_pass1", "length"};
        for (int k = 0; k < NS; k++) {
            json_t *v = json_object_get(j, keys[k]);
            if (!v || json_number_value(v) < 0 || n[k] >= cap || !xs[k] || !ys[k]) continue; /* pass1 -1: none */
            xs[k][n[k]] = step;
            ys[k][n[k]] = json_number_value(v) / (k == NS - 1 ? max_new : 1);
            n[k]++;
        }
        json_decref(j);
    }
    fclose(f);
    plot_series s[NS] = {{"reward (mean of rollouts)", "#1f77b4", xs[0], ys[0], n[0]},
                         {"accuracy (rollouts)", "#aec7e8", xs[1], ys[1], n[1]},
                         {"accuracy (held-out, greedy)", "#d62728", xs[2], ys[2], n[2]},
                         {"pass@1 (held-out, rollout temperature)", "#ff9896", xs[3], ys[3], n[3]},
                         {"completion length / max", "#2ca02c", xs[4], ys[4], n[4]}};
    dsc_status rc = plot_svg(svg, "dsc grpo: reward, accuracy and length", "step", "", s, NS);
    for (int k = 0; k < NS; k++) {
        free(xs[k]);
        free(ys[k]);
    }
    return rc;
}

/* Greedy accuracy on the held-out problems: a metrics line and a report (with a sample). */
static dsc_status eval_report(dsc_model *m, const dsc_tokenizer *tok, const grpo_options *o, long step, FILE *metrics,
                              grpo_callback cb, void *user, double elapsed, eval_result *er) {
    char sample[2048];
    eval_options eo = {o->eval->builtin ? DSC_SPLIT_HELDOUT : DSC_SPLIT_TRAIN, o->eval_n, o->max_new_tokens,
                       o->max_prompt_tokens, 0.0f, 1, 1, NULL};
    if (grpo_evaluate(m, tok, o->eval, &eo, &o->reward, er, sample, sizeof sample)) return DSC_ERR;
    eval_result sampled = {0};
    if (o->eval_samples > 0) { /* pass@1 at the rollout temperature, as R1 reports it */
        eo.temperature = o->temperature;
        eo.samples = o->eval_samples;
        if (grpo_evaluate(m, tok, o->eval, &eo, &o->reward, &sampled, NULL, 0)) return DSC_ERR;
    }
    fprintf(metrics,
            "{\"step\": %ld, \"eval_accuracy\": %.6g, \"eval_format\": %.6g, \"eval_length\": %.6g, \"eval_n\": %d, "
            "\"eval_tok_s\": %.6g, \"eval_pass1\": %.6g, \"eval_samples\": %d}\n",
            step, er->accuracy, er->format, er->length, er->n, er->tok_s, o->eval_samples > 0 ? sampled.accuracy : -1.0,
            o->eval_samples);
    fflush(metrics);
    if (cb) {
        grpo_progress p;
        memset(&p, 0, sizeof p);
        p.step = step;
        p.total_steps = o->steps;
        p.is_eval = true;
        p.eval_accuracy = er->accuracy;
        p.eval_format = er->format;
        p.eval_length = er->length;
        p.eval_n = er->n;
        p.eval_pass1 = o->eval_samples > 0 ? sampled.accuracy : -1;
        p.eval_samples = o->eval_samples;
        p.eval_sample = sample;
        p.elapsed_s = elapsed;
        cb(&p, user);
    }
    return DSC_OK;
}

dsc_status grpo_run(const grpo_options *o, grpo_callback cb, void *user, volatile sig_atomic_t *stop,
                    grpo_summary *sum) {
    memset(sum, 0, sizeof *sum);
    sum->first_eval_accuracy = sum->last_eval_accuracy = NAN;
    if (o->prompts < 1 || o->group < 2 || o->max_new_tokens < 1 || o->minibatches < 1 || o->micro < 1 ||
        o->steps < 1 || o->eval_n < 1 || o->max_rounds < 1)
        return dsc_set_error("grpo: expected prompts >= 1, group >= 2, max_new_tokens >= 1, minibatches >= 1, "
                             "micro >= 1, steps >= 1, eval_n >= 1, max_rounds >= 1");
    if (!o->model_dir) return dsc_set_error("grpo: no starting model (--model)");
    char path[4200], ckdir[4096], tok_path[4200];
    dsc_model *m = NULL, *ref = NULL;
    adamw *opt = NULL;
    dsc_tokenizer *tok = NULL;
    engine_set es = {{NULL}, 0};
    FILE *metrics = NULL;
    char *hp = hparams_json(o), *stored_hp = NULL;
    int P = o->prompts, G = o->group, n_max = P * G;
    prompt_item *items = calloc((size_t)P, sizeof *items);
    batchgen_completion *comp = calloc((size_t)n_max, sizeof *comp);
    reward_result *res = calloc((size_t)n_max, sizeof *res);
    float *rew = malloc(sizeof(float) * n_max), *adv = malloc(sizeof(float) * n_max);
    train_seq *seqs = calloc((size_t)n_max, sizeof *seqs);
    int n_seqs = 0, n_items = 0;
    pass_buf b;
    memset(&b, 0, sizeof b);
    dsc_status rc = DSC_ERR;
    if (!hp || !items || !comp || !res || !rew || !adv || !seqs) {
        dsc_set_error("out of memory");
        goto done;
    }
    if (dsc_mkdir(o->out_dir)) goto done;
    char model_dir[4200];
    if (ckpt_resolve_model(o->model_dir, model_dir, sizeof model_dir)) goto done;

    /* ---- policy and optimizer: the starting model, or the newest checkpoint ---- */
    ckpt_state cs;
    memset(&cs, 0, sizeof cs);
    if (o->resume) {
        if (ckpt_latest(o->out_dir, ckdir, sizeof ckdir) || ckpt_load(ckdir, &m, &opt, &cs, &stored_hp)) goto done;
        static const char *const keys[] = {"task", "prompts", "group", "max_new_tokens", "temperature", "lr",
                                           "minibatches", "beta", "eps_low", "eps_high", "agg", "scale_std",
                                           "dynamic_sampling", "format_reward", "seed", "model", NULL};
        if (runlog_check_resume(stored_hp, hp, keys, ckdir)) goto done;
    } else {
        if (dsc_model_load(model_dir, &m) || adamw_create(m, &opt)) goto done;
    }
    if (o->loss.beta != 0.0f && dsc_model_load(model_dir, &ref)) goto done;
    if (o->tokenizer_path) snprintf(tok_path, sizeof tok_path, "%s", o->tokenizer_path);
    else snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", model_dir);
    if (dsc_tokenizer_load(tok_path, &tok)) goto done;
    const dsc_config *c = dsc_model_config(m);
    if (dsc_tokenizer_vocab_size(tok) > c->vocab_size) {
        dsc_set_error("%s: %d tokens, but the model's vocab_size is %d", tok_path, dsc_tokenizer_vocab_size(tok),
                      c->vocab_size);
        goto done;
    }
    dsc_special_ids sp;
    dsc_tokenizer_specials(tok, &sp);
    if (sp.eos < 0) {
        dsc_set_error("%s: no end-of-sentence token", tok_path);
        goto done;
    }
    int T_max = o->max_prompt_tokens + o->max_new_tokens;
    size_t pf = (size_t)o->micro * T_max;
    b.x = malloc(sizeof(int32_t) * pf);
    b.y = malloc(sizeof(int32_t) * pf);
    b.old_logp = malloc(sizeof(float) * pf);
    b.ref_logp = malloc(sizeof(float) * pf);
    b.logp = malloc(sizeof(float) * pf);
    b.entropy = malloc(sizeof(float) * pf);
    b.adv = malloc(sizeof(float) * o->micro);
    if (!b.x || !b.y || !b.old_logp || !b.ref_logp || !b.logp || !b.entropy || !b.adv) {
        dsc_set_error("out of memory");
        goto done;
    }

    snprintf(path, sizeof path, "%s/metrics.jsonl", o->out_dir);
    if (o->resume ? runlog_truncate(path, cs.step) : DSC_OK) goto done;
    if (!(metrics = fopen(path, o->resume ? "a" : "w"))) {
        dsc_set_error("%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    double t_start = runlog_now() - cs.elapsed, step_ema = 0;
    long step = cs.step;
    eval_result er;
    if (step == 0) {
        if (eval_report(m, tok, o, 0, metrics, cb, user, 0, &er)) goto done;
        sum->first_eval_accuracy = er.accuracy;
        sum->first_eval_format = er.format;
    }
    bool saved_last = true, last_eval_done = step == 0;
    while (step < o->steps) {
        double t0 = runlog_now();
        /* ---- rollouts: rounds of P prompts until P informative groups (or max_rounds) ---- */
        if (build_engines(m, n_max, G, T_max + 1, &es)) goto done;
        batchgen_stats bst_sum = {0};
        double r_sum = 0, acc_sum = 0, fmt_sum = 0, len_sum = 0, fin_sum = 0;
        int sampled = 0, kept = 0, rounds = 0;
        n_seqs = 0;
        for (int round = 0; round < o->max_rounds && kept < P; round++) {
            rounds++;
            for (int j = 0; j < P; j++) {
                dsc_problem pr;
                uint64_t index = ((uint64_t)step * o->max_rounds + round) * P + j;
                if (task_source_get(o->train, DSC_SPLIT_TRAIN, index, &pr) ||
                    make_prompt(tok, &pr, o->max_prompt_tokens, &items[j]))
                    goto done;
                n_items = j + 1;
            }
            batchgen_options bo = {{o->temperature, 0, o->top_p, 0.0f}, o->max_new_tokens, sp.eos,
                                   dsc_hash64_pair(dsc_hash64_pair(o->seed, (uint64_t)step), (uint64_t)round), 0};
            batchgen_stats bst;
            if (rollout(&es, tok, items, P, G, &bo, &o->reward, comp, res, &bst, NULL, 0, NULL)) goto done;
            bst_sum.generated += bst.generated;
            bst_sum.prefill_s += bst.prefill_s;
            bst_sum.decode_s += bst.decode_s;
            bst_sum.mean_rows += bst.mean_rows * bst.passes;
            bst_sum.passes += bst.passes;
            for (int i = 0; i < P * G; i++) {
                rew[i] = res[i].reward;
                r_sum += res[i].reward;
                acc_sum += res[i].correct;
                fmt_sum += res[i].formatted;
                fin_sum += res[i].finished;
                len_sum += comp[i].n;
            }
            sampled += P;
            grpo_advantages(rew, P, G, o->scale_std, adv);
            for (int j = 0; j < P && kept < P; j++) {
                bool informative = false;
                for (int k = 1; k < G; k++) informative = informative || rew[j * G + k] != rew[j * G];
                if (o->dynamic_sampling && !informative) continue;
                for (int k = 0; k < G; k++)
                    if (make_seq(&items[j], &comp[j * G + k], adv[j * G + k], &seqs[n_seqs++])) goto done;
                kept++;
            }
            batchgen_free(comp, P * G);
            free_prompts(items, n_items);
            n_items = 0;
            if (!o->dynamic_sampling) break;
        }
        free_engines(&es);
        double t1 = runlog_now();
        /* ---- reference and old log-probabilities, then μ optimizer steps ---- */
        if (ref && seq_logprobs(ref, seqs, n_seqs, o->micro, o->temperature, &b, true)) goto done;
        if (o->minibatches > 1 && seq_logprobs(m, seqs, n_seqs, o->micro, o->temperature, &b, false)) goto done;
        float lr = o->lr * (o->warmup > 0 && step < o->warmup ? (float)(step + 1) / (o->warmup + 1) : 1.0f);
        update_stats us = {0};
        if (n_seqs > 0 && update(m, opt, o, seqs, n_seqs, lr, dsc_hash64_pair(o->seed ^ 0x5eed, (uint64_t)step), &b, &us))
            goto done;
        free_seqs(seqs, n_seqs);
        n_seqs = 0;
        double t2 = runlog_now();
        step++;
        saved_last = false;
        cs.step = step;
        cs.tokens += (uint64_t)bst_sum.generated;
        cs.elapsed = runlog_now() - t_start;

        int n_roll = sampled * G;
        grpo_progress p;
        memset(&p, 0, sizeof p);
        p.step = step;
        p.total_steps = o->steps;
        p.reward = r_sum / n_roll;
        p.accuracy = acc_sum / n_roll;
        p.format = fmt_sum / n_roll;
        p.finished = fin_sum / n_roll;
        p.length = len_sum / n_roll;
        p.groups_sampled = sampled;
        p.groups_kept = kept;
        p.rounds = rounds;
        p.loss = us.loss;
        p.kl = us.kl;
        p.clip_frac = us.clip_frac;
        p.entropy = us.entropy;
        p.nll = us.nll;
        p.grad_norm = us.grad_norm;
        p.ratio = us.ratio;
        p.lr = lr;
        p.rollout_s = t1 - t0;
        p.update_s = t2 - t1;
        p.rollout_tok_s = bst_sum.generated / (t1 - t0);
        p.decode_tok_s = bst_sum.decode_s > 0 ? (bst_sum.generated - n_roll) / bst_sum.decode_s : 0;
        p.mean_rows = bst_sum.passes ? bst_sum.mean_rows / bst_sum.passes : 0;
        p.update_tok_s = t2 > t1 ? us.pass_tokens / (t2 - t1) : 0;
        p.elapsed_s = cs.elapsed;
        double dt = t2 - t0;
        step_ema = step_ema == 0 ? dt : 0.9 * step_ema + 0.1 * dt;
        p.eta_s = step_ema * (o->steps - step);
        fprintf(metrics,
                "{\"step\": %ld, \"reward\": %.6g, \"accuracy\": %.6g, \"format\": %.6g, \"finished\": %.6g, "
                "\"length\": %.6g, \"groups_sampled\": %d, \"groups_kept\": %d, \"loss\": %.6g, \"kl\": %.6g, "
                "\"clip_frac\": %.6g, \"entropy\": %.6g, \"nll\": %.6g, \"ratio\": %.6g, \"grad_norm\": %.6g, \"lr\": %.6g, "
                "\"rollout_s\": %.4g, \"update_s\": %.4g, \"rollout_tok_s\": %.6g, \"decode_tok_s\": %.6g, "
                "\"decode_rows\": %.4g, \"update_tok_s\": %.6g, \"elapsed\": %.4f}\n",
                step, p.reward, p.accuracy, p.format, p.finished, p.length, sampled, kept, p.loss, p.kl, p.clip_frac,
                p.entropy, p.nll, p.ratio, p.grad_norm, p.lr, p.rollout_s, p.update_s, p.rollout_tok_s, p.decode_tok_s,
                p.mean_rows, p.update_tok_s, cs.elapsed);
        fflush(metrics);
        if (cb) cb(&p, user);

        bool stopping = (stop && *stop) || (o->time_limit_s > 0 && cs.elapsed >= o->time_limit_s);
        last_eval_done = false;
        if ((o->eval_every > 0 && step % o->eval_every == 0) || step == o->steps || stopping) {
            if (eval_report(m, tok, o, step, metrics, cb, user, cs.elapsed, &er)) goto done;
            last_eval_done = true;
        }
        if ((o->save_every > 0 && step % o->save_every == 0) || step == o->steps || stopping) {
            if (ckpt_save(o->out_dir, m, opt, &cs, hp, tok_path, o->keep)) goto done;
            saved_last = true;
        }
        if (stopping) {
            sum->interrupted = step < o->steps;
            break;
        }
    }
    if (!last_eval_done) {
        if (eval_report(m, tok, o, step, metrics, cb, user, cs.elapsed, &er)) goto done;
    }
    if (!saved_last && ckpt_save(o->out_dir, m, opt, &cs, hp, tok_path, o->keep)) goto done;
    sum->last_eval_accuracy = er.accuracy;
    sum->last_eval_format = er.format;
    sum->steps_done = step;
    sum->elapsed_s = cs.elapsed;
    snprintf(sum->checkpoint, sizeof sum->checkpoint, "%s/step-%08ld", o->out_dir, step);
    fclose(metrics);
    metrics = NULL;
    snprintf(path, sizeof path, "%s/metrics.jsonl", o->out_dir);
    char svg[4200];
    snprintf(svg, sizeof svg, "%s/grpo.svg", o->out_dir);
    rc = write_plot(path, svg, o->max_new_tokens);
done:
    if (metrics) fclose(metrics);
    free_engines(&es);
    if (comp) batchgen_free(comp, n_max);
    if (items) free_prompts(items, n_items);
    if (seqs) free_seqs(seqs, n_seqs);
    free(items);
    free(comp);
    free(res);
    free(rew);
    free(adv);
    free(seqs);
    free(b.x);
    free(b.y);
    free(b.old_logp);
    free(b.ref_logp);
    free(b.logp);
    free(b.entropy);
    free(b.adv);
    free(hp);
    free(stored_hp);
    dsc_tokenizer_free(tok);
    adamw_free(opt);
    dsc_model_free(m);
    dsc_model_free(ref);
    return rc;
}
