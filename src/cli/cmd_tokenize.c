/* cmd_tokenize.c: `dsc tokenize`: a file's token ids on one line, separated by single spaces, no
 * BOS (`-` reads standard input); with --decode, reads whitespace-separated ids and writes the
 * bytes back. Also the positional-argument helper the tokenizer commands share. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/fileio.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "tok/tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* The whole of FILE (or standard input for "-") in a malloc'ed buffer. */
static char *read_all(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "dsc tokenize: %s: cannot open: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (size_t r; buf && (r = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, (cap *= 2) + 1);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    bool bad = ferror(f);
    if (f != stdin) fclose(f);
    if (!buf || bad) {
        fprintf(stderr, "dsc tokenize: %s: %s\n", path, buf ? "read error" : "out of memory");
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static int write_ids(const int32_t *ids, size_t n) {
    char buf[1 << 16];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k > sizeof buf - 16) {
            if (fwrite(buf, 1, k, stdout) != k) return 1;
            k = 0;
        }
        k += (size_t)snprintf(buf + k, 16, i + 1 < n ? "%d " : "%d", ids[i]);
    }
    buf[k++] = '\n';
    return fwrite(buf, 1, k, stdout) != k || fflush(stdout) != 0;
}

static int decode(const dsc_tokenizer *t, const char *path, const char *text, size_t len) {
    size_t n = 0, cap = 1024;
    int32_t *ids = malloc(cap * sizeof *ids);
    const char *p = text, *end = text + len;
    while (ids) {
        while (p < end && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')) p++;
        if (p == end) break;
        char *q;
        errno = 0;
        long v = strtol(p, &q, 10);
        if (q == p || errno || v < 0 || v > INT32_MAX || (q < end && !strchr(" \n\t\r", *q))) {
            int w = 0;
            while (p + w < end && w < 20 && !strchr(" \n\t\r", p[w])) w++;
            fprintf(stderr, "dsc tokenize: %s: expected token ids separated by whitespace, found '%.*s' at byte %zu\n",
                    path, w, p, (size_t)(p - text));
            free(ids);
            return 1;
        }
        if (n == cap) {
            int32_t *ni = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!ni) free(ids);
            ids = ni;
            if (!ids) break;
        }
        ids[n++] = (int32_t)v;
        p = q;
    }
    char *out;
    size_t out_len;
    if (!ids || dsc_tokenizer_decode(t, ids, n, &out, &out_len)) {
        fprintf(stderr, "dsc tokenize: %s: %s\n", path, ids ? dsc_last_error() : "out of memory");
        free(ids);
        return 1;
    }
    int rc = fwrite(out, 1, out_len, stdout) != out_len || fflush(stdout) != 0;
    free(ids);
    free(out);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    arg_option opts[] = {{"tokenizer", true, "a tokenizer.json (Hugging Face format, byte-level BPE)", NULL},
                         {"decode", false, "read token ids and write the text back", NULL},
                         {"no-special", false, "encode special-token text as ordinary text", NULL},
                         {"stats", false, "print sizes and the encoding speed on standard error", NULL},
                         {NULL, false, NULL, NULL}};
    const char *usage = "usage: dsc tokenize --tokenizer PATH/tokenizer.json [--decode] FILE|-";
    char *pos[argc > 0 ? argc : 1];
    int n_pos = args_take_positional(&argc, argv, opts, pos);
    int rc = args_parse(argc, argv, opts, usage);
    if (rc) return rc == 2 ? 0 : 2;
    const char *tpath = args_get(opts, "tokenizer");
    if (!tpath || n_pos != 1) {
        fprintf(stderr, "dsc tokenize: --tokenizer and one FILE (or -) are required\n%s\n", usage);
        return 2;
    }
    double t0 = now();
    dsc_tokenizer *t;
    if (dsc_tokenizer_load(tpath, &t)) {
        fprintf(stderr, "dsc tokenize: %s\n", dsc_last_error());
        return 1;
    }
    double t1 = now();
    size_t len;
    char *text = read_all(pos[0], &len);
    if (!text) {
        dsc_tokenizer_free(t);
        return 1;
    }
    if (args_get(opts, "decode")) {
        rc = decode(t, pos[0], text, len);
    } else {
        int32_t *ids;
        size_t n;
        double t2 = now();
        if (dsc_tokenizer_encode(t, text, len, !args_get(opts, "no-special"), &ids, &n)) {
            fprintf(stderr, "dsc tokenize: %s: %s\n", pos[0], dsc_last_error());
            rc = 1;
        } else {
            double t3 = now();
            rc = write_ids(ids, n);
            if (rc) fprintf(stderr, "dsc tokenize: cannot write the ids: %s\n", strerror(errno));
            if (args_get(opts, "stats"))
                fprintf(stderr,
                        "dsc tokenize: %zu bytes -> %zu tokens (%.2f bytes/token) in %.3f s: %.2f MB/s; "
                        "tokenizer loaded in %.3f s\n",
                        len, n, n ? (double)len / n : 0.0, t3 - t2, len / 1e6 / (t3 - t2 > 1e-9 ? t3 - t2 : 1e-9),
                        t1 - t0);
            free(ids);
        }
    }
    free(text);
    dsc_tokenizer_free(t);
    return rc;
}
