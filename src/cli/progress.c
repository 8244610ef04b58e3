/* progress.c: duration formatting and the Ctrl-C stop flag of the training commands. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli/progress.h"

static volatile sig_atomic_t stop_requested = 0;
static void on_stop(int sig) {
    (void)sig;
    stop_requested = 1;
}

void progress_fmt_time(char *buf, size_t n, double s) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
}

volatile sig_atomic_t *progress_catch_stop(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return &stop_requested;
}
