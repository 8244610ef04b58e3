/* cmd_tokenizer.c: `dsc tokenizer train` learns a byte-level BPE tokenizer from text files and
 * saves it as a Hugging Face tokenizer.json; `dsc tokenizer info` shows a tokenizer's size, hash
 * and special-token ids. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "tok/tokenizer.h"

static int train(int argc, char **argv) {
    arg_option opts[] = {{"vocab-size", true, "total vocabulary size, specials and the 256 bytes included", NULL},
                         {"out", true, "where to write tokenizer.json", NULL},
                         {"min-frequency", true, "never merge a pair seen fewer times (default 2)", NULL},
                         {"max-bytes", true, "read at most this many bytes of the files (default: all)", NULL},
                         {"threads", true, "threads for counting words (default: all cores)", NULL},
                         {"max-digits", true,
                          "digits one number token may hold, 1-3 (default 3, DeepSeek-V3's; 1: every digit a token)",
                          NULL},
                         {NULL, false, NULL, NULL}};
    const char *usage = "usage: dsc tokenizer train --vocab-size N --out tokenizer.json FILE...";
    char *files[argc > 0 ? argc : 1];
    int n_files = args_take_positional(&argc, argv, opts, files);
    int rc = args_parse(argc, argv, opts, usage);
    if (rc) return rc == 2 ? 0 : 2;
    long long vocab, minf, maxb, threads, digits;
    if (!args_int(opts, "vocab-size", 0, 263, 1 << 30, &vocab) ||
        !args_int(opts, "min-frequency", 2, 1, 1 << 30, &minf) ||
        !args_int(opts, "max-bytes", 0, 0, (long long)1 << 50, &maxb) ||
        !args_int(opts, "threads", 0, 0, 1024, &threads) || !args_int(opts, "max-digits", 3, 1, 3, &digits))
        return 2;
    const char *out = args_get(opts, "out");
    if (!args_get(opts, "vocab-size") || !out || n_files == 0) {
        fprintf(stderr, "dsc tokenizer train: --vocab-size, --out and at least one FILE are required\n%s\n", usage);
        return 2;
    }
    size_t bytes = 0;
    for (int i = 0; i < n_files; i++) {
        struct stat st;
        if (stat(files[i], &st) == 0) bytes += (size_t)st.st_size;
    }
    if (maxb && bytes > (size_t)maxb) bytes = (size_t)maxb;
    dsc_bpe_options o = {.vocab_size = (int)vocab,
                         .min_frequency = (int)minf,
                         .max_bytes = (size_t)maxb,
                         .threads = (int)threads,
                         .max_digits = (int)digits};
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    dsc_tokenizer *t;
    if (dsc_tokenizer_train((const char *const *)files, n_files, &o, &t)) {
        fprintf(stderr, "dsc tokenizer train: %s\n", dsc_last_error());
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double secs = (b.tv_sec - a.tv_sec) + 1e-9 * (b.tv_nsec - a.tv_nsec);
    if (dsc_tokenizer_save(t, out)) {
        fprintf(stderr, "dsc tokenizer train: %s\n", dsc_last_error());
        dsc_tokenizer_free(t);
        return 1;
    }
    printf("wrote %s: vocabulary %d (asked %lld) learnt from %.1f MB in %.1f s (%.2f MB/s); hash %016llx\n", out,
           dsc_tokenizer_vocab_size(t), vocab, bytes / 1e6, secs, bytes / 1e6 / (secs > 1e-9 ? secs : 1e-9),
           (unsigned long long)dsc_tokenizer_hash(t));
    dsc_tokenizer_free(t);
    return 0;
}

static int info(int argc, char **argv) {
    arg_option opts[] = {{"tokenizer", true, "a tokenizer.json", NULL}, {NULL, false, NULL, NULL}};
    int rc = args_parse(argc, argv, opts, "usage: dsc tokenizer info --tokenizer PATH/tokenizer.json");
    if (rc) return rc == 2 ? 0 : 2;
    const char *path = args_get(opts, "tokenizer");
    if (!path) {
        fprintf(stderr, "dsc tokenizer info: --tokenizer is required\n");
        return 2;
    }
    dsc_tokenizer *t;
    if (dsc_tokenizer_load(path, &t)) {
        fprintf(stderr, "dsc tokenizer info: %s\n", dsc_last_error());
        return 1;
    }
    dsc_special_ids s;
    dsc_tokenizer_specials(t, &s);
    printf("tokenizer %s: vocabulary %d, hash %016llx\n", path, dsc_tokenizer_vocab_size(t),
           (unsigned long long)dsc_tokenizer_hash(t));
    printf("  specials: bos %d eos %d pad %d user %d assistant %d think %d /think %d (-1: none)\n", s.bos, s.eos, s.pad,
           s.user, s.assistant, s.think_begin, s.think_end);
    dsc_tokenizer_free(t);
    return 0;
}

int cmd_tokenizer(int argc, char **argv) {
    const char *usage = "usage: dsc tokenizer train --vocab-size N --out tokenizer.json FILE...\n"
                        "       dsc tokenizer info --tokenizer PATH/tokenizer.json";
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fprintf(argc < 2 ? stderr : stdout, "%s\n", usage);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "train")) return train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "info")) return info(argc - 1, argv + 1);
    fprintf(stderr, "dsc tokenizer: unknown subcommand '%s'\n%s\n", argv[1], usage);
    return 2;
}
