/* test_reference.c: the C model against the PyTorch reference (tests/reference/gen_fixtures.py).
 * For every fixture directory: load the model the reference wrote, run it on the reference's
 * tokens, and compare logits, every loss term, the gradient of every parameter, the expert loads,
 * the bias after one aux-loss-free update and the DSA selection: max |a-b| / max |b| <= 1e-4 per
 * tensor (docs/MODEL.md §11). Usage: test_reference FIXTURES_DIR */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "dsc.h"
#include "infer/engine.h"
#include "io/safetensors.h"
#include "model/block.h"
#include "model/dsa.h"
#include "model/model.h"
#include "testutil.h"

#define TOL 1e-4

static double worst_overall = 0;

static double compare(const char *fx, const char *what, const float *got, const float *ref, size_t n) {
    size_t w;
    double e = tu_rel_error(got, ref, n, &w);
    if (getenv("DSC_VERBOSE")) printf("  %-60s %.2e\n", what, e);
    CHECK(e <= TOL, "%s: %s: relative error %.3g (worst at %zu: got %.8g, want %.8g)", fx, what, e, w, (double)got[w],
          (double)ref[w]);
    if (e > worst_overall) worst_overall = e;
    return e;
}

static float *read_f32(const st_file *st, const char *name, size_t *n) {
    const st_tensor *t = st_find(st, name);
    if (!t) return NULL;
    float *v = malloc(sizeof(float) * (t->numel ? t->numel : 1));
    if (st_tensor_to_f32(st, t, v, t->numel)) {
        free(v);
        return NULL;
    }
    if (n) *n = t->numel;
    return v;
}

