/* testmodel.h: what the whole-model C tests share (header-only, like testutil.h). */
#ifndef DSC_TESTMODEL_H
#define DSC_TESTMODEL_H

#include <string.h>

#include "dsc.h"
#include "base/rng.h"

/* Moves every parameter away from its initial value so that no gradient is trivially zero and no
 * norm weight is exactly one: norms, mHC gains and biases by 0.2, everything else by 0.05. */
__attribute__((unused)) static void tu_perturb_model(dsc_model *m, dsc_rng *r) {
    for (int i = 0; i < dsc_model_num_tensors(m); i++) {
        int64_t shape[4];
        float *p;
        int nd = dsc_model_tensor_info(m, i, shape, &p, NULL);
        size_t n = 1;
        for (int j = 0; j < nd; j++) n *= (size_t)shape[j];
        const char *name = dsc_model_tensor_name(m, i);
        float std = strstr(name, "norm") || strstr(name, "alpha") || strstr(name, "mhc.bias") ? 0.2f : 0.05f;
        for (size_t j = 0; j < n; j++) p[j] += std * dsc_rng_normal(r);
    }
}

/* A model of config c initialised with seed and perturbed (above); NULL, with a failed check, when
 * the config is refused. Needs testutil.h's CHECK. */
__attribute__((unused)) static dsc_model *tu_random_model(const dsc_config *c, uint64_t seed) {
    dsc_model *m;
    if (dsc_model_create(c, &m)) {
        CHECK(0, "model: %s", dsc_last_error());
        return NULL;
    }
    dsc_model_init(m, seed);
    dsc_rng r;
    dsc_rng_seed(&r, seed);
    tu_perturb_model(m, &r);
    return m;
}

#endif
