/* trainer.h: pretraining: the loop of `dsc train`. Reads prepared shards (data/data.h), runs
 * forward + backward with gradient accumulation, AdamW with clipping and an LR schedule, the
 * aux-loss-free expert-bias update, periodic validation, checkpoints (and resume that continues
 * bit for bit), metrics as JSONL and a loss plot. Progress goes to a callback; nothing prints. */
#ifndef DSC_TRAIN_TRAINER_H
#define DSC_TRAIN_TRAINER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "dsc.h"
#include "train/schedule.h"

typedef struct {
    const char *data_dir;       /* train.bin, val.bin (and tokenizer.json) from `dsc data prepare` */
    const char *tokenizer_path; /* copied into checkpoints; default data_dir/tokenizer.json if present */
    const char *out_dir;        /* checkpoints step-*, metrics.jsonl, loss.svg */
    dsc_config config;          /* the model (ignored when resuming: the checkpoint's config is used) */
    int batch, seq, accum;      /* sequences per micro-batch, tokens per sequence, micro-batches per step */
    long steps;                 /* optimizer steps in total (the schedule's length) */
    double time_limit_s;        /* stop (and save) after this much training time; 0: none */
    lr_schedule schedule;       /* lr, min_lr, warmup; total is set to steps */
    float weight_decay, beta1, beta2, eps, clip;
    long eval_every;            /* validation every N steps (and at the end); 0: only at the end */
    int eval_batches;           /* validation batches of `batch` sequences */
    long save_every;            /* checkpoint every N steps (and at the end, and on stop); 0: end only */
    int keep;                   /* checkpoints kept */
    uint64_t seed;              /* model init and data order */
    bool resume;                /* continue from the newest checkpoint in out_dir */
    bool save_initial;          /* also checkpoint the initial weights (step 0) of a fresh run */
    const char *dump_batches;   /* optional: append every step's tokens and targets (int32) here */
} train_options;

/* Fills the defaults (the `small` preset schedule; data_dir/out_dir left NULL). */
void train_options_default(train_options *o);
/* Sets o->config.vocab_size to the vocabulary of data_dir/train.bin (a preset's vocabulary
 * follows the tokenizer the data was made with). */
dsc_status train_adopt_data_vocab(train_options *o);

typedef struct {
    long step, total_steps;     /* the step just finished (1-based) */
    bool is_eval;               /* a validation report (val_loss set) */
    float loss, ce, mtp, balance, lr, grad_norm, val_loss;
    double tokens_per_s, elapsed_s, eta_s;
    double load_ratio;          /* max over MoE blocks of max/min tokens per expert since the last report */
    uint64_t tokens;
} train_progress;

typedef void (*train_callback)(const train_progress *p, void *user);

typedef struct {
    long steps_done;
    uint64_t tokens;
    double elapsed_s;
    float final_loss, final_val_loss, unigram_loss; /* unigram_loss: entropy of the train tokens */
    int n_moe_blocks;
    double load_ratio[64];      /* per MoE block, max/min tokens per expert over the last window */
    bool interrupted;           /* stopped by the flag or the time limit before `steps` */
    char checkpoint[4096];      /* the last checkpoint written */
} train_summary;

/* Runs training. stop (may be NULL) is polled after every step: when it becomes non-zero the
 * trainer saves a checkpoint and returns. */
dsc_status train_run(const train_options *o, train_callback cb, void *user, volatile sig_atomic_t *stop,
                     train_summary *summary);

#endif
