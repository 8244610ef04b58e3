/* cmd_sft.c: `dsc sft`: supervised fine-tuning of a model on JSONL conversations with the loss on
 * the assistant tokens only, printing one progress line per step (loss, assistant-token loss,
 * validation loss, tokens/s, ETA) and writing metrics.jsonl, checkpoints and loss.svg into --out.
 * Ctrl-C finishes the current step, saves a checkpoint and exits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/progress.h"
#include "train/sft.h"

typedef struct {
    long log_every;
    float last_val;
} progress_ctx;

static void on_progress(const sft_progress *p, void *user) {
    progress_ctx *ctx = user;
    if (p->event == SFT_EVENT_DATA) {
        printf("model %s; %d training conversations (%.2fM tokens, %.2fM assistant tokens in the loss), %d validation",
               p->model, p->n_train, p->train_tokens / 1e6, p->train_targets / 1e6, p->n_val);
        if (p->truncated || p->skipped) printf("; longer than --seq: %d truncated, %d left out", p->truncated, p->skipped);
        printf("\n");
    } else if (p->event == SFT_EVENT_EVAL) {
        ctx->last_val = p->val_loss;
        printf("step %6ld/%ld | val loss %.4f (%lld assistant tokens)\n", p->step, p->total_steps, p->val_loss,
               (long long)p->val_targets);
    } else {
        if (p->step % ctx->log_every != 0 && p->step != p->total_steps && p->step != 1) return;
        char el[32], eta[32], val[32] = "-";
        progress_fmt_time(el, sizeof el, p->elapsed_s);
        progress_fmt_time(eta, sizeof eta, p->eta_s);
        if (isfinite(ctx->last_val)) snprintf(val, sizeof val, "%.4f", ctx->last_val);
        printf("step %6ld/%ld | loss %.4f | assistant ce %.4f (%lld tok) | val %s | lr %.2e | |g| %.2f | %dx%d | "
               "epoch %.2f | %5.0f tok/s | %s | ETA %s\n",
               p->step, p->total_steps, p->loss, p->ce, (long long)p->targets, val, p->lr, p->grad_norm, p->rows, p->seq_len,
               p->epoch, p->tokens_per_s, el, eta);
    }
    fflush(stdout);
}

int cmd_sft(int argc, char **argv) {
    arg_option opts[] = {
        {"model", true, "the model: a directory with config.json, or a training --out directory (newest checkpoint)",
         NULL},
        {"tokenizer", true, "tokenizer.json (default MODEL/tokenizer.json)", NULL},
        {"data", true, "training conversations, JSONL: {\"messages\": [...]} or {\"prompt\", \"answer\", \"reasoning\"}",
         NULL},
        {"val", true, "validation conversations (JSONL)", NULL},
        {"val-fraction", true, "without --val: hold out this fraction of --data (default 0.05; 0: no validation)",
         NULL},
        {"out", true, "output directory: checkpoints, metrics.jsonl, loss.svg", NULL},
        {"too-long", true, "conversations longer than --seq: truncate (default) or skip", NULL},
        {"steps", true, "optimizer steps (default 1000)", NULL},
        {"time-limit", true, "stop after this many minutes of training, saving a checkpoint", NULL},
        {"batch", true, "conversations per step (default 8)", NULL},
        {"batch-tokens", true,
         "instead of --batch: batches of conversations of like length, at most N padded tokens each "
         "(rows x longest; --batch then sizes validation batches only)",
         NULL},
        {"seq", true, "longest input in tokens; batches are padded to their longest conversation (default 512)", NULL},
        {"lr", true, "peak learning rate (default 5e-4)", NULL},
        {"min-lr", true, "final learning rate (default lr/10)", NULL},
        {"warmup", true, "warm-up steps (default 20)", NULL},
        {"schedule", true, "cosine (default), wsd or constant", NULL},
        {"weight-decay", true, "AdamW decoupled weight decay (default 0.1)", NULL},
        {"clip", true, "global gradient-norm clip (default 1.0; 0: off)", NULL},
        {"eval-every", true, "validation every N steps (default 50; also before the first and after the last)", NULL},
        {"eval-batches", true, "validation batches of --batch conversations (default 0: the whole set)", NULL},
        {"save-every", true, "checkpoint every N steps (default 200)", NULL},
        {"keep", true, "checkpoints to keep (default 3)", NULL},
        {"log-every", true, "progress line every N steps (default 10)", NULL},
        {"seed", true, "seed of the conversation order (default 1)", NULL},
        {"resume", false, "continue from the newest checkpoint in --out", NULL},
        {"dump-batches", true, "append every step's B, T, tokens and targets (int32) to this file (for verification)",
         NULL},
        {NULL, false, NULL, NULL}};
    int rc = args_parse(argc, argv, opts, "usage: dsc sft --model DIR --data FILE.jsonl --out DIR [options]");
    if (rc) return rc == 2 ? 0 : 2;
    sft_options o;
    sft_options_default(&o);
    o.model_dir = args_get(opts, "model");
    o.tokenizer_path = args_get(opts, "tokenizer");
    o.data_path = args_get(opts, "data");
    o.val_path = args_get(opts, "val");
    o.out_dir = args_get(opts, "out");
    o.resume = args_get(opts, "resume") != NULL;
    o.dump_batches = args_get(opts, "dump-batches");
    if (!o.data_path || !o.out_dir || (!o.model_dir && !o.resume)) {
        fprintf(stderr, "dsc sft: --model (unless --resume), --data and --out are required\n");
        return 2;
    }
    if (o.val_path && args_get(opts, "val-fraction")) {
        fprintf(stderr, "dsc sft: give --val or --val-fraction, not both\n");
        return 2;
    }
    if (o.val_path) o.val_fraction = 0;
    ARGS_INT_FIELD(opts, "steps", o.steps, 1, 1000000000);
    ARGS_INT_FIELD(opts, "batch", o.batch, 1, 65536);
    ARGS_INT_FIELD(opts, "batch-tokens", o.batch_tokens, 0, 1 << 24);
    ARGS_INT_FIELD(opts, "seq", o.seq, 2, 1 << 20);
    ARGS_INT_FIELD(opts, "warmup", o.schedule.warmup, 0, 1000000000);
    ARGS_INT_FIELD(opts, "eval-every", o.eval_every, 0, 1000000000);
    ARGS_INT_FIELD(opts, "eval-batches", o.eval_batches, 0, 100000000);
    ARGS_INT_FIELD(opts, "save-every", o.save_every, 0, 1000000000);
    ARGS_INT_FIELD(opts, "keep", o.keep, 0, 100000);
    ARGS_INT_FIELD(opts, "seed", o.seed, 0, (long long)1 << 62);
    progress_ctx ctx = {10, NAN};
    ARGS_INT_FIELD(opts, "log-every", ctx.log_every, 1, 1000000000);
    double lr = o.schedule.lr, min_lr = -1, wd = o.weight_decay, clip = o.clip, minutes = 0;
    if (!args_float(opts, "lr", lr, 0, 10, &lr) || !args_float(opts, "min-lr", min_lr, 0, 10, &min_lr) ||
        !args_float(opts, "weight-decay", wd, 0, 10, &wd) || !args_float(opts, "clip", clip, 0, 1e9, &clip) ||
        !args_float(opts, "val-fraction", o.val_fraction, 0, 0.99, &o.val_fraction) ||
        !args_float(opts, "time-limit", minutes, 1e-6, 1e9, &minutes))
        return 2;
    o.schedule.lr = (float)lr;
    o.schedule.min_lr = min_lr >= 0 ? (float)min_lr : o.schedule.lr / 10;
    o.weight_decay = (float)wd;
    o.clip = (float)clip;
    o.time_limit_s = minutes * 60;
    const char *sch = args_get(opts, "schedule"), *tl = args_get(opts, "too-long");
    if (sch) {
        int k = schedule_parse(sch);
        if (k < 0) {
            fprintf(stderr, "dsc sft: option --schedule: expected cosine, wsd or constant, found '%s'\n", sch);
            return 2;
        }
        o.schedule.kind = (schedule_kind)k;
    }
    if (tl && strcmp(tl, "truncate") && strcmp(tl, "skip")) {
        fprintf(stderr, "dsc sft: option --too-long: expected truncate or skip, found '%s'\n", tl);
        return 2;
    }
    o.too_long = tl && !strcmp(tl, "skip") ? SFT_SKIP : SFT_TRUNCATE;

    volatile sig_atomic_t *stop = progress_catch_stop();
    if (o.batch_tokens)
        printf("dsc sft: data %s, %ld steps of <= %d padded tokens (conversations of like length, each <= %d)%s\n",
               o.data_path, o.steps, o.batch_tokens, o.seq, o.resume ? " (resuming)" : "");
    else
        printf("dsc sft: data %s, %ld steps of %d conversations x <= %d tokens%s\n", o.data_path, o.steps, o.batch,
               o.seq, o.resume ? " (resuming)" : "");
    fflush(stdout);
    sft_summary s;
    if (sft_run(&o, on_progress, &ctx, stop, &s)) {
        fprintf(stderr, "dsc sft: %s\n", dsc_last_error());
        return 1;
    }
    char el[32];
    progress_fmt_time(el, sizeof el, s.elapsed_s);
    printf("%s after %ld steps (%.2fM tokens, %s): assistant-token loss %.4f", s.interrupted ? "stopped" : "done",
           s.steps_done, s.tokens / 1e6, el, s.final_loss);
    if (isfinite(s.final_val_loss)) printf(", validation loss %.4f", s.final_val_loss);
    if (isfinite(s.first_val_loss)) printf(" (%.4f before)", s.first_val_loss);
    printf("\ncheckpoint %s; metrics %s/metrics.jsonl; plot %s/loss.svg\n", s.checkpoint, o.out_dir, o.out_dir);
    return 0;
}
