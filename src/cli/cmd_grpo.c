/* cmd_grpo.c: `dsc grpo` (reinforcement learning with GRPO on a verifiable task, DeepSeek-R1-Zero
 * style) and `dsc eval` (a model's accuracy on a task's held-out problems). Progress: one line
 * per step (reward, rollout accuracy, format, length, KL, clip fraction, entropy, rollout and
 * update tokens/s, ETA) and one per evaluation with a sample. Ctrl-C finishes the step, saves. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/progress.h"
#include "cli/synthopts.h"
#include "train/checkpoint.h"
#include "train/grpo.h"

/* Task options shared by both commands. */
#define TASK_OPTIONS                                                                                                   \
    {"task", true, "arithmetic (default), countdown, or jsonl (with --data)", NULL},                                   \
        {"data", true, "JSONL problems for --task jsonl ({\"prompt\", \"answer\", \"checker\", ...})", NULL},          \
        {"eval-data", true, "JSONL held-out problems for --task jsonl (default: --data)", NULL},                       \
        SYNTH_OPTIONS, /* here max-digits defaults to 2 and max-numbers to 4 */                                      \
        {"task-seed", true, "seed of the training problems (default 1)", NULL},                                        \
        {"format-reward", true, "reward of a well-formed <think>...</think> answer (default 0.1)", NULL},              \
        {"max-new-tokens", true, "completion length limit (default 448)", NULL},                                       \
        {"max-prompt-tokens", true, "longest prompt accepted (default 96)", NULL},                                     \
        {"tokenizer", true, "tokenizer.json (default MODEL/tokenizer.json)", NULL}

typedef struct {
    task_source train, eval;
    bool eval_owned;
} task_pair;

static int parse_tasks(const arg_option *opts, const char *cmd, task_pair *tp, reward_options *ro, int *max_new,
                       int *max_prompt) {
    memset(tp, 0, sizeof *tp);
    const char *name = args_get(opts, "task");
    if (!name) name = "arithmetic";
    dsc_synth_options so;
    dsc_synth_default_options(&so);
    so.max_digits = 2;
    so.max_numbers = 4;
    long long seed, mn, mp;
    if (!synth_options_parse(opts, &so)) return 2;
    if (!args_int(opts, "task-seed", 1, 0, (long long)1 << 62, &seed)) return 2;
    if (!args_int(opts, "max-new-tokens", *max_new, 1, 1 << 16, &mn)) return 2;
    if (!args_int(opts, "max-prompt-tokens", *max_prompt, 1, 1 << 16, &mp)) return 2;
    *max_new = (int)mn;
    *max_prompt = (int)mp;
    double fr;
    if (!args_float(opts, "format-reward", ro->format, 0, 100, &fr)) return 2;
    ro->format = (float)fr;
    dsc_task task;
    if (strcmp(name, "jsonl") && dsc_task_parse(name, &task)) {
        fprintf(stderr, "dsc %s: option --task: expected arithmetic, countdown or jsonl, found '%s'\n", cmd, name);
        return 2;
    }
    if (!strcmp(name, "jsonl")) {
        const char *data = args_get(opts, "data"), *ev = args_get(opts, "eval-data");
        if (!data) {
            fprintf(stderr, "dsc %s: --task jsonl needs --data FILE.jsonl\n", cmd);
            return 2;
        }
        if (task_source_jsonl(&tp->train, data)) goto fail;
        if (ev) {
            if (task_source_jsonl(&tp->eval, ev)) goto fail;
            tp->eval_owned = true;
        } else {
            tp->eval = tp->train;
        }
        return 0;
    }
    if (task_source_builtin(&tp->train, task, &so, (uint64_t)seed) ||
        task_source_builtin(&tp->eval, task, &so, DSC_SYNTH_HELDOUT_SEED))
        goto fail;
    return 0;
fail:
    fprintf(stderr, "dsc %s: %s\n", cmd, dsc_last_error());
    task_source_free(&tp->train);
    if (tp->eval_owned) task_source_free(&tp->eval);
    return 1;
}

