/* tokenizer.c: encoding and decoding with a loaded or trained tokenizer, and the tables both
 * need (built by tok_build). Encoding: added tokens are cut out first, the text between is split
 * by the pre-tokenizer, and each piece's bytes are merged by rank (lowest first, leftmost among
 * equals, as Hugging Face does). Loading and saving tokenizer.json live in tok_json.c. */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "tok/bytelevel.h"
#include "tok/tok_internal.h"

/* ---- derived tables ---------------------------------------------------------------------- */

static void free_derived(dsc_tokenizer *t) {
    free(t->vocab_of_id);
    u64map_free(&t->pair);
    free(t->dec_off);
    free(t->dec);
    free(t->id_used);
    free(t->trie);
    t->vocab_of_id = NULL;
    t->dec_off = NULL;
    t->dec = NULL;
    t->id_used = NULL;
    t->trie = NULL;
    t->n_trie = 0;
}

void tok_destroy(dsc_tokenizer *t) {
    if (!t) return;
    free_derived(t);
    strmap_free(&t->vocab);
    free(t->merges);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    json_decref(t->unk_token);
    json_decref(t->normalizer);
    json_decref(t->post_processor);
    json_decref(t->decoder);
    pretok_free(&t->pretok);
    free(t);
}

void dsc_tokenizer_free(dsc_tokenizer *t) { tok_destroy(t); }

static int trie_add(dsc_tokenizer *t, int32_t which, size_t *cap) {
    const tok_added *a = &t->added[which];
    int32_t node = -1;
    for (size_t i = 0; i < a->len; i++) {
        uint8_t c = (uint8_t)a->content[i];
        int32_t *link = node < 0 ? &t->trie_root[c] : &t->trie[node].child;
        int32_t k = *link;
        if (node >= 0)
            while (k >= 0 && t->trie[k].byte != c) k = t->trie[k].sibling;
        if (k < 0) {
            if ((size_t)t->n_trie == *cap) {
                size_t nc = *cap ? *cap * 2 : 256;
                trie_node *nt = realloc(t->trie, nc * sizeof *nt);
                if (!nt) return dsc_set_error("tokenizer: out of memory for the added-token trie");
                t->trie = nt;
                *cap = nc;
                link = node < 0 ? &t->trie_root[c] : &t->trie[node].child; /* trie moved */
            }
            k = t->n_trie++;
            t->trie[k] = (trie_node){-1, node < 0 ? -1 : *link, -1, c};
            *link = k;
        }
        node = k;
    }
    if (t->trie[node].added >= 0)
        return dsc_set_error("added_tokens: \"%s\" is listed twice (ids %d and %d)", a->content,
                             t->added[t->trie[node].added].id, a->id);
    t->trie[node].added = which;
    return DSC_OK;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001B3ull;
    return h;
}

static uint64_t compute_hash(const dsc_tokenizer *t) {
    uint64_t h = fnv(0xCBF29CE484222325ull, "dsc-tokenizer-1", 15);
    for (int32_t id = 0; id < t->n_ids; id++) {
        size_t len = 0;
        const char *k = t->vocab_of_id[id] >= 0 ? strmap_key(&t->vocab, (size_t)t->vocab_of_id[id], &len) : "";
        uint32_t hdr[2] = {(uint32_t)id, (uint32_t)len};
        h = fnv(fnv(h, hdr, sizeof hdr), k, len);
    }
    h = fnv(h, t->merges, sizeof *t->merges * (size_t)t->n_merges);
    for (int i = 0; i < t->n_added; i++) {
        const tok_added *a = &t->added[i];
        uint32_t hdr[3] = {(uint32_t)a->id, (uint32_t)a->len,
                           (uint32_t)(a->special | a->normalized << 1 | a->lstrip << 2 | a->rstrip << 3)};
        h = fnv(fnv(h, hdr, sizeof hdr), a->content, a->len);
    }
    char *cfg = json_dumps(t->pretok.config, JSON_COMPACT | JSON_SORT_KEYS);
    if (cfg) h = fnv(h, cfg, strlen(cfg));
    free(cfg);
    uint8_t flags = (uint8_t)t->ignore_merges;
    return fnv(h, &flags, 1);
}

