/* grpo.h: reinforcement learning with GRPO (DeepSeekMath; the DeepSeek-R1-Zero recipe): the loop of
 * `dsc grpo`. One step: P prompts from the task source, G completions each sampled with the
 * batched inference engine over the current weights; rule-based rewards; group-normalised
 * advantages; groups whose rewards are all equal dropped and refilled (DAPO's dynamic sampling);
 * then μ optimizer steps over minibatches of the rollouts with the clipped-ratio objective and the
 * k3 KL to the frozen starting model (grpo_loss.h). Around it: greedy accuracy on the held-out set,
 * metrics, checkpoints and resume (as pretraining), and a plot. Nothing prints: a callback. */
#ifndef DSC_TRAIN_GRPO_H
#define DSC_TRAIN_GRPO_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "dsc.h"
#include "train/grpo_loss.h"
#include "tok/tokenizer.h"
#include "train/tasks.h"

typedef struct {
    const char *model_dir;       /* the starting policy: a model directory or checkpoint */
    const char *tokenizer_path;  /* default: model_dir/tokenizer.json */
    const char *out_dir;         /* checkpoints step-*, metrics.jsonl, grpo.svg */
    const task_source *train;    /* rollout problems (the train split) */
    const task_source *eval;     /* held-out problems (a built-in source's held-out split) */
    reward_options reward;
    int prompts;                 /* groups per step (P) */
    int group;                   /* completions per prompt (G) */
    int max_new_tokens;          /* completion length limit */
    int max_prompt_tokens;       /* prompts longer than this are an error */
    float temperature, top_p;    /* rollout sampling (1, 1: the policy itself) */
    int minibatches;             /* optimizer steps per rollout batch (μ): 1 keeps the ratio at 1 */
    int micro;                   /* sequences per forward/backward pass (memory) */
    grpo_loss_options loss;
    bool scale_std;              /* divide advantages by the group's std (false: Dr. GRPO) */
    bool dynamic_sampling;       /* drop all-equal groups and sample more prompts (DAPO) */
    int max_rounds;              /* sampling rounds per step when refilling */
    float lr, weight_decay, beta1, beta2, eps, clip;
    int warmup;                  /* linear warm-up steps, then constant */
    float bias_update;           /* aux-loss-free expert-bias speed during RL (0: routing bias frozen:
                                  * one task's tokens would otherwise drift it every step) */
    long steps;
    double time_limit_s;         /* stop (and save) after this much time; 0: none */
    long eval_every;             /* held-out accuracy every N steps (and at 0 and the end); 0: ends */
    int eval_n;                  /* held-out problems evaluated (greedy) */
    int eval_samples;            /* also pass@1 at the rollout temperature over this many samples a
                                  * problem (0: greedy only) */
    long save_every;             /* checkpoint every N steps (and at the end, and on stop) */
    int keep;
    uint64_t seed;
    bool resume;
} grpo_options;

void grpo_options_default(grpo_options *o);

typedef struct {
    long step, total_steps;
    bool is_eval;                /* an evaluation report (eval_* set) */
    /* rollouts of this step (every sampled group, before filtering) */
    double reward, accuracy, format, length, finished;
    int groups_sampled, groups_kept, rounds;
    /* updates */
    double loss, kl, clip_frac, entropy, grad_norm, lr, ratio;
    double nll;                  /* mean −log π of the sampled completion tokens */
    double rollout_tok_s, decode_tok_s, update_tok_s, rollout_s, update_s, mean_rows;
    double elapsed_s, eta_s;
    /* evaluation */
    double eval_accuracy, eval_format, eval_length;
    double eval_pass1;           /* sampled pass@1 (-1: not measured) */
    int eval_n, eval_samples;
    const char *eval_sample;     /* the first held-out problem's prompt and greedy completion */
} grpo_progress;

typedef void (*grpo_callback)(const grpo_progress *p, void *user);

typedef struct {
    long steps_done;
    double elapsed_s;
    double first_eval_accuracy, last_eval_accuracy;
    double first_eval_format, last_eval_format;
    bool interrupted;
    char checkpoint[4096];
} grpo_summary;

dsc_status grpo_run(const grpo_options *o, grpo_callback cb, void *user, volatile sig_atomic_t *stop,
                    grpo_summary *summary);

/* Accuracy of a model on n problems of a source's split with the batched engine: greedy
 * (temperature 0), or pass@1 over `samples` samples a problem at a temperature (as DeepSeek-R1
 * reports it). What `dsc grpo` evaluates, and `dsc eval`. sample (may be NULL, cap bytes)
 * receives the first problem's prompt and completion; dump (may be NULL) one JSON line per
 * completion: prompt, answer, completion, correct, formatted, finished. */
typedef struct {
    dsc_split split;
    int n;
    int max_new_tokens, max_prompt_tokens;
    float temperature;
    int samples;
    uint64_t seed;
    FILE *dump;
} eval_options;
typedef struct {
    double accuracy, format, length, finished;
    double tok_s;                /* generated tokens per second */
    int n, samples;
} eval_result;
dsc_status grpo_evaluate(dsc_model *m, const dsc_tokenizer *tok, const task_source *src, const eval_options *eo,
                         const reward_options *ro, eval_result *out, char *sample, size_t cap);

#endif