static void free_tasks(task_pair *tp) {
    task_source_free(&tp->train);
    if (tp->eval_owned) task_source_free(&tp->eval);
}

static void print_sample(const char *s) {
    printf("  sample: ");
    for (const char *c = s; *c; c++) {
        if (*c == '\n') printf("\n          ");
        else putchar(*c);
    }
    printf("\n");
}

typedef struct {
    long log_every;
} progress_ctx;

static void on_progress(const grpo_progress *p, void *user) {
    progress_ctx *ctx = user;
    char el[32], eta[32];
    progress_fmt_time(el, sizeof el, p->elapsed_s);
    progress_fmt_time(eta, sizeof eta, p->eta_s);
    if (p->is_eval) {
        char pass1[64] = "";
        if (p->eval_pass1 >= 0) snprintf(pass1, sizeof pass1, ", pass@1 %.1f%% (%d samples)", 100 * p->eval_pass1, p->eval_samples);
        printf("step %5ld/%ld | held-out accuracy %.1f%% (greedy, %d problems)%s | format %.1f%% | length %.1f | %s\n",
               p->step, p->total_steps, 100 * p->eval_accuracy, p->eval_n, pass1, 100 * p->eval_format, p->eval_length, el);
        if (p->eval_sample) print_sample(p->eval_sample);
        fflush(stdout);
        return;
    }
    if (p->step % ctx->log_every != 0 && p->step != p->total_steps && p->step != 1) return;
    printf("step %5ld/%ld | reward %.3f acc %.1f%% fmt %.1f%% len %.0f | groups %d/%d | kl %.4f clip %.3f ent %.2f "
           "|g| %.2f | rollout %.0f tok/s (%.1f rows) update %.0f tok/s | %s | ETA %s\n",
           p->step, p->total_steps, p->reward, 100 * p->accuracy, 100 * p->format, p->length, p->groups_kept,
           p->groups_sampled, p->kl, p->clip_frac, p->entropy, p->grad_norm, p->rollout_tok_s, p->mean_rows,
           p->update_tok_s, el, eta);
    fflush(stdout);
}

