/* test_gguf.c: GGUF out and in. A random model exported to GGUF (f32, f16, bf16, q8_0, q4_0) and
 * read back as inference weights must give the logits of the model it came from: f32 exactly
 * those of the engine over the in-memory model, and within the engine's tolerance of the
 * training forward pass; the quantized types within stated bounds. Configs: DeepSeek-V3 style
 * (sigmoid router with groups and correction bias, q_lora, YaRN, MTP dropped), V2-Lite style
 * (softmax, plain q projection, shared experts 2), dense with tied embeddings. Also: the metadata
 * round trip, the tokenizer keys, models llama.cpp cannot run refused, `export_gguf` end to end,
 * the writer's value types, and malformed files (each a one-line error, never a crash). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fileio.h"
#include "dsc.h"
#include "infer/engine.h"
#include "io/gguf.h"
#include "testutil.h"
#include "testmodel.h"

static char tmpdir[256];

static const char *tmp(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static bool one_line(const char *s) { return s && *s && !strchr(s, '\n'); }

/* A random model. With the correction bias, its values are spread 1 apart so that the router's
 * choice does not hinge on near ties (quantized weights would move them across the top-k cut, and
 * an expert more or less changes a logit far more than the rounding that caused it). */
static dsc_model *make_model(const dsc_config *c, uint64_t seed) {
    dsc_model *m = tu_random_model(c, seed);
    if (!m) return NULL;
    for (int i = 0; i < dsc_model_num_tensors(m); i++) {
        int64_t shape[4];
        float *p;
        dsc_model_tensor_info(m, i, shape, &p, NULL);
        if (strstr(dsc_model_tensor_name(m, i), "e_score_correction_bias"))
            for (int64_t e = 0; e < shape[0]; e++) p[e] = (float)((e * 5 + i) % shape[0]);
    }
    return m;
}

/* All logits [n, V] of tokens through an engine over w (consumed). */
static int engine_logits(iweights *w, const int32_t *tok, int n, float *out) {
    engine *e;
    engine_options o = {1, n, 8};
    if (engine_create(w, &o, &e)) {
        CHECK(0, "engine_create: %s", dsc_last_error());
        iweights_free(w);
        return DSC_ERR;
    }
    int s = engine_seq_new(e);
    int rc = engine_prefill(e, s, tok, n, NULL, out);
    CHECK(rc == DSC_OK, "engine_prefill: %s", dsc_last_error());
    engine_free(e);
    return rc;
}

/* A dsc_model holding the weights of a GGUF file, dequantized to fp32 through its tensor source. */
static dsc_model *dequantized_model(const char *path) {
    gguf_source *gs;
    if (gguf_source_open(path, &gs)) {
        CHECK(0, "gguf_source_open: %s", dsc_last_error());
        return NULL;
    }
    dsc_model *m;
    if (dsc_model_create(gguf_source_config(gs), &m)) {
        CHECK(0, "model from GGUF config: %s", dsc_last_error());
        gguf_source_close(gs);
        return NULL;
    }
    tensor_source src;
    gguf_source_tensors(gs, &src);
    for (int i = 0; i < dsc_model_num_tensors(m); i++) {
        int64_t shape[4];
        float *p;
        int nd = dsc_model_tensor_info(m, i, shape, &p, NULL);
        qtensor q;
        const char *name = dsc_model_tensor_name(m, i);
        if (src.find(src.ctx, name, &q)) {
            CHECK(0, "%s", dsc_last_error());
            continue;
        }
        int64_t rows = nd == 2 ? shape[0] : 1, cols = nd == 2 ? shape[1] : shape[0];
        CHECK(q.rows == rows && q.cols == cols, "%s: view [%d, %d]", name, q.rows, q.cols);
        for (int r = 0; r < q.rows && q.rows == rows && q.cols == cols; r++) qt_dequant_row(p + (size_t)r * cols, &q, r);
    }
    gguf_source_close(gs);
    return m;
}

/* Exports m as type and runs the file in the engine. Its logits must match the training forward
 * pass over the same (dequantized) weights; returns their error against the original model. */
