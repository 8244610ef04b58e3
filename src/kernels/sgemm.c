/* sgemm.c: the dsc_sgemm front end. Handles the degenerate cases, splits the product between
 * OpenMP threads (over rows or columns of C, or over K with a reduction when C is tiny), and runs
 * the cache-blocking loops around the per-ISA packing routines and micro-kernels (sgemm_<isa>.c).
 * What it does not do: any arithmetic of its own beyond scaling C and summing K-split partials. */
#include <omp.h>
#include <stdint.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/sgemm_internal.h"

/* Below this many multiply-adds (64³; ~3 µs on one core) a product runs on one thread: starting
 * the team would cost about as much as the second core saves. */
#define PARALLEL_MIN_FMAS (1 << 18)
/* Fixed cost of a task (claim, call, C tile edges), in multiply-add equivalents. */
#define TASK_OVERHEAD_FMAS 20000.0
/* Task grids estimated within ROBUST_SLACK of the cheapest count as equal; of those the one with
 * the most tasks (at most MAX_TASKS_PER_THREAD a thread) is used. */
#define ROBUST_SLACK 1.04
#define MAX_TASKS_PER_THREAD 2
/* Largest op(B) slice (K x task columns) a thread packs once and keeps for all its tasks: 1 MiB,
 * so that it stays in L2 (2 MiB a core here) between tasks. */
#define BCACHE_MAX_FLOATS (1 << 18)

typedef struct {
    bool ta, tb;
    int M, N, K;
    float alpha;
    const float *A;
    ptrdiff_t lda;
    const float *B;
    ptrdiff_t ldb;
    float beta;
    float *C;
    ptrdiff_t ldc;
} gemm_args;

static const dsc_gemm_impl *impl_for(dsc_isa isa) {
#if DSC_X86
    if (isa == DSC_ISA_AVX512) return &dsc_gemm_avx512;
    if (isa == DSC_ISA_AVX2) return &dsc_gemm_avx2;
#endif
    (void)isa;
    return &dsc_gemm_portable;
}

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int ceil_div(int a, int b) { return (a + b - 1) / b; }
static inline int round_up(int a, int b) { return ceil_div(a, b) * b; }

/* C = beta C, where beta == 0 overwrites (C may hold NaN). */
static void scale_c(int M, int N, float beta, float *C, ptrdiff_t ldc) {
    if (beta == 1.0f) return;
    for (int i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (beta == 0.0f)
            memset(c, 0, sizeof(float) * (size_t)N);
        else
            for (int j = 0; j < N; j++) c[j] *= beta;
    }
}

/* The slow, allocation-free path, used only if the packing buffer cannot be allocated. */
static void gemm_naive(const gemm_args *p) {
    for (int i = 0; i < p->M; i++) {
        for (int j = 0; j < p->N; j++) {
            float acc = 0;
            for (int k = 0; k < p->K; k++) {
                float a = p->ta ? p->A[k * p->lda + i] : p->A[i * p->lda + k];
                float b = p->tb ? p->B[j * p->ldb + k] : p->B[k * p->ldb + j];
                acc += a * b;
            }
            float *c = &p->C[i * p->ldc + j];
            *c = p->alpha * acc + (p->beta == 0.0f ? 0.0f : p->beta * *c);
        }
    }
}

/* Sub-problem: rows [i0, i0+m) and columns [j0, j0+n) of C, K range [k0, k0+k) of the sum. */
static gemm_args sub_problem(const gemm_args *p, int i0, int m, int j0, int n, int k0, int k) {
    gemm_args s = *p;
    s.M = m;
    s.N = n;
    s.K = k;
    s.A = p->ta ? p->A + k0 * p->lda + i0 : p->A + i0 * p->lda + k0;
    s.B = p->tb ? p->B + j0 * p->ldb + k0 : p->B + k0 * p->ldb + j0;
    s.C = p->C + i0 * p->ldc + j0;
    return s;
}

/* ---- blocking loops ---- */

/* How a call is carried out: C is cut into a tm x tn grid of tasks (whole micro-tiles) that the
 * threads claim dynamically; or, when C is too small to share (kparts > 1), K is cut into
 * ranges whose partial products are summed. */
typedef struct {
    const dsc_gemm_impl *im;
    const gemm_args *p;
    int kc;     /* K block depth: equal blocks of at most im->kc, multiples of 8 */
    int tm, tn; /* task grid */
    int kparts;
    bool whole; /* pack a task's columns of op(B) for all of K once and keep them for the next
                   task of the same columns (row chunks of one column chunk share them) */
} gemm_plan;

/* A thread's scratch: packed op(B) and up to mc rows of packed A (when packs_a). */
typedef struct {
    float *b, *a;
    int key_j0, key_n; /* columns of op(B) held in b for all of K (whole mode), or key_n = -1 */
} workspace;

