/* args.c: option parsing for the dsc subcommands. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"

static void print_help(FILE *f, const char *usage, const arg_option *opts) {
    fprintf(f, "%s\n\noptions:\n", usage);
    for (const arg_option *o = opts; o->name; o++)
        fprintf(f, "  --%-14s %s%s\n", o->name, o->takes_value ? "VALUE  " : "       ", o->help);
}

int args_parse(int argc, char **argv, arg_option *opts, const char *usage) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_help(stdout, usage, opts);
            return 2;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "dsc %s: unexpected argument '%s'\n", argv[0], a);
            print_help(stderr, usage, opts);
            return 1;
        }
        arg_option *o = opts;
        for (; o->name; o++)
            if (!strcmp(o->name, a + 2)) break;
        if (!o->name) {
            fprintf(stderr, "dsc %s: unknown option '%s'\n", argv[0], a);
            print_help(stderr, usage, opts);
            return 1;
        }
        if (o->takes_value) {
            if (i + 1 >= argc) {
                fprintf(stderr, "dsc %s: option '%s' needs a value\n", argv[0], a);
                return 1;
            }
            o->value = argv[++i];
        } else {
            o->value = "";
        }
    }
    return 0;
}

const char *args_get(const arg_option *opts, const char *name) {
    for (const arg_option *o = opts; o->name; o++)
        if (!strcmp(o->name, name)) return o->value;
    return NULL;
}

bool args_int(const arg_option *opts, const char *name, long long def, long long lo, long long hi, long long *out) {
    const char *v = args_get(opts, name);
    if (!v) {
        *out = def;
        return true;
    }
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "dsc: option --%s: expected an integer in [%lld, %lld], found '%s'\n", name, lo, hi, v);
        return false;
    }
    *out = x;
    return true;
}

bool args_float(const arg_option *opts, const char *name, double def, double lo, double hi, double *out) {
    const char *v = args_get(opts, name);
    if (!v) {
        *out = def;
        return true;
    }
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "dsc: option --%s: expected a number in [%g, %g], found '%s'\n", name, lo, hi, v);
        return false;
    }
    *out = x;
    return true;
}

bool args_int_list(const char *text, int32_t **out, int *n, const char *what) {
    *out = NULL;
    *n = 0;
    size_t cap = 16, len = 0;
    int32_t *v = malloc(cap * sizeof *v);
    const char *p = text;
    while (v && *p) {
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (errno || end == p || x < 0 || x > 0x7fffffff || (*end && *end != ',')) {
            fprintf(stderr, "dsc: %s: expected comma-separated non-negative integers, found '%s'\n", what, text);
            free(v);
            return false;
        }
        if (len == cap) {
            int32_t *nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) break;
            v = nv;
        }
        v[len++] = (int32_t)x;
        p = *end ? end + 1 : end;
    }
    if (!v || len == 0) {
        fprintf(stderr, "dsc: %s: expected at least one token id\n", what);
        free(v);
        return false;
    }
    *out = v;
    *n = (int)len;
    return true;
}

int args_take_positional(int *argc, char **argv, const arg_option *opts, char **pos) {
    int k = 1, n = 0;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || !strcmp(a, "--")) {
            pos[n++] = argv[i];
            continue;
        }
        argv[k++] = argv[i];
        for (const arg_option *o = opts; o->name; o++)
            if (o->takes_value && !strcmp(o->name, a + 2) && i + 1 < *argc) {
                argv[k++] = argv[++i];
                break;
            }
    }
    *argc = k;
    return n;
}