int cmd_grpo(int argc, char **argv) {
    arg_option opts[] = {
        {"model", true, "the starting model (a model directory or a training checkpoint)", NULL},
        {"out", true, "output directory: checkpoints, metrics.jsonl, grpo.svg", NULL},
        TASK_OPTIONS,
        {"steps", true, "RL steps (default 100)", NULL},
        {"time-limit", true, "stop after this many minutes, saving a checkpoint", NULL},
        {"prompts", true, "prompts (groups) per step (default 8)", NULL},
        {"group", true, "completions per prompt, G (default 8)", NULL},
        {"temperature", true, "rollout sampling temperature (default 1)", NULL},
        {"top-p", true, "rollout nucleus sampling (default 1: off)", NULL},
        {"minibatches", true, "optimizer steps per rollout batch, mu (default 1)", NULL},
        {"micro", true, "sequences per forward/backward pass (default 16)", NULL},
        {"eps-low", true, "ratio clip below: 1 - eps_low (default 0.2)", NULL},
        {"eps-high", true, "ratio clip above: 1 + eps_high (default 0.28, DAPO clip-higher; 0.2 for GRPO)", NULL},
        {"beta", true, "KL coefficient to the starting model, k3 estimator (default 0: no reference model)", NULL},
        {"agg", true, "loss aggregation: token (DAPO, default), sequence (GRPO) or constant (Dr. GRPO)", NULL},
        {"no-std", false, "advantages not divided by the group's std (Dr. GRPO)", NULL},
        {"no-dynamic-sampling", false, "keep groups whose rewards are all equal", NULL},
        {"max-rounds", true, "sampling rounds per step to fill the batch with informative groups (default 3)", NULL},
        {"lr", true, "learning rate (default 1e-4; constant after warm-up)", NULL},
        {"warmup", true, "linear warm-up steps (default 5)", NULL},
        {"weight-decay", true, "AdamW decoupled weight decay (default 0)", NULL},
        {"clip", true, "global gradient-norm clip (default 1)", NULL},
        {"bias-update", true, "expert-bias update speed during RL (default 0: routing bias frozen)", NULL},
        {"eval-every", true, "held-out accuracy every N steps (default 10)", NULL},
        {"eval-n", true, "held-out problems per evaluation (default 200)", NULL},
        {"eval-samples", true, "also pass@1 at --temperature over K samples a problem (default 0: greedy only)", NULL},
        {"save-every", true, "checkpoint every N steps (default 20)", NULL},
        {"keep", true, "checkpoints to keep (default 3)", NULL},
        {"log-every", true, "progress line every N steps (default 1)", NULL},
        {"seed", true, "sampling seed (default 1)", NULL},
        {"resume", false, "continue from the newest checkpoint in --out", NULL},
        {NULL, false, NULL, NULL}};
    int rc = args_parse(argc, argv, opts, "usage: dsc grpo --model DIR --out DIR [--task arithmetic|countdown|jsonl] [options]");
    if (rc) return rc == 2 ? 0 : 2;
    grpo_options o;
    grpo_options_default(&o);
    o.model_dir = args_get(opts, "model");
    o.out_dir = args_get(opts, "out");
    if (!o.model_dir || !o.out_dir) {
        fprintf(stderr, "dsc grpo: --model and --out are required\n");
        return 2;
    }
    progress_ctx ctx = {1};
    ARGS_INT_FIELD(opts, "steps", o.steps, 1, 1000000000);
    ARGS_INT_FIELD(opts, "prompts", o.prompts, 1, 4096);
    ARGS_INT_FIELD(opts, "group", o.group, 2, 1024);
    ARGS_INT_FIELD(opts, "minibatches", o.minibatches, 1, 4096);
    ARGS_INT_FIELD(opts, "micro", o.micro, 1, 4096);
    ARGS_INT_FIELD(opts, "max-rounds", o.max_rounds, 1, 100);
    ARGS_INT_FIELD(opts, "warmup", o.warmup, 0, 1000000000);
    ARGS_INT_FIELD(opts, "eval-every", o.eval_every, 0, 1000000000);
    ARGS_INT_FIELD(opts, "eval-n", o.eval_n, 1, 1000000);
    ARGS_INT_FIELD(opts, "eval-samples", o.eval_samples, 0, 1024);
    ARGS_INT_FIELD(opts, "save-every", o.save_every, 0, 1000000000);
    ARGS_INT_FIELD(opts, "keep", o.keep, 0, 100000);
    ARGS_INT_FIELD(opts, "seed", o.seed, 0, (long long)1 << 62);
    ARGS_INT_FIELD(opts, "log-every", ctx.log_every, 1, 1000000000);
    double x;
#define FLOAT_OPT(name, field, lo, hi)                                                                                 \
    do {                                                                                                               \
        if (!args_float(opts, name, (double)(field), lo, hi, &x)) return 2;                                            \
        field = (float)x;                                                                                              \
    } while (0)
    FLOAT_OPT("temperature", o.temperature, 0.01, 10);
    FLOAT_OPT("top-p", o.top_p, 0.01, 1);
    FLOAT_OPT("eps-low", o.loss.eps_low, 0, 1);
    FLOAT_OPT("eps-high", o.loss.eps_high, 0, 100);
    FLOAT_OPT("beta", o.loss.beta, 0, 100);
    FLOAT_OPT("lr", o.lr, 0, 10);
    FLOAT_OPT("weight-decay", o.weight_decay, 0, 10);
    FLOAT_OPT("clip", o.clip, 0, 1e9);
    FLOAT_OPT("bias-update", o.bias_update, 0, 1);
#undef FLOAT_OPT
    if (!args_float(opts, "time-limit", 0, 0, 1e9, &x)) return 2;
    o.time_limit_s = x * 60;
    const char *agg = args_get(opts, "agg");
    if (agg) {
        if (!strcmp(agg, "token")) o.loss.agg = GRPO_AGG_TOKEN;
        else if (!strcmp(agg, "sequence")) o.loss.agg = GRPO_AGG_SEQUENCE;
        else if (!strcmp(agg, "constant")) o.loss.agg = GRPO_AGG_CONSTANT;
        else {
            fprintf(stderr, "dsc grpo: option --agg: expected token, sequence or constant, found '%s'\n", agg);
            return 2;
        }
    }
    o.scale_std = args_get(opts, "no-std") == NULL;
    o.dynamic_sampling = args_get(opts, "no-dynamic-sampling") == NULL;
    o.resume = args_get(opts, "resume") != NULL;
    o.tokenizer_path = args_get(opts, "tokenizer");
    task_pair tp;
    if ((rc = parse_tasks(opts, "grpo", &tp, &o.reward, &o.max_new_tokens, &o.max_prompt_tokens))) return rc;
    o.loss.max_len = o.max_new_tokens;
    o.train = &tp.train;
    o.eval = &tp.eval;

    volatile sig_atomic_t *stop = progress_catch_stop();
    printf("dsc grpo: %s from %s, %ld steps of %d prompts x %d completions (<= %d tokens), lr %g, beta %g, "
           "clip [%g, %g], %s aggregation%s\n",
           task_source_name(&tp.train), o.model_dir, o.steps, o.prompts, o.group, o.max_new_tokens, o.lr, o.loss.beta,
           1 - o.loss.eps_low, 1 + o.loss.eps_high,
           o.loss.agg == GRPO_AGG_TOKEN ? "token" : o.loss.agg == GRPO_AGG_SEQUENCE ? "sequence" : "constant",
           o.resume ? " (resuming)" : "");
    fflush(stdout);
    grpo_summary s;
    rc = grpo_run(&o, on_progress, &ctx, stop, &s);
    free_tasks(&tp);
    if (rc) {
        fprintf(stderr, "dsc grpo: %s\n", dsc_last_error());
        return 1;
    }
    char el[32];
    progress_fmt_time(el, sizeof el, s.elapsed_s);
    if (isfinite(s.first_eval_accuracy))
        printf("%s after %ld steps (%s): held-out accuracy %.1f%% -> %.1f%%, format %.1f%% -> %.1f%%\n",
               s.interrupted ? "stopped" : "done", s.steps_done, el, 100 * s.first_eval_accuracy,
               100 * s.last_eval_accuracy, 100 * s.first_eval_format, 100 * s.last_eval_format);
    else
        printf("%s after %ld steps (%s): held-out accuracy %.1f%%, format %.1f%%\n",
               s.interrupted ? "stopped" : "done", s.steps_done, el, 100 * s.last_eval_accuracy,
               100 * s.last_eval_format);
    printf("checkpoint %s; metrics %s/metrics.jsonl; plot %s/grpo.svg\n", s.checkpoint, o.out_dir, o.out_dir);
    return 0;
}

