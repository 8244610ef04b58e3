/* cmd_data.c: `dsc data`: prepare (corpus files, JSONL and generated problems -> tokenized
 * train/val shards and meta.json), synth (export generated problems as JSONL or rendered chat
 * documents) and info (a shard's header, validated, and optionally its first tokens decoded). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fileio.h"
#include "cli/args.h"
#include "cli/synthopts.h"
#include "cli/commands.h"
#include "data/data.h"
#include "data/prepare.h"
#include "data/synth.h"

/* Splits argv into options (kept in opt_argv for args_parse) and positional file names. */
static void split_positional(int argc, char **argv, const arg_option *opts, char **opt_argv, int *n_opt,
                             char **files, int *n_files) {
    *n_opt = *n_files = 0;
    opt_argv[(*n_opt)++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0 && strcmp(argv[i], "-h") != 0) {
            files[(*n_files)++] = argv[i];
            continue;
        }
        opt_argv[(*n_opt)++] = argv[i];
        for (const arg_option *o = opts; o->name; o++)
            if (!strcmp(o->name, argv[i] + 2) && o->takes_value && i + 1 < argc) opt_argv[(*n_opt)++] = argv[++i];
    }
}

static bool parse_double(const char *text, const char *name, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "dsc data: option --%s: expected a number in [%g, %g], found '%s'\n", name, lo, hi, text);
        return false;
    }
    *out = v;
    return true;
}

/* "arithmetic=N,countdown=M" (either part optional). */
static bool parse_synthetic(const char *text, uint64_t n[2]) {
    const char *p = text;
    while (*p) {
        const char *eq = strchr(p, '=');
        dsc_task t;
        char name[32];
        size_t len = eq ? (size_t)(eq - p) : 0;
        if (!eq || len >= sizeof name) goto bad;
        memcpy(name, p, len);
        name[len] = 0;
        if (dsc_task_parse(name, &t)) goto bad;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(eq + 1, &end, 10);
        if (errno || end == eq + 1 || (*end && *end != ',') || eq[1] == '-' || v > 100000000ull) goto bad;
        n[t] = v;
        p = *end ? end + 1 : end;
    }
    return true;
bad:
    fprintf(stderr, "dsc data prepare: option --synthetic: expected arithmetic=N,countdown=M (N, M <= 1e8), found '%s'\n",
            text);
    return false;
}

typedef struct {
    double last;
    bool shown;
} progress_state;

static void show_progress(void *ctx, const dsc_prepare_progress *p) {
    progress_state *st = ctx;
    if (p->bytes_total < (4u << 20) && !p->tokens) return;
    if (p->seconds - st->last < 0.5) return;
    st->last = p->seconds;
    st->shown = true;
    double mb = p->bytes_done / 1e6;
    fprintf(stderr, "\r%-28.28s %8.1f / %.1f MB  %6.2f MB/s  %llu tokens   ", p->source, mb, p->bytes_total / 1e6,
            p->seconds > 0 ? mb / p->seconds : 0.0, (unsigned long long)p->tokens);
    fflush(stderr);
}

