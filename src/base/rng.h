/* rng.h: a small, fast, seedable random generator (xoshiro256**, seeded through splitmix64).
 * Deterministic across machines, so a seed reproduces an initialisation bit for bit. */
#ifndef DSC_BASE_RNG_H
#define DSC_BASE_RNG_H

#include <stdint.h>

typedef struct { uint64_t s[4]; } dsc_rng;

void dsc_rng_seed(dsc_rng *r, uint64_t seed);
/* splitmix64's output function: a well-mixed 64-bit hash of z (stream seeds, problem indices). */
uint64_t dsc_hash64(uint64_t z);
/* A hash of two values, in order: dsc_hash64(dsc_hash64(a) ^ b). */
uint64_t dsc_hash64_pair(uint64_t a, uint64_t b);
uint64_t dsc_rng_u64(dsc_rng *r);
/* Uniform in [0, 1) with 24 random bits (exactly representable as float). */
float dsc_rng_uniform(dsc_rng *r);
/* Standard normal (Box-Muller on doubles, rounded to float). */
float dsc_rng_normal(dsc_rng *r);
/* Shuffles a[0..n) in place (Fisher-Yates from the end: a[i] swaps with a[u64 % (i + 1)]). */
void dsc_rng_shuffle(dsc_rng *r, int *a, int n);

#endif
