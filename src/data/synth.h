/* synth.h: generated reasoning problems (seeded, unlimited, no download): multi-digit arithmetic
 * and countdown, each with a prompt, worked steps and the answer; DeepSeek's chat rendering; JSONL
 * export and import; and the rule-based checkers that grade a model's response (SFT cold start,
 * evaluation and the GRPO reward all use this one API). Exact rules: docs/DATA.md. */
#ifndef DSC_DATA_SYNTH_H
#define DSC_DATA_SYNTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsc.h"

typedef enum { DSC_TASK_ARITHMETIC = 0, DSC_TASK_COUNTDOWN = 1 } dsc_task;

/* Every problem belongs to exactly one split, decided by its content alone: held out iff
 * dsc_synth_content_hash(problem) % 100 == 0. The train generator never returns a held-out
 * problem and the held-out generator returns nothing else, so the two sets are disjoint for
 * every pair of seeds (the same problem text always falls on the same side). */
typedef enum { DSC_SPLIT_TRAIN = 0, DSC_SPLIT_HELDOUT = 1 } dsc_split;
#define DSC_SYNTH_HELDOUT_MOD 100
/* The seed of the standard held-out sets, so accuracy figures compare across runs. */
#define DSC_SYNTH_HELDOUT_SEED 20250101ull

#define DSC_COUNTDOWN_MAX_NUMBERS 6

typedef struct {
    int max_digits;     /* arithmetic: each operand has 1..max_digits digits (default 8, at most 18) */
    int min_numbers;    /* countdown: how many numbers are given, min_numbers..max_numbers (3..6) */
    int max_numbers;
    int max_number;     /* countdown: given numbers lie in [1, max_number] (default 100) */
    int max_target;     /* countdown: targets lie in [10, max_target] (default 999) */
    int min_steps;      /* countdown: a shortest solution takes at least this many operations
                         * (default 2; 1 admits "a + b" problems), at most min_numbers - 1 */
} dsc_synth_options;
void dsc_synth_default_options(dsc_synth_options *o);

typedef struct {
    dsc_task task;
    char prompt[512];
    char reasoning[65536];  /* worked steps, without the <think> tags; "" for none */
    char answer[256];       /* the reference answer, exactly as rendered after </think> */
    /* what the checkers need beyond the answer (countdown) */
    int n_numbers;
    int64_t numbers[DSC_COUNTDOWN_MAX_NUMBERS];
    int64_t target;
} dsc_problem;

const char *dsc_task_name(dsc_task t);                    /* "arithmetic" | "countdown" */
dsc_status dsc_task_parse(const char *name, dsc_task *out);

/* Problem `index` of the stream (task, split, seed): a pure function of its arguments (random
 * access, same result on every machine). opt may be NULL for the defaults. */
dsc_status dsc_synth_generate(dsc_task task, dsc_split split, uint64_t seed, uint64_t index,
                              const dsc_synth_options *opt, dsc_problem *out);

/* FNV-1a 64 of the problem's canonical content: arithmetic "arithmetic:<a> <op> <b>", countdown
 * "countdown:<sorted numbers>:<target>" (so a reordering of the numbers is the same problem). */
uint64_t dsc_synth_content_hash(const dsc_problem *p);
bool dsc_synth_is_heldout(const dsc_problem *p);

/* DeepSeek's chat template (R1 style):
 *   <｜begin▁of▁sentence｜><｜User｜>{prompt}<｜Assistant｜><think>\n{reasoning}\n</think>\n{answer}<｜end▁of▁sentence｜>
 * Without reasoning (NULL or ""), the <think> block is left out. Tokenize with parse_special.
 * snprintf-style: returns the full length; writes at most cap bytes including the NUL. */
size_t dsc_chat_render(const char *prompt, const char *reasoning, const char *answer, char *buf, size_t cap);
size_t dsc_synth_render(const dsc_problem *p, char *buf, size_t cap);
/* The prompt alone as the model sees it before answering (for sampling and RL rollouts):
 *   <｜begin▁of▁sentence｜><｜User｜>{prompt}<｜Assistant｜><think>\n */
size_t dsc_synth_render_prompt(const dsc_problem *p, char *buf, size_t cap);

/* One JSONL line (no newline), malloc'ed: {"prompt","answer","checker","reasoning"} and, for
 * countdown, "numbers" and "target". */
dsc_status dsc_synth_to_json(const dsc_problem *p, char **line);
/* Reads such an object (a user's own problem): "checker", "prompt", "answer" required; "reasoning"
 * optional; countdown also needs "numbers" (1..6 integers) and "target". Errors name the field. */
dsc_status dsc_synth_from_json(const char *line, dsc_problem *out);

/* ---- checkers ----
 * The response is the model's completion after the prompt. If it contains "</think>", only the
 * text after the last "</think>" counts; a "<think>" without "</think>" is unfinished (wrong). A
 * trailing "<｜end▁of▁sentence｜>" and surrounding white space are ignored. Then:
 *   arithmetic  the rest must be one integer (optional '-', digits) equal to the answer;
 *   countdown   the rest must be an expression over integers with + - * / (also × ÷ −) and
 *               parentheses, optionally followed by "= <target>"; no unary minus; each literal
 *               must be one of the given numbers, each given number used at most once (a number
 *               given twice may appear twice; not all need be used); evaluated exactly over the
 *               rationals, it must equal the target. Division by zero, overflow of 64-bit
 *               rationals or nesting deeper than 64 make the answer wrong, never crash. */
typedef struct {
    bool correct;
    bool parsed;        /* the answer had the required form (a format reward may use this) */
    char reason[160];   /* why it is wrong ("" when correct) */
} dsc_check_result;
dsc_status dsc_synth_check(const dsc_problem *p, const char *response, dsc_check_result *out);

/* Exact rational value of an expression (the countdown grammar; allow_unary also admits '-'
 * before a factor). Literals are stored in lits (up to max_lits; *n_lits counts them all).
 * Returns false with a reason in err (division by zero, overflow, syntax). */
typedef struct {
    int64_t num, den;   /* den > 0, gcd(num, den) == 1 */
} dsc_rational;
bool dsc_expr_eval(const char *s, size_t len, bool allow_unary, dsc_rational *out, int64_t *lits, int max_lits,
                   int *n_lits, char *err, size_t err_cap);

#endif