static double roundtrip(const char *label, dsc_model *m, qt_type type, const int32_t *tok, int T, const float *ref,
                        const float *eng_ref) {
    const dsc_config *c = dsc_model_config(m);
    size_t n = (size_t)T * c->vocab_size;
    tensor_source src;
    tensor_source_from_model(&src, m);
    gguf_export_options o = {type, label, false, false};
    char notes[1024];
    const char *path = tmp("model.gguf");
    if (gguf_export_deepseek2(c, &src, NULL, &o, path, notes, sizeof notes)) {
        CHECK(0, "%s %s: export: %s", label, qt_name(type), dsc_last_error());
        return INFINITY;
    }
    /* streamed through a temporary file (one tensor in memory at a time): the same bytes */
    o.stream = true;
    CHECK(gguf_export_deepseek2(c, &src, NULL, &o, tmp("stream.gguf"), notes, sizeof notes) == DSC_OK,
          "%s %s: streamed export: %s", label, qt_name(type), dsc_last_error());
    dsc_mapped_file fa, fb;
    if (dsc_map_file(path, &fa) == DSC_OK) {
        if (dsc_map_file(tmp("stream.gguf"), &fb) == DSC_OK) {
            CHECK(fa.size == fb.size && !memcmp(fa.data, fb.data, fa.size), "%s %s: streamed export differs", label,
                  qt_name(type));
            dsc_unmap_file(&fb);
        }
        dsc_unmap_file(&fa);
    }
    iweights w;
    if (gguf_load_iweights(path, &w)) {
        CHECK(0, "%s %s: gguf_load_iweights: %s", label, qt_name(type), dsc_last_error());
        return INFINITY;
    }
    float *got = malloc(sizeof(float) * n), *dq = malloc(sizeof(float) * n);
    double err = INFINITY;
    dsc_model *dm = dequantized_model(path);
    if (!engine_logits(&w, tok, T, got) && dm) {
        err = tu_rel_error(got, ref, n, NULL);
        char what[128];
        CHECK(dsc_model_logits(dm, tok, 1, T, dq) == DSC_OK, "logits: %s", dsc_last_error());
        snprintf(what, sizeof what, "%s %s: GGUF engine vs forward pass over the same weights", label, qt_name(type));
        /* the engine's Q8_0/Q4_0 products round the activations to int8 blocks (as llama.cpp's do) */
        tu_check_close(what, got, dq, n, type == QT_Q8_0 || type == QT_Q4_0 ? 5e-2 : 1e-4);
        if (type == QT_F32) {
            snprintf(what, sizeof what, "%s f32: GGUF engine vs in-memory engine", label);
            tu_check_close(what, got, eng_ref, n, 1e-6);
        }
    }
    dsc_model_free(dm);
    free(got);
    free(dq);
    return err;
}

/* bounds[type] on the logits' error against the original model (< 0: reported only). */
static void check_model(const char *label, const dsc_config *c, int T, uint64_t seed, const double bounds[5]) {
    dsc_model *m = make_model(c, seed);
    if (!m) return;
    int V = c->vocab_size;
    int32_t *tok = malloc(sizeof(int32_t) * T);
    dsc_rng r;
    dsc_rng_seed(&r, seed + 100);
    for (int i = 0; i < T; i++) tok[i] = (int32_t)(dsc_rng_u64(&r) % V);
    float *ref = malloc(sizeof(float) * T * V), *eng = malloc(sizeof(float) * T * V);
    CHECK(dsc_model_logits(m, tok, 1, T, ref) == DSC_OK, "%s: logits: %s", label, dsc_last_error());
    iweights w;
    tensor_source src;
    tensor_source_from_model(&src, m);
    CHECK(iweights_build(&w, c, &src, false) == DSC_OK, "%s: iweights: %s", label, dsc_last_error());
    engine_logits(&w, tok, T, eng);
    static const qt_type types[5] = {QT_F32, QT_F16, QT_BF16, QT_Q8_0, QT_Q4_0};
    for (int i = 0; i < 5; i++) {
        double e = roundtrip(label, m, types[i], tok, T, ref, eng);
        if (bounds[i] >= 0) {
            printf("  %-38s %-5s logits vs the original model: rel. error %.3g (bound %.3g)\n", label,
                   qt_name(types[i]), e, bounds[i]);
            CHECK(e <= bounds[i], "%s %s: relative error %.3g > %.3g", label, qt_name(types[i]), e, bounds[i]);
        } else {
            printf("  %-38s %-5s logits vs the original model: rel. error %.3g (routing changes; not bounded)\n",
                   label, qt_name(types[i]), e);
        }
    }
    free(tok);
    free(ref);
    free(eng);
    dsc_model_free(m);
}

/* A DeepSeek-V3 shaped toy: dims multiples of 32 so that the Q formats apply to most matrices. */
static void v3_config(dsc_config *c) {
    dsc_config_preset("tiny", c);
    strcpy(c->model_type, "deepseek_v3");
    c->vocab_size = 300;
    c->hidden_size = 64;
    c->intermediate_size = 96;
    c->moe_intermediate_size = 32;
    c->q_lora_rank = 32;
    c->kv_lora_rank = 32;
    c->qk_nope_head_dim = 16;
    c->qk_rope_head_dim = 8;
    c->v_head_dim = 16;
    c->mhc_expansion_rate = 0;
    c->index_n_heads = 0;
    c->yarn = true;
    c->rope_factor = 4;
    c->original_max_position_embeddings = 16;
    c->mscale = c->mscale_all_dim = 1.0;
    c->max_position_embeddings = 64;
}

