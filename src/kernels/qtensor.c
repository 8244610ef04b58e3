/* qtensor.c: the weight formats of qtensor.h (sizes, names, element conversions, quantizers)
 * and the qt_matmul front end: it picks the code path (qmatmul_<isa>.c), chooses between the
 * decode kernels (few rows of x: each weight is read once for all of them) and prefill (many
 * rows: tiles of W dequantized to fp32 and multiplied with dsc_sgemm), splits the rows of W
 * between OpenMP threads, and owns the per-thread scratch the kernels work in. */
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/qmatmul_internal.h"
#include "kernels/qtensor.h"

/* ---- formats -------------------------------------------------------------------------------- */

static const char *const type_names[QT_COUNT] = {"f32", "f16", "bf16", "q8_0", "q4_0", "fp8"};

size_t qt_row_bytes(qt_type t, int cols) {
    if (cols <= 0) return 0;
    switch (t) {
    case QT_F32: return 4 * (size_t)cols;
    case QT_F16:
    case QT_BF16: return 2 * (size_t)cols;
    case QT_Q8_0: return cols % QT_QK ? 0 : (size_t)(cols / QT_QK) * QT_Q8_0_BYTES;
    case QT_Q4_0: return cols % QT_QK ? 0 : (size_t)(cols / QT_QK) * QT_Q4_0_BYTES;
    case QT_FP8: return (size_t)cols;
    default: return 0;
    }
}

const char *qt_name(qt_type t) { return (unsigned)t < QT_COUNT ? type_names[t] : "?"; }

int qt_parse(const char *name) {
    for (int t = 0; name && t < QT_COUNT; t++)
        if (strcmp(name, type_names[t]) == 0) return t;
    return -1;
}

/* ---- element conversions -------------------------------------------------------------------- */

static inline uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Half to single: normal halves by moving the fields and rebiasing the exponent (15 -> 127);
 * subnormal halves (m * 2^-24) as (0.5 + m * 2^-24) - 0.5, exact and free of float subnormals. */
float qt_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, rest = h & 0x7fffu;
    if (rest >= 0x7c00u) return u2f(sign | 0x7f800000u | ((rest & 0x3ffu) << 13)); /* inf, NaN */
    if (rest >= 0x0400u) return u2f(sign | ((rest << 13) + (112u << 23)));
    return u2f(sign | f2u(u2f(0x3f000000u | rest) - 0.5f));
}

/* Single to half, round to nearest even, by letting the FPU round: adding a power of two that
 * puts the half's last mantissa bit at the float's last one leaves the rounded half in the low
 * bits (the method of Maratyszcza's FP16 library; overflow becomes inf, NaN stays NaN). */
uint16_t qt_f32_to_f16(float f) {
    uint32_t u = f2u(f), sign = (u >> 16) & 0x8000u, twice = u << 1;
    if (twice > 0xff000000u) return (uint16_t)(sign | 0x7e00u | ((u >> 13) & 0x3ffu)); /* NaN */
    float base = (fabsf(f) * 0x1p112f) * 0x1p-110f; /* overflows to inf above the half range */
    uint32_t bias = twice & 0xff000000u;
    if (bias < 0x71000000u) bias = 0x71000000u; /* below 2^-14 the half is subnormal: fixed step */
    base = u2f((bias >> 1) + 0x07800000u) + base;
    uint32_t b = f2u(base);
    return (uint16_t)(sign | (((b >> 13) & 0x7c00u) + (b & 0x0fffu)));
}

float qt_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t qt_f32_to_bf16(float f) {
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* e4m3fn: s eeee mmm, bias 7; exponent 0 is subnormal (m * 2^-9); s 1111 111 is NaN; no inf. */
float qt_fp8_e4m3_to_f32(uint8_t v) {
    uint32_t sign = (uint32_t)(v & 0x80u) << 24, e = (v >> 3) & 0xfu, m = v & 7u;
    if (e == 15 && m == 7) return u2f(sign | 0x7fc00000u);
    if (e == 0) return u2f(sign | f2u((float)m * 0x1p-9f));
    return u2f(sign | ((e + 120u) << 23) | (m << 20));
}

uint8_t qt_f32_to_fp8_e4m3(float f) {
    uint32_t u = f2u(f), sign = (u >> 24) & 0x80u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint8_t)(sign | 0x7fu); /* NaN */
    if (a >= 0x43e00000u) return (uint8_t)(sign | 0x7eu); /* >= 448 (inf too): saturate */
    if (a < 0x3c800000u) {                                /* below 2^-6: subnormal steps of 2^-9 */
        float q = rintf(u2f(a) * 512.0f);                 /* exact product; rint rounds to even */
        return (uint8_t)(sign | (uint32_t)q);             /* q = 8 is 2^-6, the first normal code */
    }
    uint32_t r = a + 0x7ffffu + ((a >> 20) & 1u); /* round to nearest even at mantissa bit 3 */
    uint32_t code = (r >> 20) - (120u << 3);      /* rebias 127 -> 7 */
    return (uint8_t)(sign | (code > 0x7eu ? 0x7eu : code));
}

