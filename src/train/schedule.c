/* schedule.c: learning-rate schedules (see schedule.h). */
#include <math.h>
#include <string.h>

#include "train/schedule.h"

float schedule_lr(const lr_schedule *s, long step) {
    if (s->warmup > 0 && step < s->warmup) return s->lr * (float)(step + 1) / (float)s->warmup;
    long total = s->total > s->warmup ? s->total : s->warmup + 1;
    switch (s->kind) {
    case SCHEDULE_CONSTANT:
        return s->lr;
    case SCHEDULE_WSD: {
        long decay = (long)ceil(s->decay_frac * (double)total);
        long start = total - decay;
        if (step < start || decay <= 0) return s->lr;
        double f = (double)(step - start + 1) / (double)decay;
        if (f > 1) f = 1;
        return (float)(s->lr + (s->min_lr - s->lr) * f);
    }
    case SCHEDULE_COSINE:
    default: {
        double f = (double)(step - s->warmup) / (double)(total - s->warmup);
        if (f > 1) f = 1;
        return (float)(s->min_lr + 0.5 * (s->lr - s->min_lr) * (1 + cos(M_PI * f)));
    }
    }
}

const char *schedule_name(schedule_kind k) {
    return k == SCHEDULE_WSD ? "wsd" : k == SCHEDULE_CONSTANT ? "constant" : "cosine";
}

int schedule_parse(const char *name) {
    if (!strcmp(name, "cosine")) return SCHEDULE_COSINE;
    if (!strcmp(name, "wsd")) return SCHEDULE_WSD;
    if (!strcmp(name, "constant")) return SCHEDULE_CONSTANT;
    return -1;
}
