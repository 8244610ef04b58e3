/* shard.c: token shards on disk: a 64-byte little-endian header and the token ids (2 or 4 bytes
 * each, little-endian). Writing is atomic and streaming; opening maps the file and validates every
 * header field, the size, the checksum and the id range before anything reads a token.
 * The layout is in docs/DATA.md ("Shard format"); this file is its only reader and writer. */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "data/data.h"

#define SHARD_MAGIC "DSCTOKS1"
#define SHARD_VERSION 1u
#define SHARD_HEADER 64u

/* Header byte offsets (all fields little-endian). */
enum {
    OFF_MAGIC = 0,        /* 8 bytes "DSCTOKS1" */
    OFF_VERSION = 8,      /* u32 */
    OFF_HEADER_SIZE = 12, /* u32, 64 */
    OFF_VOCAB = 16,       /* u32 */
    OFF_TOKEN_BYTES = 20, /* u32, 2 or 4 */
    OFF_TOK_HASH = 24,    /* u64 */
    OFF_TOKENS = 32,      /* u64 */
    OFF_DOCS = 40,        /* u64 */
    OFF_CHECKSUM = 48,    /* u64 FNV-1a 64 of the token bytes */
    OFF_HEADER_SUM = 56,  /* u64 FNV-1a 64 of header bytes [0, 56) */
};

uint64_t dsc_fnv1a64(uint64_t h, const void *data, size_t len) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int width_for(int vocab) { return vocab <= 65536 ? 2 : 4; }

/* ---------------------------------------------------------------------------------------------
 * Writer
 * ------------------------------------------------------------------------------------------- */
struct dsc_shard_writer {
    dsc_atomic_file af;
    int vocab, width;
    uint64_t tok_hash, n_tokens, n_docs, sum;
    unsigned char buf[1 << 16];
    size_t used;
};

static int writer_flush(dsc_shard_writer *w) {
    if (w->used && dsc_atomic_write(&w->af, w->buf, w->used)) return DSC_ERR; /* aborts the temp */
    w->used = 0;
    return DSC_OK;
}

dsc_status dsc_shard_writer_open(const char *path, int vocab, uint64_t tok_hash, dsc_shard_writer **out) {
    *out = NULL;
    if (vocab < 1) return dsc_set_error("%s: vocabulary size must be positive, found %d", path, vocab);
    dsc_shard_writer *w = calloc(1, sizeof *w);
    if (!w) return dsc_set_error("%s: out of memory for the shard writer", path);
    w->vocab = vocab;
    w->width = width_for(vocab);
    w->tok_hash = tok_hash;
    w->sum = DSC_FNV_OFFSET;
    if (dsc_atomic_open(&w->af, path)) {
        free(w);
        return DSC_ERR;
    }
    unsigned char zero[SHARD_HEADER] = {0}; /* the real header is written at commit */
    if (dsc_atomic_write(&w->af, zero, sizeof zero)) {
        free(w);
        return DSC_ERR;
    }
    *out = w;
    return DSC_OK;
}

dsc_status dsc_shard_writer_add(dsc_shard_writer *w, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) /* all checked first: a rejected document leaves no trace */
        if (ids[i] < 0 || ids[i] >= w->vocab)
            return dsc_set_error("%s: token %llu of document %llu: id %d outside [0, %d)", w->af.path,
                                 (unsigned long long)i, (unsigned long long)w->n_docs, (int)ids[i], w->vocab);
    for (size_t i = 0; i < n; i++) {
        if (w->used + 4 > sizeof w->buf) {
            w->sum = dsc_fnv1a64(w->sum, w->buf, w->used);
            if (writer_flush(w)) return DSC_ERR;
        }
        uint32_t v = (uint32_t)ids[i];
        w->buf[w->used++] = (unsigned char)v;
        w->buf[w->used++] = (unsigned char)(v >> 8);
        if (w->width == 4) {
            w->buf[w->used++] = (unsigned char)(v >> 16);
            w->buf[w->used++] = (unsigned char)(v >> 24);
        }
    }
    w->n_tokens += n;
    w->n_docs++;
    return DSC_OK;
}

