/* tok_json.c: reading and writing Hugging Face tokenizer.json for byte-level BPE. Reads what
 * DeepSeek-V3's file uses and every option that leaves its results unchanged; anything that would
 * change the token ids (a normalizer, BPE dropout, subword prefixes, a non-byte-level
 * pre-tokenizer or decoder) is refused with a message naming the field. dsc never pads,
 * truncates or adds BOS/EOS itself, so padding, truncation and post_processor are kept, not run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "tok/tok_internal.h"

static bool is_identity_normalizer(const json_t *n) {
    if (!n || json_is_null(n)) return true;
    const char *type = json_string_value(json_object_get(n, "type"));
    if (!type || strcmp(type, "Sequence")) return false;
    const json_t *list = json_object_get(n, "normalizers");
    if (!json_is_array(list)) return false;
    for (size_t i = 0; i < json_array_size(list); i++)
        if (!is_identity_normalizer(json_array_get(list, i))) return false;
    return true;
}

/* false/null/absent is fine; anything else is an error naming the field. */
static int need_empty(const json_t *model, const char *key, const char *path, const char *why) {
    const json_t *v = json_object_get(model, key);
    if (!v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0)) return DSC_OK;
    if (json_is_number(v) && json_number_value(v) == 0) return DSC_OK;
    return dsc_set_error("%s: model.%s: expected null (%s)", path, key, why);
}

static int read_bool(const json_t *o, const char *key, bool def, bool *out, const char *path, const char *field) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return DSC_OK;
    }
    if (!json_is_boolean(v)) return dsc_set_error("%s: %s.%s: expected true or false", path, field, key);
    *out = json_is_true(v);
    return DSC_OK;
}

static int read_vocab(dsc_tokenizer *t, const json_t *vocab, const char *path) {
    if (!json_is_object(vocab)) return dsc_set_error("%s: model.vocab: expected an object of token -> id", path);
    if (strmap_init(&t->vocab, json_object_size(vocab))) return DSC_ERR;
    const char *key;
    size_t len;
    json_t *v;
    json_object_keylen_foreach((json_t *)vocab, key, len, v) {
        json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id >= INT32_MAX)
            return dsc_set_error("%s: model.vocab[\"%s\"]: expected an id in [0, %d), found %s", path, key, INT32_MAX,
                                 json_is_integer(v) ? "a number out of range" : "no integer");
        if (strmap_insert(&t->vocab, key, len, (uint64_t)id, NULL, NULL)) return DSC_ERR;
    }
    return DSC_OK;
}

static int token_of(const dsc_tokenizer *t, const char *s, size_t n, int32_t *id) {
    int64_t e = strmap_find(&t->vocab, s, n);
    if (e < 0) return DSC_ERR;
    *id = (int32_t)t->vocab.e[e].value;
    return DSC_OK;
}

static int read_merges(dsc_tokenizer *t, const json_t *merges, const char *path) {
    if (!json_is_array(merges)) return dsc_set_error("%s: model.merges: expected an array", path);
    size_t n = json_array_size(merges);
    if (n >= INT32_MAX) return dsc_set_error("%s: model.merges: too many (%zu)", path, n);
    t->merges = malloc(sizeof *t->merges * (n ? n : 1));
    if (!t->merges) return dsc_set_error("%s: model.merges: out of memory for %zu merges", path, n);
    for (size_t r = 0; r < n; r++) {
        const json_t *m = json_array_get(merges, r);
        const char *a, *b;
        size_t la, lb;
        if (json_is_string(m)) { /* "a b": exactly one space, as HF requires */
            a = json_string_value(m);
            const char *sp = memchr(a, ' ', json_string_length(m));
            if (!sp || memchr(sp + 1, ' ', json_string_length(m) - (size_t)(sp + 1 - a)))
                return dsc_set_error("%s: model.merges[%zu]: expected \"A B\" (two tokens, one space), found \"%s\"",
                                     path, r, a);
            la = (size_t)(sp - a), b = sp + 1, lb = json_string_length(m) - la - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0)), la = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1)), lb = json_string_length(json_array_get(m, 1));
        } else {
            return dsc_set_error("%s: model.merges[%zu]: expected \"A B\" or [\"A\", \"B\"]", path, r);
        }
        if (token_of(t, a, la, &t->merges[r].a) || token_of(t, b, lb, &t->merges[r].b))
            return dsc_set_error("%s: model.merges[%zu]: \"%.*s\" or \"%.*s\" is not in model.vocab", path, r, (int)la,
                                 a, (int)lb, b);
        t->n_merges = (int32_t)r + 1;
    }
    return DSC_OK;
}

