/* bpe_train.c: learns a byte-level BPE tokenizer from text files. The text is cut with
 * DeepSeek-V3's pre-tokenizer and the pieces are counted in a hash map (in parallel, over chunks
 * that end at line starts); then the classic algorithm runs: pair counts with the words each pair
 * occurs in, a max-heap with lazy updates, and after each merge only the words that held the pair
 * are rewritten. Ids: the special tokens first (BOS 0, EOS 1, PAD 2, <｜User｜> 3,
 * <｜Assistant｜> 4, <think> 5, </think> 6), then the 256 bytes in byte order (7..262), then the
 * merges in the order learnt. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "tok/bytelevel.h"
#include "tok/tok_internal.h"

static const char *const SPECIALS[] = {TOK_BOS, TOK_EOS, TOK_PAD, TOK_USER, TOK_ASSISTANT, TOK_THINK, TOK_THINK_END};
#define N_SPECIALS 7
#define CHUNK_BYTES (1u << 20)

/* ---- the untrained tokenizer: specials, bytes, DeepSeek-V3's pre-tokenizer ------------------ */

static int skeleton(int max_digits, dsc_tokenizer **out) {
    dsc_tokenizer *t = calloc(1, sizeof *t);
    *out = t;
    if (!t || strmap_init(&t->vocab, 1024)) return dsc_set_error("tokenizer train: out of memory");
    t->added = calloc(N_SPECIALS, sizeof *t->added);
    if (!t->added) return dsc_set_error("tokenizer train: out of memory");
    for (int i = 0; i < N_SPECIALS; i++) {
        tok_added *a = &t->added[i];
        a->len = strlen(SPECIALS[i]);
        a->content = malloc(a->len + 1);
        if (!a->content) return dsc_set_error("tokenizer train: out of memory");
        memcpy(a->content, SPECIALS[i], a->len + 1);
        a->id = i, a->special = true;
        t->n_added = i + 1;
        /* in the model vocabulary too, as DeepSeek's file has BOS/EOS/PAD: HF then keeps the ids */
        if (strmap_insert(&t->vocab, a->content, a->len, (uint64_t)i, NULL, NULL)) return DSC_ERR;
    }
    for (int b = 0; b < 256; b++) {
        char s[2];
        uint8_t byte = (uint8_t)b;
        if (strmap_insert(&t->vocab, s, bytelevel_encode(&byte, 1, s), (uint64_t)(N_SPECIALS + b), NULL, NULL))
            return DSC_ERR;
    }
    if (pretok_deepseek_v3(&t->pretok, max_digits)) return DSC_ERR;
    t->post_processor = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 0,
                                  "use_regex", 1);
    t->decoder = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 1,
                           "use_regex", 1);
    if (!t->post_processor || !t->decoder) return dsc_set_error("tokenizer train: out of memory");
    return tok_build(t, "tokenizer train");
}

/* ---- counting the pre-tokenized words --------------------------------------------------------- */

typedef struct {
    const dsc_tokenizer *t;
    pcre2_match_data *md;
    dsc_strmap words; /* piece bytes -> count */
} counter;

static int count_piece(void *ctx, const char *s, size_t n) {
    counter *c = ctx;
    size_t i;
    if (strmap_insert(&c->words, s, n, 0, &i, NULL)) return DSC_ERR;
    c->words.e[i].value++;
    return DSC_OK;
}

static int count_gap(void *ctx, const char *s, size_t n) {
    counter *c = ctx;
    return pretok_run(&c->t->pretok, c->md, s, n, count_piece, c);
}

static int skip_special(void *ctx, int32_t id) { return DSC_OK; }

typedef struct {
    const char *s;
    size_t n;
} span;

static bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Cuts s[0..n) into chunks of about CHUNK_BYTES that start at a line whose first byte is not
 * blank, so that no piece the regexes would make straddles a cut. */
static int add_chunks(span **chunks, size_t *n_chunks, size_t *cap, const char *s, size_t n) {
    size_t pos = 0;
    while (pos < n) {
        size_t end = pos + CHUNK_BYTES < n ? pos + CHUNK_BYTES : n;
        while (end < n && !(s[end - 1] == '\n' && !is_blank(s[end]))) end++;
        if (*n_chunks == *cap) {
            *cap = *cap ? *cap * 2 : 64;
            span *c = realloc(*chunks, *cap * sizeof *c);
            if (!c) return dsc_set_error("tokenizer train: out of memory");
            *chunks = c;
        }
        (*chunks)[(*n_chunks)++] = (span){s + pos, end - pos};
        pos = end;
    }
    return DSC_OK;
}

