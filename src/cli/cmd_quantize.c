/* cmd_quantize.c: `dsc quantize`: a model's weights stored in another type, as a Hugging Face
 * directory: f32, bf16, or DeepSeek's fp8 (e4m3 with 128x128 block scales). The same as
 * `dsc export --hf --type T`; the GGUF types q8_0 and q4_0 are written by `dsc export --gguf`. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "io/hfdir.h"
#include "train/checkpoint.h"

int cmd_quantize(int argc, char **argv) {
    arg_option opts[] = {
        {"model", true, "source: a dsc model directory, a training checkpoint, or a Hugging Face directory", NULL},
        {"out", true, "the directory to create (must not exist, or be empty)", NULL},
        {"type", true, "f32, bf16 or fp8 (q8_0, q4_0: dsc export --gguf)", NULL},
        {"shard-size", true, "most MB of tensor data per shard (default 2000)", NULL},
        {NULL, false, NULL, NULL}};
    int rc = args_parse(argc, argv, opts, "usage: dsc quantize --model SRC --out DST --type f32|bf16|fp8");
    if (rc) return rc == 2 ? 0 : 2;
    const char *src = args_get(opts, "model"), *dst = args_get(opts, "out"), *type = args_get(opts, "type");
    if (!src || !dst || !type) {
        fprintf(stderr, "dsc quantize: --model, --out and --type are required\n");
        return 2;
    }
    long long shard_mb;
    if (!args_int(opts, "shard-size", 2000, 1, 1000 * 1000 * 1000, &shard_mb)) return 2;
    int t = qt_parse(type);
    if (t == QT_Q8_0 || t == QT_Q4_0) {
        fprintf(stderr, "dsc quantize: %s is a GGUF type: use dsc export --gguf --type %s --model %s --out FILE.gguf\n",
                type, type, src);
        return 2;
    }
    if (t != QT_F32 && t != QT_BF16 && t != QT_FP8) {
        fprintf(stderr, "dsc quantize: --type: expected f32, bf16 or fp8, found '%s'\n", type);
        return 2;
    }
    /* a run's checkpoint folder (no config.json): its newest checkpoint */
    char resolved[4200], what[256];
    if (ckpt_resolve_model(src, resolved, sizeof resolved) == DSC_OK && strcmp(resolved, src)) {
        fprintf(stderr, "dsc quantize: %s is a checkpoint folder: using its newest checkpoint %s\n", src, resolved);
        src = resolved;
    }
    hfdir_export_options o = {(qt_type)t, (uint64_t)shard_mb * 1000 * 1000, NULL};
    hfdir *h = NULL;
    if (hfdir_convert(src, dst, &o) || hfdir_open(dst, &h) || hfdir_check(h, true, NULL)) {
        fprintf(stderr, "dsc quantize: %s\n", dsc_last_error());
        hfdir_close(h);
        return 1;
    }
    hfdir_stats s;
    hfdir_get_stats(h, &s);
    hfdir_stats_format(&s, what, sizeof what);
    printf("wrote %s (%s): %s\n", dst, qt_name((qt_type)t), what);
    hfdir_close(h);
    return 0;
}