static int data_prepare(int argc, char **argv) {
    arg_option opts[] = {{"tokenizer", true, "tokenizer.json (its hash and vocabulary go into the shards)", NULL},
                         {"out", true, "output folder: train.bin, val.bin, meta.json", NULL},
                         {"val-fraction", true, "share of documents held out for validation (default 0.01)", NULL},
                         {"seed", true, "seed of the train/val document split (default 1)", NULL},
                         {"synthetic", true, "generated problems, e.g. arithmetic=20000,countdown=20000", NULL},
                         {"synth-seed", true, "seed of the generated training problems (default 1)", NULL},
                         {"max-digits", true, "arithmetic operands have 1..D digits (default 6, at most 18)", NULL},
                         {"threads", true, "tokenizer threads (default: all cores)", NULL},
                         {NULL, false, NULL, NULL}};
    const char *usage = "usage: dsc data prepare --tokenizer T.json --out DIR [--val-fraction 0.01] [--seed 1]\n"
                        "         [--synthetic arithmetic=N,countdown=M] [FILES...]\n"
                        "FILES: text files (documents separated by a line holding one form feed, as written by\n"
                        "scripts/corpus.sh) or .jsonl ({\"text\": ...} or {\"prompt\", \"answer\"[, \"reasoning\"]})";
    char **opt_argv = calloc((size_t)argc + 1, sizeof *opt_argv), **files = calloc((size_t)argc + 1, sizeof *files);
    int n_opt, n_files, status = 2;
    dsc_tokenizer *tok = NULL;
    char *cmdline = NULL;
    if (!opt_argv || !files) goto out;
    split_positional(argc, argv, opts, opt_argv, &n_opt, files, &n_files);
    int rc = args_parse(n_opt, opt_argv, opts, usage);
    if (rc) {
        status = rc == 2 ? 0 : 2;
        goto out;
    }
    dsc_prepare_options o;
    dsc_prepare_default_options(&o);
    const char *tpath = args_get(opts, "tokenizer"), *out = args_get(opts, "out"), *v;
    if (!tpath || !out) {
        fprintf(stderr, "dsc data prepare: --tokenizer and --out are required\n");
        goto out;
    }
    long long seed, sseed, digits, threads;
    if ((v = args_get(opts, "val-fraction")) && !parse_double(v, "val-fraction", 0, 0.5, &o.val_fraction)) goto out;
    if ((v = args_get(opts, "synthetic")) && !parse_synthetic(v, o.synth_n)) goto out;
    if (!args_int(opts, "seed", 1, 0, INT64_MAX, &seed) || !args_int(opts, "synth-seed", 1, 0, INT64_MAX, &sseed) ||
        !args_int(opts, "max-digits", 6, 1, 18, &digits) || !args_int(opts, "threads", 0, 0, 1024, &threads))
        goto out;
    if (!n_files && !o.synth_n[0] && !o.synth_n[1]) {
        fprintf(stderr, "dsc data prepare: nothing to prepare: give FILES and/or --synthetic\n");
        goto out;
    }
    size_t len = 4;
    for (int i = 0; i < argc; i++) len += strlen(argv[i]) + 1;
    cmdline = malloc(len + 1);
    if (!cmdline) goto out;
    strcpy(cmdline, "dsc");
    for (int i = 0; i < argc; i++) strcat(strcat(cmdline, " "), argv[i]);
    status = 1;
    if (dsc_tokenizer_load(tpath, &tok)) goto fail;
    o.tok = tok;
    o.tokenizer_path = tpath;
    o.out_dir = out;
    o.files = (const char *const *)files;
    o.n_files = n_files;
    o.seed = (uint64_t)seed;
    o.synth_seed = (uint64_t)sseed;
    o.synth_opt.max_digits = (int)digits;
    o.threads = (int)threads;
    o.command_line = cmdline;
    progress_state ps = {0, false};
    o.progress = isatty(2) ? show_progress : NULL;
    o.progress_ctx = &ps;
    dsc_prepare_report rep;
    rc = dsc_data_prepare(&o, &rep);
    if (ps.shown) fprintf(stderr, "\n");
    if (rc) goto fail;
    const char *names[2] = {"train.bin", "val.bin"};
    for (int s = 0; s < 2; s++)
        printf("%s/%s: %llu documents, %llu tokens, checksum %016llx\n", out, names[s], (unsigned long long)rep.docs[s],
               (unsigned long long)rep.tokens[s], (unsigned long long)rep.checksum[s]);
    printf("tokenizer %s: vocabulary %d, hash %016llx; %.1f MB of input in %.1f s (%.2f MB/s)\n", tpath,
           dsc_tokenizer_vocab_size(tok), (unsigned long long)dsc_tokenizer_hash(tok), rep.bytes_in / 1e6, rep.seconds,
           rep.seconds > 0 ? rep.bytes_in / 1e6 / rep.seconds : 0.0);
    printf("wrote %s/meta.json\n", out);
    status = 0;
    goto out;
fail:
    fprintf(stderr, "dsc data prepare: %s\n", dsc_last_error());
out:
    dsc_tokenizer_free(tok);
    free(cmdline);
    free(opt_argv);
    free(files);
    return status;
}