/* Counts the words of all chunks into *words (summed over threads). */
static int count_words(const dsc_tokenizer *t, const span *chunks, size_t n_chunks, int threads, dsc_strmap *words) {
    counter *cs = calloc((size_t)threads, sizeof *cs);
    if (!cs) return dsc_set_error("tokenizer train: out of memory");
    char err[1024] = "";
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        counter *c = &cs[omp_get_thread_num()];
        c->t = t;
        c->md = pretok_match_data(&t->pretok);
        int rc = c->md ? strmap_init(&c->words, 1 << 16) : dsc_set_error("tokenizer train: out of memory");
        tok_split_cb cb = {count_gap, skip_special, c};
#pragma omp for schedule(dynamic, 1)
        for (size_t k = 0; k < n_chunks; k++)
            if (!rc) rc = tok_split_added(t, chunks[k].s, chunks[k].n, &cb);
        if (rc) {
#pragma omp critical(tok_train_error)
            {
                if (!failed) snprintf(err, sizeof err, "%s", dsc_last_error());
                failed = 1;
            }
        }
        pcre2_match_data_free(c->md);
    }
    int rc = DSC_OK;
    if (failed) rc = dsc_set_error("%s", err);
    for (int i = 0; i < threads; i++) {
        for (size_t e = 0; !rc && e < cs[i].words.n; e++) {
            size_t len, idx;
            const char *k = strmap_key(&cs[i].words, e, &len);
            rc = strmap_insert(words, k, len, 0, &idx, NULL);
            if (!rc) words->e[idx].value += cs[i].words.e[e].value;
        }
        strmap_free(&cs[i].words);
    }
    free(cs);
    return rc;
}

/* ---- the merge loop --------------------------------------------------------------------------- */

typedef struct {
    int32_t a, b;
    int64_t count;
    uint32_t *where;     /* words that hold (or held) the pair; may hold stale entries */
    uint32_t n_where, cap_where;
    uint32_t touched;    /* the merge step that last raised the count */
} pair_t;

typedef struct {
    int64_t count;
    uint32_t pair;
} heap_entry;

typedef struct {
    uint32_t off, len;   /* symbols of the word: sym[off .. off+len) */
    int64_t count;
} word_t;

typedef struct {
    pair_t *pairs;
    size_t n_pairs, cap_pairs;
    dsc_u64map index;    /* (a << 32 | b) -> pair index */
    heap_entry *heap;
    size_t n_heap, cap_heap;
    uint32_t *touched;   /* pairs raised in the current step */
    size_t n_touched, cap_touched;
    uint32_t step;
} trainer;

/* Heap order: higher count first, then the smaller pair of ids (as HF's trainer). */
static bool before(const trainer *tr, heap_entry x, heap_entry y) {
    if (x.count != y.count) return x.count > y.count;
    const pair_t *p = &tr->pairs[x.pair], *q = &tr->pairs[y.pair];
    return p->a != q->a ? p->a < q->a : p->b < q->b;
}

static int heap_push(trainer *tr, heap_entry v) {
    if (tr->n_heap == tr->cap_heap) {
        size_t cap = tr->cap_heap ? tr->cap_heap * 2 : 1024;
        heap_entry *h = realloc(tr->heap, cap * sizeof *h);
        if (!h) return dsc_set_error("tokenizer train: out of memory for the pair heap");
        tr->heap = h;
        tr->cap_heap = cap;
    }
    size_t i = tr->n_heap++;
    while (i > 0 && before(tr, v, tr->heap[(i - 1) / 2])) {
        tr->heap[i] = tr->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    tr->heap[i] = v;
    return DSC_OK;
}

static heap_entry heap_pop(trainer *tr) {
    heap_entry top = tr->heap[0], v = tr->heap[--tr->n_heap];
    size_t i = 0, n = tr->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(tr, tr->heap[c + 1], tr->heap[c])) c++;
        if (!before(tr, tr->heap[c], v)) break;
        tr->heap[i] = tr->heap[c];
        i = c;
    }
    if (n) tr->heap[i] = v;
    return top;
}

/* The pair (a, b), created with count 0 if new; NULL when out of memory. */
static pair_t *pair_get(trainer *tr, int32_t a, int32_t b) {
    uint64_t *v = u64map_get(&tr->index, (uint64_t)a << 32 | (uint32_t)b, UINT64_MAX);
    if (!v) return NULL;
    if (*v == UINT64_MAX) {
        if (tr->n_pairs == tr->cap_pairs) {
            size_t cap = tr->cap_pairs ? tr->cap_pairs * 2 : 4096;
            pair_t *p = realloc(tr->pairs, cap * sizeof *p);
            if (!p) return NULL;
            tr->pairs = p;
            tr->cap_pairs = cap;
        }
        *v = tr->n_pairs;
        tr->pairs[tr->n_pairs++] = (pair_t){a, b, 0, NULL, 0, 0, UINT32_MAX};
    }
    return &tr->pairs[*v];
}

