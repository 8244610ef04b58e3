/* sft.h: supervised fine-tuning on chat data (DeepSeek-R1's cold start; distilling reasoning
 * traces into a smaller model): the loop of `dsc sft`. Conversations come from JSONL, are
 * rendered with DeepSeek's chat template and tokenized piece by piece so that exactly the
 * assistant turns (content and end-of-sentence token) are targets; everything else is context
 * (target -1). Batches are shuffled per epoch by seed and padded to their longest conversation;
 * with a token budget, conversations of like length are batched together (far less padding).
 * Around it: AdamW with the pretraining schedules, validation loss on assistant tokens,
 * metrics.jsonl, loss.svg and checkpoints with exact resume, as pretraining (trainer.h) does.
 * Nothing prints: progress goes to a callback. Format and options: docs/TRAINING.md. */
#ifndef DSC_TRAIN_SFT_H
#define DSC_TRAIN_SFT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsc.h"
#include "tok/tokenizer.h"
#include "train/schedule.h"

/* ---------------------------------------------------------------------------------------------
 * Data. One conversation per JSONL line, either
 *   {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
 * or a problem {"prompt", "answer"[, "reasoning"]} (other fields ignored), which is the turns
 * user = prompt, assistant = "<think>\n{reasoning}\n</think>\n{answer}" (just the answer without
 * reasoning). Rendering (DeepSeek-V3/R1):
 *   <｜begin▁of▁sentence｜>{system texts, joined by "\n\n"}
 *   <｜User｜>{content}                                   each user turn
 *   <｜Assistant｜>{content}<｜end▁of▁sentence｜>           each assistant turn
 * Every piece is encoded on its own (special-token text in contents is parsed, as `dsc data
 * prepare` does); the special tokens are put in by id. Targets: the tokens of each assistant
 * content and its end-of-sentence token.
 * ------------------------------------------------------------------------------------------- */
typedef enum { SFT_TRUNCATE = 0, SFT_SKIP = 1 } sft_long_policy;

typedef struct {
    int n;                  /* conversations */
    int64_t *off;           /* [n+1] where conversation i starts in tok/mask */
    int32_t *tok;           /* [off[n]] the rendered conversations, back to back */
    uint8_t *mask;          /* [off[n]] 1: an assistant token (a target where it is predicted) */
    int *line;              /* [n] its line in the file (1-based) */
    uint64_t *hash;         /* [n] FNV-1a 64 of the line's bytes (decides the validation split) */
    int truncated, skipped; /* conversations longer than the limit: cut, or left out */
    int64_t tokens, targets;/* over the kept conversations: tokens, and tokens counted by the loss */
    uint64_t file_hash;     /* FNV-1a 64 of the whole file */
} sft_data;

/* One line's conversation -> malloc'ed tokens and mask. Errors name the field
 * ("field \"messages[2].role\": ..."), not the file. */
dsc_status sft_encode_line(const dsc_tokenizer *tk, const char *line, size_t len, int32_t **tok, uint8_t **mask,
                           size_t *n);

/* Reads a JSONL file. Conversations of more than max_tokens tokens are cut to max_tokens
 * (SFT_TRUNCATE; left out if no target remains) or left out (SFT_SKIP); both are counted. Blank
 * lines are ignored. Errors: "FILE:LINE: field ...: ...", or the file is empty / nothing fits. */
dsc_status sft_data_load(const char *path, const dsc_tokenizer *tk, int max_tokens, sft_long_policy policy,
                         sft_data **out);
/* Splits off a validation set: a conversation is held out iff a hash of its line's bytes, as a
 * fraction of 2^64, is below frac (identical lines share a side; independent of any seed). With
 * frac > 0, at least one conversation is held out and at least one kept. */
dsc_status sft_data_split(const sft_data *d, double frac, sft_data **train, sft_data **val);
void sft_data_free(sft_data *d);

