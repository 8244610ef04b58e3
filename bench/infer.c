/* infer.c: inference speed of a model (GGUF file, Hugging Face or dsc directory), measured as
 * llama.cpp's own benchmarks measure it, so that bench/infer.sh can set the two side by side on
 * the same GGUF:
 *   pp P       prompt processing: one sequence, a P-token prompt, tokens/s (llama-bench -p P);
 *   tg G       decode: one sequence from an empty cache, G tokens one at a time (llama-bench -n G);
 *   batched    S sequences at once (llama-batched-bench -npp NPP -ntg NTG -npl S): the S prompts of
 *              NPP tokens (prompt tokens/s), then NTG steps that each decode one token of every
 *              sequence (generated tokens/s, all sequences together).
 * With tg it prints the weight bytes one decode token reads (engine_decode_weight_bytes) and the
 * rate they are read at as a fraction of the machine's DRAM bandwidth, measured in the same run:
 * against the best probe of the run (at start and around every tg run), and paired: each tg run
 * against the mean of the probes just before and after it, the median over the runs. On a shared
 * machine the bandwidth a streaming read gets moves by a fifth within minutes; the paired figure
 * compares decode with what the memory system gave at that moment.
 * Usage: bench_infer MODEL [--pp 512] [--tg 64] [--npp 128] [--ntg 32] [--npl 1,4,16] [--reps 2]
 *                          [--json]
 * Each figure is the best of --reps runs (the machine is shared: the best is the least disturbed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "bench_util.h"
#include "infer/load.h"
#include "kernels/kernels.h"

static int32_t *random_tokens(dsc_rng *r, int n, int V) {
    int32_t *t = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    for (int i = 0; i < n; i++) t[i] = (int32_t)(dsc_rng_u64(r) % (uint64_t)V);
    return t;
}

static void fail(void) {
    fprintf(stderr, "bench_infer: %s\n", dsc_last_error());
    exit(1);
}

/* Seconds to prefill P tokens into a new sequence. */
static double time_pp(engine *e, const int32_t *tok, int P, float *logits) {
    int s = engine_seq_new(e);
    double t0 = bench_now();
    if (engine_prefill(e, s, tok, P, logits, NULL)) fail();
    double dt = bench_now() - t0;
    engine_seq_free(e, s);
    return dt;
}

/* Seconds to decode G tokens one at a time into a new sequence. */
static double time_tg(engine *e, dsc_rng *r, int G, int V, float *logits) {
    int s = engine_seq_new(e);
    double t0 = bench_now();
    for (int g = 0; g < G; g++) {
        int32_t t = (int32_t)(dsc_rng_u64(r) % (uint64_t)V);
        if (engine_decode(e, &s, &t, 1, logits)) fail();
    }
    double dt = bench_now() - t0;
    engine_seq_free(e, s);
    return dt;
}

/* S sequences: seconds for their NPP-token prompts, then for NTG steps of one token each. */
static void time_batched(engine *e, dsc_rng *r, int S, int NPP, int NTG, int V, float *logits, double *t_pp,
                         double *t_tg) {
    int ids[64];
    int32_t *prompt = random_tokens(r, NPP * S, V), *next = random_tokens(r, S, V);
    double t0 = bench_now();
    for (int s = 0; s < S; s++) {
        ids[s] = engine_seq_new(e);
        if (engine_prefill(e, ids[s], prompt + (size_t)s * NPP, NPP, NULL, NULL)) fail();
    }
    *t_pp = bench_now() - t0;
    t0 = bench_now();
    for (int g = 0; g < NTG; g++) {
        if (engine_decode(e, ids, next, S, logits)) fail();
        for (int s = 0; s < S; s++) next[s] = (int32_t)(dsc_rng_u64(r) % (uint64_t)V);
    }
    *t_tg = bench_now() - t0;
    for (int s = 0; s < S; s++) engine_seq_free(e, ids[s]);
    free(prompt);
    free(next);
}

/* The DRAM probe: a streaming read of one 1 GiB buffer, allocated and filled once (a fresh
 * buffer each time would add its page faults and clearing to the run, and the kernel's work
 * to the machine's load around the decode it brackets). */
#define PROBE_FLOATS ((size_t)1 << 28)

static double probe(const float *buf) { return dsc_read_bandwidth_gbs(buf, PROBE_FLOATS, dsc_num_threads(), 3); }