/* Adds delta occurrences of (a, b) in word w. */
static int pair_add(trainer *tr, int32_t a, int32_t b, int64_t delta, uint32_t w) {
    pair_t *p = pair_get(tr, a, b);
    if (!p) return dsc_set_error("tokenizer train: out of memory for pair counts");
    p->count += delta;
    if (delta <= 0) return DSC_OK;
    if (!p->n_where || p->where[p->n_where - 1] != w) {
        if (p->n_where == p->cap_where) {
            uint32_t cap = p->cap_where ? p->cap_where * 2 : 4;
            uint32_t *nw = realloc(p->where, cap * sizeof *nw);
            if (!nw) return dsc_set_error("tokenizer train: out of memory for pair positions");
            p->where = nw;
            p->cap_where = cap;
        }
        p->where[p->n_where++] = w;
    }
    if (p->touched != tr->step) {
        p->touched = tr->step;
        if (tr->n_touched == tr->cap_touched) {
            size_t cap = tr->cap_touched ? tr->cap_touched * 2 : 1024;
            uint32_t *nt = realloc(tr->touched, cap * sizeof *nt);
            if (!nt) return dsc_set_error("tokenizer train: out of memory");
            tr->touched = nt;
            tr->cap_touched = cap;
        }
        tr->touched[tr->n_touched++] = (uint32_t)(p - tr->pairs);
    }
    return DSC_OK;
}

/* Rewrites word w with every (a, b) replaced by c, left to right, updating the pair counts. */
static int merge_word(trainer *tr, int32_t *sym, word_t *wd, uint32_t w, int32_t a, int32_t b, int32_t c) {
    int32_t *s = sym + wd->off;
    size_t n = wd->len, o = 0;
    int64_t k = wd->count;
    for (size_t r = 0; r < n;) {
        if (r + 1 < n && s[r] == a && s[r + 1] == b) {
            if (o > 0 && (pair_add(tr, s[o - 1], a, -k, w) || pair_add(tr, s[o - 1], c, k, w))) return DSC_ERR;
            if (r + 2 < n && (pair_add(tr, b, s[r + 2], -k, w) || pair_add(tr, c, s[r + 2], k, w))) return DSC_ERR;
            s[o++] = c;
            r += 2;
        } else {
            s[o++] = s[r++];
        }
    }
    wd->len = (uint32_t)o;
    return DSC_OK;
}

static void trainer_free(trainer *tr) {
    for (size_t i = 0; i < tr->n_pairs; i++) free(tr->pairs[i].where);
    free(tr->pairs);
    u64map_free(&tr->index);
    free(tr->heap);
    free(tr->touched);
}