/* ---- quantizers ----------------------------------------------------------------------------- */

/* a * b rounded to float: GGML's reference rounds the product before adding to it, which a
 * contracted multiply-add (GCC's default in GNU C) would not. */
static float mul_rounded(float a, float b) {
    volatile float p = a * b;
    return p;
}

/* GGML's quantize_row_q8_0_ref: d = amax / 127, q = roundf(x / d) (ties away from zero). NaN
 * inputs give q = 0, as GGML's conversion does on x86. */
static void quantize_q8_0_row(const float *x, int cols, uint8_t *dst) {
    for (int b = 0; b < cols / QT_QK; b++, x += QT_QK, dst += QT_Q8_0_BYTES) {
        float amax = 0;
        for (int j = 0; j < QT_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t h = qt_f32_to_f16(d);
        memcpy(dst, &h, 2);
        for (int j = 0; j < QT_QK; j++) {
            float v = roundf(x[j] * id);
            int q = v >= 127.0f ? 127 : v <= -127.0f ? -127 : v == v ? (int)v : 0;
            dst[2 + j] = (uint8_t)(int8_t)q;
        }
    }
}

/* GGML's quantize_row_q4_0_ref: d = v / -8 for the value v of largest magnitude (so v itself is
 * exact: nibble 0), nibble = min(15, trunc(x / d + 8.5)). NaN inputs give nibble 0. */
static void quantize_q4_0_row(const float *x, int cols, uint8_t *dst) {
    for (int b = 0; b < cols / QT_QK; b++, x += QT_QK, dst += QT_Q4_0_BYTES) {
        float amax = 0, max = 0;
        for (int j = 0; j < QT_QK; j++)
            if (amax < fabsf(x[j])) amax = fabsf(x[j]), max = x[j];
        float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t h = qt_f32_to_f16(d);
        memcpy(dst, &h, 2);
        int q[QT_QK];
        for (int j = 0; j < QT_QK; j++) {
            float v = mul_rounded(x[j], id) + 8.5f;
            q[j] = v >= 15.0f ? 15 : v > 0.0f ? (int)v : 0;
        }
        for (int j = 0; j < QT_QK / 2; j++) dst[2 + j] = (uint8_t)(q[j] | (q[j + QT_QK / 2] << 4));
    }
}

/* DeepSeek's block rule: per 128 x 128 block, scale = amax / 448 (1 for an all-zero block),
 * q = e4m3(x / scale). */
static void quantize_fp8(const float *src, int rows, int cols, uint8_t *dst, float *scale_inv) {
    const int cb = (cols + QT_FP8_BLOCK - 1) / QT_FP8_BLOCK;
    for (int r0 = 0; r0 < rows; r0 += QT_FP8_BLOCK) {
        const int r1 = r0 + QT_FP8_BLOCK < rows ? r0 + QT_FP8_BLOCK : rows;
        for (int b = 0; b < cb; b++) {
            const int c0 = b * QT_FP8_BLOCK, c1 = c0 + QT_FP8_BLOCK < cols ? c0 + QT_FP8_BLOCK : cols;
            float amax = 0;
            for (int r = r0; r < r1; r++)
                for (int c = c0; c < c1; c++) amax = fmaxf(amax, fabsf(src[(size_t)r * cols + c]));
            float s = amax > 0 ? amax / 448.0f : 1.0f;
            scale_inv[(size_t)(r0 / QT_FP8_BLOCK) * cb + b] = s;
            for (int r = r0; r < r1; r++)
                for (int c = c0; c < c1; c++)
                    dst[(size_t)r * cols + c] = qt_f32_to_fp8_e4m3(src[(size_t)r * cols + c] / s);
        }
    }
}

void qt_quantize(qt_type t, const float *src, int rows, int cols, void *dst, float *scale_inv) {
    const size_t rb = qt_row_bytes(t, cols);
    if (rows <= 0 || rb == 0) return;
    uint8_t *out = dst;
    if (t == QT_FP8) {
        quantize_fp8(src, rows, cols, out, scale_inv);
        return;
    }
    /* rows are independent: large matrices (whole checkpoints are converted) on all threads */
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > (1u << 18))
    for (int r = 0; r < rows; r++) {
        const float *x = src + (size_t)r * cols;
        uint8_t *d = out + (size_t)r * rb;
        switch (t) {
        case QT_F32: memcpy(d, x, rb); break;
        case QT_F16:
            for (int c = 0; c < cols; c++) {
                uint16_t h = qt_f32_to_f16(x[c]);
                memcpy(d + 2 * c, &h, 2);
            }
            break;
        case QT_BF16:
            for (int c = 0; c < cols; c++) {
                uint16_t h = qt_f32_to_bf16(x[c]);
                memcpy(d + 2 * c, &h, 2);
            }
            break;
        case QT_Q8_0: quantize_q8_0_row(x, cols, d); break;
        case QT_Q4_0: quantize_q4_0_row(x, cols, d); break;
        default: break;
        }
    }
}

