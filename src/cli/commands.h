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
int cmd_train(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_grpo(int argc, char **argv);
int cmd_sft(int argc, char **argv);
int cmd_eval(int argc, char **argv);

#endif