static double min2(double a, double b) { return a < b ? a : b; }
static double max2(double a, double b) { return a > b ? a : b; }

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: %s MODEL [--pp P] [--tg G] [--npp N] [--ntg N] [--npl 1,4,16] [--reps R] [--json]\n",
                argv[0]);
        return 2;
    }
    const char *path = argv[1];
    int P = 512, G = 64, NPP = 128, NTG = 32, reps = 2, json = 0;
    char npl_arg[256] = "1,4,16";
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--pp") && i + 1 < argc) P = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tg") && i + 1 < argc) G = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--npp") && i + 1 < argc) NPP = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ntg") && i + 1 < argc) NTG = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--npl") && i + 1 < argc) snprintf(npl_arg, sizeof npl_arg, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            fprintf(stderr, "bench_infer: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    int npl[16], nn = 0, max_s = 1;
    for (char *t = strtok(npl_arg, ","); t && nn < 16; t = strtok(NULL, ",")) {
        npl[nn] = atoi(t);
        if (npl[nn] < 1 || npl[nn] > 64) {
            fprintf(stderr, "bench_infer: --npl values are 1..64\n");
            return 2;
        }
        if (npl[nn] > max_s) max_s = npl[nn];
        nn++;
    }
    int ctx = (P > G ? P : G) > NPP + NTG ? (P > G ? P : G) : NPP + NTG;
    infer_options io = {max_s, ctx + 8, 512 > max_s ? 512 : max_s, false};
    infer_model *im;
    double t_open = bench_now();
    if (infer_open(path, &io, &im)) fail();
    t_open = bench_now() - t_open;
    engine *e = infer_engine(im);
    const dsc_config *c = engine_config(e);
    int V = c->vocab_size;
    dsc_rng r;
    dsc_rng_seed(&r, 7);
    float *logits = malloc(sizeof(float) * (size_t)V * max_s);
    int32_t *prompt = random_tokens(&r, P, V);
    float *probe_buf = malloc(sizeof(float) * PROBE_FLOATS);
    if (!probe_buf || !logits) {
        fprintf(stderr, "bench_infer: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < PROBE_FLOATS; i++) probe_buf[i] = (float)(i & 7);
    double bw = probe(probe_buf), wbytes = engine_decode_weight_bytes(e);
    if (!json)
        printf("%s: %s, %d layers, opened in %.2f s; %d threads; memory bandwidth %.1f GB/s (measured); a decode "
               "token reads %.1f MB of weights\n",
               path, c->model_type, c->num_hidden_layers, t_open, dsc_num_threads(), bw, wbytes / 1e6);

    time_pp(e, prompt, P < 32 ? P : 32, logits); /* warm-up: pages in the weights */
    time_tg(e, &r, 2, V, logits);
    double pp = 1e30, tg = 1e30, paired[64];
    int np = 0;
    for (int k = 0; k < reps; k++) {
        if (P > 0) pp = min2(pp, time_pp(e, prompt, P, logits));
        if (G > 0) {
            double before = probe(probe_buf), t = time_tg(e, &r, G, V, logits);
            double after = probe(probe_buf);
            tg = min2(tg, t);
            bw = max2(bw, max2(before, after));
            if (np < 64) paired[np++] = wbytes * G / t / 1e9 / ((before + after) / 2);
        }
    }
    qsort(paired, (size_t)np, sizeof paired[0], by_value);
    double paired_median = np == 0 ? 0 : np % 2 ? paired[np / 2] : (paired[np / 2 - 1] + paired[np / 2]) / 2;
    if (P > 0) {
        if (json) printf("{\"impl\": \"dsc\", \"test\": \"pp%d\", \"seqs\": 1, \"tokens_per_s\": %.3f}\n", P, P / pp);
        else printf("pp%-4d          %10.1f tokens/s\n", P, P / pp);
    }
    if (G > 0) {
        double gbs = wbytes * G / tg / 1e9;
        if (json)
            printf("{\"impl\": \"dsc\", \"test\": \"tg%d\", \"seqs\": 1, \"tokens_per_s\": %.3f, \"weight_bytes\": %.0f, "
                   "\"weight_gbs\": %.3f, \"bandwidth_gbs\": %.3f, \"paired_fraction\": %.4f}\n",
                   G, G / tg, wbytes, gbs, bw, paired_median);
        else
            printf("tg%-4d          %10.1f tokens/s  (weights read at %.1f GB/s = %.0f%% of the best bandwidth "
                   "probe, %.1f GB/s; paired with the probes around each run: %.0f%%)\n",
                   G, G / tg, gbs, 100 * gbs / bw, bw, 100 * paired_median);
    }
    for (int k = 0; k < nn; k++) {
        double tpp = 1e30, ttg = 1e30;
        for (int rep = 0; rep < reps; rep++) {
            double a, b;
            time_batched(e, &r, npl[k], NPP, NTG, V, logits, &a, &b);
            tpp = min2(tpp, a);
            ttg = min2(ttg, b);
        }
        double spp = (double)npl[k] * NPP / tpp, stg = (double)npl[k] * NTG / ttg;
        if (json)
            printf("{\"impl\": \"dsc\", \"test\": \"batched\", \"npp\": %d, \"ntg\": %d, \"seqs\": %d, \"pp_tokens_per_s\": "
                   "%.3f, \"tg_tokens_per_s\": %.3f}\n",
                   NPP, NTG, npl[k], spp, stg);
        else
            printf("batched S=%-3d  prompts %8.1f tokens/s, decode %8.1f tokens/s (npp %d, ntg %d)\n", npl[k], spp, stg,
                   NPP, NTG);
    }
    if (!json) {
        dsc_config_stats st;
        dsc_config_stats_compute(c, &st);
        printf("KV cache per token: %zu bytes in dsc's fp32 latent cache (%.0f bytes in bf16) vs %.0f bytes for MHA "
               "of the same dims in bf16 (%.1fx)\n",
               engine_kv_bytes_per_token(e), st.kv_cache_bytes_per_token, st.mha_kv_cache_bytes_per_token,
               st.mha_kv_cache_bytes_per_token / st.kv_cache_bytes_per_token);
    }
    free(prompt);
    free(probe_buf);
    free(logits);
    infer_close(im);
    return 0;
}