/* Conversations idx[0..B) as one batch padded to their longest (inputs n-1 tokens each): tokens
 * and targets [B*T] (padding: token pad, target -1); returns T. Buffers hold B*max_len. */
int sft_batch(const sft_data *d, const int *idx, int B, int32_t pad, int32_t *tokens, int32_t *targets);

/* ---------------------------------------------------------------------------------------------
 * Training.
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    const char *model_dir;      /* the model: a directory with config.json, or a training --out
                                 * directory (its newest checkpoint); not needed with resume */
    const char *tokenizer_path; /* default: the model's (or resumed checkpoint's) tokenizer.json */
    const char *data_path;      /* training conversations (JSONL) */
    const char *val_path;       /* validation conversations; NULL: split val_fraction off data */
    double val_fraction;        /* 0: no validation */
    const char *out_dir;        /* checkpoints step-*, metrics.jsonl, loss.svg */
    sft_long_policy too_long;
    int batch, seq;             /* conversations per step; longest input (tokens per conversation - 1) */
    int batch_tokens;           /* > 0: instead of `batch` conversations, batches grouped by length of at most
                                 * this many padded tokens (rows x longest); `batch` then sizes the
                                 * validation batches only */
    long steps;                 /* optimizer steps in total (the schedule's length) */
    double time_limit_s;        /* stop (and save) after this much training time; 0: none */
    lr_schedule schedule;       /* lr, min_lr, warmup; total is set to steps */
    float weight_decay, beta1, beta2, eps, clip;
    long eval_every;            /* validation every N steps (also at 0 and at the end); 0: ends only */
    int eval_batches;           /* validation batches of `batch` conversations; 0: the whole set */
    long save_every;            /* checkpoint every N steps (and at the end, and on stop); 0: end only */
    int keep;                   /* checkpoints kept */
    uint64_t seed;              /* the order of the conversations */
    bool resume;                /* continue from the newest checkpoint in out_dir */
    const char *dump_batches;   /* optional: append each step's B, T (int32) then tokens and targets (int32) */
} sft_options;

void sft_options_default(sft_options *o);

typedef enum { SFT_EVENT_DATA = 0, SFT_EVENT_STEP = 1, SFT_EVENT_EVAL = 2 } sft_event;

typedef struct {
    sft_event event;
    long step, total_steps;     /* the step just finished (1-based); evaluation at 0 before training */
    /* SFT_EVENT_STEP: total loss (ce + MTP + balance terms), ce: the cross-entropy of the assistant
     * tokens, the step's assistant tokens (targets) and padded length */
    float loss, ce, mtp, balance, lr, grad_norm;
    int64_t targets;
    int rows, seq_len;          /* conversations in the batch, padded length */
    double epoch;               /* conversations consumed / training conversations */
    double tokens_per_s, elapsed_s, eta_s;
    uint64_t tokens;            /* non-padding input tokens so far */
    /* SFT_EVENT_EVAL */
    float val_loss;             /* mean cross-entropy over the validation set's assistant tokens */
    int64_t val_targets;
    /* SFT_EVENT_DATA (once, before training) */
    const char *model;          /* where the weights came from */
    int n_train, n_val, truncated, skipped;
    int64_t train_tokens, train_targets;
} sft_progress;

typedef void (*sft_callback)(const sft_progress *p, void *user);

typedef struct {
    long steps_done;
    uint64_t tokens;
    double elapsed_s;
    float final_loss;           /* assistant-token cross-entropy of the last step */
    float first_val_loss, final_val_loss; /* NaN without validation; first: at step 0 (fresh runs) */
    bool interrupted;           /* stopped by the flag or the time limit before `steps` */
    char checkpoint[4096];      /* the last checkpoint written */
} sft_summary;

/* Runs SFT. stop (may be NULL) is polled after every step: when it becomes non-zero the loop saves
 * a checkpoint and returns. */
dsc_status sft_run(const sft_options *o, sft_callback cb, void *user, volatile sig_atomic_t *stop,
                   sft_summary *summary);

#endif
