/* progress.h: what the long-running training commands share: durations as "12m05s" / "1h02m",
 * and a stop flag that SIGINT and SIGTERM raise (the loop finishes its step, saves, returns). */
#ifndef DSC_CLI_PROGRESS_H
#define DSC_CLI_PROGRESS_H

#include <signal.h>
#include <stddef.h>

void progress_fmt_time(char *buf, size_t n, double seconds);
/* Installs the SIGINT/SIGTERM handlers; returns the flag they set. */
volatile sig_atomic_t *progress_catch_stop(void);

#endif
