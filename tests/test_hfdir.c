/* test_hfdir.c: Hugging Face checkpoint directories in and out. Random models (the tiny preset
 * with mHC, MoE, DSA and MTP; a deepseek_v3-typed one without mHC whose 160-wide matrices have
 * partial FP8 blocks) are exported as f32, bf16 and fp8 in several shards, read back through
 * hfdir + iweights + the engine, and their logits compared with the training forward pass of the
 * original. Then every kind of malformed directory must give one error line naming the file
 * and the tensor. */
#include <ftw.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fileio.h"
#include "dsc.h"
#include "infer/engine.h"
#include "io/hfdir.h"
#include "io/hfindex.h"
#include "testutil.h"
#include "testmodel.h"

/* Logits of the engine over an exported directory vs the training pass of the original model
 * (max|diff| / max|ref|). f32 is lossless. For bf16 and fp8 the error is the weights' rounding
 * amplified by the random network: measured on the dense model (no routing to flip) 9.4e-3 for
 * bf16 and 9.4e-2 for fp8 (3 mantissa bits: up to 1/16 per weight); the bounds leave ~2x room.
 * Every stored value is also checked against its dtype's rounding bound (check_rounding). */
#define TOL_F32 1e-5
#define TOL_ENGINE 1e-4 /* engine vs training pass, as in test_engine.c */
#define TOL_BF16 2e-2
#define TOL_FP8 2e-1

