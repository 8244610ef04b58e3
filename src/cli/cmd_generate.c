/* cmd_generate.c: `dsc generate`: one-shot, scriptable generation. The prompt is token ids
 * (--tokens, then --print-ids prints the generated ids: any outside reference can check the
 * whole prefill + decode path) or text (--prompt, with the model's tokenizer). Sampling:
 * temperature (0 = greedy), top-k, top-p, min-p, repetition penalty, seed, a stop string, max
 * tokens; --speculative drafts with the model's MTP module. --stats prints speeds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "infer/generate.h"
#include "infer/load.h"
#include "tok/tokenizer.h"

typedef struct {
    const dsc_tokenizer *tok;
    int32_t eos;
    bool print_ids, first;
    const char *stop;
    char *text;               /* decoded continuation so far */
    size_t len, cap, printed;
    int32_t *ids;
    size_t n_ids, cap_ids;
    bool ignore_eos;
} out_ctx;

static bool on_token(int32_t t, void *user) {
    out_ctx *o = user;
    if (t == o->eos && !o->ignore_eos) return true;
    if (o->print_ids) {
        printf(o->first ? "%d" : " %d", t);
        o->first = false;
        fflush(stdout);
        return false;
    }
    if (o->n_ids == o->cap_ids) {
        size_t cap = o->cap_ids ? 2 * o->cap_ids : 256;
        int32_t *n = realloc(o->ids, sizeof(int32_t) * cap);
        if (!n) return true;
        o->ids = n;
        o->cap_ids = cap;
    }
    o->ids[o->n_ids++] = t;
    free(o->text);
    o->text = NULL;
    if (dsc_tokenizer_decode(o->tok, o->ids, o->n_ids, &o->text, &o->len)) return true;
    if (o->stop) { /* print up to a stop string, then stop */
        char *hit = strstr(o->text, o->stop);
        if (hit) {
            size_t end = (size_t)(hit - o->text);
            if (end > o->printed) fwrite(o->text + o->printed, 1, end - o->printed, stdout);
            o->printed = end;
            fflush(stdout);
            return true;
        }
        /* hold back what could be the start of the stop string */
        size_t keep = strlen(o->stop) - 1, safe = o->len > keep ? o->len - keep : 0;
        if (safe > o->printed) fwrite(o->text + o->printed, 1, safe - o->printed, stdout);
        if (safe > o->printed) o->printed = safe;
    } else {
        fwrite(o->text + o->printed, 1, o->len - o->printed, stdout);
        o->printed = o->len;
    }
    fflush(stdout);
    return false;
}