int tok_build(dsc_tokenizer *t, const char *path) {
    free_derived(t);
    int32_t n_ids = 0;
    for (size_t e = 0; e < t->vocab.n; e++)
        if ((int64_t)t->vocab.e[e].value + 1 > n_ids) n_ids = (int32_t)t->vocab.e[e].value + 1;
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id + 1 > n_ids) n_ids = t->added[i].id + 1;
    size_t n_tokens = t->vocab.n + (size_t)t->n_added;
    if ((size_t)n_ids > 2 * n_tokens + 1024)
        return dsc_set_error("%s: model.vocab or added_tokens: id %d is far beyond the %zu tokens (ids must be dense)",
                             path, n_ids - 1, n_tokens);
    t->n_ids = n_ids;
    t->vocab_of_id = malloc(sizeof *t->vocab_of_id * (size_t)(n_ids ? n_ids : 1));
    t->id_used = calloc((size_t)(n_ids ? n_ids : 1), sizeof *t->id_used);
    t->dec_off = malloc(sizeof *t->dec_off * (size_t)(n_ids + 1));
    if (!t->vocab_of_id || !t->id_used || !t->dec_off) goto oom;
    for (int32_t i = 0; i < n_ids; i++) t->vocab_of_id[i] = -1;
    for (size_t e = 0; e < t->vocab.n; e++) {
        int32_t id = (int32_t)t->vocab.e[e].value;
        if (t->vocab_of_id[id] >= 0) {
            size_t l1, l2;
            const char *k1 = strmap_key(&t->vocab, (size_t)t->vocab_of_id[id], &l1),
                       *k2 = strmap_key(&t->vocab, e, &l2);
            return dsc_set_error("%s: model.vocab: id %d is given to both \"%.*s\" and \"%.*s\"", path, id, (int)l1, k1,
                                 (int)l2, k2);
        }
        t->vocab_of_id[id] = (int64_t)e;
        t->id_used[id] = true;
    }
    /* every byte must have its token, so that any byte string can be encoded */
    for (int b = 0; b < 256; b++) {
        char s[2];
        uint8_t byte = (uint8_t)b;
        size_t l = bytelevel_encode(&byte, 1, s);
        int64_t e = strmap_find(&t->vocab, s, l);
        if (e < 0)
            return dsc_set_error(
                "%s: model.vocab: no token for byte 0x%02x (\"%.*s\"); a byte-level vocabulary needs all "
                "256",
                path, b, (int)l, s);
        t->byte_id[b] = (int32_t)t->vocab.e[e].value;
    }
    /* merges: (a, b) -> rank and the id of the merged string; a later duplicate wins, as in HF */
    if (u64map_init(&t->pair, (size_t)t->n_merges + 1)) return DSC_ERR;
    char *buf = NULL;
    size_t buf_cap = 0;
    for (int32_t r = 0; r < t->n_merges; r++) {
        size_t la, lb;
        const char *ka = strmap_key(&t->vocab, (size_t)t->vocab_of_id[t->merges[r].a], &la);
        const char *kb = strmap_key(&t->vocab, (size_t)t->vocab_of_id[t->merges[r].b], &lb);
        if (la + lb > buf_cap) {
            buf_cap = 2 * (la + lb) + 64;
            char *nb = realloc(buf, buf_cap);
            if (!nb) {
                free(buf);
                goto oom;
            }
            buf = nb;
        }
        memcpy(buf, ka, la);
        memcpy(buf + la, kb, lb);
        int64_t e = strmap_find(&t->vocab, buf, la + lb);
        if (e < 0) {
            dsc_set_error("%s: model.merges[%d]: \"%.*s %.*s\" makes \"%.*s\", which is not in model.vocab", path, r,
                          (int)la, ka, (int)lb, kb, (int)(la + lb), buf);
            free(buf);
            return DSC_ERR;
        }
        uint64_t *v = u64map_get(&t->pair, (uint64_t)t->merges[r].a << 32 | (uint32_t)t->merges[r].b, 0);
        if (!v) {
            free(buf);
            return DSC_ERR;
        }
        *v = (uint64_t)r << 32 | (uint32_t)t->vocab.e[e].value;
    }
    free(buf);
    /* decoded bytes of each id: added tokens as written, model tokens through the byte-level
     * alphabet (or as written when they hold other characters, as HF's ByteLevel decoder does) */
    const char **src = calloc((size_t)(n_ids ? n_ids : 1), sizeof *src);
    size_t *src_len = calloc((size_t)(n_ids ? n_ids : 1), sizeof *src_len);
    bool *raw = calloc((size_t)(n_ids ? n_ids : 1), sizeof *raw);
    size_t total = 0, off = 0;
    if (!src || !src_len || !raw) goto oom_dec;
    for (int32_t id = 0; id < n_ids; id++)
        if (t->vocab_of_id[id] >= 0) src[id] = strmap_key(&t->vocab, (size_t)t->vocab_of_id[id], &src_len[id]);
    for (int i = 0; i < t->n_added; i++) {
        int32_t id = t->added[i].id;
        src[id] = t->added[i].content, src_len[id] = t->added[i].len, raw[id] = true;
        t->id_used[id] = true;
    }
    for (int32_t id = 0; id < n_ids; id++) total += src_len[id];
    if (!(t->dec = malloc(total + 1))) goto oom_dec;
    for (int32_t id = 0; id < n_ids; id++) {
        t->dec_off[id] = off;
        size_t n = 0;
        if (src[id] && (raw[id] || !bytelevel_decode(src[id], src_len[id], (uint8_t *)t->dec + off, &n))) {
            memcpy(t->dec + off, src[id], src_len[id]);
            n = src_len[id];
        }
        off += n;
    }
    t->dec_off[n_ids] = off;
    free(src);
    free(src_len);
    free(raw);
    /* the added-token trie */
    for (int c = 0; c < 256; c++) t->trie_root[c] = -1;
    size_t cap = 0;
    for (int i = 0; i < t->n_added; i++)
        if (trie_add(t, i, &cap)) return dsc_prefix_error("%s", path);
    t->hash = compute_hash(t);
    return DSC_OK;