/* ---- code paths ----------------------------------------------------------------------------- */

static const qt_impl *impl_for(dsc_isa isa) {
#if DSC_X86
    __builtin_cpu_init();
    if (isa == DSC_ISA_AVX512 && __builtin_cpu_supports("f16c")) return &qt_impl_avx512;
    if (isa >= DSC_ISA_AVX2 && __builtin_cpu_supports("f16c")) return &qt_impl_avx2;
#endif
    (void)isa;
    return &qt_impl_portable;
}

void qt_dequant_row(float *out, const qtensor *W, int r) {
    if (r < 0 || r >= W->rows || qt_row_bytes(W->type, W->cols) == 0) return;
    impl_for(dsc_kernels_isa())->dequant(W, r, 0, W->cols, out);
}

/* ---- per-thread scratch --------------------------------------------------------------------- */

/* Each thread that runs a product keeps two growable 64-byte aligned buffers: slot 0 for what
 * the calling thread prepares for all threads (quantized activations), slot 1 for a thread's own
 * work. They live until the thread exits (a pthread key destructor frees them); the list of live
 * sets keeps them reachable for leak checkers while the thread runs. */
#define SCRATCH_SLOTS 2
typedef struct scratch_set {
    void *p[SCRATCH_SLOTS];
    size_t cap[SCRATCH_SLOTS];
    struct scratch_set *prev, *next;
} scratch_set;

static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static pthread_key_t scratch_key;
static bool scratch_key_ok;
static pthread_mutex_t scratch_lock = PTHREAD_MUTEX_INITIALIZER;
static scratch_set *scratch_live;

static void scratch_release(void *v) {
    scratch_set *s = v;
    pthread_mutex_lock(&scratch_lock);
    if (s->prev) s->prev->next = s->next;
    else scratch_live = s->next;
    if (s->next) s->next->prev = s->prev;
    pthread_mutex_unlock(&scratch_lock);
    for (int i = 0; i < SCRATCH_SLOTS; i++) free(s->p[i]);
    free(s);
}

static void scratch_init(void) { scratch_key_ok = pthread_key_create(&scratch_key, scratch_release) == 0; }

/* The calling thread's buffer `slot`, at least `bytes` long; NULL if out of memory. */
static void *thread_scratch(int slot, size_t bytes) {
    pthread_once(&scratch_once, scratch_init);
    if (!scratch_key_ok) return NULL;
    scratch_set *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return NULL;
        if (pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            return NULL;
        }
        pthread_mutex_lock(&scratch_lock);
        s->next = scratch_live;
        if (scratch_live) scratch_live->prev = s;
        scratch_live = s;
        pthread_mutex_unlock(&scratch_lock);
    }
    if (bytes == 0) bytes = 64;
    if (s->cap[slot] < bytes) {
        size_t cap = (bytes + bytes / 4 + 4095) & ~(size_t)4095;
        free(s->p[slot]);
        s->p[slot] = aligned_alloc(64, cap);
        s->cap[slot] = s->p[slot] ? cap : 0;
    }
    return s->p[slot];
}