/* Columns per packed B block for a task n columns wide: equal blocks of at most im->nc. */
static int col_block(const dsc_gemm_impl *im, int n) {
    return n <= im->nc ? n : round_up(ceil_div(n, ceil_div(n, im->nc)), im->nr);
}

/* Widest task of the plan, in columns. */
static int task_width(const gemm_plan *pl) { return ceil_div(ceil_div(pl->p->N, pl->im->nr), pl->tn) * pl->im->nr; }

/* Whether A is packed (mc rows at once) rather than read in place by the kernel, for a task n
 * columns wide. A stored [M, K] is always read in place (measured: packing it gains nothing,
 * even at 4 KiB row strides). Transposed A (the kernel reads mr floats from each of kc rows) is
 * packed when those rows span more than the TLB covers (4 MiB) and the tile serves many column
 * tiles. */
static bool packs_a(const gemm_plan *pl, int n) {
    return pl->p->ta && n > 4 * pl->im->nr && (double)pl->kc * pl->p->lda > (1 << 20);
}

static bool ws_alloc(workspace *ws, const gemm_plan *pl) {
    const dsc_gemm_impl *im = pl->im;
    size_t w = (size_t)round_up(col_block(im, task_width(pl)), im->nr);
    size_t b_floats = (pl->whole ? (size_t)pl->p->K : (size_t)pl->kc) * w;
    size_t a_floats = packs_a(pl, task_width(pl)) ? (size_t)im->mc * pl->kc : 0;
    b_floats = (b_floats + 15) / 16 * 16; /* the A panel starts 64-byte aligned too */
    ws->b = aligned_alloc(64, ((b_floats + a_floats) * sizeof(float) + 63) / 64 * 64);
    ws->a = ws->b ? ws->b + b_floats : NULL;
    ws->key_j0 = ws->key_n = -1;
    return ws->b != NULL;
}

/* C[i0.., j0..] (m x n) for all of K on the calling thread. Loop order (outer to inner): column
 * blocks, K blocks (the packed kc x n block of op(B) stays in L2), row tiles of mr (A tile
 * mr x kc, read in place or packed, stays in L1), column tiles of nr (B panels stream). */
static void gemm_block(const gemm_plan *pl, workspace *ws, int i0, int m, int j0, int n) {
    const dsc_gemm_impl *im = pl->im;
    const gemm_args *p = pl->p;
    const int K = p->K, mr = im->mr, nr = im->nr, kc = pl->kc;
    const int nc = pl->whole ? n : col_block(im, n);
    const bool have = pl->whole && ws->key_j0 == j0 && ws->key_n == n;
    const bool pack_a = packs_a(pl, n);
    for (int jc = 0; jc < n; jc += nc) {
        const int nb = imin(nc, n - jc);
        const size_t nw = (size_t)round_up(nb, nr);
        for (int pc = 0; pc < K; pc += kc) {
            const int k = imin(kc, K - pc);
            const float beta = pc == 0 ? p->beta : 1.0f; /* later K blocks accumulate */
            float *bp = pl->whole ? ws->b + (size_t)pc * nw : ws->b;
            if (!have) im->pack_b(p->B, p->ldb, p->tb, pc, k, j0 + jc, nb, bp);
            for (int ic = 0; ic < m; ic += mr) {
                const int mt = imin(mr, m - ic);
                const float *a;
                ptrdiff_t rs, cs;
                if (pack_a) {
                    if (ic % im->mc == 0) im->pack_at(p->A, p->lda, pc, k, i0 + ic, imin(im->mc, m - ic), ws->a);
                    a = ws->a + (size_t)(ic % im->mc / mr) * k * mr, rs = 1, cs = mr;
                } else if (p->ta) {
                    a = p->A + pc * p->lda + i0 + ic, rs = 1, cs = p->lda;
                } else {
                    a = p->A + (i0 + ic) * p->lda + pc, rs = p->lda, cs = 1;
                }
                float *c = p->C + (i0 + ic) * p->ldc + j0 + jc;
                for (int jr = 0; jr < nb; jr += nr)
                    im->kernel(mt, imin(nr, nb - jr), k, a, rs, cs, bp + (size_t)(jr / nr) * k * nr, c + jr, p->ldc,
                               p->alpha, beta);
            }
        }
    }
    if (pl->whole) ws->key_j0 = j0, ws->key_n = n;
}

/* Part `part` of `parts` of a range of `len` cut in whole units of `unit`. */
static void part_range(int len, int unit, int parts, int part, int *start, int *count) {
    int units = ceil_div(len, unit);
    int u0 = (int)((long long)units * part / parts), u1 = (int)((long long)units * (part + 1) / parts);
    *start = imin(u0 * unit, len);
    *count = imin(u1 * unit, len) - *start;
}