oom_dec:
    free(src);
    free(src_len);
    free(raw);
oom:
    return dsc_set_error("%s: out of memory for the tokenizer tables (%d ids)", path, n_ids);
}

/* ---- accessors --------------------------------------------------------------------------- */

int dsc_tokenizer_vocab_size(const dsc_tokenizer *t) { return t->n_ids; }

uint64_t dsc_tokenizer_hash(const dsc_tokenizer *t) { return t->hash; }

int32_t dsc_tokenizer_token_id(const dsc_tokenizer *t, const char *text) {
    size_t n = strlen(text);
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && !memcmp(t->added[i].content, text, n)) return t->added[i].id;
    return -1;
}

void dsc_tokenizer_specials(const dsc_tokenizer *t, dsc_special_ids *out) {
    out->bos = dsc_tokenizer_token_id(t, TOK_BOS);
    out->eos = dsc_tokenizer_token_id(t, TOK_EOS);
    out->pad = dsc_tokenizer_token_id(t, TOK_PAD);
    out->think_begin = dsc_tokenizer_token_id(t, TOK_THINK);
    out->think_end = dsc_tokenizer_token_id(t, TOK_THINK_END);
    out->user = dsc_tokenizer_token_id(t, TOK_USER);
    out->assistant = dsc_tokenizer_token_id(t, TOK_ASSISTANT);
}

/* ---- added tokens ------------------------------------------------------------------------ */

