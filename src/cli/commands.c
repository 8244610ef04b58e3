/* commands.c: the subcommand table. */
#include <stddef.h>

#include "cli/commands.h"

const dsc_command dsc_commands[] = {
    {"info", cmd_info},
    {"init", cmd_init},
    {"forward", cmd_forward},
    {NULL, NULL},
};
