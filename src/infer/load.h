/* load.h: opening a model for inference from whatever holds it — a dsc model directory or
 * training checkpoint, a Hugging Face DeepSeek directory, or a GGUF file — as an engine whose
 * weights stay where they are (mapped files, or the loaded model) for the engine's lifetime. */
#ifndef DSC_INFER_LOAD_H
#define DSC_INFER_LOAD_H

#include <stdbool.h>

#include "infer/engine.h"

typedef struct infer_model infer_model;

typedef struct {
    int max_seqs, max_ctx, max_rows;  /* engine sizes (max_ctx 0: the model's, capped at 4096) */
    bool mtp;                         /* load the MTP module too (speculative decoding) */
} infer_options;

dsc_status infer_open(const char *path, const infer_options *o, infer_model **out);
void infer_close(infer_model *im);
engine *infer_engine(infer_model *im);
/* The tokenizer.json next to the weights (a path that may not exist). */
const char *infer_tokenizer_path(const infer_model *im);

#endif