static int learn(dsc_tokenizer *t, const dsc_strmap *words, const dsc_bpe_options *opt) {
    trainer tr = {0};
    int rc = DSC_ERR;
    size_t total = 0;
    for (size_t i = 0; i < words->n; i++) total += words->e[i].key_len;
    int32_t *sym = malloc(sizeof *sym * (total ? total : 1));
    word_t *wd = malloc(sizeof *wd * (words->n ? words->n : 1));
    tok_merge *merges = NULL;
    size_t cap_merges = 0;
    char *buf = NULL;
    size_t cap_buf = 0;
    if (!sym || !wd || u64map_init(&tr.index, 1 << 16)) goto oom;
    int64_t *of_id = realloc(t->vocab_of_id, sizeof *of_id * (size_t)opt->vocab_size);
    if (!of_id) goto oom;
    t->vocab_of_id = of_id;
    size_t off = 0;
    for (size_t i = 0; i < words->n; i++) {
        size_t len;
        const uint8_t *k = (const uint8_t *)strmap_key(words, i, &len);
        wd[i] = (word_t){(uint32_t)off, (uint32_t)len, (int64_t)words->e[i].value};
        for (size_t j = 0; j < len; j++) sym[off + j] = t->byte_id[k[j]];
        for (size_t j = 0; j + 1 < len; j++)
            if (pair_add(&tr, sym[off + j], sym[off + j + 1], wd[i].count, (uint32_t)i)) goto done;
        off += len;
    }
    for (size_t i = 0; i < tr.n_pairs; i++)
        if (tr.pairs[i].count > 0 && heap_push(&tr, (heap_entry){tr.pairs[i].count, (uint32_t)i})) goto done;
    int min_freq = opt->min_frequency > 0 ? opt->min_frequency : 2;
    int32_t n_ids = N_SPECIALS + 256;
    while (n_ids < opt->vocab_size && tr.n_heap) {
        heap_entry top = heap_pop(&tr);
        pair_t *p = &tr.pairs[top.pair];
        if (top.count != p->count) { /* stale: requeue with the current count */
            if (p->count > 0 && heap_push(&tr, (heap_entry){p->count, top.pair})) goto done;
            continue;
        }
        if (p->count < min_freq) break;
        size_t la, lb;
        const char *ka = strmap_key(&t->vocab, (size_t)t->vocab_of_id[p->a], &la);
        const char *kb = strmap_key(&t->vocab, (size_t)t->vocab_of_id[p->b], &lb);
        if (la + lb > cap_buf) {
            cap_buf = 2 * (la + lb);
            char *nb = realloc(buf, cap_buf);
            if (!nb) goto oom;
            buf = nb;
        }
        memcpy(buf, ka, la);
        memcpy(buf + la, kb, lb);
        size_t e;
        bool added;
        /* strmap_insert may move the keys, so ka/kb are not used below */
        if (strmap_insert(&t->vocab, buf, la + lb, (uint64_t)n_ids, &e, &added)) goto done;
        int32_t c = (int32_t)t->vocab.e[e].value;
        if (!added && c < N_SPECIALS) { /* never make "<think>" and friends out of ordinary text */
            p->count = 0;
            continue;
        }
        if (added) t->vocab_of_id[n_ids++] = (int64_t)e;
        if ((size_t)t->n_merges == cap_merges) {
            cap_merges = cap_merges ? cap_merges * 2 : 1024;
            tok_merge *nm = realloc(merges, cap_merges * sizeof *nm);
            if (!nm) goto oom;
            merges = nm;
        }
        int32_t a = p->a, b = p->b;
        merges[t->n_merges++] = (tok_merge){a, b};
        tr.step++;
        tr.n_touched = 0;
        uint32_t *where = p->where, n_where = p->n_where;
        p->where = NULL;
        p->n_where = p->cap_where = 0;
        for (uint32_t i = 0; i < n_where; i++)
            if (merge_word(&tr, sym, &wd[where[i]], where[i], a, b, c)) {
                free(where);
                goto done;
            }
        free(where);
        tr.pairs[top.pair].count = 0; /* (pairs may have moved) */
        for (size_t i = 0; i < tr.n_touched; i++) {
            const pair_t *q = &tr.pairs[tr.touched[i]];
            if (q->count > 0 && heap_push(&tr, (heap_entry){q->count, tr.touched[i]})) goto done;
        }
    }
    free(t->merges);
    t->merges = merges;
    merges = NULL;
    rc = DSC_OK;
    goto done;
oom:
    dsc_set_error("tokenizer train: out of memory in the merge loop");
done:
    free(merges);
    free(buf);
    free(sym);
    free(wd);
    trainer_free(&tr);
    return rc;
}

dsc_status dsc_tokenizer_train(const char *const *files, int n_files, const dsc_bpe_options *opt, dsc_tokenizer **out) {
    *out = NULL;
    if (opt->vocab_size < N_SPECIALS + 256)
        return dsc_set_error("tokenizer train: vocab_size %d is too small: the %d special tokens and 256 bytes need "
                             "at least %d",
                             opt->vocab_size, N_SPECIALS, N_SPECIALS + 256);
    dsc_tokenizer *t = NULL;
    dsc_mapped_file *maps = calloc((size_t)(n_files > 0 ? n_files : 1), sizeof *maps);
    span *chunks = NULL;
    size_t n_chunks = 0, cap_chunks = 0, budget = opt->max_bytes ? opt->max_bytes : SIZE_MAX;
    dsc_strmap words = {0};
    int rc = DSC_ERR;
    if (!maps) {
        dsc_set_error("tokenizer train: out of memory");
        goto done;
    }
    if (skeleton(opt->max_digits ? opt->max_digits : 3, &t)) goto done;
    for (int i = 0; i < n_files && budget; i++) {
        if (dsc_map_file(files[i], &maps[i])) goto done;
        size_t n = maps[i].size < budget ? maps[i].size : budget;
        budget -= n;
        if (add_chunks(&chunks, &n_chunks, &cap_chunks, (const char *)maps[i].data, n)) goto done;
    }
    int threads = opt->threads > 0 ? opt->threads : omp_get_max_threads();
    if (strmap_init(&words, 1 << 16) || count_words(t, chunks, n_chunks, threads, &words)) goto done;
    if (learn(t, &words, opt) || tok_build(t, "tokenizer train")) goto done;
    rc = DSC_OK;
done:
    for (int i = 0; maps && i < n_files; i++) dsc_unmap_file(&maps[i]);
    free(maps);
    free(chunks);
    strmap_free(&words);
    if (rc) {
        tok_destroy(t);
        return DSC_ERR;
    }
    *out = t;
    return DSC_OK;
}
