/* cmd_forward.c: `dsc forward`: runs a model on a token list and writes the logits of every
 * position as float32 little-endian, row-major [tokens x vocab], for comparison with any outside
 * reference. */
#include <stdio.h>
#include <stdlib.h>

#include "base/fileio.h"
#include "cli/args.h"
#include "cli/commands.h"

int cmd_forward(int argc, char **argv) {
    arg_option opts[] = {{"model", true, "model directory (config.json + model.safetensors)", NULL},
                         {"tokens", true, "comma-separated token ids, e.g. 0,17,42", NULL},
                         {"out", true, "output file for the logits (float32 LE, [tokens x vocab])", NULL},
                         {NULL, false, NULL, NULL}};
    int rc = args_parse(argc, argv, opts, "usage: dsc forward --model DIR --tokens 0,17,42 --out logits.f32");
    if (rc) return rc == 2 ? 0 : 2;
    const char *dir = args_get(opts, "model"), *toks = args_get(opts, "tokens"), *out = args_get(opts, "out");
    if (!dir || !toks || !out) {
        fprintf(stderr, "dsc forward: --model, --tokens and --out are required\n");
        return 2;
    }
    int32_t *tokens;
    int T;
    if (!args_int_list(toks, &tokens, &T, "--tokens")) return 2;
    dsc_model *m = NULL;
    float *logits = NULL;
    if (dsc_model_load(dir, &m)) goto fail;
    const dsc_config *c = dsc_model_config(m);
    logits = malloc(sizeof(float) * (size_t)T * c->vocab_size);
    if (!logits) {
        fprintf(stderr, "dsc forward: out of memory for %d x %d logits\n", T, c->vocab_size);
        goto fail_quiet;
    }
    if (dsc_model_logits(m, tokens, 1, T, logits)) goto fail;
    /* x86-64 is little-endian: the float array is already in the file format */
    if (dsc_write_file_atomic(out, logits, sizeof(float) * (size_t)T * c->vocab_size)) goto fail;
    int best = 0;
    const float *last = logits + (size_t)(T - 1) * c->vocab_size;
    for (int v = 1; v < c->vocab_size; v++)
        if (last[v] > last[best]) best = v;
    printf("wrote %s: %d x %d logits; argmax at the last position: %d\n", out, T, c->vocab_size, best);
    free(tokens);
    free(logits);
    dsc_model_free(m);
    return 0;
fail:
    fprintf(stderr, "dsc forward: %s\n", dsc_last_error());
fail_quiet:
    free(tokens);
    free(logits);
    dsc_model_free(m);
    return 1;
}