static int data_synth(int argc, char **argv) {
    arg_option opts[] = {{"task", true, "arithmetic | countdown", NULL},
                         {"n", true, "number of problems", NULL},
                         {"seed", true, "seed of the stream (default 1; held-out default: the standard set)", NULL},
                         {"start", true, "index of the first problem (default 0)", NULL},
                         {"held-out", false, "the held-out problems (disjoint from every training stream)", NULL},
                         SYNTH_OPTIONS,
                         {"jsonl", true, "output file ('-': stdout): one {prompt, answer, checker, reasoning} a line", NULL},
                         {"render", false, "write the rendered chat documents instead (form-feed separated)", NULL},
                         {NULL, false, NULL, NULL}};
    int rc = args_parse(argc, argv, opts,
                        "usage: dsc data synth --task arithmetic|countdown --n N [--seed S] [--held-out] --jsonl OUT");
    if (rc) return rc == 2 ? 0 : 2;
    const char *task_name = args_get(opts, "task"), *out = args_get(opts, "jsonl");
    bool held = args_get(opts, "held-out") != NULL, render = args_get(opts, "render") != NULL;
    long long n, seed, start;
    dsc_task task;
    if (!task_name || !out) {
        fprintf(stderr, "dsc data synth: --task and --jsonl are required\n");
        return 2;
    }
    if (dsc_task_parse(task_name, &task)) {
        fprintf(stderr, "dsc data synth: %s\n", dsc_last_error());
        return 2;
    }
    if (!args_int(opts, "n", 10, 0, 100000000, &n) ||
        !args_int(opts, "seed", held ? (long long)DSC_SYNTH_HELDOUT_SEED : 1, 0, INT64_MAX, &seed) ||
        !args_int(opts, "start", 0, 0, INT64_MAX, &start))
        return 2;
    dsc_synth_options so;
    dsc_synth_default_options(&so);
    if (!synth_options_parse(opts, &so)) return 2;
    bool to_stdout = !strcmp(out, "-");
    dsc_atomic_file af;
    if (!to_stdout && dsc_atomic_open(&af, out)) goto fail;
    static dsc_problem p;
    static char buf[32768];
    for (long long i = 0; i < n; i++) {
        if (dsc_synth_generate(task, held ? DSC_SPLIT_HELDOUT : DSC_SPLIT_TRAIN, (uint64_t)seed, (uint64_t)(start + i),
                               &so, &p))
            goto fail_abort;
        char *line = NULL;
        size_t len;
        if (render) {
            len = dsc_synth_render(&p, buf, sizeof buf - 4);
            if (i + 1 < n) strcat(buf, "\n\f\n");
            else strcat(buf, "\n");
            line = buf;
            len = strlen(buf);
        } else {
            if (dsc_synth_to_json(&p, &line)) goto fail_abort;
            len = strlen(line);
            line[len++] = '\n'; /* overwrites the NUL: written by length */
        }
        int w = 0;
        if (to_stdout) w = fwrite(line, 1, len, stdout) == len ? 0 : -1;
        else w = dsc_atomic_write(&af, line, len);
        if (!render) free(line);
        if (w) goto fail;
    }
    if (!to_stdout) {
        if (dsc_atomic_commit(&af)) goto fail;
        fprintf(stderr, "wrote %s: %lld %s%s problems (seed %lld, indices %lld..%lld)\n", out, n, held ? "held-out " : "",
                dsc_task_name(task), seed, start, start + n - 1);
    }
    return 0;
fail_abort:
    if (!to_stdout) dsc_atomic_abort(&af);
fail:
    fprintf(stderr, "dsc data synth: %s\n", dsc_last_error());
    return 1;
}

