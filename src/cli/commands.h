/* commands.h: the table of dsc subcommands. Each returns the process exit code. */
#ifndef DSC_CLI_COMMANDS_H
#define DSC_CLI_COMMANDS_H

#include "cli/args.h"
#include "dsc.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
} dsc_command;

extern const dsc_command dsc_commands[];

int cmd_info(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);

/* Moves the arguments that are not options (FILE..., "-") from argv into pos and leaves argv[0]
 * and the options (with their values) for args_parse; *argc becomes their count. Returns the
 * number of positional arguments. (cmd_tokenize.c) */
int args_take_positional(int *argc, char **argv, const arg_option *opts, char **pos);
int cmd_train(int argc, char **argv);
int cmd_sample(int argc, char **argv);

#endif