int cmd_eval(int argc, char **argv) {
    arg_option opts[] = {
        {"model", true, "model directory or training run (its newest checkpoint)", NULL},
        TASK_OPTIONS,
        {"n", true, "held-out problems (default 200)", NULL},
        {"temperature", true, "0: greedy (default); else pass@1 of --samples samples a problem at it", NULL},
        {"samples", true, "samples a problem when --temperature > 0 (default 4)", NULL},
        {"seed", true, "sampling seed (default 1)", NULL},
        {"split", true, "heldout (default) or train", NULL},
        {"dump", true, "write every completion to this JSONL file (prompt, answer, completion, correct, ...)", NULL},
        {NULL, false, NULL, NULL}};
    int rc = args_parse(argc, argv, opts, "usage: dsc eval --model DIR [--task arithmetic|countdown|jsonl] [options]");
    if (rc) return rc == 2 ? 0 : 2;
    const char *model = args_get(opts, "model");
    if (!model) {
        fprintf(stderr, "dsc eval: --model is required\n");
        return 2;
    }
    long long n, samples, seed;
    double temp;
    if (!args_int(opts, "n", 200, 1, 1000000, &n) || !args_int(opts, "samples", 4, 1, 1024, &samples) ||
        !args_int(opts, "seed", 1, 0, (long long)1 << 62, &seed) || !args_float(opts, "temperature", 0, 0, 10, &temp))
        return 2;
    const char *split = args_get(opts, "split");
    if (split && strcmp(split, "heldout") && strcmp(split, "train")) {
        fprintf(stderr, "dsc eval: option --split: expected heldout or train, found '%s'\n", split);
        return 2;
    }
    reward_options ro;
    reward_default_options(&ro);
    grpo_options lim; /* the same length limits as the rollouts of `dsc grpo` */
    grpo_options_default(&lim);
    int max_new = lim.max_new_tokens, max_prompt = lim.max_prompt_tokens;
    task_pair tp;
    if ((rc = parse_tasks(opts, "eval", &tp, &ro, &max_new, &max_prompt))) return rc;
    dsc_model *m = NULL;
    dsc_tokenizer *tok = NULL;
    char tpath[8500], mdir[4200];
    const char *tp_opt = args_get(opts, "tokenizer");
    eval_result er;
    char sample[2048];
    bool train_split = split && !strcmp(split, "train");
    const char *dump_path = args_get(opts, "dump");
    FILE *dump = NULL;
    if (dump_path && !(dump = fopen(dump_path, "w"))) {
        fprintf(stderr, "dsc eval: cannot write %s: %s\n", dump_path, strerror(errno));
        free_tasks(&tp);
        return 1;
    }
    const task_source *src = train_split ? &tp.train : &tp.eval;
    rc = 1;
    if (ckpt_resolve_model(model, mdir, sizeof mdir) == DSC_OK)
        snprintf(tpath, sizeof tpath, "%s/tokenizer.json", mdir);
    if (ckpt_resolve_model(model, mdir, sizeof mdir) || dsc_model_load(mdir, &m) ||
        dsc_tokenizer_load(tp_opt ? tp_opt : tpath, &tok) ||
        grpo_evaluate(m, tok, src,
                      &(eval_options){src->builtin && !train_split ? DSC_SPLIT_HELDOUT : DSC_SPLIT_TRAIN, (int)n,
                                      max_new, max_prompt, (float)temp, (int)samples, (uint64_t)seed, dump},
                      &ro, &er, sample, sizeof sample)) {
        fprintf(stderr, "dsc eval: %s\n", dsc_last_error());
    } else {
        char how[64];
        if (temp > 0) snprintf(how, sizeof how, "pass@1 of %d samples at temperature %g", er.samples, temp);
        else snprintf(how, sizeof how, "greedy");
        printf("%s, %s split, %d problems (%s, <= %d tokens): accuracy %.1f%%, format %.1f%%, finished %.1f%%, "
               "mean length %.1f tokens, %.0f tokens/s\n",
               task_source_name(src), train_split ? "train" : "held-out", er.n, how, max_new, 100 * er.accuracy,
               100 * er.format, 100 * er.finished, er.length, er.tok_s);
        print_sample(sample);
        rc = 0;
    }
    if (dump && fclose(dump) && rc == 0) {
        fprintf(stderr, "dsc eval: cannot write %s: %s\n", dump_path, strerror(errno));
        rc = 1;
    }
    dsc_model_free(m);
    dsc_tokenizer_free(tok);
    free_tasks(&tp);
    return rc;
}
