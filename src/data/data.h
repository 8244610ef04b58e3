/* data.h: training data on disk and in memory.
 *   shards   one file of token ids with a small header (magic, version, vocabulary size and
 *            tokenizer hash, token count, checksum), mmap'ed for training;
 *   loader   deterministic batches of B windows of T+1 tokens from a shard: a seeded shuffle of
 *            the window positions, one epoch after another, with a state (epoch, position) that
 *            checkpoints save so that a resumed run reads exactly the same token stream;
 *   prepare  text files / JSONL / generated reasoning data -> tokenized train and validation
 *            shards (documents separated by EOS; the split is by document, seeded).
 * Exact formats: docs/DATA.md. */
#ifndef DSC_DATA_DATA_H
#define DSC_DATA_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsc.h"
#include "tok/tokenizer.h"

/* ---- shards ---- */
typedef struct dsc_shard dsc_shard;
/* Maps and validates a shard (magic, version, sizes, checksum). If expect_vocab > 0 or
 * expect_hash != 0 they must match the header (a shard made with another tokenizer is an error). */
dsc_status dsc_shard_open(const char *path, int expect_vocab, uint64_t expect_hash, dsc_shard **out);
void dsc_shard_close(dsc_shard *s);
uint64_t dsc_shard_tokens(const dsc_shard *s);
int32_t dsc_shard_token(const dsc_shard *s, uint64_t i);
int dsc_shard_vocab(const dsc_shard *s);
uint64_t dsc_shard_tokenizer_hash(const dsc_shard *s);
uint64_t dsc_shard_checksum(const dsc_shard *s);

/* Writes a shard atomically from an array of ids (recorded as one document). */
dsc_status dsc_shard_write(const char *path, const int32_t *ids, uint64_t n, int vocab, uint64_t tok_hash);

/* Further header fields: documents written (one per dsc_shard_writer_add call) and bytes per token
 * id on disk (2 when vocab <= 65536, else 4). */
uint64_t dsc_shard_docs(const dsc_shard *s);
int dsc_shard_token_bytes(const dsc_shard *s);
/* FNV-1a 64 over the token bytes as stored, the shard checksum (also over a partial buffer:
 * start with DSC_FNV_OFFSET and feed the bytes in order). */
#define DSC_FNV_OFFSET 0xcbf29ce484222325ull
uint64_t dsc_fnv1a64(uint64_t h, const void *data, size_t len);

/* A shard written piece by piece, one document per add (atomic: the file appears complete at
 * commit or not at all). Ids must lie in [0, vocab). Commit and abort free the writer. */
typedef struct dsc_shard_writer dsc_shard_writer;
dsc_status dsc_shard_writer_open(const char *path, int vocab, uint64_t tok_hash, dsc_shard_writer **out);
dsc_status dsc_shard_writer_add(dsc_shard_writer *w, const int32_t *ids, size_t n);
/* Tokens and documents written so far, and the running checksum. */
uint64_t dsc_shard_writer_tokens(const dsc_shard_writer *w);
uint64_t dsc_shard_writer_docs(const dsc_shard_writer *w);
uint64_t dsc_shard_writer_checksum(const dsc_shard_writer *w);
dsc_status dsc_shard_writer_commit(dsc_shard_writer *w);
void dsc_shard_writer_abort(dsc_shard_writer *w);

/* ---- loader ---- */
typedef struct {
    uint64_t seed;
    uint64_t epoch;     /* completed passes over the shard */
    uint64_t position;  /* windows consumed in the current epoch */
} dsc_loader_state;

typedef struct dsc_loader dsc_loader;
/* Windows of T+1 consecutive tokens (inputs t..t+T-1, targets t+1..t+T) at multiples of T,
 * visited in a seeded random order per epoch. */
dsc_status dsc_loader_create(const dsc_shard *s, int T, uint64_t seed, dsc_loader **out);
void dsc_loader_free(dsc_loader *l);
/* Fills tokens/targets [B*T]; advances the state (rolling over epochs). */
void dsc_loader_next(dsc_loader *l, int B, int32_t *tokens, int32_t *targets);
void dsc_loader_get_state(const dsc_loader *l, dsc_loader_state *st);
dsc_status dsc_loader_set_state(dsc_loader *l, const dsc_loader_state *st);
uint64_t dsc_loader_windows(const dsc_loader *l);

#endif
