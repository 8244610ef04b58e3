/* train_step.c: one training step (forward + backward + AdamW + expert-bias update) of a preset
 * model on a fixed batch, timed over several steps. Prints tokens/s, achieved GFLOP/s, the
 * fraction of this machine's measured fp32 peak (whole step and inside the matrix multiplies),
 * and peak memory. bench/run.sh runs it next to the PyTorch reference's same step.
 * Usage: bench_train_step [--preset small | --config FILE] [--batch 8] [--seq 256] [--steps 8] [--warmup 2]
 *                         [--model-out DIR] [--batch-out FILE] [--json] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "base/rng.h"
#include "bench_util.h"
#include "dsc.h"
#include "kernels/kernels.h"
#include "model/config.h"
#include "train/adamw.h"

/* Model FLOPs of one training step (forward x 3), counting only useful work: causal attention
 * over (T+1)/2 keys on average, the MTP blocks and heads, and no embedding lookups. */
static double step_flops(const dsc_config *c, int B, int T) {
    dsc_config_stats s;
    dsc_config_stats_compute(c, &s);
    int L = c->num_hidden_layers, D = c->num_nextn_predict_layers;
    double per_layer_attn = s.attn_flops_per_token_per_ctx / L;
    /* with T <= index_topk the indexer is not evaluated (dense attention) */
    if (c->index_n_heads > 0 && T <= c->index_topk)
        per_layer_attn -= 2.0 * c->index_n_heads * c->index_head_dim;
    double ctx = (T + 1) / 2.0;
    double fwd = s.flops_per_token + L * per_layer_attn * ctx;
    if (D > 0) {
        /* one MTP block ~ an average main MoE block; plus eh_proj and the shared head */
        double block = (s.flops_per_token - 2.0 * c->vocab_size * c->hidden_size) / L;
        fwd += D * (block + per_layer_attn * ctx + 2.0 * 2 * c->hidden_size * c->hidden_size +
                    2.0 * c->vocab_size * c->hidden_size);
    }
    return 3.0 * fwd * B * T;
}