/* Unicode White_Space, what Rust's char::is_whitespace (and so HF's lstrip/rstrip) uses. */
static bool is_space(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
           c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

static size_t skip_space_fwd(const uint8_t *s, size_t i, size_t hi) {
    uint32_t cp;
    size_t l;
    while (i < hi && (l = utf8_decode(s + i, hi - i, &cp)) && is_space(cp)) i += l;
    return i;
}

static size_t skip_space_back(const uint8_t *s, size_t lo, size_t i) {
    while (i > lo) {
        size_t k = i - 1;
        while (k > lo && i - k < 4 && (s[k] & 0xc0) == 0x80) k--;
        uint32_t cp;
        if (utf8_decode(s + k, i - k, &cp) != i - k || !is_space(cp)) break;
        i = k;
    }
    return i;
}

/* The leftmost-longest added token in s[from..n) among those with the given `normalized` flag. */
static bool find_added(const dsc_tokenizer *t, const uint8_t *s, size_t n, size_t from, bool normalized, size_t *ms,
                       size_t *me, int *which) {
    for (size_t i = from; i < n; i++) {
        int32_t node = t->trie_root[s[i]];
        int best = -1;
        size_t end = 0, j = i;
        while (node >= 0) {
            j++;
            int a = t->trie[node].added;
            if (a >= 0 && t->added[a].normalized == normalized) best = a, end = j;
            if (j == n) break;
            node = t->trie[node].child;
            while (node >= 0 && t->trie[node].byte != s[j]) node = t->trie[node].sibling;
        }
        if (best >= 0) {
            *ms = i, *me = end, *which = best;
            return true;
        }
    }
    return false;
}

/* One pass over s[lo..hi): tokens with the given flag; the stretches between go to next (the
 * pass for normalized tokens) or, after that, to cb->gap. */
static int split_pass(const dsc_tokenizer *t, const char *s, size_t lo, size_t hi, bool normalized,
                      const tok_split_cb *cb) {
    const uint8_t *u = (const uint8_t *)s;
    size_t pos = lo, ms, me;
    int which, rc;
    while (pos < hi && find_added(t, u, hi, pos, normalized, &ms, &me, &which)) {
        const tok_added *a = &t->added[which];
        if (a->lstrip) ms = skip_space_back(u, pos, ms);
        if (a->rstrip) me = skip_space_fwd(u, me, hi);
        if (ms > pos) {
            rc = normalized ? cb->gap(cb->ctx, s + pos, ms - pos) : split_pass(t, s, pos, ms, true, cb);
            if (rc) return rc;
        }
        if ((rc = cb->token(cb->ctx, a->id))) return rc;
        pos = me;
    }
    if (pos < hi) return normalized ? cb->gap(cb->ctx, s + pos, hi - pos) : split_pass(t, s, pos, hi, true, cb);
    return DSC_OK;
}

int tok_split_added(const dsc_tokenizer *t, const char *s, size_t n, const tok_split_cb *cb) {
    if (t->n_added == 0) return n ? cb->gap(cb->ctx, s, n) : DSC_OK;
    return split_pass(t, s, 0, n, false, cb);
}

/* ---- BPE on one piece -------------------------------------------------------------------- */

/* (rank << 32 | merged id) of the pair (a, b), or UINT64_MAX if they do not merge. */
static inline uint64_t pair_of(const dsc_tokenizer *t, int32_t a, int32_t b) {
    const uint64_t *v = u64map_find(&t->pair, (uint64_t)a << 32 | (uint32_t)b);
    return v ? *v : UINT64_MAX;
}

/* Short pieces: find the lowest-ranked pair by scanning, merge, repeat. */
static size_t merge_scan(const dsc_tokenizer *t, int32_t *sym, size_t n) {
    uint64_t rk[64];
    for (size_t i = 0; i + 1 < n; i++) rk[i] = pair_of(t, sym[i], sym[i + 1]);
    while (n > 1) {
        size_t bi = 0;
        uint64_t best = UINT64_MAX;
        for (size_t i = 0; i + 1 < n; i++)
            if (rk[i] < best) best = rk[i], bi = i;
        if (best == UINT64_MAX) break;
        sym[bi] = (int32_t)(uint32_t)best;
        memmove(sym + bi + 1, sym + bi + 2, (n - bi - 2) * sizeof *sym);
        if (bi + 2 < n) memmove(rk + bi + 1, rk + bi + 2, (n - bi - 3) * sizeof *rk);
        n--;
        if (bi > 0) rk[bi - 1] = pair_of(t, sym[bi - 1], sym[bi]);
        if (bi + 1 < n) rk[bi] = pair_of(t, sym[bi], sym[bi + 1]);
    }
    return n;
}

static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2] > v) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
    return top;
}