/* Task q of the grid, column-major so that consecutive tasks share columns of op(B). */
static void run_task(const gemm_plan *pl, workspace *ws, int q) {
    int i0, m, j0, n;
    part_range(pl->p->M, pl->im->mr, pl->tm, q % pl->tm, &i0, &m);
    part_range(pl->p->N, pl->im->nr, pl->tn, q / pl->tm, &j0, &n);
    if (m <= 0 || n <= 0) return;
    if (ws->b)
        gemm_block(pl, ws, i0, m, j0, n);
    else { /* no memory for packing: the slow path still gets the right answer */
        gemm_args s = sub_problem(pl->p, i0, m, j0, n, 0, pl->p->K);
        gemm_naive(&s);
    }
}

static void run_grid(const gemm_plan *pl, int nt) {
    int tasks = pl->tm * pl->tn;
    if (nt <= 1 || tasks <= 1) {
        workspace ws;
        ws_alloc(&ws, pl);
        for (int q = 0; q < tasks; q++) run_task(pl, &ws, q);
        free(ws.b);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        workspace ws;
        ws_alloc(&ws, pl);
#pragma omp for schedule(dynamic, 1) nowait
        for (int q = 0; q < tasks; q++) run_task(pl, &ws, q);
        free(ws.b);
    }
}

/* K split for small C and long K: part 0 adds into C with the caller's beta, the others write
 * alpha-scaled partials to private buffers that all threads then sum into C, each over its own
 * rows. */
static void run_ksplit(const gemm_plan *pl, int nt) {
    const gemm_args *p = pl->p;
    const int kparts = pl->kparts;
    size_t cn = (size_t)p->M * p->N;
    float *partial = malloc(sizeof(float) * cn * (size_t)(kparts - 1));
    gemm_plan serial = *pl;
    serial.tm = serial.tn = serial.kparts = 1;
    serial.whole = false;
    if (!partial) {
        run_grid(&serial, 1);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        int nth = omp_get_num_threads(), t = omp_get_thread_num();
        for (int part = t; part < kparts; part += nth) {
            int k0, k;
            part_range(p->K, 8, kparts, part, &k0, &k);
            gemm_args s = sub_problem(p, 0, p->M, 0, p->N, k0, k);
            if (part > 0) {
                s.C = partial + cn * (size_t)(part - 1);
                s.ldc = p->N;
                s.beta = 0.0f;
            }
            gemm_plan sp = serial;
            sp.p = &s;
            sp.kc = imin(round_up(ceil_div(k, ceil_div(k, pl->im->kc)), 8), pl->im->kc);
            run_grid(&sp, 1);
        }
#pragma omp barrier
        int i0, m;
        part_range(p->M, 1, nth, t, &i0, &m);
        for (int i = i0; i < i0 + m; i++) {
            float *c = p->C + i * p->ldc;
            for (int q = 0; q < kparts - 1; q++) {
                const float *src = partial + cn * (size_t)q + (size_t)i * p->N;
                for (int j = 0; j < p->N; j++) c[j] += src[j];
            }
        }
    }
    free(partial);
}

/* ---- splitting between threads ---- */

/* Costs in multiply-add equivalents (one core does 32 FMAs a cycle) of packing one element of
 * op(B): ~6 copied, ~10 transposed (it comes from L3 and goes through L1 twice); and of reading
 * one element of A for a column chunk: ~4 in place, ~10 transposed (mr floats a row). */
static double b_pack_cost(const gemm_args *p) { return p->tb ? 10.0 : 6.0; }
static double a_read_cost(const gemm_args *p) { return p->ta ? 10.0 : 4.0; }

/* Estimated time of the busiest thread for a tm x tn task grid on nt threads, in multiply-add
 * equivalents: its tasks (ceil(tasks/nt) of them, between the average and the largest in size),
 * packing op(B) (once per task, or in whole mode once per column chunk it works on), reading A
 * (once per column chunk) and a little per task. */
static double grid_cost(const gemm_plan *pl, int nt, int tm, int tn, bool *whole) {
    const dsc_gemm_impl *im = pl->im;
    const gemm_args *p = pl->p;
    const int um = ceil_div(p->M, im->mr), un = ceil_div(p->N, im->nr), tasks = tm * tn;
    const double cb = b_pack_cost(p), ca = a_read_cost(p);
    int w = ceil_div(un, tn) * im->nr, h = imin(ceil_div(um, tm) * im->mr, p->M);
    *whole = tm > 1 && w <= im->nc && (double)p->K * w <= BCACHE_MAX_FLOATS;
    double rounds = ceil_div(tasks, nt);
    double largest = (double)h * imin(w, p->N) * p->K;
    double bpack = *whole ? cb * p->K * (double)p->N * imin(tm, nt) / nt : cb * p->K * (double)w * rounds;
    return rounds * 0.5 * ((double)p->M * p->N * p->K / tasks + largest) + bpack +
           ca * (double)p->M * p->K * tn / nt + TASK_OVERHEAD_FMAS * rounds;
}