/* ---- products ------------------------------------------------------------------------------- */

/* Prefill tiles: rows of W per task and columns per dequantized tile (a multiple of 128, so FP8
 * scale blocks and Q blocks never straddle two tiles). */
#define PREFILL_ROWS 256
#define PREFILL_COLS 512
/* Below this many weights a product runs on one thread. */
#define PARALLEL_MIN_WEIGHTS (1 << 16)

static inline int imin(int a, int b) { return a < b ? a : b; }

/* Without scratch memory: one row of W at a time, 32 columns dequantized into a stack array. */
static void matmul_fallback(const qt_impl *im, const qt_mm *m, int r0, int r1) {
    const qtensor *W = m->W;
    float w[QT_QK];
    for (int r = r0; r < r1; r++)
        for (int n = 0; n < m->N; n++) {
            const float *x = m->x + (size_t)n * W->cols;
            double acc = 0;
            for (int c0 = 0; c0 < W->cols; c0 += QT_QK) {
                const int k = imin(QT_QK, W->cols - c0);
                im->dequant(W, r, c0, k, w);
                for (int j = 0; j < k; j++) acc += (double)w[j] * x[c0 + j];
            }
            float *y = m->y + (size_t)n * W->rows + r;
            *y = (float)acc + (m->accumulate ? *y : 0.0f);
        }
}

static void decode_rows(const qt_impl *im, const qt_mm *m, int r0, int r1) {
    void *scratch = thread_scratch(1, im->scratch_bytes(m->W, m->N));
    if (scratch)
        im->decode(m, r0, r1, scratch);
    else
        matmul_fallback(im, m, r0, r1);
}

/* Decode tasks of 16..128 rows (a power of two, so none crosses a 128-row FP8 block), several
 * a thread: a thread that is preempted holds up one small task while the other takes the rest. */
static int task_rows(int rows, int nt) {
    int tr = QT_FP8_BLOCK;
    while (tr > 16 && (rows + tr - 1) / tr < 4 * nt) tr /= 2;
    return tr;
}

/* ---- decode tasks shared by the threads of one pass ---- */

/* Task k: rows [r0, r1) of product `job`. */
typedef struct {
    int16_t job;
    int r0, r1;
} decode_task;

/* Each thread starts on its own contiguous share of the task list and walks it in order: the
 * weights it reads are then one stream, and the head of its next task is asked for (into L2)
 * while it works on this one, so no task starts with a cold stream. A thread done with its share
 * takes tasks from the far end of another's, so one that is preempted or starts late holds up a
 * task, not its whole share. A share is [lo, hi) packed in one 64-bit word: the owner takes lo,
 * others take hi - 1, by compare-and-swap. */
typedef struct {
    _Alignas(64) uint64_t range;
} task_share;

#define QT_MAX_THREADS 256
#define SHARE(lo, hi) ((uint64_t)(uint32_t)(lo) | (uint64_t)(uint32_t)(hi) << 32)

