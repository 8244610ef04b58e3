/* error.c: the thread-local "last error" message behind dsc_last_error(). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"

static _Thread_local char last_error[1024];

/* Messages are one line: control characters that came from input (a JSON parser quoting a bad
 * byte, a file name) become spaces. */
static void one_line(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = ' ';
}

const char *dsc_last_error(void) { return last_error[0] ? last_error : "no error"; }

int dsc_set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    one_line(last_error);
    return DSC_ERR;
}

int dsc_prefix_error(const char *fmt, ...) {
    char prefix[512], old[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_error, sizeof old);
    snprintf(last_error, sizeof last_error, "%s: %s", prefix, old);
    one_line(last_error);
    return DSC_ERR;
}
