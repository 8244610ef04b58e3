/* prof.c: the phase profiler behind DSC_PROFILE=1 (see prof.h). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/prof.h"
#include "dsc.h"

static double totals[PROF_COUNT];
static int enabled = -1; /* -1: not read yet */

static const char *const names[PROF_COUNT] = {"embedding", "mHC", "norms+residual", "attention fwd",
                                               "attention bwd", "ffn/moe fwd", "ffn/moe bwd", "head+loss",
                                               "mtp glue", "other"};

bool prof_enabled(void) {
    if (enabled < 0) {
        const char *e = getenv("DSC_PROFILE");
        enabled = e && strcmp(e, "0") != 0;
    }
    return enabled;
}

double prof_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

void prof_add(prof_phase p, double seconds) { totals[p] += seconds; }

int dsc_profile_get(const char **out_names, double *out_seconds, int cap) {
    int n = cap < PROF_COUNT ? cap : PROF_COUNT;
    for (int i = 0; i < n; i++) {
        if (out_names) out_names[i] = names[i];
        if (out_seconds) out_seconds[i] = totals[i];
    }
    return PROF_COUNT;
}

void dsc_profile_reset(void) { memset(totals, 0, sizeof totals); }
