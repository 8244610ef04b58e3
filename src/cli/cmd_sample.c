/* cmd_sample.c: `dsc sample`: generates text from a trained model (a checkpoint directory, or a
 * training output directory whose newest checkpoint is used) with its tokenizer. Each new token
 * re-runs the model over the whole sequence: simple and exact; the inference engine makes
 * generation fast. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "infer/sampler.h"
#include "tok/tokenizer.h"
#include "train/checkpoint.h"

int cmd_sample(int argc, char **argv) {
    arg_option opts[] = {{"model", true, "checkpoint directory, or a training --out directory (newest checkpoint)", NULL},
                         {"tokenizer", true, "tokenizer.json (default: MODEL/tokenizer.json)", NULL},
                         {"prompt", true, "text to continue (default: empty)", NULL},
                         {"max-tokens", true, "tokens to generate (default 100)", NULL},
                         {"temperature", true, "0 = greedy (default 0.8)", NULL},
                         {"top-k", true, "keep the k most likely tokens (default 40; 0: all)", NULL},
                         {"top-p", true, "nucleus probability (default 0.95)", NULL},
                         {"seed", true, "random seed (default 1)", NULL},
                         {"samples", true, "number of samples (default 1)", NULL},
                         {NULL, false, NULL, NULL}};
    int rc = args_parse(argc, argv, opts, "usage: dsc sample --model DIR [--prompt TEXT] [options]");
    if (rc) return rc == 2 ? 0 : 2;
    const char *dir = args_get(opts, "model"), *prompt = args_get(opts, "prompt");
    if (!dir) {
        fprintf(stderr, "dsc sample: --model is required\n");
        return 2;
    }
    long long max_new, seed, top_k, n_samples;
    if (!args_int(opts, "max-tokens", 100, 1, 1 << 20, &max_new) || !args_int(opts, "seed", 1, 0, (long long)1 << 62, &seed) ||
        !args_int(opts, "top-k", 40, 0, 1 << 24, &top_k) || !args_int(opts, "samples", 1, 1, 1000, &n_samples))
        return 2;
    sampler_options so = {0.8f, (int)top_k, 0.95f, 0.0f};
    const char *t = args_get(opts, "temperature"), *tp = args_get(opts, "top-p");
    if (t) so.temperature = strtof(t, NULL);
    if (tp) so.top_p = strtof(tp, NULL);
    if (!(so.temperature >= 0) || !(so.top_p > 0 && so.top_p <= 1)) {
        fprintf(stderr, "dsc sample: expected --temperature >= 0 and 0 < --top-p <= 1\n");
        return 2;
    }

    /* a checkpoint directory has config.json; otherwise take the newest checkpoint inside */
    char mdir[4096], tpath[4200];
    if (ckpt_resolve_model(dir, mdir, sizeof mdir)) {
        fprintf(stderr, "dsc sample: %s\n", dsc_last_error());
        return 1;
    }
    const char *tok_arg = args_get(opts, "tokenizer");
    snprintf(tpath, sizeof tpath, "%s", tok_arg ? tok_arg : "");
    if (!tok_arg) snprintf(tpath, sizeof tpath, "%s/tokenizer.json", mdir);
    dsc_model *m = NULL;
    dsc_tokenizer *tk = NULL;
    int32_t *ids = NULL, *seq = NULL;
    float *logits = NULL;
    void *scratch = NULL;
    char *text = NULL;
    size_t n_prompt = 0, len;
    int status = 1;
    if (dsc_model_load(mdir, &m) || dsc_tokenizer_load(tpath, &tk)) goto fail;
    const dsc_config *c = dsc_model_config(m);
    dsc_special_ids sp;
    dsc_tokenizer_specials(tk, &sp);
    if (dsc_tokenizer_encode(tk, prompt ? prompt : "", prompt ? strlen(prompt) : 0, true, &ids, &n_prompt)) goto fail;
    int T = (int)(n_prompt + 1 + max_new);
    if (T > c->max_position_embeddings) T = c->max_position_embeddings;
    if ((int)n_prompt + 1 >= T) {
        fprintf(stderr, "dsc sample: the prompt (%zu tokens) leaves no room under max_position_embeddings %d\n",
                n_prompt, c->max_position_embeddings);
        goto fail_quiet;
    }
    seq = calloc((size_t)T, sizeof *seq);
    logits = malloc(sizeof(float) * (size_t)T * c->vocab_size);
    scratch = malloc((size_t)c->vocab_size * 8);
    if (!seq || !logits || !scratch) {
        fprintf(stderr, "dsc sample: out of memory\n");
        goto fail_quiet;
    }
    dsc_rng rng;
    dsc_rng_seed(&rng, (uint64_t)seed);
    for (long long s = 0; s < n_samples; s++) {
        int n = 0;
        if (sp.bos >= 0) seq[n++] = sp.bos;
        for (size_t i = 0; i < n_prompt; i++) seq[n++] = ids[i];
        int start = n;
        if (n_samples > 1) printf("--- sample %lld\n", s + 1);
        fputs(prompt ? prompt : "", stdout);
        fflush(stdout);
        size_t printed = 0;
        while (n < T) {
            /* causal: the padding after position n-1 cannot change its logits */
            for (int i = n; i < T; i++) seq[i] = 0;
            if (dsc_model_logits(m, seq, 1, T, logits)) goto fail;
            int32_t next = sampler_pick(logits + (size_t)(n - 1) * c->vocab_size, c->vocab_size, &so, &rng, scratch);
            if (next == sp.eos) break;
            seq[n++] = next;
            /* print what the new token adds to the decoded continuation */
            free(text);
            text = NULL;
            if (dsc_tokenizer_decode(tk, seq + start, (size_t)(n - start), &text, &len)) goto fail;
            fwrite(text + printed, 1, len - printed, stdout);
            fflush(stdout);
            printed = len;
        }
        printf("\n");
    }
    status = 0;
    goto done;
fail:
    fprintf(stderr, "dsc sample: %s\n", dsc_last_error());
fail_quiet:
done:
    free(text);
    free(ids);
    free(seq);
    free(logits);
    free(scratch);
    dsc_tokenizer_free(tk);
    dsc_model_free(m);
    return status;
}
