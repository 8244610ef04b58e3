/* schedule.h: learning-rate schedules: linear warm-up then cosine decay to a floor, or
 * warmup-stable-decay (constant after warm-up, linear decay over the last fraction of steps). */
#ifndef DSC_TRAIN_SCHEDULE_H
#define DSC_TRAIN_SCHEDULE_H

typedef enum { SCHEDULE_COSINE = 0, SCHEDULE_WSD = 1, SCHEDULE_CONSTANT = 2 } schedule_kind;

typedef struct {
    schedule_kind kind;
    float lr;            /* peak */
    float min_lr;        /* floor at the end */
    long warmup;         /* steps of linear warm-up from 0 */
    long total;          /* total steps */
    float decay_frac;    /* WSD: fraction of the steps spent decaying (e.g. 0.2) */
} lr_schedule;

/* Learning rate of step s (0-based). */
float schedule_lr(const lr_schedule *s, long step);
const char *schedule_name(schedule_kind k);
/* Parses "cosine", "wsd", "constant"; returns -1 if unknown. */
int schedule_parse(const char *name);

#endif