uint64_t dsc_shard_writer_tokens(const dsc_shard_writer *w) { return w->n_tokens; }
uint64_t dsc_shard_writer_docs(const dsc_shard_writer *w) { return w->n_docs; }
uint64_t dsc_shard_writer_checksum(const dsc_shard_writer *w) { return dsc_fnv1a64(w->sum, w->buf, w->used); }

dsc_status dsc_shard_writer_commit(dsc_shard_writer *w) {
    w->sum = dsc_fnv1a64(w->sum, w->buf, w->used);
    if (writer_flush(w)) {
        free(w);
        return DSC_ERR;
    }
    unsigned char h[SHARD_HEADER] = {0};
    memcpy(h + OFF_MAGIC, SHARD_MAGIC, 8);
    put_u32(h + OFF_VERSION, SHARD_VERSION);
    put_u32(h + OFF_HEADER_SIZE, SHARD_HEADER);
    put_u32(h + OFF_VOCAB, (uint32_t)w->vocab);
    put_u32(h + OFF_TOKEN_BYTES, (uint32_t)w->width);
    put_u64(h + OFF_TOK_HASH, w->tok_hash);
    put_u64(h + OFF_TOKENS, w->n_tokens);
    put_u64(h + OFF_DOCS, w->n_docs);
    put_u64(h + OFF_CHECKSUM, w->sum);
    put_u64(h + OFF_HEADER_SUM, dsc_fnv1a64(DSC_FNV_OFFSET, h, OFF_HEADER_SUM));
    if (fseek(w->af.f, 0, SEEK_SET) != 0) {
        dsc_atomic_abort(&w->af);
        int rc = dsc_set_error("%s: cannot seek back to the header", w->af.path);
        free(w);
        return rc;
    }
    int rc = dsc_atomic_write(&w->af, h, sizeof h);
    if (rc == DSC_OK) rc = dsc_atomic_commit(&w->af);
    free(w);
    return rc;
}

void dsc_shard_writer_abort(dsc_shard_writer *w) {
    if (!w) return;
    dsc_atomic_abort(&w->af);
    free(w);
}

dsc_status dsc_shard_write(const char *path, const int32_t *ids, uint64_t n, int vocab, uint64_t tok_hash) {
    dsc_shard_writer *w;
    if (dsc_shard_writer_open(path, vocab, tok_hash, &w)) return DSC_ERR;
    if (dsc_shard_writer_add(w, ids, (size_t)n)) {
        dsc_shard_writer_abort(w);
        return DSC_ERR;
    }
    return dsc_shard_writer_commit(w);
}

/* ---------------------------------------------------------------------------------------------
 * Reader
 * ------------------------------------------------------------------------------------------- */
struct dsc_shard {
    dsc_mapped_file map;
    const unsigned char *tokens; /* map.data + 64 */
    int vocab, width;
    uint64_t tok_hash, n_tokens, n_docs, sum;
};

