/* model.h: the inside of a dsc_model handle: configuration, the parameter/gradient buffers with
 * their named views, the RoPE table, expert-load counters, and the activation workspace of the
 * last forward pass (sized for B x T and grown on demand). */
#ifndef DSC_MODEL_MODEL_H
#define DSC_MODEL_MODEL_H

#include "dsc.h"
#include "model/params.h"
#include "model/rope.h"

struct dsc_model {
    dsc_config cfg;
    size_t n_floats;          /* length of params and grads (with alignment padding) */
    float *params;            /* every parameter, laid out by params_layout */
    float *grads;             /* same layout */
    model_weights w;          /* views into params */
    model_weights g;          /* views into grads */
    tensor_desc *descs;       /* one per named tensor */
    int n_descs;
    rope_table rope;          /* positions 0 .. max_position_embeddings-1 (capped) */
    int64_t *expert_load;     /* [(L+D) * E] tokens routed per expert since the last bias update */
    struct model_workspace *ws; /* activations of the last pass (model.c) */
};

/* Largest sequence length the RoPE table covers. */
int model_max_positions(const dsc_config *c);

/* The activations block l kept from the last pass, a block_acts* (tests read the indexer inputs
 * from it); NULL before the first pass. */
const void *model_block_acts(const dsc_model *m, int l);

#endif
