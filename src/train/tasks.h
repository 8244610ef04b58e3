/* tasks.h: where RL problems come from, and how a completion is rewarded. A task source is either
 * a built-in generator (arithmetic or countdown, seeded, with its fixed held-out split: see
 * data/synth.h) or a user's JSONL file of problems ({"prompt", "answer", "checker", ...}, the form
 * `dsc data synth` writes). Rewards are rule-based only, as in DeepSeek-R1: accuracy (the synth
 * checkers: the final answer parsed and checked exactly, countdown expressions evaluated over the
 * rationals) plus a format reward for reasoning inside <think>…</think> followed by an answer. */
#ifndef DSC_TRAIN_TASKS_H
#define DSC_TRAIN_TASKS_H

#include <stdbool.h>
#include <stdint.h>

#include "data/synth.h"

typedef struct {
    bool builtin;
    dsc_task task;                /* builtin */
    dsc_synth_options synth;
    uint64_t seed;
    char **lines;                 /* JSONL: the problems' lines, in file order, checked when read and
                                   * parsed again when drawn (a dsc_problem holds 64 KB of worked steps) */
    int n_items;
} task_source;

dsc_status task_source_builtin(task_source *s, dsc_task task, const dsc_synth_options *opt, uint64_t seed);
/* Reads a JSONL file of problems; errors name the file and line. */
dsc_status task_source_jsonl(task_source *s, const char *path);
void task_source_free(task_source *s);
/* Problem `index`: a built-in source draws it from (split, seed); a file source returns line
 * index % n (the split is the file's: train and evaluation come from different files). */
dsc_status task_source_get(const task_source *s, dsc_split split, uint64_t index, dsc_problem *out);
/* "arithmetic", "countdown" or "jsonl:PATH" for logs. */
const char *task_source_name(const task_source *s);

typedef struct {
    float accuracy;               /* reward of a correct answer (1) */
    float format;                 /* reward of a well-formed completion (0.1) */
} reward_options;
void reward_default_options(reward_options *o);

typedef struct {
    float reward;
    bool correct;                 /* the checker accepted the answer */
    bool formatted;               /* <think> reasoning </think> answer, finished by EOS */
    bool finished;
} reward_result;

/* Scores a completion: the text generated after the prompt (which ends with "<think>\n", so the
 * completion continues the reasoning), finished when the model emitted its end-of-sentence token
 * (the text may then end with it). Well-formed means: finished, exactly one "</think>", no
 * further "<think>", some non-blank reasoning before it and a non-blank answer after it. Correct
 * means finished, with a "</think>" (the prompt opened the reasoning, so an answer can only follow
 * its end), and the text after the last one accepted by the checker. A completion cut at the
 * length limit is neither. */
dsc_status reward_score(const reward_options *o, const dsc_problem *p, const char *completion, bool finished,
                        reward_result *out);

#endif