static int read_added(dsc_tokenizer *t, const json_t *list, const char *path) {
    if (!list || json_is_null(list)) return DSC_OK;
    if (!json_is_array(list)) return dsc_set_error("%s: added_tokens: expected an array", path);
    size_t n = json_array_size(list);
    t->added = calloc(n ? n : 1, sizeof *t->added);
    if (!t->added) return dsc_set_error("%s: added_tokens: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        const json_t *o = json_array_get(list, i);
        char field[64];
        snprintf(field, sizeof field, "added_tokens[%zu]", i);
        if (!json_is_object(o)) return dsc_set_error("%s: %s: expected an object", path, field);
        const json_t *id = json_object_get(o, "id"), *content = json_object_get(o, "content");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= INT32_MAX)
            return dsc_set_error("%s: %s.id: expected an id in [0, %d)", path, field, INT32_MAX);
        if (!json_is_string(content) || json_string_length(content) == 0)
            return dsc_set_error("%s: %s.content: expected a non-empty string", path, field);
        tok_added *a = &t->added[i];
        bool single_word = false;
        if (read_bool(o, "special", false, &a->special, path, field) ||
            read_bool(o, "normalized", !a->special, &a->normalized, path, field) ||
            read_bool(o, "lstrip", false, &a->lstrip, path, field) ||
            read_bool(o, "rstrip", false, &a->rstrip, path, field) ||
            read_bool(o, "single_word", false, &single_word, path, field))
            return DSC_ERR;
        if (single_word) return dsc_set_error("%s: %s.single_word: only false is supported", path, field);
        a->id = (int32_t)json_integer_value(id);
        a->len = json_string_length(content);
        a->content = malloc(a->len + 1);
        if (!a->content) return dsc_set_error("%s: %s: out of memory", path, field);
        memcpy(a->content, json_string_value(content), a->len + 1);
        t->n_added = (int)i + 1;
    }
    return DSC_OK;
}

static int read_root(dsc_tokenizer *t, const json_t *root, const char *path) {
    if (!json_is_object(root)) return dsc_set_error("%s: expected a JSON object (a tokenizer.json)", path);
    const json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return dsc_set_error("%s: model: expected an object", path);
    const char *type = json_string_value(json_object_get(model, "type"));
    if (json_object_get(model, "type") && (!type || strcmp(type, "BPE")))
        return dsc_set_error("%s: model.type: expected BPE, found %s", path, type ? type : "no string");
    if (need_empty(model, "dropout", path, "BPE dropout makes encoding random") ||
        need_empty(model, "continuing_subword_prefix", path, "byte-level BPE has no subword prefix") ||
        need_empty(model, "end_of_word_suffix", path, "byte-level BPE has no end-of-word suffix"))
        return DSC_ERR;
    /* unk_token, fuse_unk and byte_fallback never act: every byte has its token (checked in
     * tok_build) and every merge result is in the vocabulary; they are kept for saving */
    if (read_bool(model, "ignore_merges", false, &t->ignore_merges, path, "model") ||
        read_bool(model, "fuse_unk", false, &t->fuse_unk, path, "model") ||
        read_bool(model, "byte_fallback", false, &t->byte_fallback, path, "model"))
        return DSC_ERR;
    const json_t *unk = json_object_get(model, "unk_token");
    if (unk && !json_is_null(unk) && !json_is_string(unk))
        return dsc_set_error("%s: model.unk_token: expected a string or null", path);
    t->unk_token = unk ? json_deep_copy(unk) : NULL;
    if (read_vocab(t, json_object_get(model, "vocab"), path) ||
        read_merges(t, json_object_get(model, "merges"), path) ||
        read_added(t, json_object_get(root, "added_tokens"), path))
        return DSC_ERR;
    const json_t *norm = json_object_get(root, "normalizer");
    if (!is_identity_normalizer(norm)) {
        const char *nt = json_string_value(json_object_get(norm, "type"));
        return dsc_set_error("%s: normalizer: %s changes the text and is not supported (expected null or an empty "
                             "Sequence)",
                             path, nt ? nt : "this normalizer");
    }
    const json_t *dec = json_object_get(root, "decoder");
    const char *dt = json_string_value(json_object_get(dec, "type"));
    if (!dt || strcmp(dt, "ByteLevel"))
        return dsc_set_error("%s: decoder: expected ByteLevel, found %s", path, dt ? dt : "none");
    if (pretok_from_json(json_object_get(root, "pre_tokenizer"), path, &t->pretok)) return DSC_ERR;
    t->normalizer = norm ? json_deep_copy(norm) : NULL;
    t->decoder = json_deep_copy(dec);
    const json_t *post = json_object_get(root, "post_processor");
    t->post_processor = post ? json_deep_copy(post) : NULL;
    return tok_build(t, path);
}