int cmd_generate(int argc, char **argv) {
    arg_option opts[] = {
        {"model", true, "model directory (dsc, checkpoint or Hugging Face) or .gguf file", NULL},
        {"tokens", true, "prompt as comma-separated token ids", NULL},
        {"prompt", true, "prompt as text (special-token text is parsed; BOS is added)", NULL},
        {"tokenizer", true, "tokenizer.json (default: MODEL/tokenizer.json)", NULL},
        {"max-tokens", true, "tokens to generate at most (default 128)", NULL},
        {"temperature", true, "0 = greedy (default 0.8)", NULL},
        {"top-k", true, "keep the k most likely (default 40; 0: all)", NULL},
        {"top-p", true, "nucleus probability (default 0.95)", NULL},
        {"min-p", true, "drop tokens below min-p x the top probability (default 0)", NULL},
        {"repeat-penalty", true, "penalty for tokens seen in the last 64 (default 1 = off)", NULL},
        {"seed", true, "random seed (default 1)", NULL},
        {"stop", true, "stop when the text contains this string", NULL},
        {"print-ids", false, "print the generated token ids instead of text", NULL},
        {"ignore-eos", false, "do not stop at the end-of-sequence token", NULL},
        {"speculative", false, "draft tokens with the model's MTP module", NULL},
        {"ctx", true, "context length of the KV cache (default: prompt + max-tokens)", NULL},
        {"stats", false, "print prefill and decode speed (to stderr)", NULL},
        {NULL, false, NULL, NULL}};
    int rc = args_parse(argc, argv, opts, "usage: dsc generate --model M (--tokens IDS | --prompt TEXT) [options]");
    if (rc) return rc == 2 ? 0 : 2;
    const char *path = args_get(opts, "model"), *ids_text = args_get(opts, "tokens"), *text = args_get(opts, "prompt");
    if (!path || !!ids_text == !!text) {
        fprintf(stderr, "dsc generate: --model and one of --tokens or --prompt are required\n");
        return 2;
    }
    gen_options go;
    gen_options_default(&go);
    long long max_new, seed, top_k, ctx;
    if (!args_int(opts, "max-tokens", 128, 1, 1 << 24, &max_new) || !args_int(opts, "seed", 1, 0, (long long)1 << 62, &seed) ||
        !args_int(opts, "top-k", 40, 0, 1 << 24, &top_k) || !args_int(opts, "ctx", 0, 0, 1 << 24, &ctx))
        return 2;
    go.max_tokens = (int)max_new;
    go.seed = (uint64_t)seed;
    go.sampler.top_k = (int)top_k;
    go.speculative = args_get(opts, "speculative") != NULL;
    struct {
        const char *name;
        float *field;
        float lo, hi;
    } fo[] = {{"temperature", &go.sampler.temperature, 0, 100},
              {"top-p", &go.sampler.top_p, 1e-6f, 1},
              {"min-p", &go.sampler.min_p, 0, 1},
              {"repeat-penalty", &go.repeat_penalty, 0.01f, 100}};
    for (size_t i = 0; i < sizeof fo / sizeof fo[0]; i++) {
        const char *s = args_get(opts, fo[i].name);
        if (!s) continue;
        char *end;
        float x = strtof(s, &end);
        if (*end || end == s || !(x >= fo[i].lo && x <= fo[i].hi)) {
            fprintf(stderr, "dsc generate: option --%s: expected a number in [%g, %g], found '%s'\n", fo[i].name,
                    fo[i].lo, fo[i].hi, s);
            return 2;
        }
        *fo[i].field = x;
    }

    int32_t *prompt = NULL;
    int n = 0;
    size_t np = 0;
    if (ids_text && !args_int_list(ids_text, &prompt, &n, "--tokens")) return 2;
    infer_model *im = NULL;
    dsc_tokenizer *tok = NULL;
    out_ctx oc = {NULL, -1, args_get(opts, "print-ids") != NULL, true, args_get(opts, "stop"), NULL, 0, 0, 0,
                  NULL, 0, 0, args_get(opts, "ignore-eos") != NULL};
    int status = 1;
    /* the tokenizer is needed for text in or out; ids in and out need none */
    const char *tpath = args_get(opts, "tokenizer");
    bool need_tok = text || !oc.print_ids;
    infer_options io = {1, 0, 64, go.speculative};
    if (text) np = strlen(text);
    if (need_tok && tpath && dsc_tokenizer_load(tpath, &tok)) goto fail;
    /* the engine's context: the prompt and the new tokens (text prompts are measured below) */
    io.max_ctx = ctx > 0 ? (int)ctx : (ids_text ? n : (int)np + 2) + go.max_tokens + 2;
    if (infer_open(path, &io, &im)) goto fail;
    if (need_tok && !tok && dsc_tokenizer_load(infer_tokenizer_path(im), &tok)) goto fail;
    if (tok) {
        dsc_special_ids sp;
        dsc_tokenizer_specials(tok, &sp);
        oc.eos = sp.eos;
        oc.tok = tok;
        if (text) {
            int32_t *ids;
            size_t k;
            if (dsc_tokenizer_encode(tok, text, np, true, &ids, &k)) goto fail;
            prompt = malloc(sizeof(int32_t) * (k + 1));
            n = 0;
            if (sp.bos >= 0) prompt[n++] = sp.bos;
            memcpy(prompt + n, ids, sizeof(int32_t) * k);
            n += (int)k;
            free(ids);
        }
    } else {
        oc.eos = engine_config(infer_engine(im))->eos_token_id; /* ids only: the config's EOS */
    }
    gen_stats st;
    if (text && !oc.print_ids) fputs(text, stdout);
    if (generate(infer_engine(im), prompt, n, &go, on_token, &oc, &st)) goto fail;
    printf("\n");
    if (args_get(opts, "stats")) {
        fprintf(stderr, "prompt %d tokens in %.3f s (%.1f tokens/s); generated %d tokens in %.3f s (%.1f tokens/s)",
                st.prompt_tokens, st.prefill_s, st.prompt_tokens / (st.prefill_s > 0 ? st.prefill_s : 1e-9),
                st.generated, st.decode_s, st.generated / (st.decode_s > 0 ? st.decode_s : 1e-9));
        if (go.speculative)
            fprintf(stderr, "; MTP drafts %ld, accepted %ld (%.0f%%), %.2f tokens per main pass", st.drafts,
                    st.accepted, st.drafts ? 100.0 * st.accepted / st.drafts : 0.0,
                    st.main_passes ? (double)(st.generated - 1) / st.main_passes : 0.0);
        fprintf(stderr, "\n");
    }
    status = 0;
    goto done;
fail:
    fprintf(stderr, "dsc generate: %s\n", dsc_last_error());
done:
    free(prompt);
    free(oc.text);
    free(oc.ids);
    dsc_tokenizer_free(tok);
    infer_close(im);
    return status;
}