static void run_fixture(const char *dir, const char *label) {
    char path[4096];
    dsc_model *m = NULL;
    if (dsc_model_load(dir, &m)) {
        CHECK(0, "%s: load: %s", label, dsc_last_error());
        return;
    }
    const dsc_config *c = dsc_model_config(m);
    snprintf(path, sizeof path, "%s/fixture.safetensors", dir);
    st_file *st = NULL;
    if (st_open(path, &st)) {
        CHECK(0, "%s: %s", label, dsc_last_error());
        dsc_model_free(m);
        return;
    }
    const st_tensor *tt = st_find(st, "tokens"), *tg = st_find(st, "targets");
    CHECK(tt && tg && tt->dtype == ST_I32 && tt->ndim == 2, "%s: fixture has I32 tokens [B,T]", label);
    int B = (int)tt->shape[0], T = (int)tt->shape[1], N = B * T, V = c->vocab_size;
    int32_t *tokens = malloc(sizeof(int32_t) * N), *targets = malloc(sizeof(int32_t) * N);
    memcpy(tokens, tt->data, sizeof(int32_t) * N);
    memcpy(targets, tg->data, sizeof(int32_t) * N);
    double worst_here = 0;

    /* logits of every position */
    float *logits = malloc(sizeof(float) * (size_t)N * V);
    CHECK(dsc_model_logits(m, tokens, B, T, logits) == DSC_OK, "%s: logits: %s", label, dsc_last_error());
    float *ref0 = read_f32(st, "logits", NULL);
    CHECK(ref0 != NULL, "%s: fixture has logits", label);
    if (!ref0) return;
    worst_here = fmax(worst_here, compare(label, "logits", logits, ref0, (size_t)N * V));

    /* DSA selection and scores of every block with an indexer (from the logits pass) */
    for (int l = 0; l < c->num_hidden_layers && c->index_n_heads > 0; l++) {
        char name[64];
        snprintf(name, sizeof name, "dsa_sel.%d", l);
        const st_tensor *ts = st_find(st, name);
        if (!ts) continue;
        const block_acts *a = model_block_acts(m, l);
        int K = c->index_topk;
        int32_t *sel = malloc(sizeof(int32_t) * N * K);
        float *scores = malloc(sizeof(float) * (size_t)N * T);
        float *scratch = dsc_alloc(dsa_scratch_floats(c, B, T) * sizeof(float));
        dsa_select(c, &m->w.blocks[l].attn.idx, &m->rope, a->an, a->attn.cq, B, T, sel, scores, scratch);
        int mismatches = 0;
        for (int i = 0; i < N * K; i++) mismatches += sel[i] != ((const int32_t *)ts->data)[i];
        CHECK(mismatches == 0 && ts->numel == (size_t)N * K, "%s: %s: %d selections differ", label, name, mismatches);
        snprintf(name, sizeof name, "dsa_scores.%d", l);
        float *rs = read_f32(st, name, NULL);
        if (rs) { /* compare the causal part only (-inf above the diagonal on both sides) */
            for (int i = 0; i < N * T; i++)
                if (isinf(rs[i]) && isinf(scores[i])) rs[i] = scores[i] = 0;
            worst_here = fmax(worst_here, compare(label, name, scores, rs, (size_t)N * T));
        }
        free(rs);
        free(sel);
        free(scores);
        dsc_free(scratch);
    }

    /* the inference engine (absorbed attention over the latent cache, prefill in chunks of 5)
     * against the same logits, and its MTP module (depth 1) against the reference's */
    {
        iweights iw;
        tensor_source src;
        tensor_source_from_model(&src, m);
        engine *e = NULL;
        engine_options eo = {1, T, 5};
        CHECK(iweights_build(&iw, c, &src, true) == DSC_OK && engine_create(&iw, &eo, &e) == DSC_OK,
              "%s: engine: %s", label, dsc_last_error());
        float *el = malloc(sizeof(float) * (size_t)T * V), *g = malloc(sizeof(float) * (size_t)T * c->hidden_size);
        int32_t *next = malloc(sizeof(int32_t) * T);
        float *mref = c->num_nextn_predict_layers > 0 ? read_f32(st, "mtp_logits.1", NULL) : NULL;
        double worst_e = 0, worst_m = 0;
        for (int b = 0; e && b < B; b++) {
            int s = engine_seq_new(e);
            /* prefill in chunks of 5 rows: every chunk's hidden states are kept for the MTP rows */
            for (int t0 = 0; t0 < T; t0 += 5) {
                int n = T - t0 < 5 ? T - t0 : 5;
                CHECK(engine_prefill(e, s, tokens + b * T + t0, n, NULL, el + (size_t)t0 * V) == DSC_OK,
                      "%s: engine prefill: %s", label, dsc_last_error());
                memcpy(g + (size_t)t0 * c->hidden_size, engine_last_hidden(e), sizeof(float) * n * c->hidden_size);
            }
            worst_e = fmax(worst_e, compare(label, "engine logits", el, ref0 + (size_t)b * T * V, (size_t)T * V));
            if (mref) {
                for (int t = 0; t < T; t++) { /* z[t+1]: the next input token, then the last target */
                    int32_t z = t + 1 < T ? tokens[b * T + t + 1] : targets[b * T + T - 1];
                    next[t] = z < 0 ? 0 : z;
                }
                for (int t0 = 0; t0 < T; t0 += 5) {
                    int n = T - t0 < 5 ? T - t0 : 5;
                    CHECK(engine_mtp(e, s, g + (size_t)t0 * c->hidden_size, next + t0, n, t0, el + (size_t)t0 * V) ==
                              DSC_OK,
                          "%s: engine mtp: %s", label, dsc_last_error());
                }
                worst_m = fmax(worst_m, compare(label, "engine MTP logits", el, mref + (size_t)b * T * V, (size_t)T * V));
            }
            engine_seq_free(e, s);
        }
        worst_here = fmax(worst_here, fmax(worst_e, worst_m));
        printf("%-24s engine (absorbed, chunked prefill): logits %.2e%s", label, worst_e, mref ? "" : "\n");
        if (mref) printf(", MTP depth-1 logits %.2e\n", worst_m);
        free(mref);
        free(el);
        free(g);
        free(next);
        engine_free(e);
    }

    /* losses and gradients */
    dsc_model_zero_grad(m);
    dsc_losses l;
    CHECK(dsc_model_forward_backward(m, tokens, targets, B, T, &l) == DSC_OK, "%s: %s", label, dsc_last_error());
    const char *lnames[4] = {"loss.total", "loss.ce", "loss.mtp", "loss.balance"};
    float lv[4] = {l.total, l.ce, l.mtp, l.balance};
    for (int i = 0; i < 4; i++) {
        float *r = read_f32(st, lnames[i], NULL);
        CHECK(r != NULL, "%s: fixture has %s", label, lnames[i]);
        if (!r) continue;
        /* a loss term that is 0 in both is compared absolutely */
        if (r[0] == 0) CHECK(fabsf(lv[i]) < 1e-7f, "%s: %s = %g, want 0", label, lnames[i], lv[i]);
        else worst_here = fmax(worst_here, compare(label, lnames[i], &lv[i], r, 1));
        free(r);
    }
    int n_grads = 0;
    for (int i = 0; i < dsc_model_num_tensors(m); i++) {
        const char *name = dsc_model_tensor_name(m, i);
        if (strstr(name, "e_score_correction_bias") || strstr(name, "indexer")) continue;
        char gname[160];
        snprintf(gname, sizeof gname, "grad.%s", name);
        size_t n;
        float *r = read_f32(st, gname, &n);
        CHECK(r != NULL, "%s: fixture has %s", label, gname);
        if (!r) continue;
        float *g;
        int64_t shape[4];
        int nd = dsc_model_tensor_info(m, i, shape, NULL, &g);
        size_t numel = 1;
        for (int j = 0; j < nd; j++) numel *= (size_t)shape[j];
        CHECK(numel == n, "%s: %s has %zu elements, fixture %zu", label, gname, numel, n);
        if (numel == n) worst_here = fmax(worst_here, compare(label, gname, g, r, n));
        n_grads++;
        free(r);
    }

    /* expert loads of this pass, then the bias after one update */
    int E = c->n_routed_experts, nb = c->num_hidden_layers + c->num_nextn_predict_layers;
    for (int b = 0; b < nb && E > 0; b++) {
        char name[64];
        snprintf(name, sizeof name, "load.%d", b);
        const st_tensor *t = st_find(st, name);
        if (!t) continue;
        const int64_t *want = t->data;
        int diff = 0;
        for (int e = 0; e < E; e++) diff += m->expert_load[(size_t)b * E + e] != want[e];
        CHECK(t->dtype == ST_I64 && diff == 0, "%s: %s: %d experts differ", label, name, diff);
    }
    dsc_model_update_expert_bias(m, c->bias_update_speed);
    for (int b = 0; b < nb && E > 0; b++) {
        char name[64];
        snprintf(name, sizeof name, "bias_after.%d", b);
        float *r = read_f32(st, name, NULL);
        if (!r) continue;
        worst_here = fmax(worst_here, compare(label, name, m->w.blocks[b].moe.bias, r, E));
        free(r);
    }
    printf("%-24s B=%d T=%-3d logits + 4 losses + %3d gradients: worst relative error %.2e\n", label, B, T, n_grads,
           worst_here);
    free(tokens);
    free(targets);
    free(logits);
    free(ref0);
    st_close(st);
    dsc_model_free(m);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    const char *root = argc > 1 ? argv[1] : "fixtures";
    DIR *d = opendir(root);
    CHECK(d != NULL, "fixture directory %s exists (run tests/reference/gen_fixtures.py)", root);
    if (!d) return tu_finish("test_reference");
    char *names[256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256) {
        if (e->d_name[0] == '.') continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s/fixture.safetensors", root, e->d_name);
        FILE *f = fopen(p, "rb");
        if (!f) continue;
        fclose(f);
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, by_name);
    CHECK(n >= 8, "at least 8 fixture configurations (found %d)", n);
    for (int i = 0; i < n; i++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
        run_fixture(dir, names[i]);
        free(names[i]);
    }
    printf("worst relative error over all fixtures: %.2e (tolerance %.0e)\n", worst_overall, TOL);
    return tu_finish("test_reference");
}
