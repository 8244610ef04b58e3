/* engine.h: the inference engine: a model (iweights: any weight format) plus a compressed latent
 * KV cache per sequence, and one forward pass that serves prefill and decode alike. A pass takes
 * R rows, each (sequence, token): a prefill chunk is R consecutive tokens of one sequence, a
 * batched decode step is one token of each of R sequences. Linear layers run over all R rows at
 * once (each weight read once per pass); MoE rows are grouped by expert (only the selected
 * experts' weights are read); attention is MLA in its absorbed form over the latent cache: every
 * head's query is folded into the kv_lora_rank space, so the cache holds kv_lora_rank +
 * qk_rope_head_dim values per token per layer and all heads share it (multi-query style).
 * mHC streams and the DSA indexer (with its own key cache) work as in training. */
#ifndef DSC_INFER_ENGINE_H
#define DSC_INFER_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsc.h"
#include "infer/iweights.h"

typedef struct {
    int max_seqs;       /* sequences (KV-cache slots) held at once */
    int max_ctx;        /* tokens per sequence (<= max_position_embeddings) */
    int max_rows;       /* rows per forward pass: prefill chunk size, and the largest decode batch */
} engine_options;

typedef struct engine engine;

/* Takes ownership of *w (moved into the engine; w is zeroed). */
dsc_status engine_create(iweights *w, const engine_options *o, engine **out);
void engine_free(engine *e);
const dsc_config *engine_config(const engine *e);
int engine_max_rows(const engine *e);
int engine_max_ctx(const engine *e);
/* Bytes of weights one decode token reads: every matrix of the main blocks but the routed experts,
 * num_experts_per_tok experts of each MoE block (their mean size), the head and one embedding row.
 * Decode speed over this is the bandwidth used; the machine's bandwidth is its ceiling. */
double engine_decode_weight_bytes(const engine *e);
/* Bytes of KV cache per token (all layers) and the total allocated. */
size_t engine_kv_bytes_per_token(const engine *e);

/* Sequences: a free slot (-1 if none), its release, its length, and rolling back its last tokens
 * (speculative decoding). */
int engine_seq_new(engine *e);
void engine_seq_free(engine *e, int seq);
/* Sequence slots not in use. */
int engine_free_seqs(const engine *e);
/* A pass of this many rows is too small to share between threads: it runs on one (a small
 * model's decode); several engines side by side then use the cores (generate_batch_parallel). */
bool engine_pass_is_small(const engine *e, int rows);
int engine_seq_len(const engine *e, int seq);
/* A new sequence whose cache is a copy of src's (a group of samples from one prompt prefills it
 * once); -1 if src is not a sequence or no slot is free. */
int engine_seq_fork(engine *e, int src);
void engine_seq_truncate(engine *e, int seq, int len);

/* Appends n tokens to a sequence (in chunks of max_rows). logits (may be NULL) receives the last
 * token's logits [V]; all_logits (may be NULL) every appended token's [n, V]. */
dsc_status engine_prefill(engine *e, int seq, const int32_t *tokens, int n, float *logits, float *all_logits);

/* One token for each of n distinct sequences (n <= max_rows): logits [n, V]. */
dsc_status engine_decode(engine *e, const int *seqs, const int32_t *tokens, int n, float *logits);

/* The normed final hidden state of the rows of the last pass [R, d] (MTP drafting reads it). */
const float *engine_last_hidden(const engine *e);

/* Multi-token prediction (depth 1), for speculative decoding: was an MTP module loaded
 * (iweights built with include_mtp)? */
bool engine_has_mtp(const engine *e);
/* Runs the MTP block over R rows of one sequence at positions start_pos.. (its own cache): row r
 * combines the main model's normed hidden state g[r] at that position with the embedding of the
 * token that follows it, next[r]; logits (may be NULL) receives every row's prediction [R, V]
 * (row r predicts the token after next[r]). g must not point into the engine's buffers (copy
 * engine_last_hidden first). */
dsc_status engine_mtp(engine *e, int seq, const float *g, const int32_t *next, int R, int start_pos, float *logits);

#endif
