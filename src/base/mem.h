/* mem.h: aligned allocation for tensors. Every float buffer the model owns is 64-byte aligned
 * (one AVX-512 register), so kernels may use aligned loads at row starts of contiguous tensors. */
#ifndef DSC_BASE_MEM_H
#define DSC_BASE_MEM_H

#include <stddef.h>

/* Returns zeroed memory aligned to 64 bytes, or NULL with the error set. Free with dsc_free. */
void *dsc_alloc(size_t bytes);
void dsc_free(void *p);

/* Rounds a count of floats up so that the next buffer starts 64-byte aligned. */
static inline size_t dsc_round_floats(size_t n) { return (n + 15) & ~(size_t)15; }

#endif
