/* cmd_train.c: `dsc train`: pretrains a model on prepared data, printing one progress line per
 * step (loss, validation loss, learning rate, tokens/s, ETA), writing metrics.jsonl, checkpoints
 * and loss.svg into --out. Ctrl-C finishes the current step, saves a checkpoint and exits. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/progress.h"
#include "train/trainer.h"

typedef struct {
    long log_every;
    float last_val;
    int tty;
} progress_ctx;

static void on_progress(const train_progress *p, void *user) {
    progress_ctx *ctx = user;
    char el[32], eta[32];
    progress_fmt_time(el, sizeof el, p->elapsed_s);
    progress_fmt_time(eta, sizeof eta, p->eta_s);
    if (p->is_eval) {
        ctx->last_val = p->val_loss;
        printf("step %6ld/%ld | val loss %.4f | expert load max/min %.2f (worst MoE block)\n", p->step, p->total_steps,
               p->val_loss, p->load_ratio);
        fflush(stdout);
        return;
    }
    if (p->step % ctx->log_every != 0 && p->step != p->total_steps && p->step != 1) return;
    char val[32] = "-";
    if (isfinite(ctx->last_val)) snprintf(val, sizeof val, "%.4f", ctx->last_val);
    printf("step %6ld/%ld | loss %.4f (ce %.4f mtp %.4f) | val %s | lr %.2e | |g| %.2f | %5.0f tok/s | %s | ETA %s\n",
           p->step, p->total_steps, p->loss, p->ce, p->mtp, val, p->lr, p->grad_norm, p->tokens_per_s, el, eta);
    fflush(stdout);
}

int cmd_train(int argc, char **argv) {
    arg_option opts[] = {
        {"data", true, "prepared data directory (train.bin, val.bin, tokenizer.json)", NULL},
        {"out", true, "output directory: checkpoints, metrics.jsonl, loss.svg", NULL},
        {"preset", true, "model preset (default small); vocab_size is set from the data", NULL},
        {"config", true, "model config.json instead of a preset", NULL},
        {"tokenizer", true, "tokenizer.json to store with checkpoints (default DATA/tokenizer.json)", NULL},
        {"steps", true, "optimizer steps (default 1000)", NULL},
        {"time-limit", true, "stop after this many minutes of training, saving a checkpoint", NULL},
        {"batch", true, "sequences per micro-batch (default 8)", NULL},
        {"seq", true, "tokens per sequence (default 256)", NULL},
        {"accum", true, "micro-batches per optimizer step (default 1)", NULL},
        {"lr", true, "peak learning rate (default 2e-3)", NULL},
        {"min-lr", true, "final learning rate (default lr/10)", NULL},
        {"warmup", true, "warm-up steps (default 100)", NULL},
        {"schedule", true, "cosine (default), wsd or constant", NULL},
        {"weight-decay", true, "AdamW decoupled weight decay (default 0.1)", NULL},
        {"clip", true, "global gradient-norm clip (default 1.0; 0: off)", NULL},
        {"eval-every", true, "validation every N steps (default 100)", NULL},
        {"eval-batches", true, "validation batches (default 8)", NULL},
        {"save-every", true, "checkpoint every N steps (default 200)", NULL},
        {"keep", true, "checkpoints to keep (default 3)", NULL},
        {"log-every", true, "progress line every N steps (default 10)", NULL},
        {"seed", true, "seed for the initialisation and the data order (default 1)", NULL},
        {"resume", false, "continue from the newest checkpoint in --out", NULL},
        {"save-initial", false, "also checkpoint the initial weights (step 0)", NULL},
        {"dump-batches", true, "append every step's tokens and targets (int32) to this file (for verification)",
         NULL},
        {NULL, false, NULL, NULL}};
    int rc = args_parse(argc, argv, opts, "usage: dsc train --data DIR --out DIR [options]");
    if (rc) return rc == 2 ? 0 : 2;
    train_options o;
    train_options_default(&o);
    o.data_dir = args_get(opts, "data");
    o.out_dir = args_get(opts, "out");
    if (!o.data_dir || !o.out_dir) {
        fprintf(stderr, "dsc train: --data and --out are required\n");
        return 2;
    }
    ARGS_INT_FIELD(opts, "steps", o.steps, 1, 1000000000);
    ARGS_INT_FIELD(opts, "batch", o.batch, 1, 65536);
    ARGS_INT_FIELD(opts, "seq", o.seq, 2, 1 << 20);
    ARGS_INT_FIELD(opts, "accum", o.accum, 1, 65536);
    ARGS_INT_FIELD(opts, "warmup", o.schedule.warmup, 0, 1000000000);
    ARGS_INT_FIELD(opts, "eval-every", o.eval_every, 0, 1000000000);
    ARGS_INT_FIELD(opts, "eval-batches", o.eval_batches, 1, 100000);
    ARGS_INT_FIELD(opts, "save-every", o.save_every, 0, 1000000000);
    ARGS_INT_FIELD(opts, "keep", o.keep, 0, 100000);
    ARGS_INT_FIELD(opts, "seed", o.seed, 0, (long long)1 << 62);
    progress_ctx ctx = {10, NAN, isatty(1)};
    ARGS_INT_FIELD(opts, "log-every", ctx.log_every, 1, 1000000000);
    double lr = o.schedule.lr, min_lr = -1, wd = o.weight_decay, clip = o.clip;
    if (!args_float(opts, "lr", lr, 0, 10, &lr) || !args_float(opts, "min-lr", min_lr, 0, 10, &min_lr) ||
        !args_float(opts, "weight-decay", wd, 0, 10, &wd) || !args_float(opts, "clip", clip, 0, 1e9, &clip))
        return 2;
    o.schedule.lr = (float)lr;
    o.schedule.min_lr = min_lr >= 0 ? (float)min_lr : o.schedule.lr / 10;
    o.weight_decay = (float)wd;
    o.clip = (float)clip;
    const char *sch = args_get(opts, "schedule");
    if (sch) {
        int k = schedule_parse(sch);
        if (k < 0) {
            fprintf(stderr, "dsc train: option --schedule: expected cosine, wsd or constant, found '%s'\n", sch);
            return 2;
        }
        o.schedule.kind = (schedule_kind)k;
    }
    const char *tl = args_get(opts, "time-limit");
    if (tl) {
        char *end;
        double minutes = strtod(tl, &end);
        if (*end || end == tl || !(minutes > 0)) {
            fprintf(stderr, "dsc train: option --time-limit: expected minutes > 0, found '%s'\n", tl);
            return 2;
        }
        o.time_limit_s = minutes * 60;
    }
    o.resume = args_get(opts, "resume") != NULL;
    o.save_initial = args_get(opts, "save-initial") != NULL;
    o.tokenizer_path = args_get(opts, "tokenizer");
    o.dump_batches = args_get(opts, "dump-batches");

    /* the model: a preset or a config file; its vocabulary follows the data */
    const char *preset = args_get(opts, "preset"), *cfile = args_get(opts, "config");
    if (preset && cfile) {
        fprintf(stderr, "dsc train: give --preset or --config, not both\n");
        return 2;
    }
    if ((cfile ? dsc_config_load(cfile, &o.config) : dsc_config_preset(preset ? preset : "small", &o.config))) {
        fprintf(stderr, "dsc train: %s\n", dsc_last_error());
        return 1;
    }
    if (!cfile && !o.resume && train_adopt_data_vocab(&o)) {
        fprintf(stderr, "dsc train: %s\n", dsc_last_error());
        return 1;
    }

    volatile sig_atomic_t *stop = progress_catch_stop();
    train_summary s;
    printf("dsc train: %s model, data %s, %ld steps of %d x %d x %d tokens%s\n", cfile ? cfile : preset ? preset : "small",
           o.data_dir, o.steps, o.accum, o.batch, o.seq, o.resume ? " (resuming)" : "");
    fflush(stdout);
    if (train_run(&o, on_progress, &ctx, stop, &s)) {
        fprintf(stderr, "dsc train: %s\n", dsc_last_error());
        return 1;
    }
    char el[32];
    progress_fmt_time(el, sizeof el, s.elapsed_s);
    printf("%s after %ld steps (%.2fM tokens, %s): train loss %.4f, validation loss %.4f, unigram baseline %.4f\n",
           s.interrupted ? "stopped" : "done", s.steps_done, s.tokens / 1e6, el, s.final_loss, s.final_val_loss,
           s.unigram_loss);
    if (s.n_moe_blocks) {
        printf("expert load max/min per MoE block (last validation window):");
        for (int i = 0; i < s.n_moe_blocks; i++) printf(" %.2f", s.load_ratio[i]);
        printf("\n");
    }
    printf("checkpoint %s; metrics %s/metrics.jsonl; plot %s/loss.svg\n", s.checkpoint, o.out_dir, o.out_dir);
    return 0;
}
