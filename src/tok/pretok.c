/* pretok.c: the Hugging Face pre-tokenizer semantics dsc supports (Sequence, Split with any
 * behaviour and invert, ByteLevel last) on PCRE2 (UTF + UCP, JIT when available). Regexes are
 * compiled as written except that \s and \S also cover U+0085, as in Oniguruma, the engine of
 * Hugging Face tokenizers. This file does not do BPE or the byte-level mapping itself. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "tok/bytelevel.h"
#include "tok/pretok.h"

/* GPT-2's split regex, which ByteLevel applies when use_regex is true. */
static const char GPT2_REGEX[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* DeepSeek-V3's three Split regexes, exactly as in its tokenizer.json (the digits' one is
 * "\p{N}{1,3}", written by pretok_deepseek_v3 with its run length). */
static const char DSV3_CJK[] = "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+";
static const char DSV3_WORDS[] = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+"
                                 "|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
                                 "| ?[\\p{P}\\p{S}]+[\r\n]*"
                                 "|\\s*[\r\n]+"
                                 "|\\s+(?!\\S)"
                                 "|\\s+";

/* Rewrites \s as [\s\x{85}] and \S as [^\s\x{85}] (inside a class: \s\x{85}; \S is left as is
 * there). The result is malloc'ed. */
static char *onig_whitespace(const char *re, size_t n, size_t *out_n) {
    char *o = malloc(n * 12 + 1);
    if (!o) return NULL;
    size_t k = 0;
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = re[i];
        if (c == '\\' && i + 1 < n) {
            char d = re[++i];
            const char *rep = NULL;
            if (d == 's') rep = in_class ? "\\s\\x{85}" : "[\\s\\x{85}]";
            if (d == 'S' && !in_class) rep = "[^\\s\\x{85}]";
            if (rep) {
                memcpy(o + k, rep, strlen(rep));
                k += strlen(rep);
            } else {
                o[k++] = c;
                o[k++] = d;
            }
            continue;
        }
        o[k++] = c;
        if (!in_class && c == '[') {
            in_class = true;
            /* a ']' right after '[' or '[^' is a literal member */
            if (i + 1 < n && re[i + 1] == '^') o[k++] = re[++i];
            if (i + 1 < n && re[i + 1] == ']') o[k++] = re[++i];
        } else if (in_class && c == '[' && i + 1 < n && re[i + 1] == ':') {
            const char *end = strstr(re + i, ":]"); /* POSIX class [:alpha:] */
            if (end && (size_t)(end - re) < n) {
                size_t len = (size_t)(end - re) + 2 - (i + 1);
                memcpy(o + k, re + i + 1, len);
                k += len;
                i += len;
            }
        } else if (in_class && c == ']') {
            in_class = false;
        }
    }
    o[k] = 0;
    *out_n = k;
    return o;
}

static int compile_step(const char *pat, size_t len, bool literal, const char *path, const char *field,
                        pretok_step *st) {
    size_t n = len;
    char *re = literal ? NULL : onig_whitespace(pat, len, &n);
    if (!literal && !re) return dsc_set_error("%s: %s: out of memory", path, field);
    int err;
    PCRE2_SIZE off;
    uint32_t opts = literal ? PCRE2_UTF | PCRE2_LITERAL : PCRE2_UTF | PCRE2_UCP;
    st->re = pcre2_compile((PCRE2_SPTR)(literal ? pat : re), n, opts, &err, &off, NULL);
    free(re);
    if (!st->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return dsc_set_error("%s: %s: invalid regex at offset %zu: %s", path, field, (size_t)off, (char *)msg);
    }
    st->jit = pcre2_jit_compile(st->re, PCRE2_JIT_COMPLETE) == 0;
    return DSC_OK;
}

static int add_step(dsc_pretok *p, pretok_step st) {
    pretok_step *s = realloc(p->steps, (size_t)(p->n_steps + 1) * sizeof *s);
    if (!s) {
        pcre2_code_free(st.re);
        return dsc_set_error("tokenizer: out of memory for pre-tokenizer steps");
    }
    p->steps = s;
    p->steps[p->n_steps++] = st;
    return DSC_OK;
}

static bool get_bool(const json_t *o, const char *key, bool def, bool *ok) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return def;
    if (!json_is_boolean(v)) *ok = false;
    return json_is_true(v);
}

