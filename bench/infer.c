/* infer.c: inference speed of a model (GGUF file or safetensors directory): prompt processing
 * (tokens/s of a P-token prefill) and decode (tokens/s with S sequences decoded together, each
 * step one token per sequence), the weight bytes a decode step reads, and that rate as a fraction
 * of the machine's measured memory bandwidth. bench/infer.sh runs it next to llama.cpp on the
 * same GGUF. Prints one JSON line per measurement with --json.
 * Usage: bench_infer MODEL [--prompt 512] [--gen 64] [--seqs 1,4,16] [--json] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "bench_util.h"
#include "infer/load.h"
#include "kernels/kernels.h"
#include "model/config.h"

/* Bytes of the weights one decode token reads: attention, dense FFNs, K routed experts + shared
 * per MoE block, the head, at bytes_per_weight (from the file: total weight bytes / params). */
static double active_weight_fraction(const dsc_config *c) {
    dsc_config_stats s;
    dsc_config_stats_compute(c, &s);
    /* active minus the embedding (a row lookup, not a read of the table) */
    double active = s.active_params - (double)c->vocab_size * c->hidden_size * (c->tie_word_embeddings ? 0 : 1);
    return active / s.total_params;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [--prompt P] [--gen G] [--seqs 1,4,16] [--weights-bytes B] [--json]\n",
                argv[0]);
        return 2;
    }
    const char *path = argv[1];
    int P = 512, G = 64, json = 0;
    double weight_bytes = 0;
    char seqs_arg[256] = "1,4,16";
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--prompt") && i + 1 < argc) P = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gen") && i + 1 < argc) G = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seqs") && i + 1 < argc) snprintf(seqs_arg, sizeof seqs_arg, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--weights-bytes") && i + 1 < argc) weight_bytes = atof(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json = 1;
    }
    int seqs[16], ns = 0, max_s = 1;
    for (char *t = strtok(seqs_arg, ","); t && ns < 16; t = strtok(NULL, ",")) {
        seqs[ns] = atoi(t);
        if (seqs[ns] > max_s) max_s = seqs[ns];
        ns++;
    }
    infer_options io = {max_s, P + G + 8, P > max_s ? (P < 512 ? P : 512) : max_s, false};
    infer_model *im;
    double t_open = bench_now();
    if (infer_open(path, &io, &im)) {
        fprintf(stderr, "bench_infer: %s\n", dsc_last_error());
        return 1;
    }
    t_open = bench_now() - t_open;
    engine *e = infer_engine(im);
    const dsc_config *c = engine_config(e);
    int V = c->vocab_size;
    dsc_rng r;
    dsc_rng_seed(&r, 7);
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)P * max_s), *next = malloc(sizeof(int32_t) * max_s);
    float *logits = malloc(sizeof(float) * (size_t)V * max_s);
    for (int i = 0; i < P * max_s; i++) prompt[i] = (int32_t)(dsc_rng_u64(&r) % V);
    double bw = dsc_memory_bandwidth_gbs();
    if (!json)
        printf("%s: %s, %d layers, opened in %.2f s; memory bandwidth %.1f GB/s (measured)\n", path, c->model_type,
               c->num_hidden_layers, t_open, bw);

    /* prompt processing: one sequence, P tokens (warm-up pass first) */
    int s0 = engine_seq_new(e);
    engine_prefill(e, s0, prompt, P < 64 ? P : 64, NULL, NULL);
    engine_seq_free(e, s0);
    s0 = engine_seq_new(e);
    double t0 = bench_now();
    if (engine_prefill(e, s0, prompt, P, logits, NULL)) {
        fprintf(stderr, "bench_infer: %s\n", dsc_last_error());
        return 1;
    }
    double pp = P / (bench_now() - t0);
    engine_seq_free(e, s0);
    if (json) printf("{\"impl\": \"dsc\", \"test\": \"pp%d\", \"tokens_per_s\": %.2f}\n", P, pp);
    else printf("prompt processing (%d tokens): %.1f tokens/s\n", P, pp);

    /* decode: S sequences, each with a short prompt, G steps of one token each */
    double frac = active_weight_fraction(c);
    for (int k = 0; k < ns; k++) {
        int S = seqs[k], ids[64];
        for (int s = 0; s < S; s++) {
            ids[s] = engine_seq_new(e);
            engine_prefill(e, ids[s], prompt + (size_t)s * P, 16, NULL, NULL);
            next[s] = prompt[(size_t)s * P + 16];
        }
        engine_decode(e, ids, next, S, logits); /* warm-up step */
        t0 = bench_now();
        for (int g = 0; g < G; g++) {
            if (engine_decode(e, ids, next, S, logits)) {
                fprintf(stderr, "bench_infer: %s\n", dsc_last_error());
                return 1;
            }
            for (int s = 0; s < S; s++) next[s] = (int32_t)(dsc_rng_u64(&r) % V);
        }
        double dt = bench_now() - t0, tg = (double)G * S / dt;
        /* a decode step reads the active weights once for all S sequences (an upper bound on the
         * experts' share when S > 1: more distinct experts are touched) */
        double gbs = weight_bytes > 0 ? weight_bytes * frac * G / dt / 1e9 : 0;
        if (json)
            printf("{\"impl\": \"dsc\", \"test\": \"tg%d\", \"seqs\": %d, \"tokens_per_s\": %.2f, \"weight_gbs\": %.2f, "
                   "\"bandwidth_gbs\": %.2f}\n",
                   G, S, tg, gbs, bw);
        else
            printf("decode, %2d sequences: %.1f tokens/s (%.1f steps/s)%s\n", S, tg, G / dt,
                   gbs > 0 ? "" : "");
        if (!json && gbs > 0 && S == 1)
            printf("  active weights read per step: %.1f GB/s = %.0f%% of the measured bandwidth\n", gbs,
                   100 * gbs / bw);
        for (int s = 0; s < S; s++) engine_seq_free(e, ids[s]);
    }
    dsc_config_stats st;
    dsc_config_stats_compute(c, &st);
    if (!json)
        printf("KV cache per token: %zu bytes in dsc's fp32 latent cache (%.0f bytes in bf16) vs %.0f bytes for MHA "
               "of the same dims in bf16 (%.1fx)\n",
               engine_kv_bytes_per_token(e), st.kv_cache_bytes_per_token, st.mha_kv_cache_bytes_per_token,
               st.mha_kv_cache_bytes_per_token / st.kv_cache_bytes_per_token);
    free(prompt);
    free(next);
    free(logits);
    infer_close(im);
    return 0;
}
