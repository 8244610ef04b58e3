/* trainer.c: the pretraining loop (see trainer.h). One step: for each micro-batch, the next
 * windows of the training stream -> forward + backward (gradients accumulate); average; AdamW
 * with global-norm clipping at the scheduled learning rate; the aux-loss-free bias update from
 * the step's expert loads. Around it: validation, metrics, checkpoints, resume. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "base/error.h"
#include "base/fileio.h"
#include "data/data.h"
#include "model/config.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/runlog.h"
#include "train/trainer.h"

#define VAL_SEED 0x5eedull /* validation always reads the same windows */

void train_options_default(train_options *o) {
    memset(o, 0, sizeof *o);
    dsc_config_preset("small", &o->config);
    o->batch = 8;
    o->seq = 256;
    o->accum = 1;
    o->steps = 1000;
    o->schedule = (lr_schedule){SCHEDULE_COSINE, 2e-3f, 2e-4f, 100, 1000, 0.2f};
    o->weight_decay = 0.1f;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->eps = 1e-8f;
    o->clip = 1.0f;
    o->eval_every = 100;
    o->eval_batches = 8;
    o->save_every = 200;
    o->keep = 3;
    o->seed = 1;
}

dsc_status train_adopt_data_vocab(train_options *o) {
    char path[4200];
    snprintf(path, sizeof path, "%s/train.bin", o->data_dir);
    dsc_shard *s;
    if (dsc_shard_open(path, 0, 0, &s)) return DSC_ERR;
    o->config.vocab_size = dsc_shard_vocab(s);
    dsc_shard_close(s);
    return dsc_config_validate(&o->config);
}

/* The hyperparameters that decide the token stream: a resumed run must use the same ones. */
static char *hparams_json(const train_options *o) {
    json_t *h = json_pack("{s:i, s:i, s:i, s:I, s:f, s:f, s:I, s:s, s:f, s:f, s:f, s:f, s:f, s:I}", "batch", o->batch,
                          "seq", o->seq, "accum", o->accum, "steps", (json_int_t)o->steps, "lr",
                          (double)o->schedule.lr, "min_lr", (double)o->schedule.min_lr, "warmup",
                          (json_int_t)o->schedule.warmup, "schedule", schedule_name(o->schedule.kind),
                          "weight_decay", (double)o->weight_decay, "beta1", (double)o->beta1, "beta2",
                          (double)o->beta2, "clip", (double)o->clip, "decay_frac", (double)o->schedule.decay_frac,
                          "seed", (json_int_t)o->seed);
    char *s = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(h);
    return s;
}

/* On resume: batch, seq, accum and seed decide which tokens come next, so they must match. */
static const char *const resume_keys[] = {"batch", "seq", "accum", "seed", NULL};

/* Entropy (nats) of the unigram distribution of the training tokens: the loss of a model that
 * ignores context, the baseline a trained model must beat. */
static double unigram_entropy(const dsc_shard *s) {
    int V = dsc_shard_vocab(s);
    uint64_t n = dsc_shard_tokens(s);
    uint64_t *count = calloc((size_t)V, sizeof *count);
    if (!count || n == 0) {
        free(count);
        return NAN;
    }
    for (uint64_t i = 0; i < n; i++) count[dsc_shard_token(s, i)]++;
    double h = 0;
    for (int v = 0; v < V; v++)
        if (count[v]) {
            double p = (double)count[v] / (double)n;
            h -= p * log(p);
        }
    free(count);
    return h;
}

static float validate(dsc_model *m, const dsc_shard *val, const train_options *o, int32_t *tok, int32_t *tgt) {
    dsc_loader *l;
    if (dsc_loader_create(val, o->seq, VAL_SEED, &l)) return NAN;
    double sum = 0;
    int64_t count = 0;
    for (int b = 0; b < o->eval_batches; b++) {
        dsc_loader_next(l, o->batch, tok, tgt);
        dsc_losses ls;
        if (dsc_model_loss(m, tok, tgt, o->batch, o->seq, &ls)) {
            dsc_loader_free(l);
            return NAN;
        }
        sum += (double)ls.ce * ls.n_targets;
        count += ls.n_targets;
    }
    dsc_loader_free(l);
    return count ? (float)(sum / count) : NAN;
}

/* max/min tokens per expert of each MoE block over a window of loads; returns the worst. */
static double load_ratios(const dsc_config *c, const int64_t *window, double *per_block, int *n_blocks) {
    int E = c->n_routed_experts, nb = c->num_hidden_layers + c->num_nextn_predict_layers, k = 0;
    double worst = 0;
    for (int l = 0; l < nb && E > 0; l++) {
        if (!cfg_layer_is_moe(c, l)) continue;
        int64_t mx = 0, mn = INT64_MAX;
        for (int e = 0; e < E; e++) {
            int64_t v = window[(size_t)l * E + e];
            mx = v > mx ? v : mx;
            mn = v < mn ? v : mn;
        }
        double r = mx == 0 ? 1.0 : mn == 0 ? INFINITY : (double)mx / (double)mn;
        if (k < 64) per_block[k++] = r;
        worst = fmax(worst, r);
    }
    *n_blocks = k;
    return worst;
}