int main(int argc, char **argv) {
    const char *preset = "small", *model_out = NULL, *batch_out = NULL, *config_file = NULL;
    int B = 8, T = 256, steps = 8, warmup = 2, json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--preset") && i + 1 < argc) preset = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seq") && i + 1 < argc) T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--model-out") && i + 1 < argc) model_out = argv[++i];
        else if (!strcmp(argv[i], "--config") && i + 1 < argc) config_file = argv[++i];
        else if (!strcmp(argv[i], "--batch-out") && i + 1 < argc) batch_out = argv[++i];
        else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            fprintf(stderr, "usage: %s [--preset P | --config FILE] [--batch B] [--seq T] [--steps N] [--warmup N] "
                            "[--model-out DIR] [--batch-out FILE] [--json]\n", argv[0]);
            return 2;
        }
    }
    if (B < 1 || T < 2 || steps < 1 || warmup < 0) {
        fprintf(stderr, "train_step: batch >= 1, seq >= 2, steps >= 1 expected\n");
        return 2;
    }
    dsc_config cfg;
    dsc_model *m = NULL;
    adamw *opt = NULL;
    if ((config_file ? dsc_config_load(config_file, &cfg) : dsc_config_preset(preset, &cfg)) ||
        dsc_model_create(&cfg, &m) || dsc_model_init(m, 1) ||
        adamw_create(m, &opt) || (model_out && dsc_model_save(m, model_out))) {
        fprintf(stderr, "train_step: %s\n", dsc_last_error());
        return 1;
    }
    /* A fixed batch of random tokens: targets are the next token (the last one drawn too). */
    int N = B * T;
    int32_t *tokens = malloc(sizeof(int32_t) * N), *targets = malloc(sizeof(int32_t) * N);
    dsc_rng r;
    dsc_rng_seed(&r, 1234);
    for (int b = 0; b < B; b++) {
        int32_t next = (int32_t)(dsc_rng_u64(&r) % cfg.vocab_size);
        for (int t = 0; t < T; t++) {
            tokens[b * T + t] = next;
            next = (int32_t)(dsc_rng_u64(&r) % cfg.vocab_size);
            targets[b * T + t] = next;
        }
    }
    if (batch_out) {
        FILE *f = fopen(batch_out, "wb");
        int ok = f && fwrite(tokens, sizeof(int32_t), N, f) == (size_t)N && fwrite(targets, sizeof(int32_t), N, f) == (size_t)N;
        if (!f || fclose(f) || !ok) {
            fprintf(stderr, "train_step: cannot write %s\n", batch_out);
            return 1;
        }
    }
    adamw_params hp = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f};
    double *times = malloc(sizeof(double) * steps), *gemm_s = malloc(sizeof(double) * steps);
    double *gemm_f = malloc(sizeof(double) * steps);
    float first_loss = 0, last_loss = 0;
    for (int s = 0; s < warmup + steps; s++) {
        dsc_gemm_stats st0, st1;
        dsc_gemm_stats_get(&st0);
        double t0 = bench_now();
        dsc_losses l;
        dsc_model_zero_grad(m);
        if (dsc_model_forward_backward(m, tokens, targets, B, T, &l)) {
            fprintf(stderr, "train_step: %s\n", dsc_last_error());
            return 1;
        }
        adamw_step(opt, m, &hp, 1.0f);
        dsc_model_update_expert_bias(m, cfg.bias_update_speed);
        double dt = bench_now() - t0;
        dsc_gemm_stats_get(&st1);
        if (s == 0) first_loss = l.total;
        last_loss = l.total;
        if (!json) printf("step %2d  loss %.4f (ce %.4f mtp %.4f balance %.3f)  %.3f s%s\n", s, l.total, l.ce, l.mtp,
                          l.balance, dt, s < warmup ? "  (warm-up)" : "");
        if (s >= warmup) {
            times[s - warmup] = dt;
            gemm_s[s - warmup] = st1.seconds - st0.seconds;
            gemm_f[s - warmup] = st1.top_flops - st0.top_flops;
        }
    }
    double med = bench_median(times, steps), gs = 0, gf = 0;
    for (int s = 0; s < steps; s++) gs += gemm_s[s], gf += gemm_f[s];
    double flops = step_flops(&cfg, B, T);
    double peak = dsc_fma_peak_gflops(dsc_num_threads());
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double tok_s = N / med, gflops = flops / med / 1e9, gemm_gflops = gs > 0 ? gf / gs / 1e9 : 0;
    if (json) {
        printf("{\"impl\": \"dsc\", \"preset\": \"%s\", \"batch\": %d, \"seq\": %d, \"threads\": %d, "
               "\"step_s\": %.5f, \"tokens_per_s\": %.1f, \"gflops\": %.2f, \"peak_gflops\": %.1f, "
               "\"gemm_gflops\": %.2f, \"gemm_fraction_of_step\": %.3f, \"max_rss_mb\": %.1f, "
               "\"first_loss\": %.5f, \"last_loss\": %.5f}\n",
               preset, B, T, dsc_num_threads(), med, tok_s, gflops, peak, gemm_gflops, gs / steps / med,
               ru.ru_maxrss / 1024.0, first_loss, last_loss);
    } else {
        printf("\n%s preset, batch %d x %d tokens, %d threads, kernels %s\n", preset, B, T, dsc_num_threads(),
               dsc_kernels_isa_name());
        printf("  step %.3f s (median of %d)  ->  %.0f tokens/s\n", med, steps, tok_s);
        printf("  model FLOPs %.3g per step  ->  %.1f GFLOP/s = %.1f%% of the %.1f GFLOP/s fp32 FMA peak\n", flops,
               gflops, 100 * gflops / peak, peak);
        printf("  inside matrix multiplies: %.1f GFLOP/s = %.1f%% of peak, %.0f%% of the step time\n", gemm_gflops,
               100 * gemm_gflops / peak, 100 * gs / steps / med);
        printf("  peak memory (max RSS) %.1f MiB; loss %.4f -> %.4f\n", ru.ru_maxrss / 1024.0, first_loss, last_loss);
        const char *names[32];
        double secs[32];
        int np = dsc_profile_get(names, secs, 32);
        double tot = 0;
        for (int i = 0; i < np; i++) tot += secs[i];
        if (tot > 0) {
            printf("  phases (DSC_PROFILE=1, all %d steps incl. warm-up):\n", warmup + steps);
            for (int i = 0; i < np; i++)
                if (secs[i] > 0) printf("    %-16s %7.3f s  %5.1f%%\n", names[i], secs[i], 100 * secs[i] / tot);
        }
    }
    free(tokens);
    free(targets);
    free(times);
    free(gemm_s);
    free(gemm_f);
    adamw_free(opt);
    dsc_model_free(m);
    return 0;
}
