/* synthopts.h: the options that shape generated problems (data synth, grpo, eval): operand digits
 * for arithmetic; count, size and target range of the numbers for countdown. */
#ifndef DSC_CLI_SYNTHOPTS_H
#define DSC_CLI_SYNTHOPTS_H

#include "cli/args.h"
#include "data/synth.h"

/* Rows of an arg_option table. */
#define SYNTH_OPTIONS                                                                                                  \
    {"max-digits", true, "arithmetic: operands have 1..D digits (at most 18)", NULL},                                  \
        {"min-numbers", true, "countdown: at least this many numbers (default 3)", NULL},                              \
        {"max-numbers", true, "countdown: at most this many numbers (at most 6)", NULL},                               \
        {"max-number", true, "countdown: numbers in [1, N] (default 100)", NULL},                                      \
        {"max-target", true, "countdown: targets in [10, N] (default 999)", NULL}

/* Reads those options into so, whose current values are the defaults. False (with a message)
 * on a bad value. */
bool synth_options_parse(const arg_option *opts, dsc_synth_options *so);

#endif