static void v2_lite_config(dsc_config *c) {
    v3_config(c);
    strcpy(c->model_type, "deepseek_v2");
    c->scoring_func = DSC_SCORE_SOFTMAX;
    c->expert_bias = false;
    c->norm_topk_prob = false;
    c->routed_scaling_factor = 1.0f;
    c->n_group = 1;
    c->topk_group = 1;
    c->q_lora_rank = 0;
    c->n_shared_experts = 2;
    c->num_nextn_predict_layers = 0;
    c->mscale = c->mscale_all_dim = 0.707;
    c->rope_factor = 40;
}

/* ---- metadata ---- */

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return strdup(buf);
}

static void test_metadata(void) {
    dsc_config c, back;
    v3_config(&c);
    dsc_model *m = make_model(&c, 7);
    if (!m) return;
    tensor_source src;
    tensor_source_from_model(&src, m);
    for (int keys = 0; keys < 2; keys++) {
        gguf_export_options o = {QT_Q8_0, "meta", keys == 0, false};
        char notes[1024];
        CHECK(gguf_export_deepseek2(&c, &src, NULL, &o, tmp("meta.gguf"), notes, sizeof notes) == DSC_OK, "export: %s",
              dsc_last_error());
        CHECK(strstr(notes, "1 MTP block(s) not written") != NULL, "notes tell of the dropped MTP block: '%s'", notes);
        gguf_file *f;
        if (gguf_open(tmp("meta.gguf"), &f)) {
            CHECK(0, "open: %s", dsc_last_error());
            continue;
        }
        CHECK(gguf_deepseek_config(f, true, &back) == DSC_OK, "config: %s", dsc_last_error());
        dsc_config want = c;
        want.num_nextn_predict_layers = 0; /* not in the file */
        if (keys == 0) {
            /* without the dsc.* keys: what deepseek2.* holds, with defaults for the training constants */
            dsc_config def;
            dsc_config_preset("deepseek-v3", &def);
            strcpy(want.model_type, "deepseek_v3");
            want.initializer_range = def.initializer_range;
            want.mtp_loss_weight = def.mtp_loss_weight;
            want.aux_loss_alpha = def.aux_loss_alpha;
            want.bias_update_speed = def.bias_update_speed;
        }
        dsc_config_save(&want, tmp("want.json"));
        dsc_config_save(&back, tmp("back.json"));
        char *a = slurp(tmp("want.json")), *b = slurp(tmp("back.json"));
        CHECK(a && b && !strcmp(a, b), "metadata round trip (dsc keys %s):\nwant %s\ngot  %s", keys ? "on" : "off", a, b);
        free(a);
        free(b);
        /* a few keys llama.cpp requires, with the types it reads */
        const gguf_kv *kv = gguf_kv_find(f, "deepseek2.attention.key_length_mla");
        CHECK(kv && kv->type == GGUF_V_UINT32, "key_length_mla is a uint32");
        kv = gguf_kv_find(f, "deepseek2.expert_gating_func");
        int64_t v = 0;
        CHECK(kv && !gguf_get_int(f, "deepseek2.expert_gating_func", &v) && v == 2, "gating func sigmoid = 2");
        double lm = 0;
        CHECK(!gguf_get_float(f, "deepseek2.rope.scaling.yarn_log_multiplier", &lm) && fabs(lm - 0.1) < 1e-7,
              "yarn_log_multiplier = 0.1 * mscale_all_dim, found %g", lm);
        const gguf_tensor *t = gguf_tensor_find(f, "blk.1.ffn_gate_exps.weight");
        CHECK(t && t->n_dims == 3 && t->ne[0] == 64 && t->ne[1] == 32 && t->ne[2] == 8 && t->type == GGUF_T_Q8_0,
              "stacked experts {d, Ie, E} q8_0");
        t = gguf_tensor_find(f, "blk.0.attn_k_b.weight");
        CHECK(t && t->n_dims == 3 && t->ne[0] == 16 && t->ne[1] == 32 && t->ne[2] == 2 && t->type == GGUF_T_F16,
              "attn_k_b {dn, rkv, H}, f16 (rows of 16)");
        t = gguf_tensor_find(f, "blk.0.attn_v_b.weight");
        CHECK(t && t->ne[0] == 32 && t->ne[1] == 16 && t->ne[2] == 2 && t->type == GGUF_T_Q8_0, "attn_v_b {rkv, dv, H}");
        t = gguf_tensor_find(f, "blk.1.ffn_gate_inp.weight");
        CHECK(t && t->type == GGUF_T_F32 && t->ne[0] == 64 && t->ne[1] == 8, "router f32 {d, E}");
        t = gguf_tensor_find(f, "blk.1.exp_probs_b.bias");
        CHECK(t && t->type == GGUF_T_F32 && t->n_dims == 1 && t->ne[0] == 8, "exp_probs_b.bias f32 {E}");
        CHECK(!gguf_tensor_find(f, "blk.3.nextn.eh_proj.weight") && !gguf_tensor_find(f, "blk.3.attn_norm.weight"),
              "no MTP tensors");
        CHECK(gguf_tensor_find(f, "blk.0.ffn_gate.weight") && !gguf_tensor_find(f, "blk.0.ffn_gate_inp.weight"),
              "block 0 dense");
        gguf_close(f);
    }
    dsc_model_free(m);
    /* YaRN without mscale_all_dim: llama.cpp's default YaRN attention factor cancelled */
    c.mscale_all_dim = 0;
    c.rope_factor = 40;
    c.num_nextn_predict_layers = 0;
    if (!(m = make_model(&c, 8))) return;
    tensor_source_from_model(&src, m);
    gguf_export_options o = {QT_F32, NULL, false, false};
    gguf_file *f;
    double af = 0;
    if (gguf_export_deepseek2(&c, &src, NULL, &o, tmp("m0.gguf"), NULL, 0) || gguf_open(tmp("m0.gguf"), &f)) {
        CHECK(0, "mscale_all_dim 0: %s", dsc_last_error());
    } else {
        CHECK(!gguf_get_float(f, "deepseek2.rope.scaling.attn_factor", &af) && fabs(af - 1 / (1 + 0.1 * log(40.0))) < 1e-6 &&
                  !gguf_kv_find(f, "deepseek2.rope.scaling.yarn_log_multiplier"),
              "attn_factor %g cancels YaRN's default", af);
        CHECK(gguf_deepseek_config(f, false, &back) == DSC_OK && back.yarn && back.mscale_all_dim == 0 &&
                  back.rope_factor == 40,
              "mscale_all_dim 0 read back: %s", dsc_last_error());
        gguf_close(f);
    }
    dsc_model_free(m);
}

