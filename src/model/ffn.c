/* ffn.c: SwiGLU feed-forward, forward and backward. */
#include <math.h>
#include <omp.h>

#include "kernels/kernels.h"
#include "kernels/vmath.h"
#include "model/ffn.h"

/* Elementwise loops run in chunks: a parallel loop over chunks, each chunk a plain `omp simd`
 * loop. (GCC 12 compiles `omp parallel for simd` with an `if` clause to scalar code, 8x slower
 * than the vector loop, whether the clause holds or not.) */
#define EW_CHUNK 16384L
#define EW_PARALLEL_MIN 65536L

static void swiglu_range(float *act, const float *h1, const float *h3, long i0, long i1) {
#pragma omp simd
    for (long i = i0; i < i1; i++) act[i] = h1[i] * dsc_sigmoidf(h1[i]) * h3[i];
}

void swiglu_forward(float *act, const float *h1, const float *h3, long n) {
    const long chunks = (n + EW_CHUNK - 1) / EW_CHUNK;
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && n > EW_PARALLEL_MIN)
    for (long c = 0; c < chunks; c++) swiglu_range(act, h1, h3, c * EW_CHUNK, c + 1 < chunks ? (c + 1) * EW_CHUNK : n);
}

/* silu(a) = a σ(a);  silu'(a) = σ(a) (1 + a (1 − σ(a))) */
static void swiglu_backward_range(float *dh1, float *dh3, const float *dact, const float *h1, const float *h3, long i0,
                                  long i1) {
#pragma omp simd
    for (long i = i0; i < i1; i++) {
        float a = h1[i], s = dsc_sigmoidf(a), g = dact[i]; /* read first: dact may alias dh1 or dh3 */
        dh3[i] = g * a * s;
        dh1[i] = g * h3[i] * s * (1.0f + a * (1.0f - s));
    }
}

void swiglu_backward(float *dh1, float *dh3, const float *dact, const float *h1, const float *h3, long n) {
    const long chunks = (n + EW_CHUNK - 1) / EW_CHUNK;
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && n > EW_PARALLEL_MIN)
    for (long c = 0; c < chunks; c++)
        swiglu_backward_range(dh1, dh3, dact, h1, h3, c * EW_CHUNK, c + 1 < chunks ? (c + 1) * EW_CHUNK : n);
}

void ffn_forward(float *y, float *h1, float *h3, float *act, const ffn_weights *w, const float *x, int N, int d, int I,
                 bool accumulate) {
    dsc_linear_forward(h1, x, w->w1, N, d, I, false);
    dsc_linear_forward(h3, x, w->w3, N, d, I, false);
    swiglu_forward(act, h1, h3, (long)N * I);
    dsc_linear_forward(y, act, w->w2, N, I, d, accumulate);
}

void ffn_backward(float *dx, const ffn_weights *g, const float *dy, const ffn_weights *w, const float *x,
                  const float *h1, const float *h3, float *scratch, int N, int d, int I) {
    float *act = scratch;                   /* [N,I] */
    float *dact = scratch + (size_t)N * I;  /* [N,I] */
    swiglu_forward(act, h1, h3, (long)N * I);
    dsc_linear_backward_weight(g->w2, dy, act, N, I, d);
    dsc_linear_backward_input(dact, dy, w->w2, N, I, d, false);
    /* reuse act for dh1 and dact for dh3 (in place is safe elementwise) */
    swiglu_backward(act, dact, dact, h1, h3, (long)N * I);
    dsc_linear_backward_weight(g->w1, act, x, N, d, I);
    dsc_linear_backward_weight(g->w3, dact, x, N, d, I);
    dsc_linear_backward_input(dx, act, w->w1, N, d, I, true);
    dsc_linear_backward_input(dx, dact, w->w3, N, d, I, true);
}
