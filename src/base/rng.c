/* rng.c: xoshiro256** with splitmix64 seeding; Box-Muller normals; Fisher-Yates shuffles. */
#include <math.h>

#include "base/rng.h"

uint64_t dsc_hash64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t dsc_hash64_pair(uint64_t a, uint64_t b) { return dsc_hash64(dsc_hash64(a) ^ b); }

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = dsc_hash64(*x);
    *x += 0x9E3779B97F4A7C15ull;
    return z;
}

void dsc_rng_seed(dsc_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t dsc_rng_u64(dsc_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float dsc_rng_uniform(dsc_rng *r) { return (float)(dsc_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

float dsc_rng_normal(dsc_rng *r) {
    double u1 = ((double)(dsc_rng_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = (double)(dsc_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

void dsc_rng_shuffle(dsc_rng *r, int *a, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(dsc_rng_u64(r) % (uint64_t)(i + 1)), t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}