/* ---- refusals ---- */

static void expect_refused(const char *label, const dsc_config *c, const char *needle) {
    dsc_model *m = make_model(c, 3);
    if (!m) return;
    tensor_source src;
    tensor_source_from_model(&src, m);
    gguf_export_options o = {QT_F32, NULL, false, false};
    unlink(tmp("refused.gguf"));
    int rc = gguf_export_deepseek2(c, &src, NULL, &o, tmp("refused.gguf"), NULL, 0);
    const char *msg = dsc_last_error();
    CHECK(rc == DSC_ERR && strstr(msg, needle) && one_line(msg), "%s refused with '%s': %s", label, needle, msg);
    CHECK(access(tmp("refused.gguf"), F_OK) != 0, "%s: no file left behind", label);
    dsc_model_free(m);
}

static void test_refusals(void) {
    dsc_config c;
    dsc_config_preset("tiny", &c); /* mHC, indexer */
    expect_refused("mHC", &c, "mHC");
    c.mhc_expansion_rate = 0;
    expect_refused("DSA indexer", &c, "indexer");
    c.index_n_heads = 0;
    c.n_shared_experts = 0;
    expect_refused("no shared experts", &c, "shared experts");
    c.n_shared_experts = 1;
    c.expert_bias = false;
    expect_refused("group_limited_greedy", &c, "group");
}

/* ---- tokenizer keys and export_gguf ---- */