/* Parses one pre-tokenizer object (recursing into Sequence); field is its path for messages. */
static int parse_one(const json_t *j, const char *path, const char *field, dsc_pretok *p, bool *byte_level) {
    if (!json_is_object(j)) return dsc_set_error("%s: %s: expected an object", path, field);
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return dsc_set_error("%s: %s.type: expected a string", path, field);
    if (*byte_level)
        return dsc_set_error("%s: %s: a %s step after ByteLevel is not supported (ByteLevel must come last)", path,
                             field, type);
    char sub[512];
    bool ok = true;
    if (!strcmp(type, "Sequence")) {
        const json_t *list = json_object_get(j, "pretokenizers");
        if (!json_is_array(list)) return dsc_set_error("%s: %s.pretokenizers: expected an array", path, field);
        for (size_t i = 0; i < json_array_size(list); i++) {
            snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", field, i);
            if (parse_one(json_array_get(list, i), path, sub, p, byte_level)) return DSC_ERR;
        }
        return DSC_OK;
    }
    if (!strcmp(type, "Split")) {
        pretok_step st = {0};
        const json_t *pat = json_object_get(j, "pattern");
        const json_t *re = json_object_get(pat, "Regex"), *lit = json_object_get(pat, "String");
        const char *beh = json_string_value(json_object_get(j, "behavior"));
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        int b = -1;
        for (int i = 0; beh && i < 5; i++)
            if (!strcmp(beh, names[i])) b = i;
        if (b < 0)
            return dsc_set_error("%s: %s.behavior: expected Removed, Isolated, MergedWithPrevious, MergedWithNext or "
                                 "Contiguous, found %s",
                                 path, field, beh ? beh : "no string");
        st.behavior = (split_behavior)b;
        st.invert = get_bool(j, "invert", false, &ok);
        if (!ok) return dsc_set_error("%s: %s.invert: expected true or false", path, field);
        if (json_is_string(re)) {
            snprintf(sub, sizeof sub, "%s.pattern.Regex", field);
            if (compile_step(json_string_value(re), json_string_length(re), false, path, sub, &st)) return DSC_ERR;
        } else if (json_is_string(lit)) {
            snprintf(sub, sizeof sub, "%s.pattern.String", field);
            if (json_string_length(lit) == 0) return dsc_set_error("%s: %s: expected a non-empty string", path, sub);
            if (compile_step(json_string_value(lit), json_string_length(lit), true, path, sub, &st)) return DSC_ERR;
        } else {
            return dsc_set_error("%s: %s.pattern: expected {\"Regex\": string} or {\"String\": string}", path, field);
        }
        return add_step(p, st);
    }
    if (!strcmp(type, "ByteLevel")) {
        /* Hugging Face's defaults: add_prefix_space true, use_regex true */
        if (get_bool(j, "add_prefix_space", true, &ok))
            return dsc_set_error("%s: %s.add_prefix_space: only false is supported (a prefix space changes the text), "
                                 "found %s",
                                 path, field, ok ? "true or absent" : "no boolean");
        bool use_regex = get_bool(j, "use_regex", true, &ok);
        if (!ok) return dsc_set_error("%s: %s.use_regex: expected true or false", path, field);
        if (use_regex) {
            pretok_step st = {.behavior = SPLIT_ISOLATED};
            snprintf(sub, sizeof sub, "%s (GPT-2 regex)", field);
            if (compile_step(GPT2_REGEX, strlen(GPT2_REGEX), false, path, sub, &st) || add_step(p, st)) return DSC_ERR;
        }
        *byte_level = true;
        return DSC_OK;
    }
    return dsc_set_error("%s: %s.type: pre-tokenizer %s is not supported (expected Sequence, Split or ByteLevel)", path,
                         field, type);
}

int pretok_from_json(const json_t *j, const char *path, dsc_pretok *out) {
    memset(out, 0, sizeof *out);
    bool byte_level = false;
    if (!j || json_is_null(j))
        return dsc_set_error("%s: pre_tokenizer: expected a byte-level pre-tokenizer, found none", path);
    if (parse_one(j, path, "pre_tokenizer", out, &byte_level)) goto fail;
    if (!byte_level) {
        dsc_set_error("%s: pre_tokenizer: expected a ByteLevel step (only byte-level BPE is supported), found none",
                      path);
        goto fail;
    }
    out->config = json_deep_copy(j);
    out->mctx = pcre2_match_context_create(NULL);
    if (out->mctx) {
        pcre2_set_match_limit(out->mctx, UINT32_MAX);
        pcre2_set_depth_limit(out->mctx, UINT32_MAX);
    }
    if (!out->config || !out->mctx) {
        dsc_set_error("%s: pre_tokenizer: out of memory", path);
        goto fail;
    }
    return DSC_OK;
fail:
    pretok_free(out);
    return DSC_ERR;
}

int pretok_deepseek_v3(dsc_pretok *out, int max_digits) {
    if (max_digits < 1 || max_digits > 3)
        return dsc_set_error("tokenizer: digit runs of 1 to 3 digits, asked %d", max_digits);
    char digits[16];
    if (max_digits == 1) snprintf(digits, sizeof digits, "\\p{N}");
    else snprintf(digits, sizeof digits, "\\p{N}{1,%d}", max_digits);
    json_t *j =
        json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:{s:s}, s:s, s:b}, {s:s, s:{s:s}, s:s, s:b},"
                  " {s:s, s:b, s:b, s:b}]}",
                  "type", "Sequence", "pretokenizers", "type", "Split", "pattern", "Regex", digits, "behavior",
                  "Isolated", "invert", 0, "type", "Split", "pattern", "Regex", DSV3_CJK, "behavior", "Isolated",
                  "invert", 0, "type", "Split", "pattern", "Regex", DSV3_WORDS, "behavior", "Isolated", "invert", 0,
                  "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 0);
    if (!j) return dsc_set_error("tokenizer: cannot build DeepSeek-V3's pre-tokenizer");
    int rc = pretok_from_json(j, "DeepSeek-V3 pre-tokenizer", out);
    json_decref(j);
    return rc;
}

