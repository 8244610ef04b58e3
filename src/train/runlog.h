/* runlog.h: what the training loops (pretraining, SFT) share besides checkpoints: a monotonic
 * clock, metrics.jsonl rewound to a checkpoint on resume, the loss plot drawn from it, and the
 * check that a resumed run asks for the hyperparameters that decide its data stream. */
#ifndef DSC_TRAIN_RUNLOG_H
#define DSC_TRAIN_RUNLOG_H

#include "dsc.h"

/* Seconds on a monotonic clock. */
double runlog_now(void);

/* Keeps the lines of a metrics.jsonl whose "step" is <= last_step (a resumed run rewrites the
 * rest). A missing file is fine. */
dsc_status runlog_truncate(const char *metrics_path, long last_step);

/* metrics.jsonl -> an SVG: the "ce" of every step line (train_label), its moving average, the
 * "val_loss" of every validation line (val_label) and, if finite, a horizontal baseline. */
dsc_status runlog_plot(const char *metrics_path, const char *svg_path, const char *title, const char *train_label,
                       const char *val_label, double baseline, const char *baseline_label);

/* On resume: each of keys (NULL-terminated) must have the same value in the stored and the current
 * hyperparameters (JSON objects; a key absent from either, or unparsable JSON, is not checked).
 * The error names dir, the key and both values. */
dsc_status runlog_check_resume(const char *stored_json, const char *current_json, const char *const *keys,
                               const char *dir);

#endif
