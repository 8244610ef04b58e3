/* safetensors.c: the safetensors reader and writer (see safetensors.h). The reader trusts nothing
 * in the file: every length and offset is checked against the buffer before it is used, and every
 * message names the file and the tensor. Data is read with memcpy or byte loads (any alignment). */
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "io/safetensors.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (F32 data is copied as is)"
#endif

static const char *const dtype_names[ST_NUM_DTYPES] = {"F64", "F32", "F16",  "BF16",    "I64",    "I32",
                                                       "I16", "I8",  "U8",   "BOOL",    "F8_E4M3", "F8_E5M2"};
static const unsigned char dtype_sizes[ST_NUM_DTYPES] = {8, 4, 2, 2, 8, 4, 2, 1, 1, 1, 1, 1};

const char *st_dtype_name(st_dtype dt) { return (unsigned)dt < ST_NUM_DTYPES ? dtype_names[dt] : "?"; }
size_t st_dtype_size(st_dtype dt) { return (unsigned)dt < ST_NUM_DTYPES ? dtype_sizes[dt] : 0; }

void st_format_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    if (!cap) return;
    size_t k = 0;
    buf[0] = 0;
    k += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* ---- element conversions ------------------------------------------------------------------ */
static float bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint32_t f32_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

float st_bf16_to_f32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

uint16_t st_f32_to_bf16(float f) {
    uint32_t u = f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN, sign kept */
    u += 0x7fffu + ((u >> 16) & 1u);                                              /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (mant << 13)); /* inf, NaN (payload kept) */
    if (exp != 0) return bits_to_f32(sign | ((exp + 112u) << 23) | (mant << 13));
    if (mant == 0) return bits_to_f32(sign); /* signed zero */
    uint32_t e = 113;                        /* subnormal: mant * 2^-24, normalise */
    while (!(mant & 0x400u)) {
        mant <<= 1;
        e--;
    }
    return bits_to_f32(sign | (e << 23) | ((mant & 0x3ffu) << 13));
}

