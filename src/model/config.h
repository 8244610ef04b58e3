/* config.h: internal helpers around dsc_config (the struct itself is public, in dsc.h). */
#ifndef DSC_MODEL_CONFIG_H
#define DSC_MODEL_CONFIG_H

#include <stddef.h>

#include "dsc.h"

/* Parses config.json text already in memory (the fuzz target's entry point); name is used in
 * messages. */
dsc_status config_parse_text(const char *text, size_t len, const char *name, dsc_config *c);

static inline int cfg_qk_head_dim(const dsc_config *c) { return c->qk_nope_head_dim + c->qk_rope_head_dim; }
static inline bool cfg_has_mhc(const dsc_config *c) { return c->mhc_expansion_rate > 1; }
static inline int cfg_streams(const dsc_config *c) { return cfg_has_mhc(c) ? c->mhc_expansion_rate : 1; }
/* Is block l (0-based; MTP blocks are numbered from num_hidden_layers on) a MoE block? */
static inline bool cfg_layer_is_moe(const dsc_config *c, int l) {
    return c->n_routed_experts > 0 && (l >= c->num_hidden_layers || l >= c->first_k_dense_replace);
}

#endif