/* Long pieces: a linked list of symbols and a heap of (rank, position), stale entries skipped. */
static size_t merge_heap(const dsc_tokenizer *t, int32_t *sym, size_t n, void **scratch, size_t *cap) {
    size_t need = n * (2 * sizeof(int32_t) + 3 * sizeof(uint64_t));
    if (need > *cap) {
        void *p = realloc(*scratch, need);
        if (!p) return SIZE_MAX;
        *scratch = p;
        *cap = need;
    }
    uint64_t *heap = *scratch;
    int32_t *next = (int32_t *)(heap + 3 * n), *prev = next + n;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
        uint64_t p = i + 1 < n ? pair_of(t, sym[i], sym[i + 1]) : UINT64_MAX;
        if (p != UINT64_MAX) heap_push(heap, &hn, (p >> 32) << 32 | i);
    }
    while (hn) {
        uint64_t top = heap_pop(heap, &hn);
        size_t pos = (uint32_t)top;
        if (sym[pos] < 0 || next[pos] < 0) continue;
        uint64_t p = pair_of(t, sym[pos], sym[next[pos]]);
        if (p == UINT64_MAX || p >> 32 != top >> 32) continue; /* stale: this pair is gone */
        int32_t q = next[pos];
        sym[pos] = (int32_t)(uint32_t)p;
        sym[q] = -1;
        next[pos] = next[q];
        if (next[q] >= 0) prev[next[q]] = (int32_t)pos;
        if (prev[pos] >= 0 && (p = pair_of(t, sym[prev[pos]], sym[pos])) != UINT64_MAX)
            heap_push(heap, &hn, (p >> 32) << 32 | (uint32_t)prev[pos]);
        if (next[pos] >= 0 && (p = pair_of(t, sym[pos], sym[next[pos]])) != UINT64_MAX)
            heap_push(heap, &hn, (p >> 32) << 32 | pos);
    }
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) sym[k++] = sym[i];
    return k;
}

size_t tok_bpe_merge(const dsc_tokenizer *t, int32_t *sym, size_t n, bool heap, void **scratch, size_t *scratch_cap) {
    if (n < 2) return n;
    if (!heap && n <= 64) return merge_scan(t, sym, n);
    return merge_heap(t, sym, n, scratch, scratch_cap);
}

/* ---- encoding ---------------------------------------------------------------------------- */

#define CACHE_MAX_PIECE 256 /* longer pieces rarely repeat */

typedef struct {
    const dsc_tokenizer *t;
    pcre2_match_data *md;
    int32_t *ids;
    size_t n, cap;
    dsc_strmap cache;        /* piece bytes -> (offset in cached << 16 | count) */
    int32_t *cached;
    size_t n_cached, cap_cached;
    int32_t *sym;
    size_t cap_sym;
    char *bl;                /* byte-level form of a piece, for ignore_merges */
    size_t cap_bl;
    void *scratch;
    size_t cap_scratch;
} encoder;

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return DSC_OK;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return dsc_set_error("tokenizer: out of memory for %zu elements", c);
    *p = q;
    *cap = c;
    return DSC_OK;
}

static int push(encoder *e, const int32_t *ids, size_t n) {
    if (grow((void **)&e->ids, &e->cap, e->n + n, sizeof *e->ids)) return DSC_ERR;
    memcpy(e->ids + e->n, ids, n * sizeof *ids);
    e->n += n;
    return DSC_OK;
}

