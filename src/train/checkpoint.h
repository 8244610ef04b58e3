/* checkpoint.h: training checkpoints that survive any crash. A checkpoint is a directory
 * OUT/step-00001234/ with config.json + model.safetensors (the weights, HF names),
 * optimizer.safetensors (AdamW moments), state.json (step, data-loader position, timing,
 * hyperparameters) and a copy of the tokenizer. It is written into a hidden temporary directory,
 * every file fsynced, then renamed into place and the parent fsynced: a process killed at any
 * moment leaves either the previous checkpoints or the new one complete, never a damaged one.
 * Only the newest `keep` are kept. */
#ifndef DSC_TRAIN_CHECKPOINT_H
#define DSC_TRAIN_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "data/data.h"
#include "dsc.h"
#include "train/adamw.h"

typedef struct {
    long step;                 /* optimizer steps completed */
    uint64_t tokens;           /* training tokens consumed */
    double elapsed;            /* seconds of training so far */
    dsc_loader_state loader;   /* where the training stream continues */
    uint64_t tokenizer_hash;   /* of the data the run trains on (0: none) */
} ckpt_state;

/* Saves a checkpoint under root (created if needed). hparams_json is stored verbatim in
 * state.json under "hparams" (may be NULL); tokenizer_path, if not NULL, is copied. Keeps the
 * newest `keep` checkpoints (keep <= 0: all) and removes temporaries of killed saves. */
dsc_status ckpt_save(const char *root, const dsc_model *m, adamw *opt, const ckpt_state *st,
                     const char *hparams_json, const char *tokenizer_path, int keep);

/* Finds the newest complete checkpoint under root; writes its path. Error if none. */
dsc_status ckpt_latest(const char *root, char *dir, size_t cap);

/* A model directory holds config.json; any other directory is a training run: its newest
 * checkpoint. Writes the directory to use into out; an error names dir when it is neither. */
dsc_status ckpt_resolve_model(const char *dir, char *out, size_t cap);
/* Loads a checkpoint directory: the model, the optimizer (created here) and the state.
 * *hparams_json receives a malloc'ed copy of the stored hyperparameters (or NULL). */
dsc_status ckpt_load(const char *dir, dsc_model **m, adamw **opt, ckpt_state *st, char **hparams_json);

#endif