void pretok_free(dsc_pretok *p) {
    for (int i = 0; i < p->n_steps; i++) pcre2_code_free(p->steps[i].re);
    free(p->steps);
    pcre2_match_context_free(p->mctx);
    json_decref(p->config);
    memset(p, 0, sizeof *p);
}

pcre2_match_data *pretok_match_data(const dsc_pretok *p) {
    (void)p;
    return pcre2_match_data_create(1, NULL);
}

/* ---- running the steps ------------------------------------------------------------------- */

typedef struct {
    const dsc_pretok *p;
    pcre2_match_data *md;
    pretok_emit emit;
    void *ctx;
} run_state;

/* A piece held back because the behaviour may still extend it. */
typedef struct {
    size_t a, b;
    bool match, have, prev_match;
} pending;

static int process(run_state *r, int k, const char *s, size_t n);

static int out(run_state *r, int k, const char *s, size_t a, size_t b) {
    return b > a ? process(r, k + 1, s + a, b - a) : 0;
}

/* One segment [a, b) of a piece at step k: a regex match (m) or the gap between matches. */
static int segment(run_state *r, int k, const char *s, pending *pd, size_t a, size_t b, bool m) {
    const pretok_step *st = &r->p->steps[k];
    if (st->invert) m = !m;
    switch (st->behavior) {
    case SPLIT_ISOLATED:
        return out(r, k, s, a, b);
    case SPLIT_REMOVED:
        return m ? 0 : out(r, k, s, a, b);
    case SPLIT_CONTIGUOUS: /* runs of matches (or of gaps) become one piece */
        if (pd->have && pd->match == m) {
            pd->b = b;
            return 0;
        }
        break;
    case SPLIT_MERGED_WITH_PREVIOUS: { /* a match joins the gap before it */
        bool prev = pd->prev_match;
        pd->prev_match = m;
        if (m && !prev && pd->have) {
            pd->b = b;
            return 0;
        }
        break;
    }
    case SPLIT_MERGED_WITH_NEXT: /* a match joins the gap after it; pending holds a match */
        if (pd->have) {
            if (!m) {
                pd->have = false;
                return out(r, k, s, pd->a, b);
            }
            int rc = out(r, k, s, pd->a, pd->b);
            pd->a = a, pd->b = b;
            return rc;
        }
        if (m) {
            *pd = (pending){a, b, true, true, false};
            return 0;
        }
        return out(r, k, s, a, b);
    }
    int rc = pd->have ? out(r, k, s, pd->a, pd->b) : 0;
    pd->have = true, pd->a = a, pd->b = b, pd->match = m;
    return rc;
}

static int process(run_state *r, int k, const char *s, size_t n) {
    if (k == r->p->n_steps) return r->emit(r->ctx, s, n);
    const pretok_step *st = &r->p->steps[k];
    pending pd = {0};
    size_t prev = 0, off = 0;
    int rc;
    while (off <= n) {
        int m =
            st->jit ? pcre2_jit_match(st->re, (PCRE2_SPTR)s, n, off, 0, r->md, r->p->mctx) : PCRE2_ERROR_JIT_STACKLIMIT;
        if (m == PCRE2_ERROR_JIT_STACKLIMIT) /* no JIT, or its stack is too small here: interpret */
            m = pcre2_match(st->re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, r->md, r->p->mctx);
        if (m == PCRE2_ERROR_NOMATCH) break;
        if (m < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(m, msg, sizeof msg);
            return dsc_set_error("pre-tokenizer step %d: regex match failed on a %zu-byte piece: %s", k, n,
                                 (char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
        size_t a = ov[0], b = ov[1];
        if (a < prev || b < a || b > n)
            return dsc_set_error("pre-tokenizer step %d: the regex reported a match out of order", k);
        if (a > prev && (rc = segment(r, k, s, &pd, prev, a, false))) return rc;
        if ((rc = segment(r, k, s, &pd, a, b, true))) return rc;
        prev = b;
        if (b > a) {
            off = b;
        } else { /* an empty match: go on after the next character */
            if (a >= n) break;
            size_t l = utf8_char_len((const uint8_t *)s + a, n - a);
            off = a + (l ? l : 1);
        }
    }
    if (prev < n && (rc = segment(r, k, s, &pd, prev, n, false))) return rc;
    return pd.have ? out(r, k, s, pd.a, pd.b) : 0;
}

int pretok_run(const dsc_pretok *p, pcre2_match_data *md, const char *s, size_t n, pretok_emit emit, void *ctx) {
    run_state r = {p, md, emit, ctx};
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0;
    int rc;
    while (i < n) {
        size_t v = utf8_valid_prefix(u + i, n - i);
        if (v && (rc = process(&r, 0, s + i, v))) return rc;
        i += v;
        size_t j = i;
        while (j < n && !utf8_char_len(u + j, n - j)) j++;
        if (j > i && (rc = emit(ctx, s + i, j - i))) return rc;
        i = j;
    }
    return DSC_OK;
}
