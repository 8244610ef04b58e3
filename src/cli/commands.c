/* commands.c: the subcommand table. */
#include <stddef.h>

#include "cli/commands.h"

const dsc_command dsc_commands[] = {
    {"info", cmd_info},
    {"init", cmd_init},
    {"forward", cmd_forward},
    {"data", cmd_data},
    {"tokenizer", cmd_tokenizer},
    {"tokenize", cmd_tokenize},
    {"train", cmd_train},
    {"sample", cmd_sample},
    {"generate", cmd_generate},
    {"chat", cmd_chat},
    {"export", cmd_export},
    {"quantize", cmd_quantize},
    {"grpo", cmd_grpo},
    {"sft", cmd_sft},
    {"eval", cmd_eval},
    {NULL, NULL},
};
