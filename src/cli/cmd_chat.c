/* cmd_chat.c: `dsc chat`: an interactive terminal chat with DeepSeek's template
 *   <｜begin▁of▁sentence｜>{system}<｜User｜>{user}<｜Assistant｜>{answer}<｜end▁of▁sentence｜><｜User｜>...
 * Answers stream as they are generated; reasoning between <think> and </think> is shown apart
 * from the answer and, as DeepSeek-R1's template does, left out of the history of later turns.
 * /reset starts over, /quit (or end of input) leaves; Ctrl-C stops the current answer only. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "infer/generate.h"
#include "infer/load.h"
#include "tok/tokenizer.h"

static volatile sig_atomic_t interrupted = 0;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

typedef struct {
    const dsc_tokenizer *tok;
    dsc_special_ids sp;
    int32_t *ids;             /* the answer's tokens so far */
    size_t n, cap;
    char *text;               /* decoded */
    size_t len, shown;        /* bytes of text already shown */
    bool in_think, color;
} answer;

/* Prints the new part of the answer, switching style at <think> / </think>. */
static void show(answer *a) {
    while (a->shown < a->len) {
        const char *rest = a->text + a->shown;
        const char *tag = a->in_think ? "</think>" : "<think>";
        const char *hit = strstr(rest, tag);
        size_t upto = hit ? (size_t)(hit - rest) : a->len - a->shown;
        if (!hit) { /* hold back a partial tag at the end */
            size_t tl = strlen(tag);
            for (size_t k = tl - 1; k > 0; k--)
                if (upto >= k && !strncmp(rest + upto - k, tag, k)) {
                    upto -= k;
                    break;
                }
        }
        fwrite(rest, 1, upto, stdout);
        a->shown += upto;
        if (!hit) break;
        a->shown += strlen(tag);
        a->in_think = !a->in_think;
        if (a->in_think) printf(a->color ? "\033[2m[thinking] " : "[thinking] ");
        else printf(a->color ? "\033[0m\n[answer] " : "\n[answer] ");
    }
    fflush(stdout);
}

static bool on_token(int32_t t, void *user) {
    answer *a = user;
    if (interrupted || t == a->sp.eos) return true;
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 256;
        int32_t *p = realloc(a->ids, sizeof(int32_t) * cap);
        if (!p) return true;
        a->ids = p;
        a->cap = cap;
    }
    a->ids[a->n++] = t;
    free(a->text);
    a->text = NULL;
    if (dsc_tokenizer_decode(a->tok, a->ids, a->n, &a->text, &a->len)) return true;
    show(a);
    return false;
}

/* Appends one id to the token history. */
static int push_id(int32_t **hist, size_t *n, size_t *cap, int32_t id) {
    if (*n == *cap) {
        size_t c = *cap * 2 + 64;
        int32_t *p = realloc(*hist, sizeof(int32_t) * c);
        if (!p) return DSC_ERR;
        *hist = p;
        *cap = c;
    }
    (*hist)[(*n)++] = id;
    return DSC_OK;
}

/* Appends text (special tokens parsed) to the token history. */
static int append(const dsc_tokenizer *tok, int32_t **hist, size_t *n, size_t *cap, const char *text, size_t len) {
    int32_t *ids;
    size_t k;
    if (dsc_tokenizer_encode(tok, text, len, true, &ids, &k)) return DSC_ERR;
    if (*n + k > *cap) {
        size_t c = (*n + k) * 2 + 64;
        int32_t *p = realloc(*hist, sizeof(int32_t) * c);
        if (!p) {
            free(ids);
            return DSC_ERR;
        }
        *hist = p;
        *cap = c;
    }
    memcpy(*hist + *n, ids, sizeof(int32_t) * k);
    *n += k;
    free(ids);
    return DSC_OK;
}