static int enc_piece(void *ctx, const char *s, size_t n) {
    encoder *e = ctx;
    const dsc_tokenizer *t = e->t;
    bool cacheable = n <= CACHE_MAX_PIECE;
    if (cacheable) {
        int64_t k = strmap_find(&e->cache, s, n);
        if (k >= 0) {
            uint64_t v = e->cache.e[k].value;
            return push(e, e->cached + (v >> 16), v & 0xffff);
        }
    }
    size_t m = 0;
    if (t->ignore_merges) { /* a piece that is a token as a whole stays whole */
        if (grow((void **)&e->bl, &e->cap_bl, 2 * n, 1)) return DSC_ERR;
        size_t l = bytelevel_encode((const uint8_t *)s, n, e->bl);
        int64_t k = strmap_find(&t->vocab, e->bl, l);
        if (k >= 0) {
            if (grow((void **)&e->sym, &e->cap_sym, 1, sizeof *e->sym)) return DSC_ERR;
            e->sym[0] = (int32_t)t->vocab.e[k].value;
            m = 1;
        }
    }
    if (!m) {
        if (grow((void **)&e->sym, &e->cap_sym, n, sizeof *e->sym)) return DSC_ERR;
        for (size_t i = 0; i < n; i++) e->sym[i] = t->byte_id[(uint8_t)s[i]];
        m = tok_bpe_merge(t, e->sym, n, false, &e->scratch, &e->cap_scratch);
        if (m == SIZE_MAX) return dsc_set_error("tokenizer: out of memory merging a %zu-byte piece", n);
    }
    if (cacheable) {
        if (grow((void **)&e->cached, &e->cap_cached, e->n_cached + m, sizeof *e->cached)) return DSC_ERR;
        memcpy(e->cached + e->n_cached, e->sym, m * sizeof *e->sym);
        if (strmap_insert(&e->cache, s, n, (uint64_t)e->n_cached << 16 | m, NULL, NULL)) return DSC_ERR;
        e->n_cached += m;
    }
    return push(e, e->sym, m);
}

static int enc_gap(void *ctx, const char *s, size_t n) {
    encoder *e = ctx;
    return pretok_run(&e->t->pretok, e->md, s, n, enc_piece, e);
}

static int enc_token(void *ctx, int32_t id) { return push(ctx, &id, 1); }

dsc_status dsc_tokenizer_encode(const dsc_tokenizer *t, const char *text, size_t len, bool parse_special, int32_t **ids,
                                size_t *n) {
    *ids = NULL;
    *n = 0;
    encoder e = {.t = t};
    e.md = pretok_match_data(&t->pretok);
    int rc = DSC_ERR;
    if (!e.md) {
        dsc_set_error("tokenizer: out of memory for regex match data");
        goto done;
    }
    if (strmap_init(&e.cache, len / 8 < 1024 ? 1024 : (len / 8 > (1u << 20) ? (1u << 20) : len / 8))) goto done;
    if (parse_special) {
        tok_split_cb cb = {enc_gap, enc_token, &e};
        rc = tok_split_added(t, text, len, &cb);
    } else {
        rc = len ? enc_gap(&e, text, len) : DSC_OK;
    }
done:
    if (rc == DSC_OK) {
        *ids = e.ids ? e.ids : malloc(sizeof(int32_t));
        *n = e.n;
        if (!*ids) rc = dsc_set_error("tokenizer: out of memory");
    } else {
        free(e.ids);
    }
    pcre2_match_data_free(e.md);
    strmap_free(&e.cache);
    free(e.cached);
    free(e.sym);
    free(e.bl);
    free(e.scratch);
    return rc;
}

/* ---- decoding ---------------------------------------------------------------------------- */

dsc_status dsc_tokenizer_decode(const dsc_tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len) {
    *text = NULL;
    *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_ids || !t->id_used[id])
            return dsc_set_error("decode: token %zu: id %d is not in the vocabulary (0 .. %d)", i, id, t->n_ids - 1);
        total += t->dec_off[id + 1] - t->dec_off[id];
    }
    char *out = malloc(total + 1);
    if (!out) return dsc_set_error("decode: out of memory for %zu bytes", total);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t a = t->dec_off[ids[i]], b = t->dec_off[ids[i] + 1];
        memcpy(out + o, t->dec + a, b - a);
        o += b - a;
    }
    out[o] = 0;
    *text = out;
    *len = o;
    return DSC_OK;
}