static int data_info(int argc, char **argv) {
    arg_option opts[] = {{"tokenizer", true, "tokenizer.json: check it matches and decode the first tokens", NULL},
                         {"show", true, "decode this many tokens from the start (default 64, with --tokenizer)", NULL},
                         {NULL, false, NULL, NULL}};
    char *opt_argv[16], *files[16];
    int n_opt, n_files;
    if (argc > 16) {
        fprintf(stderr, "dsc data info: too many arguments\n");
        return 2;
    }
    split_positional(argc, argv, opts, opt_argv, &n_opt, files, &n_files);
    int rc = args_parse(n_opt, opt_argv, opts, "usage: dsc data info SHARD.bin [--tokenizer T.json [--show N]]");
    if (rc) return rc == 2 ? 0 : 2;
    long long show;
    if (n_files != 1) {
        fprintf(stderr, "dsc data info: expected one shard file, found %d\n", n_files);
        return 2;
    }
    if (!args_int(opts, "show", 64, 0, 1 << 20, &show)) return 2;
    const char *tpath = args_get(opts, "tokenizer");
    dsc_tokenizer *tok = NULL;
    dsc_shard *s = NULL;
    if (tpath && dsc_tokenizer_load(tpath, &tok)) goto fail;
    if (dsc_shard_open(files[0], tok ? dsc_tokenizer_vocab_size(tok) : 0, tok ? dsc_tokenizer_hash(tok) : 0, &s))
        goto fail;
    printf("%s: valid; %llu tokens, %llu documents, vocabulary %d (%d bytes a token), tokenizer hash %016llx, "
           "checksum %016llx\n",
           files[0], (unsigned long long)dsc_shard_tokens(s), (unsigned long long)dsc_shard_docs(s), dsc_shard_vocab(s),
           dsc_shard_token_bytes(s), (unsigned long long)dsc_shard_tokenizer_hash(s),
           (unsigned long long)dsc_shard_checksum(s));
    if (tok && show > 0) {
        uint64_t n = dsc_shard_tokens(s) < (uint64_t)show ? dsc_shard_tokens(s) : (uint64_t)show;
        int32_t *ids = malloc(sizeof(int32_t) * (n + 1));
        char *text = NULL;
        size_t len;
        for (uint64_t i = 0; ids && i < n; i++) ids[i] = dsc_shard_token(s, i);
        if (ids && dsc_tokenizer_decode(tok, ids, (size_t)n, &text, &len) == DSC_OK) printf("%s\n", text);
        free(text);
        free(ids);
    }
    dsc_shard_close(s);
    dsc_tokenizer_free(tok);
    return 0;
fail:
    fprintf(stderr, "dsc data info: %s\n", dsc_last_error());
    dsc_tokenizer_free(tok);
    return 1;
}

int cmd_data(int argc, char **argv) {
    const char *usage = "usage: dsc data prepare|synth|info [options]   ('dsc data <sub> --help' for each)\n"
                        "  prepare  corpus files, JSONL and generated problems -> train.bin, val.bin, meta.json\n"
                        "  synth    export generated problems (arithmetic, countdown) as JSONL\n"
                        "  info     validate a shard and print its header";
    if (argc < 2) {
        fprintf(stderr, "%s\n", usage);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf("%s\n", usage);
        return 0;
    }
    char name[32];
    snprintf(name, sizeof name, "data %s", argv[1]);
    argv[1] = name; /* messages read "dsc data prepare: ..." */
    if (!strcmp(name, "data prepare")) return data_prepare(argc - 1, argv + 1);
    if (!strcmp(name, "data synth")) return data_synth(argc - 1, argv + 1);
    if (!strcmp(name, "data info")) return data_info(argc - 1, argv + 1);
    fprintf(stderr, "dsc data: unknown subcommand '%s'\n%s\n", name + 5, usage);
    return 2;
}
