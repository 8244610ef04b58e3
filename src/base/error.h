/* error.h: one-line error messages carried from where a failure is found to whoever reports it.
 * Library code never exits and never prints: a failing call stores a message with dsc_set_error()
 * and returns DSC_ERR; the caller (usually main) reads dsc_last_error(). Thread-local. */
#ifndef DSC_BASE_ERROR_H
#define DSC_BASE_ERROR_H

#include "dsc.h"

/* Formats the message of the current thread's last error (printf-style). Returns DSC_ERR. */
int dsc_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Puts "prefix: " in front of the current message (to add the file or tensor name on the way up). */
int dsc_prefix_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
