/* iweights.h: a model's weights as inference reads them: every matrix a qtensor (fp32, f16, bf16,
 * Q8_0, Q4_0 or FP8 with block scales, possibly pointing into a memory-mapped file: no copy), every
 * vector (norms, biases, mHC coefficients) fp32. Built by one walk over the Hugging Face tensor
 * names (docs/MODEL.md §2) from a tensor_source: a dsc_model in memory, safetensors files
 * (single or sharded, FP8 included) or a GGUF file. */
#ifndef DSC_INFER_IWEIGHTS_H
#define DSC_INFER_IWEIGHTS_H

#include <stdbool.h>
#include <stdint.h>

#include "dsc.h"
#include "kernels/qtensor.h"

typedef struct {
    qtensor w1, w3, w2;          /* gate_proj [I,d], up_proj [I,d], down_proj [d,I] */
} iffn;

typedef struct {
    qtensor wq_a;                /* [rq, d] (rq > 0) */
    const float *q_norm;         /* [rq] */
    qtensor wq_b;                /* q_b_proj [H*dqk, rq], or q_proj [H*dqk, d] when rq == 0 */
    qtensor wkv_a;               /* [rkv+dr, d] */
    const float *kv_norm;        /* [rkv] */
    /* kv_b_proj split for the absorbed attention (llama.cpp's attn_k_b / attn_v_b):
     * wk_t [H*rkv, dn]: head h's W_UK transposed in rows h*rkv..; wv [H*dv, rkv]: head h's W_UV
     * in rows h*dv... fp32 from an fp32 source, bf16 from FP8 (as DeepSeek's inference code
     * dequantizes it), the source's own type otherwise (GGUF: the file's tensors, no copy). */
    qtensor wk_t, wv;
    qtensor wo;                  /* [d, H*dv] */
    /* DSA indexer (index_n_heads > 0) */
    qtensor idx_wq_b, idx_wk, idx_weights_proj;
    const float *idx_k_norm_w, *idx_k_norm_b;
} iattn;

typedef struct {
    const float *phi;            /* [n*n+2n, n*d] */
    const float *bias;           /* [n*n+2n] */
    const float *alpha;          /* [3] */
} imhc;

typedef struct {
    const float *attn_norm, *ffn_norm;
    iattn attn;
    bool is_moe;
    iffn mlp;                    /* dense block */
    qtensor gate;                /* router [E, d] */
    const float *gate_bias;      /* e_score_correction_bias [E] or NULL */
    iffn *experts;               /* [E] */
    iffn shared;                 /* rows == 0 when there are no shared experts */
    imhc attn_mhc, ffn_mhc;      /* mHC (n > 1) */
    const float *enorm, *hnorm, *head_norm; /* MTP blocks */
    qtensor eh_proj;             /* MTP blocks: [d, 2d] */
} iblock;

typedef struct {
    dsc_config cfg;
    qtensor embed;               /* [V, d] */
    const float *norm;           /* [d] */
    qtensor head;                /* [V, d] */
    iblock *blocks;              /* [L + D] */
    void **owned;                /* buffers this struct allocated (fp32 vectors, dequantized wkv_b) */
    int n_owned, cap_owned;
} iweights;

/* Where tensors come from. find() fills a 2-D view (a 1-D tensor of n values is rows 1 x cols n)
 * of the tensor with this HF name; on failure it returns DSC_ERR with the error set (a missing
 * tensor, an unsupported dtype, ...). Views must stay valid while the iweights live. */
typedef struct {
    int (*find)(void *ctx, const char *name, qtensor *out);
    void *ctx;
    const char *what;            /* for messages: the file or "model" */
    /* Optional (may be NULL): layer l's wk_t and wv (iattn) as the source stores them; 1 when it
     * has none (then kv_b_proj is split), DSC_ERR on a malformed file. */
    int (*find_absorbed)(void *ctx, int layer, qtensor *wk_t, qtensor *wv);
} tensor_source;

/* Walks the configuration's tensors (docs/MODEL.md §2), checks every shape, converts vectors to
 * fp32 and dequantizes kv_b_proj. include_mtp: also the MTP blocks (speculative decoding). */
dsc_status iweights_build(iweights *w, const dsc_config *cfg, const tensor_source *src, bool include_mtp);
void iweights_free(iweights *w);

/* A source over a dsc_model in memory (fp32 views of its parameters, no copy). */
void tensor_source_from_model(tensor_source *src, const dsc_model *m);

#endif