int cmd_chat(int argc, char **argv) {
    arg_option opts[] = {{"model", true, "model directory or .gguf file", NULL},
                         {"tokenizer", true, "tokenizer.json (default: MODEL/tokenizer.json)", NULL},
                         {"system", true, "system prompt", NULL},
                         {"max-tokens", true, "tokens per answer at most (default 512)", NULL},
                         {"temperature", true, "default 0.7", NULL},
                         {"seed", true, "default 1", NULL},
                         {"ctx", true, "context length (default 4096 or the model's)", NULL},
                         {"think", false, "start every answer with <think> (R1-style reasoning)", NULL},
                         {NULL, false, NULL, NULL}};
    int rc = args_parse(argc, argv, opts, "usage: dsc chat --model M [options]");
    if (rc) return rc == 2 ? 0 : 2;
    const char *path = args_get(opts, "model");
    if (!path) {
        fprintf(stderr, "dsc chat: --model is required\n");
        return 2;
    }
    long long max_new, seed, ctx;
    if (!args_int(opts, "max-tokens", 512, 1, 1 << 20, &max_new) || !args_int(opts, "seed", 1, 0, (long long)1 << 62, &seed) ||
        !args_int(opts, "ctx", 0, 0, 1 << 24, &ctx))
        return 2;
    gen_options go;
    gen_options_default(&go);
    go.max_tokens = (int)max_new;
    go.seed = (uint64_t)seed;
    go.sampler.temperature = args_get(opts, "temperature") ? strtof(args_get(opts, "temperature"), NULL) : 0.7f;
    infer_options io = {1, (int)ctx, 64, false};
    infer_model *im = NULL;
    dsc_tokenizer *tok = NULL;
    int32_t *hist = NULL;
    size_t n = 0, cap = 0;
    char line[65536];
    if (infer_open(path, &io, &im) ||
        dsc_tokenizer_load(args_get(opts, "tokenizer") ? args_get(opts, "tokenizer") : infer_tokenizer_path(im), &tok)) {
        fprintf(stderr, "dsc chat: %s\n", dsc_last_error());
        dsc_tokenizer_free(tok);
        infer_close(im);
        return 1;
    }
    answer a = {tok, {0}, NULL, 0, 0, NULL, 0, 0, false, isatty(1)};
    dsc_tokenizer_specials(tok, &a.sp);
    if (a.sp.user < 0 || a.sp.assistant < 0)
        fprintf(stderr, "dsc chat: this tokenizer has no <｜User｜>/<｜Assistant｜> tokens; the roles are plain text\n");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    const char *system = args_get(opts, "system");
    bool think = args_get(opts, "think") != NULL;
    printf("dsc chat: %s. /reset starts over, /quit leaves, Ctrl-C stops an answer.\n", path);
    for (;;) {
        if (n == 0) { /* a new conversation: BOS and the system prompt */
            if (a.sp.bos >= 0 && push_id(&hist, &n, &cap, a.sp.bos)) break;
            if (system && append(tok, &hist, &n, &cap, system, strlen(system))) break;
        }
        printf(a.color ? "\n\033[1m> \033[0m" : "\n> ");
        fflush(stdout);
        interrupted = 0;
        if (!fgets(line, sizeof line, stdin)) break;
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) break;
        if (!strcmp(line, "/reset")) {
            n = 0;
            printf("(conversation reset)\n");
            continue;
        }
        if (len == 0) continue;
        size_t turn_start = n;
        if (append(tok, &hist, &n, &cap, "<｜User｜>", strlen("<｜User｜>")) || append(tok, &hist, &n, &cap, line, len) ||
            append(tok, &hist, &n, &cap, "<｜Assistant｜>", strlen("<｜Assistant｜>")) ||
            (think && append(tok, &hist, &n, &cap, "<think>\n", 8))) {
            fprintf(stderr, "dsc chat: %s\n", dsc_last_error());
            break;
        }
        a.n = 0;
        a.shown = 0;
        a.in_think = think;
        if (think) printf(a.color ? "\033[2m[thinking] " : "[thinking] ");
        gen_stats st;
        if (generate(infer_engine(im), hist, (int)n, &go, on_token, &a, &st)) {
            fprintf(stderr, "\ndsc chat: %s\n", dsc_last_error());
            n = turn_start; /* drop the turn that failed (e.g. the context is full: /reset) */
            continue;
        }
        if (a.color) printf("\033[0m");
        if (interrupted) printf(" [stopped]");
        printf("\n");
        /* history: the answer without its reasoning, then end of sentence */
        const char *ans = a.text ? a.text : "";
        const char *end_think = strstr(ans, "</think>");
        if (end_think) ans = end_think + strlen("</think>");
        if (think) { /* the "<think>\n" appended after <｜Assistant｜> stays out of the history */
            int32_t *ids;
            size_t k;
            if (!dsc_tokenizer_encode(tok, "<think>\n", 8, true, &ids, &k)) {
                n -= k;
                free(ids);
            }
        }
        if (append(tok, &hist, &n, &cap, ans, strlen(ans)) ||
            append(tok, &hist, &n, &cap, "<｜end▁of▁sentence｜>", strlen("<｜end▁of▁sentence｜>")))
            break;
        free(a.text);
        a.text = NULL;
        a.len = 0;
    }
    printf("\n");
    free(a.ids);
    free(a.text);
    free(hist);
    dsc_tokenizer_free(tok);
    infer_close(im);
    return 0;
}