/* Checks everything in the header and the payload; path names the file in every message. */
static int validate(dsc_shard *s, const char *path, int expect_vocab, uint64_t expect_hash) {
    const unsigned char *h = s->map.data;
    size_t size = s->map.size;
    if (size < SHARD_HEADER)
        return dsc_set_error("%s: truncated: %zu bytes, shorter than the %u-byte shard header", path, size,
                             SHARD_HEADER);
    if (memcmp(h + OFF_MAGIC, SHARD_MAGIC, 8) != 0)
        return dsc_set_error("%s: magic: expected \"%s\", found other bytes (not a dsc token shard)", path,
                             SHARD_MAGIC);
    uint32_t version = get_u32(h + OFF_VERSION), hsize = get_u32(h + OFF_HEADER_SIZE);
    if (version != SHARD_VERSION)
        return dsc_set_error("%s: version: expected %u, found %u", path, SHARD_VERSION, version);
    if (hsize != SHARD_HEADER)
        return dsc_set_error("%s: header_size: expected %u, found %u", path, SHARD_HEADER, hsize);
    uint64_t hsum = dsc_fnv1a64(DSC_FNV_OFFSET, h, OFF_HEADER_SUM);
    if (get_u64(h + OFF_HEADER_SUM) != hsum)
        return dsc_set_error("%s: header checksum: expected %016llx, found %016llx (corrupt header)", path,
                             (unsigned long long)hsum, (unsigned long long)get_u64(h + OFF_HEADER_SUM));
    uint32_t vocab = get_u32(h + OFF_VOCAB), width = get_u32(h + OFF_TOKEN_BYTES);
    if (vocab < 1 || vocab > 0x7fffffffu)
        return dsc_set_error("%s: vocab_size: expected 1..2^31-1, found %u", path, vocab);
    if (width != (uint32_t)width_for((int)vocab))
        return dsc_set_error("%s: token_bytes: expected %d for vocabulary %u, found %u", path, width_for((int)vocab),
                             vocab, width);
    s->vocab = (int)vocab;
    s->width = (int)width;
    s->tok_hash = get_u64(h + OFF_TOK_HASH);
    s->n_tokens = get_u64(h + OFF_TOKENS);
    s->n_docs = get_u64(h + OFF_DOCS);
    s->sum = get_u64(h + OFF_CHECKSUM);
    uint64_t payload = size - SHARD_HEADER;
    if (s->n_tokens > payload / width)
        return dsc_set_error("%s: truncated: header says %llu tokens (%llu bytes), file holds %llu bytes after the "
                             "header", path, (unsigned long long)s->n_tokens,
                             (unsigned long long)s->n_tokens * width, (unsigned long long)payload);
    if (s->n_tokens * width != payload)
        return dsc_set_error("%s: size: expected %llu bytes for %llu tokens, found %zu (trailing bytes)", path,
                             (unsigned long long)(SHARD_HEADER + s->n_tokens * width),
                             (unsigned long long)s->n_tokens, size);
    if (expect_vocab > 0 && expect_vocab != s->vocab)
        return dsc_set_error("%s: vocab_size: expected %d (the tokenizer's), found %d (made with another tokenizer)",
                             path, expect_vocab, s->vocab);
    if (expect_hash != 0 && expect_hash != s->tok_hash)
        return dsc_set_error("%s: tokenizer_hash: expected %016llx, found %016llx (made with another tokenizer)", path,
                             (unsigned long long)expect_hash, (unsigned long long)s->tok_hash);
    s->tokens = h + SHARD_HEADER;
    uint64_t sum = dsc_fnv1a64(DSC_FNV_OFFSET, s->tokens, (size_t)payload);
    if (sum != s->sum)
        return dsc_set_error("%s: checksum: expected %016llx (header), found %016llx (token bytes corrupt)", path,
                             (unsigned long long)s->sum, (unsigned long long)sum);
    for (uint64_t i = 0; i < s->n_tokens; i++) {
        int32_t id = dsc_shard_token(s, i);
        if (id < 0 || id >= s->vocab)
            return dsc_set_error("%s: token %llu: id %u outside the vocabulary [0, %d)", path, (unsigned long long)i,
                                 (unsigned)id, s->vocab);
    }
    return DSC_OK;
}

dsc_status dsc_shard_open(const char *path, int expect_vocab, uint64_t expect_hash, dsc_shard **out) {
    *out = NULL;
    dsc_shard *s = calloc(1, sizeof *s);
    if (!s) return dsc_set_error("%s: out of memory", path);
    if (dsc_map_file(path, &s->map) || validate(s, path, expect_vocab, expect_hash)) {
        dsc_unmap_file(&s->map);
        free(s);
        return DSC_ERR;
    }
    *out = s;
    return DSC_OK;
}

void dsc_shard_close(dsc_shard *s) {
    if (!s) return;
    dsc_unmap_file(&s->map);
    free(s);
}

uint64_t dsc_shard_tokens(const dsc_shard *s) { return s->n_tokens; }
uint64_t dsc_shard_docs(const dsc_shard *s) { return s->n_docs; }
int dsc_shard_vocab(const dsc_shard *s) { return s->vocab; }
int dsc_shard_token_bytes(const dsc_shard *s) { return s->width; }
uint64_t dsc_shard_tokenizer_hash(const dsc_shard *s) { return s->tok_hash; }
uint64_t dsc_shard_checksum(const dsc_shard *s) { return s->sum; }

int32_t dsc_shard_token(const dsc_shard *s, uint64_t i) {
    const unsigned char *p = s->tokens + i * (uint64_t)s->width;
    if (s->width == 2) return (int32_t)(p[0] | (uint32_t)p[1] << 8);
    return (int32_t)get_u32(p);
}