dsc_status dsc_tokenizer_load(const char *path, dsc_tokenizer **out) {
    *out = NULL;
    dsc_mapped_file f;
    if (dsc_map_file(path, &f)) return DSC_ERR;
    json_error_t jerr;
    json_t *root = json_loadb((const char *)f.data, f.size, JSON_REJECT_DUPLICATES, &jerr);
    dsc_unmap_file(&f);
    if (!root) return dsc_set_error("%s: line %d: %s", path, jerr.line, jerr.text);
    dsc_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        json_decref(root);
        return dsc_set_error("%s: out of memory", path);
    }
    int rc = read_root(t, root, path);
    json_decref(root);
    if (rc) {
        tok_destroy(t);
        return DSC_ERR;
    }
    *out = t;
    return DSC_OK;
}

/* ---- saving ------------------------------------------------------------------------------ */

static json_t *copy_or_null(const json_t *j) { return j ? json_deep_copy(j) : json_null(); }

static json_t *model_json(const dsc_tokenizer *t) {
    json_t *vocab = json_object(), *merges = json_array();
    if (!vocab || !merges) goto fail;
    for (int32_t id = 0; id < t->n_ids; id++) {
        if (t->vocab_of_id[id] < 0) continue;
        size_t len;
        const char *k = strmap_key(&t->vocab, (size_t)t->vocab_of_id[id], &len);
        if (json_object_setn_new_nocheck(vocab, k, len, json_integer(id))) goto fail;
    }
    /* "A B" strings as DeepSeek's file has, unless a token holds a space: then [A, B] pairs */
    bool pairs = false;
    for (int32_t r = 0; r < t->n_merges && !pairs; r++) {
        size_t la, lb;
        const char *a = strmap_key(&t->vocab, (size_t)t->vocab_of_id[t->merges[r].a], &la);
        const char *b = strmap_key(&t->vocab, (size_t)t->vocab_of_id[t->merges[r].b], &lb);
        pairs = memchr(a, ' ', la) || memchr(b, ' ', lb);
    }
    char *buf = NULL;
    size_t cap = 0;
    for (int32_t r = 0; r < t->n_merges; r++) {
        size_t la, lb;
        const char *a = strmap_key(&t->vocab, (size_t)t->vocab_of_id[t->merges[r].a], &la);
        const char *b = strmap_key(&t->vocab, (size_t)t->vocab_of_id[t->merges[r].b], &lb);
        json_t *m;
        if (pairs) {
            m = json_pack("[s%s%]", a, la, b, lb);
        } else {
            if (la + lb + 1 > cap) {
                cap = 2 * (la + lb + 1);
                char *nb = realloc(buf, cap);
                if (!nb) break;
                buf = nb;
            }
            memcpy(buf, a, la);
            buf[la] = ' ';
            memcpy(buf + la + 1, b, lb);
            m = json_stringn_nocheck(buf, la + lb + 1);
        }
        if (json_array_append_new(merges, m)) {
            free(buf);
            goto fail;
        }
    }
    free(buf);
    if (json_array_size(merges) != (size_t)t->n_merges) goto fail;
    /* the keys of DeepSeek-V3's file, in its order; ignore_merges only when set (older readers) */
    json_t *m = json_pack("{s:s, s:n, s:O?, s:n, s:n, s:b, s:b}", "type", "BPE", "dropout", "unk_token", t->unk_token,
                          "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", t->fuse_unk, "byte_fallback",
                          t->byte_fallback);
    if (!m) goto fail;
    if ((t->ignore_merges && json_object_set_new(m, "ignore_merges", json_true())) ||
        json_object_set(m, "vocab", vocab) || json_object_set(m, "merges", merges)) {
        json_decref(m);
        goto fail;
    }
    json_decref(vocab);
    json_decref(merges);
    return m;
fail:
    json_decref(vocab);
    json_decref(merges);
    return NULL;
}

dsc_status dsc_tokenizer_save(const dsc_tokenizer *t, const char *path) {
    json_t *added = json_array();
    for (int i = 0; added && i < t->n_added; i++) {
        const tok_added *a = &t->added[i];
        json_t *o = json_pack("{s:I, s:s%, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)a->id, "content", a->content,
                              a->len, "single_word", 0, "lstrip", a->lstrip, "rstrip", a->rstrip, "normalized",
                              a->normalized, "special", a->special);
        if (json_array_append_new(added, o)) {
            json_decref(added);
            added = NULL;
        }
    }
    json_t *model = added ? model_json(t) : NULL;
    json_t *root = model
                       ? json_pack("{s:s, s:n, s:n, s:o, s:o, s:O, s:o, s:o, s:o}", "version", "1.0", "truncation",
                                   "padding", "added_tokens", added, "normalizer", copy_or_null(t->normalizer),
                                   "pre_tokenizer", t->pretok.config, "post_processor", copy_or_null(t->post_processor),
                                   "decoder", copy_or_null(t->decoder), "model", model)
                       : NULL;
    if (!model) json_decref(added);
    char *s = root ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (!s) return dsc_set_error("%s: out of memory writing the tokenizer", path);
    int rc = dsc_write_file_atomic(path, s, strlen(s));
    free(s);
    return rc;
}
