/* random_gguf.c: a DeepSeek model with random weights written as a llama.cpp deepseek2 GGUF, one
 * tensor at a time, for benchmarks of models too large to build in fp32 (DeepSeek-V2-Lite: 15.7B
 * parameters, 63 GB in fp32, 8.6 GB in q4_0). Speed does not depend on the values, only on the
 * shapes and the routing, which random weights spread over the experts like a trained router.
 * Tensors are drawn as the model's initialisation draws them (uniform with the init std for the
 * matrices, ones for norms, zeros for biases); values are a function of (seed, tensor), not of
 * the order the exporter asks for them.
 * Usage: bench_random_gguf --preset NAME [--plain] [--vocab N] [--type q4_0] [--seed 1]
 *                          --tokenizer tokenizer.json OUT.gguf
 *   --plain drops what llama.cpp's deepseek2 cannot run: mHC, the DSA indexer (and MTP, which
 *   the export drops anyway). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "bench_util.h"
#include "io/gguf.h"
#include "model/config.h"
#include "model/params.h"
#include "tok/tokenizer.h"

typedef struct {
    const dsc_config *c;
    tensor_desc *descs;
    int n_descs;
    float *buf; /* the last tensor asked for: valid until the next find (the exporter copies it) */
    size_t cap;
    uint64_t seed;
    double t0;
    int done;
} random_source;

static uint64_t mix(uint64_t x) { /* splitmix64 finaliser */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static float std_of(const random_source *s, const tensor_desc *d) {
    return d->init == INIT_MHC_PHI ? s->c->mhc_phi_init_std : s->c->initializer_range;
}

static int random_find(void *ctx, const char *name, qtensor *out) {
    random_source *s = ctx;
    int k = 0;
    while (k < s->n_descs && strcmp(s->descs[k].name, name)) k++;
    if (k == s->n_descs) return dsc_set_error("random model: no tensor '%s'", name);
    const tensor_desc *d = &s->descs[k];
    if (d->numel > s->cap) {
        free(s->buf);
        s->cap = d->numel;
        if (!(s->buf = malloc(sizeof(float) * s->cap))) return dsc_set_error("out of memory");
    }
    float *x = s->buf;
    size_t n = d->numel;
    if (d->init == INIT_NORMAL || d->init == INIT_MHC_PHI) {
        /* uniform on [-a, a] with the init's std: a = std * sqrt(3); 64K-value chunks seeded apart */
        const float a = std_of(s, d) * sqrtf(3.0f);
        uint64_t base = mix(s->seed ^ mix((uint64_t)k));
#pragma omp parallel for schedule(static)
        for (size_t c0 = 0; c0 < n; c0 += 65536) {
            uint64_t st = mix(base + c0);
            size_t c1 = c0 + 65536 < n ? c0 + 65536 : n;
            for (size_t i = c0; i < c1; i++) {
                st ^= st << 13, st ^= st >> 7, st ^= st << 17;
                x[i] = a * ((float)(st >> 40) * (2.0f / 16777216.0f) - 1.0f);
            }
        }
    } else {
        float v = d->init == INIT_ONES ? 1.0f : 0.0f;
        for (size_t i = 0; i < n; i++) x[i] = v;
    }
    out->type = QT_F32;
    out->rows = d->ndim >= 2 ? (int)d->shape[0] : 1;
    out->cols = (int)(d->ndim >= 2 ? n / (size_t)d->shape[0] : n);
    out->data = x;
    out->scale_inv = NULL;
    if (++s->done % 200 == 0)
        fprintf(stderr, "\rbench_random_gguf: %d tensors, %.0f s", s->done, bench_now() - s->t0);
    return DSC_OK;
}

int main(int argc, char **argv) {
    const char *preset = NULL, *type = "q4_0", *tokpath = NULL, *out = NULL;
    int plain = 0, vocab = 0;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--preset") && i + 1 < argc) preset = argv[++i];
        else if (!strcmp(argv[i], "--type") && i + 1 < argc) type = argv[++i];
        else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tokpath = argv[++i];
        else if (!strcmp(argv[i], "--vocab") && i + 1 < argc) vocab = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--plain")) plain = 1;
        else if (argv[i][0] != '-' && !out) out = argv[i];
        else {
            fprintf(stderr, "bench_random_gguf: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!preset || !tokpath || !out) {
        fprintf(stderr, "usage: bench_random_gguf --preset NAME [--plain] [--vocab N] [--type q4_0] [--seed S] "
                        "--tokenizer tokenizer.json OUT.gguf\n");
        return 2;
    }
    dsc_config c;
    int t = qt_parse(type);
    if (dsc_config_preset(preset, &c) || t < 0) {
        fprintf(stderr, "bench_random_gguf: %s\n", t < 0 ? "unknown --type" : dsc_last_error());
        return 1;
    }
    if (plain) {
        c.mhc_expansion_rate = 1;
        c.index_n_heads = 0;
        c.num_nextn_predict_layers = 0;
    }
    if (vocab > 0) c.vocab_size = vocab;
    dsc_tokenizer *tok;
    if (dsc_tokenizer_load(tokpath, &tok)) {
        fprintf(stderr, "bench_random_gguf: %s\n", dsc_last_error());
        return 1;
    }
    random_source s = {&c, NULL, 0, NULL, 0, seed, bench_now(), 0};
    s.descs = malloc(sizeof(tensor_desc) * (size_t)params_max_descs(&c));
    params_layout(&c, NULL, NULL, s.descs, &s.n_descs);
    tensor_source src = {random_find, &s, "random model", NULL};
    gguf_export_options o = {(qt_type)t, preset, false, true};
    char notes[1024];
    int rc = gguf_export_deepseek2(&c, &src, tok, &o, out, notes, sizeof notes);
    fprintf(stderr, "\n");
    if (rc) fprintf(stderr, "bench_random_gguf: %s\n", dsc_last_error());
    else fprintf(stderr, "bench_random_gguf: wrote %s (%s, %d tensors) in %.0f s\n%s", out, type, s.done,
                 bench_now() - s.t0, notes);
    free(s.descs);
    free(s.buf);
    dsc_tokenizer_free(tok);
    return rc ? 1 : 0;
}
