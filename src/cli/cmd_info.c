/* cmd_info.c: `dsc info`: the shape arithmetic of a preset, a config.json or a model directory:
 * total and active parameters, FLOPs per token, and KV-cache bytes per token; for a directory
 * with weights also its shards, tensors and dtypes, checked against the configuration. */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "io/gguf.h"
#include "io/hfdir.h"

static void human(char *buf, size_t n, double x) {
    const char *unit[] = {"", "K", "M", "B", "T"};
    int u = 0;
    while (x >= 1000 && u < 4) {
        x /= 1000;
        u++;
    }
    snprintf(buf, n, "%.2f%s", x, unit[u]);
}

/* Every tensor the model reads present, supported and shaped (the inference weights are built over
 * the mapped file); closes gs. */
static int gguf_weights_report(gguf_source *gs) {
    const gguf_file *f = gguf_source_file(gs);
    tensor_source src;
    iweights w;
    gguf_source_tensors(gs, &src);
    if (iweights_build(&w, gguf_source_config(gs), &src, false)) {
        fprintf(stderr, "dsc info: %s\n", dsc_last_error());
        gguf_source_close(gs);
        return 1;
    }
    double bytes = 0;
    for (int i = 0; i < gguf_tensor_count(f); i++) bytes += (double)gguf_tensor_at(f, i)->nbytes;
    printf("weights: GGUF v%u, %d tensors, %.2f GB; every tensor the model reads is present and shaped\n",
           gguf_version(f), gguf_tensor_count(f), bytes / 1e9);
    iweights_free(&w);
    gguf_source_close(gs);
    return 0;
}

int cmd_info(int argc, char **argv) {
    arg_option opts[] = {
        {"preset", true, "a named preset: tiny, small, deepseek-v3, deepseek-v3.2, deepseek-v2-lite", NULL},
        {"config", true, "a Hugging Face style config.json", NULL},
        {"model", true, "a model directory (reads DIR/config.json) or a .gguf file", NULL},
        {"context", true, "context length for the attention FLOPs (default 4096)", NULL},
        {NULL, false, NULL, NULL}};
    int rc = args_parse(argc, argv, opts, "usage: dsc info (--preset NAME | --config FILE | --model DIR)");
    if (rc) return rc == 2 ? 0 : 2;
    long long ctx;
    if (!args_int(opts, "context", 4096, 1, 1 << 24, &ctx)) return 2;
    const char *preset = args_get(opts, "preset"), *cfile = args_get(opts, "config"), *dir = args_get(opts, "model");
    if (!!preset + !!cfile + !!dir != 1) {
        fprintf(stderr, "dsc info: give exactly one of --preset, --config, --model\n");
        return 2;
    }
    dsc_config cfg;
    char path[4096];
    const char *source = preset ? preset : cfile ? cfile : dir;
    size_t dl = dir ? strlen(dir) : 0;
    gguf_source *gs = NULL;
    if (preset) rc = dsc_config_preset(preset, &cfg);
    else if (cfile) rc = dsc_config_load(cfile, &cfg);
    else if (dl > 5 && !strcmp(dir + dl - 5, ".gguf")) {
        if (!(rc = gguf_source_open(dir, &gs))) cfg = *gguf_source_config(gs);
    } else {
        snprintf(path, sizeof path, "%s/config.json", dir);
        rc = dsc_config_load(path, &cfg);
    }
    dsc_config_stats s;
    if (rc || dsc_config_stats_compute(&cfg, &s)) {
        fprintf(stderr, "dsc info: %s\n", dsc_last_error());
        gguf_source_close(gs);
        return 1;
    }
    char a[32], b[32], e[32], f[32];
    printf("model %s (%s)\n", source, cfg.model_type);
    printf("  layers %d (dense %d, MoE %d) + MTP %d | d %d | heads %d | vocab %d\n", cfg.num_hidden_layers,
           cfg.n_routed_experts ? cfg.first_k_dense_replace : cfg.num_hidden_layers,
           cfg.n_routed_experts ? cfg.num_hidden_layers - cfg.first_k_dense_replace : 0, cfg.num_nextn_predict_layers,
           cfg.hidden_size, cfg.num_attention_heads, cfg.vocab_size);
    printf("  MLA: q_lora_rank %d, kv_lora_rank %d, qk dims %d+%d, v %d, YaRN %s\n", cfg.q_lora_rank, cfg.kv_lora_rank,
           cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim, cfg.yarn ? "on" : "off");
    if (cfg.n_routed_experts)
        printf("  MoE: %d routed (top-%d, %d groups keep %d, %s%s) + %d shared, expert width %d\n",
               cfg.n_routed_experts, cfg.num_experts_per_tok, cfg.n_group, cfg.topk_group,
               cfg.scoring_func == DSC_SCORE_SIGMOID ? "sigmoid" : "softmax", cfg.expert_bias ? ", bias" : "",
               cfg.n_shared_experts, cfg.moe_intermediate_size);
    if (cfg.index_n_heads) printf("  DSA indexer: %d heads x %d, top-%d\n", cfg.index_n_heads, cfg.index_head_dim, cfg.index_topk);
    if (cfg.mhc_expansion_rate > 1)
        printf("  mHC: %d streams, %d Sinkhorn iterations\n", cfg.mhc_expansion_rate, cfg.mhc_sinkhorn_iters);
    human(a, sizeof a, s.total_params);
    human(b, sizeof b, s.active_params);
    human(e, sizeof e, s.embedding_params);
    human(f, sizeof f, s.mtp_params);
    printf("parameters: total %s (%.0f), active per token %s, embedding+head %s, MTP %s\n", a, s.total_params, b, e, f);
    double attn = s.attn_flops_per_token_per_ctx * (double)ctx;
    printf("FLOPs per token: forward %.3g (+ attention %.3g at context %lld), training step ~%.3g\n",
           s.flops_per_token, attn, ctx, 3 * (s.flops_per_token + attn));
    printf("KV cache per token (bf16): %.0f bytes latent (MLA) vs %.0f bytes for MHA of the same dims (%.1fx less)\n",
           s.kv_cache_bytes_per_token, s.mha_kv_cache_bytes_per_token,
           s.mha_kv_cache_bytes_per_token / s.kv_cache_bytes_per_token);
    if (gs) return gguf_weights_report(gs);
    if (dir && hfdir_has_weights(dir)) { /* every tensor the model reads: present, supported, shaped */
        hfdir *h = NULL;
        hfdir_report r;
        if (hfdir_open(dir, &h) || hfdir_check(h, false, &r)) {
            fprintf(stderr, "dsc info: %s\n", dsc_last_error());
            hfdir_close(h);
            return 1;
        }
        hfdir_stats st;
        char what[256];
        hfdir_get_stats(h, &st);
        hfdir_stats_format(&st, what, sizeof what);
        printf("weights: %s; %d not read by the model; MTP %s\n", what, r.n_unused,
               !r.mtp_layers ? "none" : r.mtp_complete ? "complete" : "missing (speculative decoding unavailable)");
        hfdir_close(h);
    }
    return 0;
}
