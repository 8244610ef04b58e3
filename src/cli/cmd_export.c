/* cmd_export.c: `dsc export`: a model written in another format. --hf: a Hugging Face DeepSeek
 * directory (config.json, safetensors shards + index) in f32, bf16 or DeepSeek's fp8; --gguf: one
 * GGUF file for llama.cpp (io/gguf.h's export_gguf). The source is a dsc model directory, a
 * training checkpoint (a step directory, or a run's folder: its newest step), or an HF directory. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "io/gguf.h"
#include "io/hfdir.h"
#include "train/checkpoint.h"

/* A directory with config.json is the model; a run's checkpoint folder means its newest step. */
static const char *resolve_source(const char *src, char *buf, size_t cap) {
    if (ckpt_resolve_model(src, buf, cap) != DSC_OK || !strcmp(buf, src)) return src;
    fprintf(stderr, "dsc: %s is a checkpoint folder: using its newest checkpoint %s\n", src, buf);
    return buf;
}

/* Writes src as a Hugging Face directory and prints what was written (shared with quantize). */
static int export_hf(const char *cmd, const char *src, const char *dst, qt_type type, long long shard_mb) {
    char resolved[4200], what[256];
    src = resolve_source(src, resolved, sizeof resolved);
    hfdir_export_options o = {type, (uint64_t)shard_mb * 1000 * 1000, NULL};
    hfdir *h = NULL;
    if (hfdir_convert(src, dst, &o) || hfdir_open(dst, &h) || hfdir_check(h, true, NULL)) {
        fprintf(stderr, "%s: %s\n", cmd, dsc_last_error());
        hfdir_close(h);
        return 1;
    }
    hfdir_stats s;
    hfdir_get_stats(h, &s);
    hfdir_stats_format(&s, what, sizeof what);
    printf("wrote %s (%s): %s\n", dst, qt_name(type), what);
    hfdir_close(h);
    return 0;
}

int cmd_export(int argc, char **argv) {
    arg_option opts[] = {
        {"model", true, "source: a dsc model directory, a training checkpoint, or a Hugging Face directory", NULL},
        {"out", true, "--hf: the directory to create (must not exist, or be empty); --gguf: the file", NULL},
        {"hf", false, "write a Hugging Face directory (safetensors shards + index)", NULL},
        {"gguf", false, "write a GGUF file for llama.cpp", NULL},
        {"type", true, "--hf: f32 (default), bf16, fp8; --gguf: f32 (default), f16, bf16, q8_0, q4_0", NULL},
        {"shard-size", true, "--hf: most MB of tensor data per shard (default 2000)", NULL},
        {NULL, false, NULL, NULL}};
    int rc = args_parse(argc, argv, opts, "usage: dsc export --model SRC --out DST (--hf | --gguf) [--type T]");
    if (rc) return rc == 2 ? 0 : 2;
    const char *src = args_get(opts, "model"), *dst = args_get(opts, "out"), *type = args_get(opts, "type");
    bool hf = args_get(opts, "hf") != NULL, gguf = args_get(opts, "gguf") != NULL;
    if (!src || !dst) {
        fprintf(stderr, "dsc export: --model and --out are required\n");
        return 2;
    }
    if (hf == gguf) {
        fprintf(stderr, "dsc export: give the format: --hf (Hugging Face directory) or --gguf (llama.cpp file)\n");
        return 2;
    }
    if (gguf) {
        if (args_get(opts, "shard-size")) {
            fprintf(stderr, "dsc export: --shard-size applies to --hf only\n");
            return 2;
        }
        char resolved[4200];
        if (export_gguf(resolve_source(src, resolved, sizeof resolved), dst, type ? type : "f32")) {
            fprintf(stderr, "dsc export: %s\n", dsc_last_error());
            return 1;
        }
        printf("wrote %s (GGUF, %s)\n", dst, type ? type : "f32");
        return 0;
    }
    long long shard_mb;
    if (!args_int(opts, "shard-size", 2000, 1, 1000 * 1000 * 1000, &shard_mb)) return 2;
    int t = qt_parse(type ? type : "f32");
    if (t != QT_F32 && t != QT_BF16 && t != QT_FP8) {
        fprintf(stderr, "dsc export: --type %s: a Hugging Face directory holds f32, bf16 or fp8%s\n", type,
                t == QT_Q8_0 || t == QT_Q4_0 ? " (q8_0 and q4_0 are GGUF types: use --gguf)" : "");
        return 2;
    }
    return export_hf("dsc export", src, dst, (qt_type)t, shard_mb);
}
