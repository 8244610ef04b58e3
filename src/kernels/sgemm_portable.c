/* sgemm_portable.c: the portable C code path of dsc_sgemm (any CPU, any compiler flags): a 4 x 16
 * micro-kernel written as plain loops the compiler can vectorise for whatever the build targets,
 * and scalar packing. Blocking loops and threading live in sgemm.c. Also the reference the other
 * paths are tested against (with a double-precision one in tests/test_sgemm.c). */
#include <string.h>

#include "kernels/sgemm_internal.h"

#define MR 4
#define NR 16
#define KC 256
#define NC 1024
#define MC 64

/* Packs op(B) rows k0..k0+kc, columns j0..j0+n into NR-column panels; the last panel is exactly
 * as wide as the columns left (vec = 1), so the kernel never reads padding. */
static void pack_b_portable(const float *B, ptrdiff_t ldb, bool tb, int k0, int kc, int j0, int n, float *dst) {
    for (int jr = 0; jr < n; jr += NR) {
        const int w = n - jr < NR ? n - jr : NR;
        float *d = dst + (size_t)(jr / NR) * kc * NR;
        for (int k = 0; k < kc; k++) {
            if (!tb) {
                memcpy(d + k * w, B + (ptrdiff_t)(k0 + k) * ldb + j0 + jr, sizeof(float) * (size_t)w);
            } else {
                for (int j = 0; j < w; j++) d[k * w + j] = B[(ptrdiff_t)(j0 + jr + j) * ldb + k0 + k];
            }
        }
    }
}

/* Packs transposed A (stored [K, M]) rows k0.., columns i0..i0+m into [kc][MR] panels. */
static void pack_at_portable(const float *A, ptrdiff_t lda, int k0, int kc, int i0, int m, float *dst) {
    for (int k = 0; k < kc; k++)
        for (int i = 0; i < m; i++) dst[(size_t)(i / MR) * kc * MR + k * MR + i % MR] = A[(ptrdiff_t)(k0 + k) * lda + i0 + i];
}

/* C tile = alpha * A·B + beta * C. Accumulator rows are updated along j through restrict
 * pointers, the pattern every compiler vectorises (register blocking is left to the ISA paths). */
static void kernel_portable(int m, int n, int kc, const float *a, ptrdiff_t a_rs, ptrdiff_t a_cs, const float *b,
                            float *c, ptrdiff_t ldc, float alpha, float beta) {
    float acc[MR * NR];
    memset(acc, 0, sizeof acc);
    for (int k = 0; k < kc; k++, a += a_cs, b += n) { /* B panel rows are n wide (vec = 1) */
        for (int i = 0; i < m; i++) {
            const float ai = a[i * a_rs];
            float *restrict ci = acc + i * NR;
            const float *restrict bk = b;
            for (int j = 0; j < n; j++) ci[j] += ai * bk[j];
        }
    }
    for (int i = 0; i < m; i++) {
        float *cr = c + i * ldc;
        const float *ci = acc + i * NR;
        if (beta == 0.0f) /* never read C: it may hold NaN */
            for (int j = 0; j < n; j++) cr[j] = alpha * ci[j];
        else
            for (int j = 0; j < n; j++) cr[j] = alpha * ci[j] + beta * cr[j];
    }
}

const dsc_gemm_impl dsc_gemm_portable = {MR, NR, 1, KC, NC, MC, pack_b_portable, pack_at_portable,
                                         kernel_portable};