static void test_tokenizer_and_cli(void) {
    const char *text = tmp("corpus.txt");
    FILE *f = fopen(text, "w");
    for (int i = 0; i < 200; i++) fprintf(f, "the quick brown fox %d jumps over the lazy dog; 東京 %d\n", i, i * 7);
    fclose(f);
    dsc_bpe_options bo = {.vocab_size = 290, .min_frequency = 2, .threads = 1};
    dsc_tokenizer *tok;
    const char *files[1] = {text};
    if (dsc_tokenizer_train(files, 1, &bo, &tok)) {
        CHECK(0, "tokenizer train: %s", dsc_last_error());
        return;
    }
    dsc_config c;
    v3_config(&c);
    c.num_nextn_predict_layers = 0;
    dsc_model *m = make_model(&c, 11);
    if (!m) {
        dsc_tokenizer_free(tok);
        return;
    }
    /* export_gguf reads a model directory with its tokenizer */
    const char *dir = tmp("modeldir");
    dsc_mkdir(dir);
    CHECK(dsc_model_save(m, dir) == DSC_OK, "save: %s", dsc_last_error());
    char tpath[600];
    snprintf(tpath, sizeof tpath, "%s/tokenizer.json", dir);
    CHECK(export_gguf(dir, tmp("cli.gguf"), "q8_0") == DSC_ERR && strstr(dsc_last_error(), "tokenizer") &&
              one_line(dsc_last_error()),
          "no tokenizer.json refused: %s", dsc_last_error());
    CHECK(dsc_tokenizer_save(tok, tpath) == DSC_OK, "tokenizer save: %s", dsc_last_error());
    CHECK(export_gguf(dir, tmp("cli.gguf"), "q5_1") == DSC_ERR && strstr(dsc_last_error(), "--type"),
          "bad type refused: %s", dsc_last_error());
    CHECK(export_gguf(dir, tmp("cli.gguf"), "q8_0") == DSC_OK, "export_gguf: %s", dsc_last_error());
    gguf_file *g;
    if (gguf_open(tmp("cli.gguf"), &g)) {
        CHECK(0, "open: %s", dsc_last_error());
    } else {
        const char *s;
        size_t len;
        CHECK(!gguf_get_string(g, "tokenizer.ggml.model", &s, &len) && len == 4 && !memcmp(s, "gpt2", 4), "gpt2");
        CHECK(!gguf_get_string(g, "tokenizer.ggml.pre", &s, &len) && len == 11 && !memcmp(s, "deepseek-v3", 11),
              "pre deepseek-v3");
        const gguf_kv *toks = gguf_kv_find(g, "tokenizer.ggml.tokens"), *types = gguf_kv_find(g, "tokenizer.ggml.token_type"),
                      *merges = gguf_kv_find(g, "tokenizer.ggml.merges");
        CHECK(toks && toks->elem == GGUF_V_STRING && toks->n == (uint64_t)c.vocab_size, "tokens: one per id");
        CHECK(types && types->elem == GGUF_V_INT32 && types->n == (uint64_t)c.vocab_size, "token types int32");
        CHECK(merges && merges->n == (uint64_t)dsc_tokenizer_num_merges(tok), "every merge");
        int bad = 0, n_ids = dsc_tokenizer_vocab_size(tok);
        for (int id = 0; toks && types && id < c.vocab_size; id++) {
            size_t l1, l2;
            const char *a, *b;
            gguf_arr_string(toks, (uint64_t)id, &a, &l1);
            dsc_token_kind kind;
            b = id < n_ids ? dsc_tokenizer_token_text(tok, id, &l2, &kind) : NULL;
            int64_t ty = gguf_arr_int(types, (uint64_t)id);
            if (b ? (l1 != l2 || memcmp(a, b, l1) || ty != (kind == DSC_TOKEN_SPECIAL ? 3 : kind == DSC_TOKEN_ADDED ? 4 : 1))
                  : ty != 5)
                bad++;
        }
        CHECK(bad == 0, "%d tokens differ", bad);
        if (merges && merges->n > 0) {
            int32_t a, b;
            size_t la, lb, lm;
            const char *m0;
            dsc_tokenizer_merge_at(tok, 0, &a, &b);
            const char *sa = dsc_tokenizer_token_text(tok, a, &la, NULL), *sb = dsc_tokenizer_token_text(tok, b, &lb, NULL);
            gguf_arr_string(merges, 0, &m0, &lm);
            CHECK(lm == la + lb + 1 && !memcmp(m0, sa, la) && m0[la] == ' ' && !memcmp(m0 + la + 1, sb, lb),
                  "merge 0 is 'a b'");
        }
        dsc_special_ids sp;
        dsc_tokenizer_specials(tok, &sp);
        int64_t bos = -1;
        CHECK(!gguf_get_int(g, "tokenizer.ggml.bos_token_id", &bos) && bos == sp.bos, "bos id %lld", (long long)bos);
        gguf_close(g);
    }
    /* the file runs as a model */
    iweights w;
    if (gguf_load_iweights(tmp("cli.gguf"), &w) == DSC_OK) iweights_free(&w);
    else CHECK(0, "load cli.gguf: %s", dsc_last_error());
    /* a tokenizer larger than the model's vocabulary */
    c.vocab_size = 200;
    dsc_model *small = make_model(&c, 12);
    tensor_source src;
    tensor_source_from_model(&src, small);
    gguf_export_options o = {QT_F32, NULL, false, false};
    CHECK(gguf_export_deepseek2(&c, &src, tok, &o, tmp("small.gguf"), NULL, 0) == DSC_ERR &&
              strstr(dsc_last_error(), "vocab_size"),
          "tokenizer larger than vocab refused: %s", dsc_last_error());
    dsc_model_free(small);
    dsc_model_free(m);
    dsc_tokenizer_free(tok);
}

