/* sgemm.c: matrix multiply. PLACEHOLDER reference implementation (correct, slow); the tuned
 * AVX-512/AVX2 kernels replace it behind the same interface. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

static dsc_isa current_isa = DSC_ISA_PORTABLE;
dsc_isa dsc_kernels_isa(void) { return current_isa; }
const char *dsc_kernels_isa_name(void) { return "portable"; }
dsc_isa dsc_kernels_force_isa(dsc_isa isa) { (void)isa; return current_isa; }
int dsc_num_threads(void) { return omp_get_max_threads(); }

void dsc_sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
               float beta, float *C, int ldc) {
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && (double)M * N * K > 1e5)
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            float acc = 0;
            for (int k = 0; k < K; k++) {
                float a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                float b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                acc += a * b;
            }
            float *c = &C[(size_t)i * ldc + j];
            *c = alpha * acc + (beta == 0.0f ? 0.0f : beta * *c);
        }
    }
}