uint16_t st_f32_to_f16(float f) {
    uint32_t u = f32_to_bits(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf (and inf) */
    if (a < 0x38800000u) {                                   /* below 2^-14: subnormal half or zero */
        if (a < 0x33000000u) return (uint16_t)sign;          /* below 2^-25: rounds to zero */
        uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* value = m * 2^(e-150); half subnormal unit 2^-24 */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1u); /* round to nearest even at bit 13 */
    return (uint16_t)(sign | (((r >> 13) - (112u << 10)) & 0x7fffu));
}

/* ---- reader ------------------------------------------------------------------------------- */
struct st_file {
    char *path;
    dsc_mapped_file map; /* when opened from a path */
    const unsigned char *buf;
    size_t size;
    const unsigned char *dstart; /* start of the data section */
    size_t dsize;
    json_t *root;                /* owns the tensor names and the metadata strings */
    json_t *meta;
    st_tensor *t;
    int n;
    int *by_name;                /* indices into t sorted by name */
};

/* A name fit for a one-line message: control bytes replaced, long names cut. */
static const char *show(const char *s, char *buf, size_t cap) {
    size_t k = 0;
    for (; s[k] && k + 4 < cap; k++) buf[k] = ((unsigned char)s[k] < 0x20 || s[k] == 0x7f) ? '?' : s[k];
    if (s[k]) {
        memcpy(buf + (k >= 3 ? k - 3 : 0), "...", 3);
    }
    buf[k] = 0;
    return buf;
}

static int fail(const st_file *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(const st_file *st, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dsc_set_error("%s: %s", st->path, msg);
}

static int tfail(const st_file *st, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int tfail(const st_file *st, const char *name, const char *fmt, ...) {
    char msg[640], nb[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dsc_set_error("%s: tensor '%s': %s", st->path, show(name, nb, sizeof nb), msg);
}

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static int parse_tensor(st_file *st, const char *name, json_t *v, st_tensor *t) {
    memset(t, 0, sizeof *t);
    t->name = name;
    if (!json_is_object(v))
        return tfail(st, name, "expected an object with dtype, shape and data_offsets, found %s", json_kind(v));

    json_t *dt = json_object_get(v, "dtype");
    if (!dt) return tfail(st, name, "'dtype' is missing");
    if (!json_is_string(dt)) return tfail(st, name, "'dtype' must be a string, found %s", json_kind(dt));
    const char *ds = json_string_value(dt);
    int k = 0;
    while (k < ST_NUM_DTYPES && strcmp(ds, dtype_names[k]) != 0) k++;
    if (k == ST_NUM_DTYPES) {
        char nb[40];
        return tfail(st, name, "unknown dtype '%s' (expected F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, "
                     "F8_E4M3 or F8_E5M2)", show(ds, nb, sizeof nb));
    }
    t->dtype = (st_dtype)k;

    json_t *sh = json_object_get(v, "shape");
    if (!sh) return tfail(st, name, "'shape' is missing");
    if (!json_is_array(sh)) return tfail(st, name, "'shape' must be an array of integers, found %s", json_kind(sh));
    size_t nd = json_array_size(sh);
    if (nd > ST_MAX_DIMS) return tfail(st, name, "shape has %zu dimensions (at most %d supported)", nd, ST_MAX_DIMS);
    t->ndim = (int)nd;
    for (size_t i = 0; i < nd; i++) {
        json_t *e = json_array_get(sh, i);
        if (!json_is_integer(e))
            return tfail(st, name, "shape[%zu] must be a non-negative integer, found %s", i, json_kind(e));
        json_int_t x = json_integer_value(e);
        if (x < 0) return tfail(st, name, "shape[%zu] is %lld (expected a non-negative integer)", i, (long long)x);
        t->shape[i] = (int64_t)x;
    }
    size_t prod = 1; /* product of the non-zero dims, so the overflow test does not depend on order */
    bool zero = false;
    for (size_t i = 0; i < nd; i++) {
        if (t->shape[i] == 0) zero = true;
        else if (__builtin_mul_overflow(prod, (size_t)t->shape[i], &prod)) {
            char sb[200];
            st_format_shape(sb, sizeof sb, t->ndim, t->shape);
            return tfail(st, name, "shape %s has too many elements (the product overflows)", sb);
        }
    }
    t->numel = zero ? 0 : prod;
    size_t need;
    if (__builtin_mul_overflow(t->numel, (size_t)dtype_sizes[k], &need))
        return tfail(st, name, "%zu elements of %s overflow the byte count", t->numel, ds);

    json_t *of = json_object_get(v, "data_offsets");
    if (!of) return tfail(st, name, "'data_offsets' is missing");
    if (!json_is_array(of) || json_array_size(of) != 2)
        return tfail(st, name, "'data_offsets' must be an array of two integers, found %s%s", json_kind(of),
                     json_is_array(of) ? " of another length" : "");
    json_int_t be[2];
    for (int i = 0; i < 2; i++) {
        json_t *e = json_array_get(of, (size_t)i);
        if (!json_is_integer(e))
            return tfail(st, name, "data_offsets[%d] must be a non-negative integer, found %s", i, json_kind(e));
        be[i] = json_integer_value(e);
        if (be[i] < 0)
            return tfail(st, name, "data_offsets[%d] is %lld (expected a non-negative integer)", i, (long long)be[i]);
    }
    unsigned long long b = (unsigned long long)be[0], e = (unsigned long long)be[1];
    if (b > e) return tfail(st, name, "data_offsets [%llu, %llu) are reversed (begin after end)", b, e);
    if (e > st->dsize)
        return tfail(st, name, "data_offsets [%llu, %llu) end past the data section (%zu bytes)", b, e, st->dsize);
    if (e - b != need) {
        char sb[200];
        st_format_shape(sb, sizeof sb, t->ndim, t->shape);
        return tfail(st, name, "data_offsets [%llu, %llu) hold %llu bytes, but %s %s needs %zu (%zu x %zu)", b, e,
                     e - b, ds, sb, need, t->numel, (size_t)dtype_sizes[k]);
    }
    t->data = st->dstart + b;
    t->nbytes = need;
    return DSC_OK;
}

static int parse_metadata(st_file *st, json_t *v) {
    if (!json_is_object(v)) return fail(st, "__metadata__ must be an object of strings, found %s", json_kind(v));
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        char nb[120];
        if (!json_is_string(val))
            return fail(st, "__metadata__ '%s' must be a string, found %s", show(key, nb, sizeof nb), json_kind(val));
    }
    st->meta = v;
    return DSC_OK;
}

static int cmp_offset(const void *pa, const void *pb) {
    const st_tensor *a = pa, *b = pb;
    if (a->data != b->data) return (const unsigned char *)a->data < (const unsigned char *)b->data ? -1 : 1;
    if (a->nbytes != b->nbytes) return a->nbytes < b->nbytes ? -1 : 1;
    return strcmp(a->name, b->name);
}

static _Thread_local const st_tensor *tl_sort_base; /* qsort has no context argument */
static int cmp_name_idx(const void *pa, const void *pb) {
    return strcmp(tl_sort_base[*(const int *)pa].name, tl_sort_base[*(const int *)pb].name);
}

static int parse(st_file *st) {
    if (st->size == 0) return fail(st, "file is empty (expected an 8-byte header length, a JSON header and data)");
    if (st->size < 8) return fail(st, "file is %zu bytes, too short for the 8-byte header length", st->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | st->buf[i];
    if (hlen < 2) return fail(st, "header length %llu is too small (expected at least 2)", (unsigned long long)hlen);
    if (hlen > ST_MAX_HEADER)
        return fail(st, "header length %llu exceeds the limit of %u bytes", (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > st->size - 8)
        return fail(st, "header length %llu is past the end of the file (%zu bytes follow the 8-byte length)",
                    (unsigned long long)hlen, st->size - 8);
    st->dstart = st->buf + 8 + hlen;
    st->dsize = st->size - 8 - (size_t)hlen;

    json_error_t jerr;
    st->root = json_loadb((const char *)st->buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!st->root)
        return fail(st, "header %s (line %d column %d: %s)",
                    strstr(jerr.text, "duplicate") ? "names a tensor twice" : "is not valid JSON", jerr.line,
                    jerr.column, jerr.text);
    if (!json_is_object(st->root)) return fail(st, "header must be a JSON object, found %s", json_kind(st->root));

    size_t cap = json_object_size(st->root);
    st->t = calloc(cap ? cap : 1, sizeof *st->t);
    st->by_name = calloc(cap ? cap : 1, sizeof *st->by_name);
    if (!st->t || !st->by_name) return fail(st, "out of memory for %zu tensor entries", cap);
    const char *key;
    json_t *val;
    json_object_foreach(st->root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if (parse_metadata(st, val)) return DSC_ERR;
            continue;
        }
        if (parse_tensor(st, key, val, &st->t[st->n])) return DSC_ERR;
        st->n++;
    }

    qsort(st->t, (size_t)st->n, sizeof *st->t, cmp_offset);
    const st_tensor *last = NULL; /* the non-empty tensor reaching furthest so far */
    for (int i = 0; i < st->n; i++) {
        const st_tensor *t = &st->t[i];
        if (t->nbytes == 0) continue;
        if (last && (const unsigned char *)t->data < (const unsigned char *)last->data + last->nbytes) {
            char na[160], nb[160];
            size_t b1 = (size_t)((const unsigned char *)last->data - st->dstart), b2 = (size_t)((const unsigned char *)t->data - st->dstart);
            return fail(st, "tensors '%s' [%zu, %zu) and '%s' [%zu, %zu) overlap", show(last->name, na, sizeof na), b1,
                        b1 + last->nbytes, show(t->name, nb, sizeof nb), b2, b2 + t->nbytes);
        }
        last = t;
    }

    for (int i = 0; i < st->n; i++) st->by_name[i] = i;
    tl_sort_base = st->t;
    qsort(st->by_name, (size_t)st->n, sizeof *st->by_name, cmp_name_idx);
    for (int i = 1; i < st->n; i++)
        if (strcmp(st->t[st->by_name[i - 1]].name, st->t[st->by_name[i]].name) == 0) {
            char nb[160];
            return fail(st, "tensor '%s' appears twice", show(st->t[st->by_name[i]].name, nb, sizeof nb));
        }
    return DSC_OK;
}

static int open_common(st_file *st, st_file **out) {
    if (parse(st)) {
        st_close(st);
        return DSC_ERR;
    }
    *out = st;
    return DSC_OK;
}

static st_file *new_file(const char *name) {
    st_file *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->path = strdup(name ? name : "(memory)");
    if (!st->path) {
        free(st);
        return NULL;
    }
    return st;
}

dsc_status st_open(const char *path, st_file **out) {
    *out = NULL;
    st_file *st = new_file(path);
    if (!st) return dsc_set_error("%s: out of memory", path);
    if (dsc_map_file(path, &st->map)) {
        st_close(st);
        return DSC_ERR;
    }
    st->buf = st->map.data;
    st->size = st->map.size;
    return open_common(st, out);
}

dsc_status st_open_memory(const void *data, size_t size, const char *name, st_file **out) {
    *out = NULL;
    st_file *st = new_file(name);
    if (!st) return dsc_set_error("%s: out of memory", name ? name : "(memory)");
    st->buf = data;
    st->size = data ? size : 0;
    return open_common(st, out);
}

void st_close(st_file *st) {
    if (!st) return;
    dsc_unmap_file(&st->map);
    if (st->root) json_decref(st->root);
    free(st->t);
    free(st->by_name);
    free(st->path);
    free(st);
}

const char *st_path(const st_file *st) { return st->path; }
int st_count(const st_file *st) { return st->n; }
const st_tensor *st_tensor_at(const st_file *st, int i) { return i >= 0 && i < st->n ? &st->t[i] : NULL; }

const st_tensor *st_find(const st_file *st, const char *name) {
    int lo = 0, hi = st->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(st->t[st->by_name[mid]].name, name);
        if (c == 0) return &st->t[st->by_name[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

const char *st_metadata(const st_file *st, const char *key) {
    return st->meta ? json_string_value(json_object_get(st->meta, key)) : NULL;
}

dsc_status st_tensor_to_f32(const st_file *st, const st_tensor *t, float *dst, size_t n) {
    if (t->dtype != ST_F32 && t->dtype != ST_BF16 && t->dtype != ST_F16)
        return tfail(st, t->name, "dtype %s cannot be read as floats (expected F32, BF16 or F16)",
                     st_dtype_name(t->dtype));
    if (n != t->numel) return tfail(st, t->name, "holds %zu values, the caller expected %zu", t->numel, n);
    if (n == 0) return DSC_OK;
    const unsigned char *p = t->data;
    if (t->dtype == ST_F32) {
        memcpy(dst, p, n * 4);
    } else if (t->dtype == ST_BF16) {
#pragma omp parallel for if (n > (1u << 20)) schedule(static)
        for (size_t i = 0; i < n; i++) dst[i] = st_bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
    } else {
#pragma omp parallel for if (n > (1u << 20)) schedule(static)
        for (size_t i = 0; i < n; i++) dst[i] = st_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
    }
    return DSC_OK;
}

dsc_status st_read_f32(const st_file *st, const char *name, float *dst, size_t n) {
    const st_tensor *t = st_find(st, name);
    if (!t) {
        char nb[160];
        return fail(st, "tensor '%s' is missing", show(name, nb, sizeof nb));
    }
    return st_tensor_to_f32(st, t, dst, n);
}

/* ---- writer ------------------------------------------------------------------------------- */
typedef struct {
    const void *data;
    size_t nbytes;
} wentry;

struct st_writer {
    json_t *header; /* the tensor entries in insertion order */
    json_t *meta;   /* __metadata__, written first when not empty */
    wentry *e;
    int n, cap;
    size_t off;
};

dsc_status st_writer_create(st_writer **out) {
    *out = NULL;
    st_writer *w = calloc(1, sizeof *w);
    if (!w) return dsc_set_error("safetensors writer: out of memory");
    w->header = json_object();
    w->meta = json_object();
    if (!w->header || !w->meta) {
        st_writer_free(w);
        return dsc_set_error("safetensors writer: out of memory");
    }
    *out = w;
    return DSC_OK;
}

void st_writer_free(st_writer *w) {
    if (!w) return;
    if (w->meta) json_decref(w->meta);
    if (w->header) json_decref(w->header);
    free(w->e);
    free(w);
}

dsc_status st_writer_add(st_writer *w, const char *name, st_dtype dt, int ndim, const int64_t *shape,
                         const void *data) {
    char nb[160];
    if (!name) return dsc_set_error("safetensors writer: tensor without a name");
    show(name, nb, sizeof nb);
    if (strcmp(name, "__metadata__") == 0)
        return dsc_set_error("safetensors writer: '__metadata__' is reserved and cannot name a tensor");
    if (json_object_get(w->header, name)) return dsc_set_error("safetensors writer: tensor '%s' added twice", nb);
    if ((unsigned)dt >= ST_NUM_DTYPES) return dsc_set_error("safetensors writer: tensor '%s': unknown dtype %d", nb, (int)dt);
    if (ndim < 0 || ndim > ST_MAX_DIMS)
        return dsc_set_error("safetensors writer: tensor '%s': %d dimensions (expected 0 to %d)", nb, ndim, ST_MAX_DIMS);
    size_t numel = 1, nbytes;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return dsc_set_error("safetensors writer: tensor '%s': shape[%d] is %lld", nb, i, (long long)shape[i]);
        if (__builtin_mul_overflow(numel, (size_t)shape[i], &numel))
            return dsc_set_error("safetensors writer: tensor '%s': too many elements", nb);
    }
    if (__builtin_mul_overflow(numel, st_dtype_size(dt), &nbytes) || w->off + nbytes < w->off ||
        w->off + nbytes > (size_t)INT64_MAX)
        return dsc_set_error("safetensors writer: tensor '%s': too many bytes", nb);
    if (!data && nbytes) return dsc_set_error("safetensors writer: tensor '%s': no data", nb);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        wentry *e = realloc(w->e, (size_t)cap * sizeof *e);
        if (!e) return dsc_set_error("safetensors writer: out of memory");
        w->e = e;
        w->cap = cap;
    }
    json_t *js = json_array(), *jo = json_array(), *ent = json_object();
    bool ok = js && jo && ent;
    for (int i = 0; ok && i < ndim; i++) ok = json_array_append_new(js, json_integer((json_int_t)shape[i])) == 0;
    ok = ok && json_array_append_new(jo, json_integer((json_int_t)w->off)) == 0 &&
         json_array_append_new(jo, json_integer((json_int_t)(w->off + nbytes))) == 0;
    ok = ok && json_object_set_new(ent, "dtype", json_string(st_dtype_name(dt))) == 0;
    if (ok) {
        ok = json_object_set_new(ent, "shape", js) == 0;
        js = NULL;
    }
    if (ok) {
        ok = json_object_set_new(ent, "data_offsets", jo) == 0;
        jo = NULL;
    }
    if (ok) {
        ok = json_object_set_new(w->header, name, ent) == 0; /* fails on names that are not UTF-8 */
        ent = NULL;
    }
    json_decref(js);
    json_decref(jo);
    json_decref(ent);
    if (!ok) return dsc_set_error("safetensors writer: tensor '%s': cannot add (name not UTF-8, or out of memory)", nb);
    w->e[w->n++] = (wentry){data, nbytes};
    w->off += nbytes;
    return DSC_OK;
}

dsc_status st_writer_set_metadata(st_writer *w, const char *key, const char *value) {
    if (!key || !value || json_object_set_new(w->meta, key, json_string(value)) != 0)
        return dsc_set_error("safetensors writer: cannot set metadata '%s' (not UTF-8, or out of memory)",
                             key ? key : "(null)");
    return DSC_OK;
}

dsc_status st_writer_write(st_writer *w, const char *path) {
    json_t *top = json_object();
    bool ok = top != NULL;
    if (ok && json_object_size(w->meta)) ok = json_object_set(top, "__metadata__", w->meta) == 0;
    if (ok) ok = json_object_update(top, w->header) == 0;
    char *text = ok ? json_dumps(top, JSON_COMPACT) : NULL;
    json_decref(top);
    if (!text) return dsc_set_error("%s: cannot format the safetensors header (out of memory)", path);
    size_t len = strlen(text), padded = (len + 7) & ~(size_t)7;
    if (padded > ST_MAX_HEADER) {
        free(text);
        return dsc_set_error("%s: safetensors header of %zu bytes exceeds the limit of %u", path, padded, ST_MAX_HEADER);
    }
    unsigned char lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    static const char spaces[8] = "        ";
    dsc_atomic_file af;
    int rc = dsc_atomic_open(&af, path);
    if (!rc) rc = dsc_atomic_write(&af, lenbuf, 8);
    if (!rc) rc = dsc_atomic_write(&af, text, len);
    if (!rc) rc = dsc_atomic_write(&af, spaces, padded - len);
    free(text);
    for (int i = 0; !rc && i < w->n; i++) rc = dsc_atomic_write(&af, w->e[i].data, w->e[i].nbytes);
    if (!rc) rc = dsc_atomic_commit(&af);
    return rc ? DSC_ERR : DSC_OK;
}