/* ---- the writer's value types ---- */

static void test_writer_values(void) {
    gguf_writer *w;
    gguf_writer_create(&w);
    int32_t ia[3] = {-1, 0, 7};
    float fa[2] = {0.5f, -2.25f};
    const char *sa[3] = {"a", "", "long string"};
    gguf_set_u32(w, "u32", 4000000000u);
    gguf_set_i32(w, "i32", -5);
    gguf_set_f32(w, "f32", 1.5f);
    gguf_set_f64(w, "f64", 0.1);
    gguf_set_bool(w, "bool", true);
    gguf_set_string(w, "str", "hello");
    gguf_set_string(w, "str", "replaced");
    gguf_set_array(w, "ia", GGUF_V_INT32, ia, 3);
    gguf_set_array(w, "fa", GGUF_V_FLOAT32, fa, 2);
    gguf_set_string_array(w, "sa", sa, NULL, 3);
    float t1[3 * 32];
    for (int i = 0; i < 96; i++) t1[i] = (float)i;
    int64_t ne[2] = {32, 3};
    CHECK(gguf_writer_add_tensor(w, "t1", GGUF_T_F32, 2, ne, t1, false) == DSC_OK, "add t1");
    CHECK(gguf_writer_add_tensor(w, "t1", GGUF_T_F32, 2, ne, t1, false) == DSC_ERR, "duplicate tensor refused");
    int64_t bad[1] = {33};
    CHECK(gguf_writer_add_tensor(w, "t2", GGUF_T_Q8_0, 1, bad, t1, false) == DSC_ERR, "33 values are no q8_0 row");
    void *buf;
    size_t len;
    CHECK(gguf_writer_write_memory(w, &buf, &len) == DSC_OK, "write memory");
    gguf_writer_free(w);
    gguf_file *f;
    if (gguf_open_memory(buf, len, "values", &f)) {
        CHECK(0, "open: %s", dsc_last_error());
        free(buf);
        return;
    }
    int64_t v;
    double d;
    bool b;
    const char *s;
    size_t sl;
    CHECK(!gguf_get_int(f, "u32", &v) && v == 4000000000ll, "u32");
    CHECK(!gguf_get_int(f, "i32", &v) && v == -5, "i32");
    CHECK(!gguf_get_float(f, "f32", &d) && d == 1.5, "f32");
    CHECK(!gguf_get_float(f, "f64", &d) && d == 0.1, "f64");
    CHECK(!gguf_get_bool(f, "bool", &b) && b, "bool");
    CHECK(!gguf_get_string(f, "str", &s, &sl) && sl == 8 && !memcmp(s, "replaced", 8), "str replaced");
    CHECK(gguf_get_int(f, "str", &v) == DSC_ERR && strstr(dsc_last_error(), "expected an integer"), "type checked");
    CHECK(gguf_get_int(f, "nope", &v) == DSC_ERR && strstr(dsc_last_error(), "missing"), "missing key");
    const gguf_kv *kv = gguf_kv_find(f, "ia");
    CHECK(kv && kv->n == 3 && gguf_arr_int(kv, 0) == -1 && gguf_arr_int(kv, 2) == 7, "int array");
    kv = gguf_kv_find(f, "fa");
    CHECK(kv && kv->n == 2 && gguf_arr_float(kv, 1) == -2.25, "float array");
    kv = gguf_kv_find(f, "sa");
    if (kv && kv->n == 3) {
        gguf_arr_string(kv, 1, &s, &sl);
        CHECK(sl == 0, "empty string element");
        gguf_arr_string(kv, 2, &s, &sl);
        CHECK(sl == 11 && !memcmp(s, "long string", 11), "string element");
    } else {
        CHECK(0, "string array");
    }
    CHECK(gguf_kv_count(f) == 9 && gguf_tensor_count(f) == 1, "counts");
    const gguf_tensor *t = gguf_tensor_find(f, "t1");
    CHECK(t && t->nbytes == sizeof t1 && !memcmp(t->data, t1, sizeof t1) && (size_t)((const char *)t->data - (const char *)buf) % 32 == 0,
          "tensor data aligned and intact");
    qtensor q;
    CHECK(t && gguf_tensor_view(f, t, 1, 2, &q) == DSC_OK && q.rows == 2 && q.cols == 32 &&
              ((const float *)q.data)[0] == 32.0f,
          "row view");
    gguf_close(f);
    free(buf);
}

/* ---- malformed files ---- */