static int share_take(task_share *q, bool from_end) {
    uint64_t v = __atomic_load_n(&q->range, __ATOMIC_ACQUIRE);
    for (;;) {
        const int lo = (int)(uint32_t)v, hi = (int)(v >> 32);
        if (lo >= hi) return -1;
        const uint64_t next = from_end ? SHARE(lo, hi - 1) : SHARE(lo + 1, hi);
        if (__atomic_compare_exchange_n(&q->range, &v, next, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return from_end ? hi - 1 : lo;
    }
}

/* Task k of a pass: from the list, or (list NULL) rows [k tr, (k + 1) tr) of product 0. */
static decode_task task_at(const decode_task *list, int k, int tr, const qt_mm *mm) {
    return list ? list[k] : (decode_task){0, k * tr, imin(mm->W->rows, (k + 1) * tr)};
}

/* Bytes of a task's head asked for while the task before it runs. */
#define TASK_HEAD_BYTES 8192

static void prefetch_task_head(const qt_mm *mm, decode_task t) {
    const qtensor *W = mm[t.job].W;
    const size_t all = qt_row_bytes(W->type, W->cols) * (size_t)(t.r1 - t.r0);
    qt_prefetch_l2(qt_row(W, t.r0), all < TASK_HEAD_BYTES ? all : TASK_HEAD_BYTES);
}

static void run_tasks(const qt_impl *im, const qt_mm *mm, const decode_task *list, int ntask, int tr, int nt) {
    if (nt > ntask) nt = ntask;
    if (nt <= 1) {
        for (int k = 0; k < ntask; k++) {
            const decode_task t = task_at(list, k, tr, mm);
            decode_rows(im, &mm[t.job], t.r0, t.r1);
        }
        return;
    }
    task_share share[QT_MAX_THREADS];
    if (nt > QT_MAX_THREADS) nt = QT_MAX_THREADS;
    for (int t = 0; t < nt; t++) share[t].range = SHARE((long)ntask * t / nt, (long)ntask * (t + 1) / nt);
#pragma omp parallel num_threads(nt)
    {
        const int me = omp_get_thread_num(); /* OpenMP may start fewer than nt: all shares get taken */
        for (;;) {
            int k = share_take(&share[me], false);
            if (k >= 0) {
                const uint64_t v = __atomic_load_n(&share[me].range, __ATOMIC_RELAXED);
                if ((int)(uint32_t)v < (int)(v >> 32)) prefetch_task_head(mm, task_at(list, (int)(uint32_t)v, tr, mm));
            } else {
                for (int i = 1; i < nt && k < 0; i++) k = share_take(&share[(me + i) % nt], true);
                if (k < 0) break;
            }
            const decode_task t = task_at(list, k, tr, mm);
            decode_rows(im, &mm[t.job], t.r0, t.r1);
        }
    }
}

static void run_decode(const qt_impl *im, qt_mm *m, int nt) {
    const int rows = m->W->rows;
    size_t pb = im->prepare_bytes ? im->prepare_bytes(m->W, m->N) : 0;
    if (pb) {
        void *buf = thread_scratch(0, pb);
        if (!buf) {
            matmul_fallback(im, m, 0, rows);
            return;
        }
        im->prepare(m, buf);
        m->xq = buf;
    }
    const int tr = task_rows(rows, nt);
    run_tasks(im, m, NULL, (rows + tr - 1) / tr, tr, nt);
}

/* Rows [r0, r1) of y: tiles of PREFILL_COLS columns of those rows dequantized into `panel`, each
 * multiplied into y by dsc_sgemm (on this thread when called inside the parallel region). */
static void prefill_rows(const qt_impl *im, const qt_mm *m, int r0, int r1, float *panel) {
    const qtensor *W = m->W;
    const int cols = W->cols, nr = r1 - r0;
    for (int c0 = 0; c0 < cols; c0 += PREFILL_COLS) {
        const int kn = imin(PREFILL_COLS, cols - c0);
        for (int r = r0; r < r1; r++) im->dequant(W, r, c0, kn, panel + (size_t)(r - r0) * kn);
        const float beta = c0 > 0 || m->accumulate ? 1.0f : 0.0f;
        dsc_sgemm(false, true, m->N, nr, kn, 1.0f, m->x + c0, cols, panel, kn, beta, m->y + r0, W->rows);
    }
}

static void run_prefill(const qt_impl *im, qt_mm *m, int nt) {
    const int rows = m->W->rows;
    int tr = PREFILL_ROWS;
    if (nt > 1) { /* at least two tasks a thread when the rows allow it, 16-row multiples */
        int want = (rows + 2 * nt - 1) / (2 * nt);
        want = (want + 15) / 16 * 16;
        if (want < tr) tr = want < 16 ? 16 : want;
    }
    const int tasks = (rows + tr - 1) / tr;
    const size_t panel_bytes = sizeof(float) * (size_t)tr * PREFILL_COLS;
    if (nt <= 1 || tasks <= 1) {
        float *panel = thread_scratch(1, panel_bytes);
        for (int t = 0; t < tasks; t++) {
            const int r0 = t * tr, r1 = imin(rows, r0 + tr);
            if (panel)
                prefill_rows(im, m, r0, r1, panel);
            else
                matmul_fallback(im, m, r0, r1);
        }
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        float *panel = thread_scratch(1, panel_bytes);
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < tasks; t++) {
            const int r0 = t * tr, r1 = imin(rows, r0 + tr);
            if (panel)
                prefill_rows(im, m, r0, r1, panel);
            else
                matmul_fallback(im, m, r0, r1);
        }
    }
}

static bool int8_path(const qt_impl *im, qt_type t) { return im->int8_activations && im->int8_activations(t); }

/* Whether a product of N rows of x runs the decode kernels (else prefill). */
static bool decode_path(const qt_impl *im, qt_type t, int N) {
    return N <= QT_DECODE_MAX_N || (N <= QT_INT8_MAX_N && int8_path(im, t));
}

bool qt_matmul_int8_activations(qt_type t, int N) {
    const qt_impl *im = impl_for(dsc_kernels_isa());
    return N >= 1 && decode_path(im, t, N) && int8_path(im, t);
}

void qt_matmul(float *y, const float *x, const qtensor *W, int N, bool accumulate) {
    const int rows = W->rows, cols = W->cols;
    if (N <= 0 || rows <= 0) return;
    if (qt_row_bytes(W->type, cols) == 0) { /* no columns (or an invalid shape): y = 0 + y */
        if (!accumulate)
            for (int n = 0; n < N; n++) memset(y + (size_t)n * rows, 0, sizeof(float) * (size_t)rows);
        return;
    }
    if (W->type == QT_F32 && N > QT_DECODE_MAX_N) { /* already fp32: the GEMM reads W in place */
        dsc_sgemm(false, true, N, rows, cols, 1.0f, x, cols, W->data, cols, accumulate ? 1.0f : 0.0f, y, rows);
        return;
    }
    const qt_impl *im = impl_for(dsc_kernels_isa());
    qt_mm m = {W, x, y, N, accumulate, NULL};
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    if ((double)rows * cols < PARALLEL_MIN_WEIGHTS) nt = 1;
    if (decode_path(im, W->type, N))
        run_decode(im, &m, nt);
    else
        run_prefill(im, &m, nt);
}

/* ---- several products at once ------------------------------------------------------------------ */

#define BATCH_MAX_TASKS 4096
#define BATCH_MAX_JOBS 256

void qt_matmul_batch(const qt_job *jobs, int n) {
    const qt_impl *im = impl_for(dsc_kernels_isa());
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    /* the decode-sized products are prepared here and share one parallel pass; others run alone */
    size_t pb_total = 0, off[BATCH_MAX_JOBS];
    int dec[BATCH_MAX_JOBS], nd = 0;
    for (int j = 0; j < n; j++) {
        const qt_job *b = &jobs[j];
        bool decode = b->N > 0 && decode_path(im, b->W->type, b->N) && b->W->rows > 0 && qt_row_bytes(b->W->type, b->W->cols);
        if (!decode || nd == BATCH_MAX_JOBS || nt <= 1) {
            qt_matmul(b->y, b->x, b->W, b->N, b->accumulate);
            continue;
        }
        off[nd] = pb_total;
        pb_total += im->prepare_bytes ? (im->prepare_bytes(b->W, b->N) + 63) & ~(size_t)63 : 0;
        dec[nd++] = j;
    }
    if (nd == 0) return;
    unsigned char *pbuf = pb_total ? thread_scratch(0, pb_total) : NULL;
    qt_mm mm[BATCH_MAX_JOBS];
    decode_task task[BATCH_MAX_TASKS];
    int ntask = 0, deferred[BATCH_MAX_JOBS], ndef = 0;
    for (int k = 0; k < nd; k++) {
        const qt_job *b = &jobs[dec[k]];
        mm[k] = (qt_mm){b->W, b->x, b->y, b->N, b->accumulate, NULL};
        size_t pb = im->prepare_bytes ? im->prepare_bytes(b->W, b->N) : 0;
        if (pb && !pbuf) { /* no memory for the prepared activations: the single path copes */
            deferred[ndef++] = dec[k];
            continue;
        }
        if (pb) {
            im->prepare(&mm[k], pbuf + off[k]);
            mm[k].xq = pbuf + off[k];
        }
        const int rows = b->W->rows, tr = task_rows(rows, nt);
        if (ntask + (rows + tr - 1) / tr > BATCH_MAX_TASKS) { /* rare (huge batches): after the pass */
            deferred[ndef++] = dec[k];
            continue;
        }
        for (int r = 0; r < rows; r += tr) task[ntask++] = (decode_task){(int16_t)k, r, imin(rows, r + tr)};
    }
    run_tasks(im, mm, task, ntask, 0, nt);
    /* these prepare their activations in the buffer the pass used: only now */
    for (int k = 0; k < ndef; k++) {
        const qt_job *b = &jobs[deferred[k]];
        qt_matmul(b->y, b->x, b->W, b->N, b->accumulate);
    }
}