static char root[64];

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
    (void)sb, (void)flag, (void)f;
    return remove(p);
}
static void rm_rf(const char *p) { nftw(p, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void path_of(char *buf, size_t cap, const char *dir, const char *file) { snprintf(buf, cap, "%s/%s", dir, file); }

/* Engine logits of every position of tok[T] over the directory's weights; NULL on failure. */
static float *engine_logits(const char *dir, const int32_t *tok, int T, bool mtp) {
    hfdir *h;
    if (hfdir_open(dir, &h)) {
        CHECK(0, "hfdir_open %s: %s", dir, dsc_last_error());
        return NULL;
    }
    iweights w;
    engine *e = NULL;
    float *out = NULL;
    if (hfdir_iweights(h, mtp, &w)) {
        CHECK(0, "hfdir_iweights %s: %s", dir, dsc_last_error());
        goto done;
    }
    engine_options o = {1, T + 1, 8};
    if (engine_create(&w, &o, &e)) {
        CHECK(0, "engine_create: %s", dsc_last_error());
        iweights_free(&w);
        goto done;
    }
    out = malloc(sizeof(float) * (size_t)T * hfdir_config(h)->vocab_size);
    int s = engine_seq_new(e);
    if (engine_prefill(e, s, tok, T, NULL, out)) {
        CHECK(0, "prefill: %s", dsc_last_error());
        free(out);
        out = NULL;
    }
done:
    engine_free(e);
    hfdir_close(h); /* after the engine: the weights point into its maps */
    return out;
}

static int count_shards(const char *dir) {
    hfdir *h;
    if (hfdir_open(dir, &h)) return -1;
    hfdir_stats s;
    hfdir_get_stats(h, &s);
    hfdir_close(h);
    return s.n_shards;
}

static void expect_dtype(hfdir *h, const char *name, st_dtype dt) {
    const st_tensor *t = hfdir_raw(h, name, NULL);
    CHECK(t && t->dtype == dt, "%s: dtype %s, expected %s", name, t ? st_dtype_name(t->dtype) : "(missing)",
          st_dtype_name(dt));
}

/* The release's storage rules and the bookkeeping of one exported directory. */
static void check_layout(const char *dir, qt_type type, const dsc_config *c) {
    hfdir *h;
    if (hfdir_open(dir, &h)) {
        CHECK(0, "%s: %s", dir, dsc_last_error());
        return;
    }
    hfdir_stats s;
    hfdir_get_stats(h, &s);
    CHECK(s.n_shards >= 3, "%s: %d shards, expected several", dir, s.n_shards);
    CHECK(s.index_total_size == (int64_t)s.bytes, "%s: index total_size %lld != %llu bytes of tensors", dir,
          (long long)s.index_total_size, (unsigned long long)s.bytes);
    hfdir_report r;
    CHECK(hfdir_check(h, true, &r) == DSC_OK, "%s: check: %s", dir, dsc_last_error());
    CHECK(r.n_unused == 2 * c->num_nextn_predict_layers, "%s: %d unused tensors, expected the %d MTP copies", dir,
          r.n_unused, 2 * c->num_nextn_predict_layers);
    CHECK(r.mtp_complete == (c->num_nextn_predict_layers > 0), "%s: MTP complete", dir);
    char name[160];
    int L = c->num_hidden_layers;
    for (int k = 0; k < c->num_nextn_predict_layers; k++) {
        snprintf(name, sizeof name, "model.layers.%d.embed_tokens.weight", L + k);
        CHECK(hfdir_raw(h, name, NULL) != NULL, "%s: %s missing", dir, name);
        snprintf(name, sizeof name, "model.layers.%d.shared_head.head.weight", L + k);
        CHECK(hfdir_raw(h, name, NULL) != NULL, "%s: %s missing", dir, name);
    }
    st_dtype mat = type == QT_F32 ? ST_F32 : type == QT_BF16 ? ST_BF16 : ST_F8_E4M3;
    st_dtype other = type == QT_F32 ? ST_F32 : ST_BF16;
    expect_dtype(h, "model.embed_tokens.weight", other);
    if (!c->tie_word_embeddings) expect_dtype(h, "lm_head.weight", other);
    expect_dtype(h, "model.norm.weight", other);
    expect_dtype(h, "model.layers.0.self_attn.q_a_proj.weight", mat);
    expect_dtype(h, "model.layers.0.self_attn.kv_b_proj.weight", mat);
    expect_dtype(h, "model.layers.0.mlp.down_proj.weight", mat);
    expect_dtype(h, "model.layers.1.input_layernorm.weight", other);
    if (c->n_routed_experts) {
        expect_dtype(h, "model.layers.1.mlp.experts.3.up_proj.weight", mat);
        expect_dtype(h, "model.layers.1.mlp.gate.weight", other);
        expect_dtype(h, "model.layers.1.mlp.gate.e_score_correction_bias", ST_F32);
    }
    if (c->num_nextn_predict_layers) {
        snprintf(name, sizeof name, "model.layers.%d.eh_proj.weight", L);
        expect_dtype(h, name, other);
        snprintf(name, sizeof name, "model.layers.%d.embed_tokens.weight", L);
        expect_dtype(h, name, other);
    }
    if (c->index_n_heads) {
        expect_dtype(h, "model.layers.0.self_attn.indexer.wk.weight", mat);
        expect_dtype(h, "model.layers.0.self_attn.indexer.weights_proj.weight", other);
    }
    if (c->mhc_expansion_rate > 1) expect_dtype(h, "model.layers.0.attn_mhc.phi", ST_F32);
    const st_tensor *sc = hfdir_raw(h, "model.layers.0.mlp.down_proj.weight_scale_inv", NULL);
    CHECK((type == QT_FP8) == (sc != NULL), "%s: scale_inv present only for fp8", dir);
    if (sc) {
        int64_t br = (c->hidden_size + 127) / 128, bc = (c->intermediate_size + 127) / 128;
        CHECK(sc->dtype == ST_F32 && sc->ndim == 2 && sc->shape[0] == br && sc->shape[1] == bc,
              "down_proj scale shape [%lld, %lld]", (long long)sc->shape[0], (long long)sc->shape[1]);
    }
    /* every tensor's data is aligned for its type (the writer orders them by element size) */
    for (int i = 0; i < hfdir_num_tensors(h); i++) {
        const st_tensor *t = hfdir_raw(h, hfdir_tensor_name(h, i), NULL);
        CHECK(((uintptr_t)t->data % st_dtype_size(t->dtype)) == 0, "%s: '%s' misaligned", dir, t->name);
    }
    hfdir_close(h);
}

/* Every stored value against the original within the rounding of its dtype: F32 exact; BF16 half
 * an ulp (2^-8 relative); F8_E4M3 half an ulp of 3 mantissa bits (2^-4 relative) or, below the
 * normal range, half the subnormal step 2^-9 times the block scale. */
static void check_rounding(hfdir *h, const dsc_model *orig, const char *name, const qtensor *t, const float *deq) {
    int idx = -1;
    for (int i = 0; i < dsc_model_num_tensors(orig) && idx < 0; i++)
        if (!strcmp(dsc_model_tensor_name(orig, i), name)) idx = i;
    int64_t shape[4];
    float *w;
    dsc_model_tensor_info(orig, idx, shape, &w, NULL);
    const st_tensor *raw = hfdir_raw(h, name, NULL);
    size_t n = (size_t)t->rows * t->cols, bad = n;
    int bc = (t->cols + 127) / 128;
    for (size_t i = 0; i < n && bad == n; i++) {
        double err = fabs((double)deq[i] - w[i]), a = fabs((double)w[i]), bound = 0;
        if (raw->dtype == ST_BF16) bound = a * 0x1p-8;
        else if (raw->dtype == ST_F8_E4M3) {
            double s = t->scale_inv[(i / t->cols / 128) * bc + (i % t->cols) / 128];
            bound = fmax(a * 0x1p-4, s * 0x1p-10) * (1 + 1e-6);
        }
        if (err > bound) bad = i;
    }
    CHECK(bad == n, "%s (%s): element %zu: stored %.9g for %.9g", name, st_dtype_name(raw->dtype), bad,
          bad < n ? deq[bad] : 0.0, bad < n ? w[bad] : 0.0);
}

/* The model with every parameter replaced by the directory's (dequantized) values. */
static dsc_model *dequantized_copy(const dsc_model *orig, const char *dir) {
    const dsc_config *c = dsc_model_config(orig);
    hfdir *h;
    dsc_model *q = NULL;
    if (hfdir_open(dir, &h)) return NULL;
    if (dsc_model_create(c, &q) == DSC_OK)
        for (int i = 0; i < dsc_model_num_tensors(q); i++) {
            int64_t shape[4];
            float *p;
            dsc_model_tensor_info(q, i, shape, &p, NULL);
            qtensor t;
            if (hfdir_find(h, dsc_model_tensor_name(q, i), &t)) {
                CHECK(0, "%s", dsc_last_error());
                break;
            }
            for (int r = 0; r < t.rows; r++) qt_dequant_row(p + (size_t)r * t.cols, &t, r);
            check_rounding(h, orig, dsc_model_tensor_name(q, i), &t, p);
            /* the engine reads an FP8 kv_b_proj in bf16, as DeepSeek's inference code does */
            if (t.type == QT_FP8 && strstr(dsc_model_tensor_name(q, i), "kv_b_proj"))
                for (size_t j = 0; j < (size_t)t.rows * t.cols; j++) p[j] = qt_bf16_to_f32(qt_f32_to_bf16(p[j]));
        }
    hfdir_close(h);
    return q;
}

/* Exports m as f32, bf16 and fp8 with small shards and runs the engine over each directory. Its
 * logits must match the training pass over the same (dequantized) weights within the engine's
 * tolerance; against the original model the quantization error is printed, and bounded when
 * `smooth` (no routing or top-k selection that a rounded weight can flip). */
static void roundtrip(const char *label, dsc_model *m, uint64_t shard_bytes, int T, uint64_t seed, bool smooth) {
    const dsc_config *c = dsc_model_config(m);
    int V = c->vocab_size;
    dsc_rng r;
    dsc_rng_seed(&r, seed);
    int32_t *tok = malloc(sizeof(int32_t) * T);
    for (int i = 0; i < T; i++) tok[i] = (int32_t)(dsc_rng_u64(&r) % V);
    float *ref = malloc(sizeof(float) * (size_t)T * V), *refq = malloc(sizeof(float) * (size_t)T * V);
    CHECK(dsc_model_logits(m, tok, 1, T, ref) == DSC_OK, "%s: logits", label);
    static const qt_type types[3] = {QT_F32, QT_BF16, QT_FP8};
    static const double tols[3] = {TOL_F32, TOL_BF16, TOL_FP8};
    for (int k = 0; k < 3; k++) {
        char dir[256], what[160];
        snprintf(dir, sizeof dir, "%s/%s-%s", root, label, qt_name(types[k]));
        hfdir_export_options o = {types[k], shard_bytes, NULL};
        if (hfdir_export_model(m, dir, &o)) {
            CHECK(0, "%s: export %s: %s", label, qt_name(types[k]), dsc_last_error());
            continue;
        }
        check_layout(dir, types[k], c);
        dsc_model *q = dequantized_copy(m, dir);
        CHECK(q && dsc_model_logits(q, tok, 1, T, refq) == DSC_OK, "%s: dequantized model", label);
        dsc_model_free(q);
        for (int mtp = 0; mtp < (c->num_nextn_predict_layers ? 2 : 1); mtp++) {
            float *got = engine_logits(dir, tok, T, mtp);
            if (!got) continue;
            double e = tu_rel_error(got, ref, (size_t)T * V, NULL), eq = tu_rel_error(got, refq, (size_t)T * V, NULL);
            printf("%s %-4s (%d shards%s): logit error vs the same weights %.2g, vs the original %.3g%s\n", label,
                   qt_name(types[k]), count_shards(dir), mtp ? ", MTP loaded" : "", eq, e,
                   smooth || k == 0 ? "" : " (routing/top-k flips: not bounded)");
            snprintf(what, sizeof what, "%s: %s logits vs the training pass on the same weights", label,
                     qt_name(types[k]));
            tu_check_close(what, got, refq, (size_t)T * V, k == 0 ? TOL_F32 : TOL_ENGINE);
            snprintf(what, sizeof what, "%s: %s logits vs the original model", label, qt_name(types[k]));
            if (smooth || k == 0) tu_check_close(what, got, ref, (size_t)T * V, tols[k]);
            free(got);
        }
        if (types[k] == QT_F32) { /* f32 is lossless: every tensor bit for bit */
            hfdir *h;
            if (hfdir_open(dir, &h) == DSC_OK) {
                for (int i = 0; i < dsc_model_num_tensors(m); i++) {
                    int64_t shape[4];
                    float *p;
                    int nd = dsc_model_tensor_info(m, i, shape, &p, NULL);
                    size_t n = 1;
                    for (int j = 0; j < nd; j++) n *= (size_t)shape[j];
                    qtensor t;
                    const char *name = dsc_model_tensor_name(m, i);
                    CHECK(hfdir_find(h, name, &t) == DSC_OK && t.type == QT_F32 &&
                              (size_t)t.rows * t.cols == n && !memcmp(t.data, p, n * 4),
                          "%s: f32 tensor %s differs", label, name);
                }
                hfdir_close(h);
            }
        }
    }
    free(tok);
    free(ref);
    free(refq);
}

/* One shard (default size) is HF's model.safetensors: dsc_model_load reads it back bit for bit;
 * converting a dsc directory gives the same fp8 weights as exporting the model; the tokenizer is
 * copied; an existing non-empty directory is refused, an empty one replaced. */
static void single_and_convert(dsc_model *m) {
    char a[256], b[256], c2[256], p[300];
    snprintf(a, sizeof a, "%s/single-f32", root);
    hfdir_export_options o = {QT_F32, 0, NULL};
    CHECK(hfdir_export_model(m, a, &o) == DSC_OK, "single export: %s", dsc_last_error());
    path_of(p, sizeof p, a, "model.safetensors");
    struct stat sb;
    CHECK(stat(p, &sb) == 0, "single export writes model.safetensors");
    path_of(p, sizeof p, a, "model.safetensors.index.json");
    CHECK(stat(p, &sb) != 0, "single export writes no index");
    dsc_model *m2 = NULL;
    CHECK(dsc_model_load(a, &m2) == DSC_OK, "dsc_model_load of an f32 export: %s", dsc_last_error());
    if (m2) {
        int T = 6, V = dsc_model_config(m)->vocab_size;
        int32_t tok[6] = {1, 5, 9, 2, 7, 3};
        float *l1 = malloc(sizeof(float) * T * V), *l2 = malloc(sizeof(float) * T * V);
        dsc_model_logits(m, tok, 1, T, l1);
        dsc_model_logits(m2, tok, 1, T, l2);
        CHECK(!memcmp(l1, l2, sizeof(float) * T * V), "reloaded f32 export: identical logits");
        free(l1);
        free(l2);
        dsc_model_free(m2);
    }
    /* a dsc model directory with a tokenizer, converted to fp8 */
    snprintf(a, sizeof a, "%s/dscdir", root);
    CHECK(dsc_model_save(m, a) == DSC_OK, "save: %s", dsc_last_error());
    path_of(p, sizeof p, a, "tokenizer.json");
    dsc_write_file_atomic(p, "{\"model\": {}}", 13);
    snprintf(b, sizeof b, "%s/converted-fp8", root);
    hfdir_export_options o8 = {QT_FP8, 50000, NULL};
    CHECK(hfdir_convert(a, b, &o8) == DSC_OK, "convert: %s", dsc_last_error());
    path_of(p, sizeof p, b, "tokenizer.json");
    CHECK(stat(p, &sb) == 0 && sb.st_size == 13, "tokenizer.json copied");
    snprintf(c2, sizeof c2, "%s/direct-fp8", root);
    mkdir(c2, 0755); /* an empty directory is replaced */
    CHECK(hfdir_export_model(m, c2, &o8) == DSC_OK, "export into an empty directory: %s", dsc_last_error());
    hfdir *h1, *h2;
    if (hfdir_open(b, &h1) == DSC_OK) {
        if (hfdir_open(c2, &h2) == DSC_OK) {
            CHECK(hfdir_num_tensors(h1) == hfdir_num_tensors(h2), "convert vs export: tensor count");
            for (int i = 0; i < hfdir_num_tensors(h1) && i < hfdir_num_tensors(h2); i++) {
                const st_tensor *t1 = hfdir_raw(h1, hfdir_tensor_name(h1, i), NULL);
                const st_tensor *t2 = hfdir_raw(h2, hfdir_tensor_name(h1, i), NULL);
                CHECK(t2 && t1->nbytes == t2->nbytes && !memcmp(t1->data, t2->data, t1->nbytes),
                      "convert vs export: tensor %s differs", t1->name);
            }
            hfdir_close(h2);
        }
        hfdir_close(h1);
    }
    /* fp8 -> bf16 conversion reads FP8 and writes bf16 */
    snprintf(a, sizeof a, "%s/fp8-to-bf16", root);
    hfdir_export_options ob = {QT_BF16, 0, NULL};
    CHECK(hfdir_convert(b, a, &ob) == DSC_OK, "convert fp8 -> bf16: %s", dsc_last_error());
    /* refusals */
    CHECK(hfdir_export_model(m, c2, &o8) == DSC_ERR && strstr(dsc_last_error(), "not empty"),
          "export into a non-empty directory refused: %s", dsc_last_error());
    hfdir_export_options oq = {QT_Q8_0, 0, NULL};
    snprintf(a, sizeof a, "%s/q8", root);
    CHECK(hfdir_export_model(m, a, &oq) == DSC_ERR && strstr(dsc_last_error(), "q8_0"), "q8_0 refused: %s",
          dsc_last_error());
    CHECK(stat(a, &sb) != 0, "nothing left behind by a refused export");
    /* a NaN found while writing the shards: an error naming the tensor, nothing left behind */
    int64_t shape[4];
    float *w;
    dsc_model_tensor_info(m, 7, shape, &w, NULL);
    float saved = w[3];
    w[3] = NAN;
    snprintf(a, sizeof a, "%s/nan", root);
    hfdir_export_options os = {QT_BF16, 2000, NULL};
    CHECK(hfdir_export_model(m, a, &os) == DSC_ERR && strstr(dsc_last_error(), dsc_model_tensor_name(m, 7)) &&
              strstr(dsc_last_error(), "NaN"),
          "NaN refused: %s", dsc_last_error());
    w[3] = saved;
    snprintf(p, sizeof p, "%s.tmp-%d", a, (int)getpid());
    CHECK(stat(a, &sb) != 0 && stat(p, &sb) != 0, "no directory or temporary left by a failed export");
}

/* ---- malformed directories ---- */

static void copy_dir(const char *from, const char *to) {
    rm_rf(to);
    mkdir(to, 0755);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "cp %s/* %s/", from, to);
    CHECK(system(cmd) == 0, "%s", cmd);
}

/* Expects hfdir_open (stage 0) or hfdir_check (stage 1) to fail with a message containing each of
 * the needles and no newline. */
static void expect_error(const char *label, const char *dir, int stage, const char *n1, const char *n2, const char *n3) {
    hfdir *h = NULL;
    int rc = hfdir_open(dir, &h);
    if (stage == 1 && rc == DSC_OK) {
        rc = hfdir_check(h, false, NULL);
        CHECK(rc == DSC_ERR, "%s: check should fail", label);
    } else {
        CHECK(rc == DSC_ERR && h == NULL, "%s: open should fail", label);
    }
    hfdir_close(h);
    const char *msg = dsc_last_error();
    const char *need[3] = {n1, n2, n3};
    for (int i = 0; i < 3; i++)
        CHECK(!need[i] || strstr(msg, need[i]), "%s: message lacks '%s': %s", label, need[i], msg);
    CHECK(!strchr(msg, '\n'), "%s: multi-line message", label);
    printf("  %-28s -> %s\n", label, msg);
}

static json_t *load_index(const char *dir) {
    char p[300];
    path_of(p, sizeof p, dir, "model.safetensors.index.json");
    json_error_t e;
    return json_load_file(p, 0, &e);
}
static void save_index_text(const char *dir, const char *text) {
    char p[300];
    path_of(p, sizeof p, dir, "model.safetensors.index.json");
    dsc_write_file_atomic(p, text, strlen(text));
}
static void save_index(const char *dir, json_t *ix) {
    char *t = json_dumps(ix, JSON_INDENT(1));
    save_index_text(dir, t);
    free(t);
    json_decref(ix);
}

/* Rewrites a shard with `victim` replaced (data NULL: removed). */
static void rewrite_shard(const char *path, const char *victim, st_dtype dt, int ndim, const int64_t *shape,
                          const void *data) {
    st_file *st;
    if (st_open(path, &st)) {
        CHECK(0, "%s", dsc_last_error());
        return;
    }
    st_writer *w;
    st_writer_create(&w);
    for (int i = 0; i < st_count(st); i++) {
        const st_tensor *t = st_tensor_at(st, i);
        if (strcmp(t->name, victim)) st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data);
        else if (data) st_writer_add(w, victim, dt, ndim, shape, data);
    }
    CHECK(st_writer_write(w, path) == DSC_OK, "rewrite %s: %s", path, dsc_last_error());
    st_writer_free(w);
    st_close(st);
}

