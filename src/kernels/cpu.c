/* cpu.c: which code path the kernels use. Chosen once, on first use, from what the CPU supports
 * (AVX-512 > AVX2+FMA > portable C), overridable by DSC_ISA=portable|avx2|avx512 or, in tests,
 * by dsc_kernels_force_isa. The selection is the only mutable global state of src/kernels/. */
#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/sgemm_internal.h"

/* -1 until first use; then a dsc_isa. Atomic because the first use may come from several threads
 * at once (they all compute the same value). */
static _Atomic int selected_isa = -1;

static dsc_isa best_supported(void) {
#if DSC_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma"))
        return DSC_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return DSC_ISA_AVX2;
#endif
    return DSC_ISA_PORTABLE;
}

/* The requested path if this CPU can run it, else the best one below it. */
static dsc_isa clamp_isa(dsc_isa want) {
    dsc_isa best = best_supported();
    return want < best ? want : best;
}

static dsc_isa initial_isa(void) {
    const char *env = getenv("DSC_ISA");
    if (env && strcmp(env, "portable") == 0) return DSC_ISA_PORTABLE;
    if (env && strcmp(env, "avx2") == 0) return clamp_isa(DSC_ISA_AVX2);
    if (env && strcmp(env, "avx512") == 0) return clamp_isa(DSC_ISA_AVX512);
    return best_supported(); /* unset or unknown value */
}

dsc_isa dsc_kernels_isa(void) {
    int isa = atomic_load_explicit(&selected_isa, memory_order_relaxed);
    if (isa < 0) {
        isa = (int)initial_isa();
        atomic_store_explicit(&selected_isa, isa, memory_order_relaxed);
    }
    return (dsc_isa)isa;
}

const char *dsc_kernels_isa_name(void) {
    switch (dsc_kernels_isa()) {
    case DSC_ISA_AVX512: return "avx512";
    case DSC_ISA_AVX2: return "avx2";
    default: return "portable";
    }
}

dsc_isa dsc_kernels_force_isa(dsc_isa isa) {
    dsc_isa got = clamp_isa(isa);
    atomic_store_explicit(&selected_isa, (int)got, memory_order_relaxed);
    return got;
}

int dsc_num_threads(void) { return omp_get_max_threads(); }
