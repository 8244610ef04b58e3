/* mem.c: aligned, zeroed allocations with a readable error on failure. */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"

void *dsc_alloc(size_t bytes) {
    if (bytes == 0) bytes = 64;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded);
    if (!p) {
        dsc_set_error("out of memory: could not allocate %zu bytes (%.2f GiB)", rounded,
                      rounded / (1024.0 * 1024.0 * 1024.0));
        return NULL;
    }
    memset(p, 0, rounded);
    return p;
}

void dsc_free(void *p) { free(p); }