/* The shard file (base name) that holds a tensor in dir. */
static const char *shard_of(const char *dir, const char *tensor, char *buf, size_t cap) {
    hfdir *h;
    buf[0] = '\0';
    if (hfdir_open(dir, &h)) return buf;
    const char *p;
    if (hfdir_raw(h, tensor, &p)) snprintf(buf, cap, "%s", strrchr(p, '/') + 1);
    hfdir_close(h);
    return buf;
}

static void bad_inputs(const char *good) {
    char d[256], p[600], s1[64], s2[64];
    snprintf(d, sizeof d, "%s/bad", root);
    const char *W = "model.layers.0.mlp.down_proj.weight", *S = "model.layers.0.mlp.down_proj.weight_scale_inv";
    char N[96]; /* a norm (1-D) in another shard than W */
    shard_of(good, W, s1, sizeof s1);
    for (int l = 1; l < 8; l++) {
        snprintf(N, sizeof N, "model.layers.%d.input_layernorm.weight", l);
        if (strcmp(shard_of(good, N, s2, sizeof s2), s1)) break;
    }
    CHECK(s1[0] && s2[0] && strcmp(s1, s2), "test setup: %s and %s in different shards (%s, %s)", W, N, s1, s2);

    copy_dir(good, d);
    path_of(p, sizeof p, d, s2);
    unlink(p);
    expect_error("missing shard", d, 0, "model.safetensors.index.json", s2, "does not exist");

    const char *escapes[] = {"../x.safetensors", "sub/../x.safetensors", "..", "/etc/passwd", "a\\b"};
    for (int i = 0; i < 5; i++) {
        copy_dir(good, d);
        json_t *ix = load_index(d);
        json_object_set_new(json_object_get(ix, "weight_map"), N, json_string(escapes[i]));
        save_index(d, ix);
        expect_error("shard escaping the directory", d, 0, "index.json", N, escapes[i][0] == '.' && !escapes[i][2] ? "not a file name" : NULL);
    }

    copy_dir(good, d);
    json_t *ix = load_index(d);
    json_object_set_new(json_object_get(ix, "weight_map"), N, json_string(s1));
    save_index(d, ix);
    expect_error("tensor in the wrong shard", d, 0, s2, N, s1);

    copy_dir(good, d);
    ix = load_index(d);
    char *text = json_dumps(ix, 0);
    json_decref(ix);
    char *at = strstr(text, "\"weight_map\": {");
    CHECK(at != NULL, "index text");
    if (at) {
        at += strlen("\"weight_map\": {");
        char *dup = malloc(strlen(text) + 300);
        snprintf(dup, strlen(text) + 300, "%.*s\"%s\": \"%s\", %s", (int)(at - text), text, N, s2, at);
        save_index_text(d, dup);
        free(dup);
        expect_error("tensor listed twice", d, 0, "index.json", N, "twice");
    }
    free(text);

    copy_dir(good, d);
    save_index_text(d, "[\"model.norm.weight\"]");
    expect_error("index not an object", d, 0, "index.json", "JSON object", NULL);
    save_index_text(d, "{\"weight_map\": [1, 2]}");
    expect_error("weight_map not an object", d, 0, "index.json", "weight_map", "array");
    save_index_text(d, "{\"weight_map\": {\"a\": 3}}");
    expect_error("file not a string", d, 0, "index.json", "'a'", "integer");
    save_index_text(d, "");
    expect_error("empty index", d, 0, "index.json", "not valid JSON", NULL);

    copy_dir(good, d);
    path_of(p, sizeof p, d, s1);
    struct stat sb;
    stat(p, &sb);
    CHECK(truncate(p, sb.st_size / 2) == 0, "truncate");
    expect_error("truncated shard", d, 0, s1, NULL, NULL);

    copy_dir(good, d);
    path_of(p, sizeof p, d, s1);
    float sc[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    int64_t wrong[2] = {3, 1};
    rewrite_shard(p, S, ST_F32, 2, wrong, sc);
    expect_error("scale_inv of the wrong shape", d, 1, s1, S, "expected [");

    copy_dir(good, d);
    path_of(p, sizeof p, d, s1);
    uint16_t scb[8] = {0};
    int64_t right[2] = {2, 3};
    rewrite_shard(p, S, ST_BF16, 2, right, scb);
    expect_error("scale_inv of the wrong dtype", d, 1, s1, S, "dtype BF16, expected F32");

    copy_dir(good, d);
    path_of(p, sizeof p, d, s1);
    rewrite_shard(p, S, 0, 0, NULL, NULL);
    ix = load_index(d);
    json_object_del(json_object_get(ix, "weight_map"), S);
    save_index(d, ix);
    expect_error("scale_inv missing", d, 1, s1, W, "missing");

    copy_dir(good, d);
    path_of(p, sizeof p, d, s2);
    char i8[4096] = {0};
    int64_t n1[1] = {160};
    rewrite_shard(p, N, ST_I8, 1, n1, i8);
    expect_error("an I8 tensor", d, 1, s2, N, "dtype I8");

    copy_dir(good, d);
    path_of(p, sizeof p, d, s2);
    rewrite_shard(p, N, 0, 0, NULL, NULL);
    expect_error("listed, not in its shard", d, 0, s2, N, "does not hold it");

    copy_dir(good, d);
    ix = load_index(d);
    json_object_del(json_object_get(ix, "weight_map"), N);
    save_index(d, ix);
    expect_error("in a shard, not listed", d, 0, s2, N, "not listed");

    copy_dir(good, d); /* config/weights mismatch: the index and shards are fine, the config is not */
    path_of(p, sizeof p, d, "config.json");
    dsc_config c;
    dsc_config_load(p, &c);
    c.intermediate_size += 32;
    dsc_config_save(&c, p);
    expect_error("config/weights shape mismatch", d, 1, "model-0000", "model.layers.0.mlp.gate_proj.weight",
                 "config.json expects [320, 160]");
    hfdir *h;
    if (hfdir_open(d, &h) == DSC_OK) { /* iweights_build alone names the directory and the tensor */
        tensor_source src;
        iweights w;
        hfdir_source(h, &src);
        CHECK(iweights_build(&w, hfdir_config(h), &src, false) == DSC_ERR &&
                  strstr(dsc_last_error(), "gate_proj.weight") && strstr(dsc_last_error(), d),
              "iweights_build mismatch: %s", dsc_last_error());
        hfdir_close(h);
    }

    copy_dir(good, d);
    path_of(p, sizeof p, d, "model.safetensors.index.json");
    unlink(p);
    for (int i = 1; i < 9; i++) {
        snprintf(p, sizeof p, "%s/model-%05d-of-*", d, i);
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -f %s", p);
        if (system(cmd)) break;
    }
    expect_error("no weights", d, 0, "no weights", NULL, NULL);
    rm_rf(d);
}

/* The index parser from memory. */
static void index_parser(void) {
    hfindex *ix;
    const char *ok = "{\"metadata\": {\"total_size\": 12}, \"weight_map\": {\"b\": \"f2\", \"a\": \"f1\", \"c\": \"f1\"}}";
    CHECK(hfdir_parse_index(ok, strlen(ok), "ix", &ix) == DSC_OK, "valid index: %s", dsc_last_error());
    if (ix) {
        CHECK(ix->n_entries == 3 && ix->n_files == 2 && ix->total_size == 12, "counts");
        CHECK(!strcmp(ix->entries[0].name, "a") && !strcmp(ix->files[ix->entries[0].file], "f1") &&
                  !strcmp(ix->files[ix->entries[1].file], "f2"),
              "sorted entries");
        CHECK(hfindex_find(ix, "c") == 2 && hfindex_find(ix, "d") == -1, "find");
        hfindex_free(ix);
    }
    const char *bad[] = {"{}", "{\"weight_map\": {}}", "{\"weight_map\": {\"a\": \"\"}}",
                         "{\"weight_map\": {\"a\": \"x\\u0001y\"}}", "{\"metadata\": 3, \"weight_map\": {\"a\": \"f\"}}",
                         "{\"metadata\": {\"total_size\": -1}, \"weight_map\": {\"a\": \"f\"}}",
                         "{\"weight_map\": {\"\": \"f\"}}", "{\"weight_map\": {\"a\": \".\"}}", "nul", "{\"weight_map\": {\"a\": \"f\"}} x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ix = (hfindex *)1;
        CHECK(hfdir_parse_index(bad[i], strlen(bad[i]), "ix", &ix) == DSC_ERR && ix == NULL &&
                  !strncmp(dsc_last_error(), "ix: ", 4),
              "bad index %zu accepted or badly reported: %s", i, dsc_last_error());
    }
    CHECK(hfdir_parse_index(NULL, 0, "ix", &ix) == DSC_ERR, "NULL text");
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/dsc_test_hfdir_XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    index_parser();

    dsc_config c;
    dsc_config_preset("tiny", &c); /* model_type dsc: mHC 4, MoE with groups and bias, DSA, MTP 1 */
    dsc_model *m = tu_random_model(&c, 11);
    if (m) {
        roundtrip("tiny", m, 40000, 12, 1, false);
        single_and_convert(m);
        dsc_model_free(m);
    }

    /* deepseek_v3-typed, no mHC, no indexer; 160/320-wide matrices and vocab 300: partial FP8 blocks */
    dsc_config_preset("tiny", &c);
    strcpy(c.model_type, "deepseek_v3");
    c.mhc_expansion_rate = 0;
    c.index_n_heads = 0;
    c.hidden_size = 160;
    c.intermediate_size = 288;
    c.moe_intermediate_size = 48;
    c.vocab_size = 300;
    c.q_lora_rank = 136;
    m = tu_random_model(&c, 12);
    if (m) {
        roundtrip("v3", m, 400000, 10, 2, false);
        char good[256];
        snprintf(good, sizeof good, "%s/v3-fp8", root);
        bad_inputs(good);
        dsc_model_free(m);
    }

    /* tied embeddings: no lm_head; the MTP block's shared_head.head copy is the embedding */
    c.tie_word_embeddings = true;
    m = tu_random_model(&c, 14);
    if (m) {
        roundtrip("tied", m, 400000, 6, 4, false);
        dsc_model_free(m);
    }
    c.tie_word_embeddings = false;

    /* the same without MoE: a smooth function of the weights, so the rounding error is bounded */
    c.n_routed_experts = 0;
    c.num_nextn_predict_layers = 0;
    m = tu_random_model(&c, 13);
    if (m) {
        roundtrip("dense", m, 200000, 10, 3, true);
        dsc_model_free(m);
    }
    rm_rf(root);
    return tu_finish("test_hfdir");
}