dsc_status train_run(const train_options *o, train_callback cb, void *user, volatile sig_atomic_t *stop,
                     train_summary *sum) {
    memset(sum, 0, sizeof *sum);
    char path[4200], tok_path[4200] = "", ckdir[4096];
    dsc_shard *train = NULL, *val = NULL;
    dsc_loader *loader = NULL;
    dsc_model *m = NULL;
    adamw *opt = NULL;
    int32_t *tok = NULL, *tgt = NULL;
    int64_t *loads = NULL, *window = NULL;
    FILE *metrics = NULL, *dump = NULL;
    char *hp = hparams_json(o), *stored_hp = NULL;
    int rc = DSC_ERR;

    if (o->batch < 1 || o->seq < 2 || o->accum < 1 || o->steps < 1 || o->eval_batches < 1)
        return dsc_set_error("train: batch >= 1, seq >= 2, accum >= 1, steps >= 1, eval batches >= 1 expected");
    if (dsc_mkdir(o->out_dir)) goto done;
    if (o->tokenizer_path) snprintf(tok_path, sizeof tok_path, "%s", o->tokenizer_path);
    else {
        snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", o->data_dir);
        FILE *tf = fopen(tok_path, "r");
        if (tf) fclose(tf);
        else tok_path[0] = '\0';
    }

    /* ---- model and optimizer: fresh, or from the newest checkpoint ---- */
    ckpt_state cs;
    memset(&cs, 0, sizeof cs);
    if (o->resume) {
        if (ckpt_latest(o->out_dir, ckdir, sizeof ckdir) || ckpt_load(ckdir, &m, &opt, &cs, &stored_hp) ||
            runlog_check_resume(stored_hp, hp, resume_keys, ckdir))
            goto done;
    } else {
        if (dsc_model_create(&o->config, &m) || dsc_model_init(m, o->seed) || adamw_create(m, &opt)) goto done;
        cs.loader.seed = o->seed;
    }
    const dsc_config *c = dsc_model_config(m);

    /* ---- data ---- */
    snprintf(path, sizeof path, "%s/train.bin", o->data_dir);
    if (dsc_shard_open(path, 0, 0, &train)) goto done;
    uint64_t hash = dsc_shard_tokenizer_hash(train);
    if (dsc_shard_vocab(train) > c->vocab_size) {
        dsc_set_error("%s: the data's vocabulary has %d tokens but the model's vocab_size is %d", path,
                      dsc_shard_vocab(train), c->vocab_size);
        goto done;
    }
    if (o->resume && cs.tokenizer_hash && cs.tokenizer_hash != hash) {
        dsc_set_error("%s: made with tokenizer %016" PRIx64 ", but the checkpoint %s was trained on tokenizer %016" PRIx64,
                      path, hash, ckdir, cs.tokenizer_hash);
        goto done;
    }
    snprintf(path, sizeof path, "%s/val.bin", o->data_dir);
    if (dsc_shard_open(path, dsc_shard_vocab(train), hash, &val)) goto done;
    dsc_loader *probe; /* fail now, not at the first validation, if val.bin is too short */
    if (dsc_loader_create(val, o->seq, VAL_SEED, &probe)) goto done;
    dsc_loader_free(probe);
    if (dsc_loader_create(train, o->seq, o->seed, &loader)) goto done;
    if (o->resume && dsc_loader_set_state(loader, &cs.loader)) goto done;
    cs.tokenizer_hash = hash;

    int N = o->batch * o->seq, E = c->n_routed_experts, nb = c->num_hidden_layers + c->num_nextn_predict_layers;
    tok = malloc(sizeof(int32_t) * N);
    tgt = malloc(sizeof(int32_t) * N);
    loads = calloc((size_t)nb * (E > 0 ? E : 1), sizeof *loads);
    window = calloc((size_t)nb * (E > 0 ? E : 1), sizeof *window);
    if (!tok || !tgt || !loads || !window) {
        dsc_set_error("out of memory");
        goto done;
    }
    sum->unigram_loss = (float)unigram_entropy(train);

    snprintf(path, sizeof path, "%s/metrics.jsonl", o->out_dir);
    if (o->resume ? runlog_truncate(path, cs.step) : DSC_OK) goto done;
    metrics = fopen(path, o->resume ? "a" : "w");
    if (!metrics) {
        dsc_set_error("%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    if (o->dump_batches && !(dump = fopen(o->dump_batches, o->resume ? "a" : "w"))) {
        dsc_set_error("%s: cannot open: %s", o->dump_batches, strerror(errno));
        goto done;
    }

    if (!o->resume && o->save_initial) {
        dsc_loader_get_state(loader, &cs.loader);
        if (ckpt_save(o->out_dir, m, opt, &cs, hp, tok_path[0] ? tok_path : NULL, 0)) goto done;
    }
    lr_schedule sched = o->schedule;
    sched.total = o->steps;
    adamw_params ap = {0, o->beta1, o->beta2, o->eps, o->weight_decay};
    double t_start = runlog_now(), step_ema = 0;
    long step = cs.step;
    bool saved_last = true;
    float last_val = NAN;
    while (step < o->steps) {
        double t0 = runlog_now();
        float lr = schedule_lr(&sched, step);
        dsc_model_zero_grad(m);
        double loss = 0, ce = 0, mtp = 0, bal = 0;
        for (int a = 0; a < o->accum; a++) {
            dsc_loader_next(loader, o->batch, tok, tgt);
            if (dump && (fwrite(tok, sizeof *tok, N, dump) != (size_t)N || fwrite(tgt, sizeof *tgt, N, dump) != (size_t)N)) {
                dsc_set_error("%s: write failed", o->dump_batches);
                goto done;
            }
            dsc_losses l;
            if (dsc_model_forward_backward(m, tok, tgt, o->batch, o->seq, &l)) goto done;
            loss += l.total, ce += l.ce, mtp += l.mtp, bal += l.balance;
        }
        if (o->accum > 1) dsc_model_scale_grads(m, 1.0f / o->accum);
        ap.lr = lr;
        double gnorm = adamw_step(opt, m, &ap, o->clip);
        if (E > 0) {
            dsc_model_expert_loads(m, loads);
            for (size_t i = 0; i < (size_t)nb * E; i++) window[i] += loads[i];
        }
        dsc_model_update_expert_bias(m, c->bias_update_speed);
        step++;
        cs.step = step;
        cs.tokens += (uint64_t)N * o->accum;
        double dt = runlog_now() - t0;
        step_ema = step_ema == 0 ? dt : 0.9 * step_ema + 0.1 * dt;
        cs.elapsed += dt;
        saved_last = false;
        if (!isfinite(loss)) {
            dsc_set_error("step %ld: the loss is not finite (%g); lower the learning rate (now %g)", step, loss, lr);
            goto done;
        }

        train_progress p = {step, o->steps, false, (float)(loss / o->accum), (float)(ce / o->accum),
                            (float)(mtp / o->accum), (float)(bal / o->accum), lr, (float)gnorm, NAN,
                            N * o->accum / dt, cs.elapsed, step_ema * (o->steps - step), 0, cs.tokens};
        fprintf(metrics,
                "{\"step\": %ld, \"loss\": %.9g, \"ce\": %.9g, \"mtp\": %.9g, \"balance\": %.9g, \"lr\": %.6g, "
                "\"grad_norm\": %.6g, \"tokens\": %" PRIu64 ", \"tokens_per_s\": %.1f, \"elapsed_s\": %.3f}\n",
                step, p.loss, p.ce, p.mtp, p.balance, lr, gnorm, cs.tokens, p.tokens_per_s, cs.elapsed);
        if (cb) cb(&p, user);

        bool last = step == o->steps;
        bool out_of_time = o->time_limit_s > 0 && runlog_now() - t_start >= o->time_limit_s;
        bool stopping = (stop && *stop) || out_of_time;
        if ((o->eval_every > 0 && step % o->eval_every == 0) || last || stopping) {
            last_val = validate(m, val, o, tok, tgt);
            if (!isfinite(last_val)) goto done;
            p.is_eval = true;
            p.val_loss = last_val;
            p.load_ratio = load_ratios(c, window, sum->load_ratio, &sum->n_moe_blocks);
            memset(window, 0, sizeof(int64_t) * (size_t)nb * (E > 0 ? E : 1));
            fprintf(metrics, "{\"step\": %ld, \"val_loss\": %.9g, \"load_ratio_max\": %.6g}\n", step, last_val,
                    p.load_ratio);
            if (cb) cb(&p, user);
        }
        fflush(metrics);
        if ((o->save_every > 0 && step % o->save_every == 0) || last || stopping) {
            dsc_loader_get_state(loader, &cs.loader);
            if (ckpt_save(o->out_dir, m, opt, &cs, hp, tok_path[0] ? tok_path : NULL, o->keep)) goto done;
            snprintf(sum->checkpoint, sizeof sum->checkpoint, "%s/step-%08ld", o->out_dir, step);
            saved_last = true;
        }
        sum->final_loss = p.loss;
        if (stopping) {
            sum->interrupted = true;
            break;
        }
    }
    (void)saved_last;
    sum->steps_done = step;
    sum->tokens = cs.tokens;
    sum->elapsed_s = cs.elapsed;
    sum->final_val_loss = last_val;
    fclose(metrics);
    metrics = NULL;
    snprintf(path, sizeof path, "%s/metrics.jsonl", o->out_dir);
    char svg[4200];
    snprintf(svg, sizeof svg, "%s/loss.svg", o->out_dir);
    if (runlog_plot(path, svg, "dsc training: next-token cross-entropy (nats/token)", "train cross-entropy",
                    "validation loss", sum->unigram_loss, "unigram baseline"))
        goto done;
    rc = DSC_OK;
done:
    if (metrics) fclose(metrics);
    if (dump) fclose(dump);
    free(hp);
    free(stored_hp);
    free(tok);
    free(tgt);
    free(loads);
    free(window);
    dsc_loader_free(loader);
    dsc_shard_close(train);
    dsc_shard_close(val);
    adamw_free(opt);
    dsc_model_free(m);
    return rc;
}
