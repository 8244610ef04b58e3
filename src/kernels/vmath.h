/* vmath.h: elementwise math that vectorises. dsc_expf is the Cephes single-precision exp
 * (range reduction by ln 2 in two parts, degree-6 polynomial, exponent by bit assembly), about
 * 1 ulp, written in plain C so that loops marked `#pragma omp simd` compile to AVX-512/AVX2 code
 * (libm's expf is a scalar call). Inputs below -87.3 give ~1e-38 instead of 0, above 88.7 the
 * largest finite value's neighbourhood: callers that need an exact 0 (masked logits) write it. */
#ifndef DSC_KERNELS_VMATH_H
#define DSC_KERNELS_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#pragma omp declare simd notinbranch
static inline float dsc_expf(float x) {
    x = x < -87.33654f ? -87.33654f : x; /* comparisons, not fminf/fmaxf: those stay calls */
    x = x > 88.72283f ? 88.72283f : x;
    float n = rintf(x * 1.44269504088896341f);
    float r = fmaf(n, -0.693359375f, x);
    r = fmaf(n, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p, r * r, r) + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

#pragma omp declare simd notinbranch
static inline float dsc_sigmoidf(float x) { return 1.0f / (1.0f + dsc_expf(-x)); }

#endif
