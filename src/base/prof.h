/* prof.h: an opt-in profiler of the training step's phases. With the environment variable
 * DSC_PROFILE=1, model code accumulates wall time per named phase (attention forward, MoE
 * backward, ...); benchmarks read the table with dsc_profile_get. Off, each probe costs one
 * predictable branch. Timings are process-wide (the model runs one pass at a time). */
#ifndef DSC_BASE_PROF_H
#define DSC_BASE_PROF_H

#include <stdbool.h>

typedef enum {
    PROF_EMBED, PROF_MHC, PROF_NORM, PROF_ATTN_FWD, PROF_ATTN_BWD, PROF_FFN_FWD, PROF_FFN_BWD,
    PROF_HEAD_LOSS, PROF_MTP_GLUE, PROF_OTHER, PROF_COUNT
} prof_phase;

bool prof_enabled(void);
double prof_now(void);
void prof_add(prof_phase p, double seconds);

#define PROF_BEGIN() double prof_t0_ = prof_enabled() ? prof_now() : 0
#define PROF_END(phase)                                                                                                \
    do {                                                                                                               \
        if (prof_enabled()) {                                                                                          \
            double prof_t1_ = prof_now();                                                                              \
            prof_add(phase, prof_t1_ - prof_t0_);                                                                      \
            prof_t0_ = prof_t1_;                                                                                       \
        }                                                                                                              \
    } while (0)

#endif