typedef struct {
    uint32_t version;
    uint64_t n_t, n_kv;         /* as written in the header (the real ones are 2 and 3) */
    uint32_t type_b;            /* ggml type of tensor b */
    uint64_t off_b;
    uint64_t key_len0;          /* length field of the first key */
    const char *name_b;
    uint32_t ndims_b;
    uint64_t ne0_b;
    uint32_t align;
    uint32_t arr_elem;          /* element type of the array kv */
    const char *key2;
    size_t data_len;            /* bytes of the data section */
} knobs;

static const knobs good = {3, 2, 3, GGUF_T_F32, 64, 17, "b", 2, 8, 32, GGUF_V_INT32, "c.key", 128};

typedef struct {
    unsigned char *p;
    size_t n, cap;
} bb;
static void b_put(bb *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void b32(bb *b, uint32_t v) { b_put(b, &v, 4); }
static void b64(bb *b, uint64_t v) { b_put(b, &v, 8); }
static void bstr(bb *b, const char *s) {
    b64(b, strlen(s));
    b_put(b, s, strlen(s));
}

/* kv: general.alignment u32, "x" array, key2 string; tensors a {16} f32 at 0, b {ne0_b, 2} type_b at off_b */
static bb make_file(const knobs *k) {
    bb b = {0};
    b_put(&b, "GGUF", 4);
    b32(&b, k->version);
    b64(&b, k->n_t);
    b64(&b, k->n_kv);
    b64(&b, k->key_len0);
    b_put(&b, "general.alignment", 17);
    b32(&b, GGUF_V_UINT32);
    b32(&b, k->align);
    bstr(&b, "x");
    b32(&b, GGUF_V_ARRAY);
    b32(&b, k->arr_elem);
    b64(&b, 2);
    if (k->arr_elem == GGUF_V_ARRAY) {
        b32(&b, GGUF_V_INT32);
        b64(&b, 0);
        b32(&b, GGUF_V_INT32);
        b64(&b, 0);
    } else {
        b32(&b, 1);
        b32(&b, 2);
    }
    bstr(&b, k->key2);
    b32(&b, GGUF_V_STRING);
    bstr(&b, "value");
    bstr(&b, "a");
    b32(&b, 1);
    b64(&b, 16);
    b32(&b, GGUF_T_F32);
    b64(&b, 0);
    bstr(&b, k->name_b);
    b32(&b, k->ndims_b);
    b64(&b, k->ne0_b);
    for (uint32_t i = 1; i < k->ndims_b && i < 8; i++) b64(&b, 2);
    b32(&b, k->type_b);
    b64(&b, k->off_b);
    while (b.n % 32) b_put(&b, "", 1);
    static const unsigned char data[1024] = {0};
    b_put(&b, data, k->data_len);
    return b;
}

static void expect_bad(const char *label, const knobs *k, size_t truncate_to, const char *needle) {
    bb b = make_file(k);
    size_t n = truncate_to ? truncate_to : b.n;
    /* an exact-size heap copy, so that ASan sees any read past the end */
    unsigned char *exact = malloc(n ? n : 1);
    memcpy(exact, b.p, n);
    gguf_file *f;
    int rc = gguf_open_memory(exact, n, "bad.gguf", &f);
    const char *msg = dsc_last_error();
    CHECK(rc == DSC_ERR && strstr(msg, needle) && strstr(msg, "bad.gguf") && one_line(msg), "%s: want '%s', got %s: %s",
          label, needle, rc ? "error" : "success", msg);
    if (!rc) gguf_close(f);
    free(exact);
    free(b.p);
}

static void test_bad_files(void) {
    bb b = make_file(&good);
    gguf_file *f;
    CHECK(gguf_open_memory(b.p, b.n, "good.gguf", &f) == DSC_OK, "the base file is good: %s", dsc_last_error());
    if (f) gguf_close(f);
    /* every truncation fails cleanly */
    int ok = 0;
    for (size_t n = 0; n < b.n; n++) {
        unsigned char *exact = malloc(n ? n : 1);
        memcpy(exact, b.p, n);
        if (gguf_open_memory(exact, n, "trunc.gguf", &f) == DSC_OK) gguf_close(f);
        else ok += one_line(dsc_last_error()) && strstr(dsc_last_error(), "trunc.gguf") != NULL;
        free(exact);
    }
    CHECK(ok == (int)b.n, "all %zu truncations refused with a one-line error (%d were)", b.n, ok);
    size_t full = b.n;
    free(b.p);
    knobs k;
    expect_bad("truncated header", &good, 10, "truncated");
    expect_bad("truncated data", &good, full - 1, "runs past the end");
    CHECK(gguf_open_memory("", 0, "bad.gguf", &f) == DSC_ERR && strstr(dsc_last_error(), "not a GGUF file"),
          "empty: %s", dsc_last_error());
    bb m = make_file(&good);
    memcpy(m.p, "GGML", 4);
    f = NULL;
    CHECK(gguf_open_memory(m.p, m.n, "bad.gguf", &f) == DSC_ERR && strstr(dsc_last_error(), "not a GGUF file"),
          "bad magic: %s", dsc_last_error());
    free(m.p);
    k = good, k.version = 1;
    expect_bad("version 1", &k, 0, "version 1 is not supported");
    k = good, k.version = 0x03000000;
    expect_bad("big-endian", &k, 0, "big-endian");
    k = good, k.n_t = 1ull << 40;
    expect_bad("huge tensor count", &k, 0, "tensor count");
    k = good, k.n_kv = ~0ull;
    expect_bad("huge kv count", &k, 0, "key/value count");
    k = good, k.key_len0 = 1ull << 62;
    expect_bad("key length past EOF", &k, 0, "runs past the end");
    k = good, k.off_b = 4096;
    expect_bad("offset past EOF", &k, 0, "runs past the end");
    k = good, k.off_b = 48;
    expect_bad("misaligned offset", &k, 0, "not a multiple of the alignment");
    k = good, k.off_b = 32;
    expect_bad("overlap", &k, 0, "overlap");
    k = good, k.type_b = 99;
    expect_bad("unknown type", &k, 0, "unknown ggml type 99");
    k = good, k.type_b = 4;
    expect_bad("removed type", &k, 0, "unknown ggml type 4");
    k = good, k.name_b = "a";
    expect_bad("duplicate names", &k, 0, "duplicate tensor name 'a'");
    k = good, k.key2 = "x";
    expect_bad("duplicate keys", &k, 0, "duplicate key 'x'");
    k = good, k.arr_elem = GGUF_V_ARRAY;
    expect_bad("nested arrays", &k, 0, "arrays of arrays");
    k = good, k.arr_elem = 13;
    expect_bad("unknown value type", &k, 0, "unknown array element type 13");
    k = good, k.align = 24;
    expect_bad("alignment", &k, 0, "power of two");
    k = good, k.ndims_b = 5;
    expect_bad("5 dims", &k, 0, "5 dimensions");
    k = good, k.ne0_b = 0;
    expect_bad("zero dim", &k, 0, "dimension 0 is 0");
    k = good, k.type_b = GGUF_T_Q8_0, k.ne0_b = 33;
    expect_bad("partial block", &k, 0, "whole number of q8_0 blocks");
    k = good, k.name_b = "0123456789012345678901234567890123456789012345678901234567890123456789";
    expect_bad("long name", &k, 0, "too long");
    /* a known type dsc cannot compute with: fine to open, an error to use */
    k = good, k.type_b = 12 /* q4_K */, k.ne0_b = 256, k.data_len = 64 + 2 * 144;
    bb q = make_file(&k);
    if (gguf_open_memory(q.p, q.n, "k.gguf", &f) == DSC_OK) {
        qtensor view;
        const gguf_tensor *t = gguf_tensor_find(f, "b");
        CHECK(t && gguf_tensor_view(f, t, 0, 1, &view) == DSC_ERR &&
                  strstr(dsc_last_error(), "unsupported tensor type q4_K for tensor 'b'"),
              "q4_K: %s", dsc_last_error());
        gguf_close(f);
    } else {
        CHECK(0, "a q4_K tensor opens: %s", dsc_last_error());
    }
    free(q.p);
    /* not deepseek2 */
    b = make_file(&good);
    if (gguf_open_memory(b.p, b.n, "good.gguf", &f) == DSC_OK) {
        dsc_config c;
        CHECK(gguf_deepseek_config(f, true, &c) == DSC_ERR && strstr(dsc_last_error(), "general.architecture"),
              "no architecture: %s", dsc_last_error());
        gguf_close(f);
    }
    free(b.p);
    iweights w;
    CHECK(gguf_load_iweights(tmp("does-not-exist.gguf"), &w) == DSC_ERR && one_line(dsc_last_error()), "missing file");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_gguf_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    test_writer_values();
    test_bad_files();
    test_refusals();
    test_metadata();
    dsc_config c;
    v3_config(&c);
    /* f32, f16, bf16, q8_0, q4_0: about twice the error seen */
    static const double bounds[5] = {1e-4, 2e-3, 1.5e-2, 5e-2, 0.5};
    check_model("V3 style (groups, bias, q_lora, YaRN)", &c, 14, 1, bounds);
    v2_lite_config(&c);
    check_model("V2-Lite style (softmax, plain q)", &c, 12, 2, bounds);
    v3_config(&c);
    c.n_routed_experts = 0;
    c.tie_word_embeddings = true;
    c.yarn = false;
    check_model("dense, tied embeddings, no YaRN", &c, 10, 3, bounds);
    test_tokenizer_and_cli();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    return tu_finish("test_gguf");
}
