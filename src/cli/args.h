/* args.h: a small option parser for the subcommands: "--name value" and "--flag" options, with a
 * clear error for unknown or malformed ones. */
#ifndef DSC_CLI_ARGS_H
#define DSC_CLI_ARGS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    const char *name;   /* without the leading "--" */
    bool takes_value;
    const char *help;
    const char *value;  /* filled by args_parse (NULL if absent); "" for a present flag */
} arg_option;

/* Parses argv[1..] (argv[0] is the command name). Prints the error or the help text and returns
 * 1 (error) or 2 (help shown); 0 on success. */
int args_parse(int argc, char **argv, arg_option *opts, const char *usage);
const char *args_get(const arg_option *opts, const char *name);
/* Parses an integer option (default if absent). Returns false with a message on bad input. */
bool args_int(const arg_option *opts, const char *name, long long def, long long lo, long long hi, long long *out);
/* In a command's option parsing: sets an integer field (of any integer type) from option `name`
 * in [lo, hi], keeping its value when the option is absent; returns 2 (usage error) from the
 * enclosing function on bad input. */
#define ARGS_INT_FIELD(opts, name, field, lo, hi)                                                                      \
    do {                                                                                                               \
        long long args_v_;                                                                                             \
        if (!args_int(opts, name, (long long)(field), lo, hi, &args_v_)) return 2;                                     \
        field = args_v_;                                                                                               \
    } while (0)
/* Parses a real-valued option in [lo, hi] (default if absent). Returns false with a message. */
bool args_float(const arg_option *opts, const char *name, double def, double lo, double hi, double *out);
/* Parses "0,17,42" into a malloc'ed array. Returns false with a message on bad input. */
bool args_int_list(const char *text, int32_t **out, int *n, const char *what);

/* Moves the arguments that are not options (FILE..., "-") from argv into pos and leaves argv[0]
 * and the options (with their values) for args_parse; *argc becomes their count. Returns the
 * number of positional arguments. */
int args_take_positional(int *argc, char **argv, const arg_option *opts, char **pos);

#endif
