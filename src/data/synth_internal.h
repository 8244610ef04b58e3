/* synth_internal.h: what the generator files share: a bounded text appender and the per-task
 * draw functions called by synth.c's split-aware loop. Not part of the library interface. */
#ifndef DSC_DATA_SYNTH_INTERNAL_H
#define DSC_DATA_SYNTH_INTERNAL_H

#include <stdarg.h>
#include <stdio.h>

#include "base/rng.h"
#include "data/synth.h"

typedef struct {
    char *buf;
    size_t cap, len;
    bool overflow;
} sbuf;

static inline void sb_init(sbuf *b, char *buf, size_t cap) {
    b->buf = buf;
    b->cap = cap;
    b->len = 0;
    b->overflow = false;
    if (cap) buf[0] = 0;
}

__attribute__((format(printf, 2, 3))) static inline void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->overflow) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= b->cap - b->len) {
        b->overflow = true;
        b->buf[b->len] = 0; /* keep whole lines only */
        return;
    }
    b->len += (size_t)n;
}

/* Draws one candidate problem from r. If its split (by content hash) is not `split`, returns 0
 * early without the expensive part (worked steps, search); 1 when p is complete; -1 on error
 * (message set). */
int synth_arithmetic_draw(dsc_rng *r, const dsc_synth_options *o, dsc_split split, dsc_problem *p);
int synth_countdown_draw(dsc_rng *r, const dsc_synth_options *o, dsc_split split, dsc_problem *p);

#endif