/* Picks the task grid for nt threads: the cheapest by grid_cost, or, among grids estimated
 * within ROBUST_SLACK of it, the one with the most tasks (up to MAX_TASKS_PER_THREAD a thread).
 * Tasks are claimed dynamically, so more of them cost a little on an idle machine and save a
 * lot on a busy one: a thread that is preempted or starts late then holds up one small task,
 * while the others take the rest. */
static void plan_grid(gemm_plan *pl, int nt) {
    const dsc_gemm_impl *im = pl->im;
    const gemm_args *p = pl->p;
    const int um = ceil_div(p->M, im->mr), un = ceil_div(p->N, im->nr);
    double best = -1, chosen = -1;
    for (int pass = 0; pass < 2; pass++) {
        int most = 0;
        for (int tn = 1; tn <= imin(un, 64); tn++) {
            int tm0 = imin(ceil_div(nt, tn), um); /* fewer tasks than threads only when C is tiny */
            for (int f = 1; f <= MAX_TASKS_PER_THREAD && tm0 * f <= um; f++) {
                int tm = tm0 * f, tasks = tm * tn;
                bool whole;
                double cost = grid_cost(pl, nt, tm, tn, &whole);
                if (pass == 0 && (best < 0 || cost < best)) {
                    best = cost;
                    pl->tm = tm, pl->tn = tn, pl->whole = whole;
                }
                if (pass == 1 && cost <= ROBUST_SLACK * best && tasks <= MAX_TASKS_PER_THREAD * nt &&
                    (tasks > most || (tasks == most && cost < chosen))) {
                    most = tasks, chosen = cost;
                    pl->tm = tm, pl->tn = tn, pl->whole = whole;
                }
            }
        }
    }
    /* K split: each thread a K range, then each sums the partials over its share of the rows */
    if (p->K >= 2 * nt * 64) {
        double kw = ceil_div(p->K, nt);
        double cost = (double)imin(round_up(p->M, im->mr), p->M + im->mr) * round_up(p->N, im->nr) * kw +
                      b_pack_cost(p) * kw * round_up(p->N, im->nr) + a_read_cost(p) * kw * p->M +
                      4.0 * p->M * p->N * (nt - 1) / nt;
        if (cost < 0.8 * best) pl->kparts = nt, pl->tm = pl->tn = 1, pl->whole = false;
    }
}

/* Accounting for benchmarks (dsc_gemm_stats_get): integer counters updated atomically, the one
 * piece of process-wide state here besides the ISA choice. */
static uint64_t stat_flops, stat_top_flops, stat_top_ns, stat_calls;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void dsc_gemm_stats_get(dsc_gemm_stats *out) {
    out->flops = (double)__atomic_load_n(&stat_flops, __ATOMIC_RELAXED);
    out->top_flops = (double)__atomic_load_n(&stat_top_flops, __ATOMIC_RELAXED);
    out->seconds = 1e-9 * (double)__atomic_load_n(&stat_top_ns, __ATOMIC_RELAXED);
    out->calls = (long)__atomic_load_n(&stat_calls, __ATOMIC_RELAXED);
}

static void sgemm_run(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc);

void dsc_sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc) {
    uint64_t flops = M > 0 && N > 0 && K > 0 ? 2ull * (uint64_t)M * (uint64_t)N * (uint64_t)K : 0;
    __atomic_fetch_add(&stat_flops, flops, __ATOMIC_RELAXED);
    __atomic_fetch_add(&stat_calls, 1, __ATOMIC_RELAXED);
    if (omp_in_parallel()) {
        sgemm_run(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    uint64_t t0 = now_ns();
    sgemm_run(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    __atomic_fetch_add(&stat_top_ns, now_ns() - t0, __ATOMIC_RELAXED);
    __atomic_fetch_add(&stat_top_flops, flops, __ATOMIC_RELAXED);
}

static void sgemm_run(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) { /* BLAS: A and B are not read */
        scale_c(M, N, beta, C, ldc);
        return;
    }
    gemm_args p = {trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
    gemm_plan pl = {impl_for(dsc_kernels_isa()), &p, 0, 1, 1, 1, false};
    pl.kc = imin(round_up(ceil_div(K, ceil_div(K, pl.im->kc)), 8), pl.im->kc);
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (nt > 1 && (double)M * N * K < PARALLEL_MIN_FMAS) nt = 1;
    if (nt > 1) plan_grid(&pl, nt);
    if (pl.kparts > 1)
        run_ksplit(&pl, nt);
    else
        run_grid(&pl, nt);
}
