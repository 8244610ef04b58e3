/* gguf.c: the GGUF container format: a validating reader over a mapped file or a buffer, and a
 * writer (see gguf.h). Only the layout lives here; what the tensors and keys mean for a DeepSeek
 * model is in gguf_deepseek.c. Layout (version 3, little-endian):
 *   "GGUF" u32 version, u64 n_tensors, u64 n_kv
 *   n_kv x   (string key, u32 value type, value)        string = u64 length + bytes
 *                                                       array  = u32 elem type, u64 n, n values
 *   n_tensors x (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset)
 *   padding to general.alignment (default 32), then the data section; offsets are relative to it. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "io/gguf.h"

/* ---- types ----------------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int block;      /* values per block; 0 = not a ggml type */
    int size;       /* bytes per block */
} type_info;

/* ggml's type ids (ggml.h enum ggml_type); gaps are ids ggml removed. */
static const type_info types[] = {
    [0] = {"f32", 1, 4},       [1] = {"f16", 1, 2},        [2] = {"q4_0", 32, 18},     [3] = {"q4_1", 32, 20},
    [6] = {"q5_0", 32, 22},    [7] = {"q5_1", 32, 24},     [8] = {"q8_0", 32, 34},     [9] = {"q8_1", 32, 36},
    [10] = {"q2_K", 256, 84},  [11] = {"q3_K", 256, 110},  [12] = {"q4_K", 256, 144}, [13] = {"q5_K", 256, 176},
    [14] = {"q6_K", 256, 210}, [15] = {"q8_K", 256, 292},  [16] = {"iq2_xxs", 256, 66}, [17] = {"iq2_xs", 256, 74},
    [18] = {"iq3_xxs", 256, 98}, [19] = {"iq1_s", 256, 50}, [20] = {"iq4_nl", 32, 18}, [21] = {"iq3_s", 256, 110},
    [22] = {"iq2_s", 256, 82}, [23] = {"iq4_xs", 256, 136}, [24] = {"i8", 1, 1},       [25] = {"i16", 1, 2},
    [26] = {"i32", 1, 4},      [27] = {"i64", 1, 8},       [28] = {"f64", 1, 8},       [29] = {"iq1_m", 256, 56},
    [30] = {"bf16", 1, 2},     [34] = {"tq1_0", 256, 54},  [35] = {"tq2_0", 256, 66},  [39] = {"mxfp4", 32, 17},
    [40] = {"nvfp4", 64, 36},
};
#define N_TYPES (sizeof types / sizeof types[0])

const char *gguf_type_name(uint32_t type) { return type < N_TYPES && types[type].block ? types[type].name : NULL; }

size_t gguf_row_bytes(uint32_t type, int64_t n) {
    if (type >= N_TYPES || !types[type].block || n <= 0 || n % types[type].block) return 0;
    uint64_t blocks = (uint64_t)n / (uint64_t)types[type].block;
    if (blocks > SIZE_MAX / (uint64_t)types[type].size) return 0;
    return (size_t)(blocks * (uint64_t)types[type].size);
}

int gguf_type_to_qt(uint32_t type) {
    switch (type) {
    case GGUF_T_F32: return QT_F32;
    case GGUF_T_F16: return QT_F16;
    case GGUF_T_BF16: return QT_BF16;
    case GGUF_T_Q8_0: return QT_Q8_0;
    case GGUF_T_Q4_0: return QT_Q4_0;
    default: return -1;
    }
}

uint32_t gguf_type_from_qt(qt_type t) {
    switch (t) {
    case QT_F16: return GGUF_T_F16;
    case QT_BF16: return GGUF_T_BF16;
    case QT_Q8_0: return GGUF_T_Q8_0;
    case QT_Q4_0: return GGUF_T_Q4_0;
    default: return GGUF_T_F32;
    }
}

static const char *const vnames[GGUF_V_COUNT] = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                                                 "bool", "string", "array", "uint64", "int64", "float64"};
static const int vsize[GGUF_V_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *gguf_vtype_name(gguf_vtype t) { return (unsigned)t < GGUF_V_COUNT ? vnames[t] : "?"; }

/* ---- reader ---------------------------------------------------------------------------------- */

struct gguf_file {
    char *name;
    dsc_mapped_file map;
    bool mapped;
    const unsigned char *base;
    size_t size;
    uint32_t version;
    size_t alignment;
    size_t data_start;
    gguf_kv *kv;
    int n_kv;
    gguf_tensor *t;
    int n_t;
};

typedef struct {
    gguf_file *f;
    size_t pos;
} cursor;

static uint32_t ld32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t ld64(const void *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static size_t left(const cursor *c) { return c->f->size - c->pos; }

/* Reads n bytes' worth of a fixed-size field; what: for the message. */
/* Checks that n more bytes are there; ctx and field name what is read, for the message. */
static int need(cursor *c, size_t n, const char *ctx, const char *field) {
    if (left(c) < n)
        return dsc_set_error("%s: truncated: %s%s%s at byte %zu needs %zu bytes, the file has %zu left", c->f->name, ctx,
                             *ctx ? ": " : "", field, c->pos, n, left(c));
    return DSC_OK;
}

static int rd32(cursor *c, uint32_t *v, const char *ctx, const char *field) {
    if (need(c, 4, ctx, field)) return DSC_ERR;
    *v = ld32(c->f->base + c->pos);
    c->pos += 4;
    return DSC_OK;
}

static int rd64(cursor *c, uint64_t *v, const char *ctx, const char *field) {
    if (need(c, 8, ctx, field)) return DSC_ERR;
    *v = ld64(c->f->base + c->pos);
    c->pos += 8;
    return DSC_OK;
}

/* A string: its bytes stay in the file; *s points at them. */
static int rdstr(cursor *c, const unsigned char **s, uint64_t *len, const char *what) {
    if (rd64(c, len, what, "string length")) return DSC_ERR;
    if (*len > left(c))
        return dsc_set_error("%s: %s: string length %llu runs past the end of the file (%zu bytes left)", c->f->name,
                             what, (unsigned long long)*len, left(c));
    *s = c->f->base + c->pos;
    c->pos += (size_t)*len;
    return DSC_OK;
}

/* A NUL-terminated copy of a key or a name (embedded NUL bytes are refused). */
static char *cstr(gguf_file *f, const unsigned char *s, uint64_t len, const char *what) {
    if (memchr(s, 0, (size_t)len)) {
        dsc_set_error("%s: %s contains a NUL byte", f->name, what);
        return NULL;
    }
    char *r = malloc((size_t)len + 1);
    if (!r) {
        dsc_set_error("out of memory");
        return NULL;
    }
    memcpy(r, s, (size_t)len);
    r[len] = '\0';
    return r;
}

static int cmp_kv_key(const void *a, const void *b) {
    return strcmp((*(const gguf_kv *const *)a)->key, (*(const gguf_kv *const *)b)->key);
}
static int cmp_t_name(const void *a, const void *b) {
    return strcmp((*(const gguf_tensor *const *)a)->name, (*(const gguf_tensor *const *)b)->name);
}
static int cmp_t_off(const void *a, const void *b) {
    uint64_t x = (*(const gguf_tensor *const *)a)->offset, y = (*(const gguf_tensor *const *)b)->offset;
    return x < y ? -1 : x > y;
}

/* One value of type t (not an array) at the cursor: checks it lies in the file and skips it. */
static int skip_value(cursor *c, gguf_vtype t, const char *key) {
    if (t == GGUF_V_STRING) {
        const unsigned char *s;
        uint64_t len;
        char what[GGUF_MAX_NAME + 300];
        snprintf(what, sizeof what, "key '%.256s'", key);
        return rdstr(c, &s, &len, what);
    }
    char ctx[GGUF_MAX_NAME + 300];
    snprintf(ctx, sizeof ctx, "key '%.256s'", key);
    if (need(c, (size_t)vsize[t], ctx, vnames[t])) return DSC_ERR;
    c->pos += (size_t)vsize[t];
    return DSC_OK;
}

static int read_kv(cursor *c, gguf_kv *kv, uint64_t index) {
    gguf_file *f = c->f;
    const unsigned char *ks;
    uint64_t klen;
    char what[64];
    snprintf(what, sizeof what, "key/value #%llu", (unsigned long long)index);
    if (rdstr(c, &ks, &klen, what)) return DSC_ERR;
    if (!(kv->key = cstr(f, ks, klen, what))) return DSC_ERR;
    char ctx[300];
    snprintf(ctx, sizeof ctx, "key '%.256s'", kv->key);
    uint32_t type;
    if (rd32(c, &type, ctx, "value type")) return DSC_ERR;
    if (type >= GGUF_V_COUNT)
        return dsc_set_error("%s: key '%.256s': unknown value type %u", f->name, kv->key, type);
    kv->type = kv->elem = (gguf_vtype)type;
    kv->n = 1;
    if (type != GGUF_V_ARRAY) {
        kv->data = f->base + c->pos;
        return skip_value(c, kv->elem, kv->key);
    }
    uint32_t elem;
    uint64_t n;
    if (rd32(c, &elem, ctx, "array element type") || rd64(c, &n, ctx, "array length")) return DSC_ERR;
    if (elem >= GGUF_V_COUNT)
        return dsc_set_error("%s: key '%.256s': unknown array element type %u", f->name, kv->key, elem);
    if (elem == GGUF_V_ARRAY)
        return dsc_set_error("%s: key '%.256s': arrays of arrays are not supported", f->name, kv->key);
    kv->elem = (gguf_vtype)elem;
    kv->n = n;
    kv->data = f->base + c->pos;
    if (elem != GGUF_V_STRING) {
        if (n > left(c) / (size_t)vsize[elem])
            return dsc_set_error("%s: key '%.256s': array of %llu %s values runs past the end of the file", f->name,
                                 kv->key, (unsigned long long)n, vnames[elem]);
        c->pos += (size_t)n * (size_t)vsize[elem];
        return DSC_OK;
    }
    if (n > left(c) / 8)
        return dsc_set_error("%s: key '%.256s': array of %llu strings runs past the end of the file", f->name, kv->key,
                             (unsigned long long)n);
    uint64_t *off = malloc(sizeof(uint64_t) * (size_t)(n ? n : 1));
    if (!off) return dsc_set_error("out of memory");
    kv->str_off = off;
    size_t start = c->pos;
    for (uint64_t i = 0; i < n; i++) {
        off[i] = c->pos - start;
        const unsigned char *s;
        uint64_t len;
        char w[GGUF_MAX_NAME + 300];
        snprintf(w, sizeof w, "key '%.256s' element %llu", kv->key, (unsigned long long)i);
        if (rdstr(c, &s, &len, w)) return DSC_ERR;
    }
    return DSC_OK;
}

static int read_tensor_info(cursor *c, gguf_tensor *t, uint64_t index) {
    gguf_file *f = c->f;
    const unsigned char *ns;
    uint64_t nlen;
    char what[64];
    snprintf(what, sizeof what, "tensor info #%llu", (unsigned long long)index);
    if (rdstr(c, &ns, &nlen, what)) return DSC_ERR;
    if (nlen >= GGUF_MAX_NAME)
        return dsc_set_error("%s: tensor info #%llu: name of %llu bytes is too long (ggml allows %d)", f->name,
                             (unsigned long long)index, (unsigned long long)nlen, GGUF_MAX_NAME - 1);
    if (!(t->name = cstr(f, ns, nlen, what))) return DSC_ERR;
    char ctx[GGUF_MAX_NAME + 16];
    snprintf(ctx, sizeof ctx, "tensor '%s'", t->name);
    uint32_t nd, type;
    uint64_t off;
    if (rd32(c, &nd, ctx, "n_dims")) return DSC_ERR;
    if (nd < 1 || nd > GGUF_MAX_DIMS)
        return dsc_set_error("%s: tensor '%s': %u dimensions (expected 1..%d)", f->name, t->name, nd, GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    for (int i = 0; i < GGUF_MAX_DIMS; i++) t->ne[i] = 1;
    for (uint32_t i = 0; i < nd; i++) {
        uint64_t ne;
        if (rd64(c, &ne, ctx, "dimension")) return DSC_ERR;
        if (ne == 0 || ne > (uint64_t)INT64_MAX)
            return dsc_set_error("%s: tensor '%s': dimension %u is %llu (expected 1..2^63-1)", f->name, t->name, i,
                                 (unsigned long long)ne);
        t->ne[i] = (int64_t)ne;
    }
    if (rd32(c, &type, ctx, "type") || rd64(c, &off, ctx, "offset")) return DSC_ERR;
    t->type = type;
    t->offset = off;
    if (!gguf_type_name(type)) return dsc_set_error("%s: tensor '%s': unknown ggml type %u", f->name, t->name, type);
    size_t row = gguf_row_bytes(type, t->ne[0]);
    if (!row)
        return dsc_set_error("%s: tensor '%s': a row of %lld values is not a whole number of %s blocks (%d)", f->name,
                             t->name, (long long)t->ne[0], types[type].name, types[type].block);
    int64_t rows = 1;
    for (int i = 1; i < GGUF_MAX_DIMS; i++)
        if (__builtin_mul_overflow(rows, t->ne[i], &rows))
            return dsc_set_error("%s: tensor '%s': its element count overflows", f->name, t->name);
    size_t nbytes;
    int64_t elems;
    if (__builtin_mul_overflow(rows, t->ne[0], &elems) || __builtin_mul_overflow(row, (size_t)rows, &nbytes))
        return dsc_set_error("%s: tensor '%s': its size overflows", f->name, t->name);
    t->nbytes = nbytes;
    return DSC_OK;
}

static int parse(gguf_file *f) {
    cursor c = {f, 0};
    if (f->size < 4 || memcmp(f->base, "GGUF", 4)) {
        char m[20] = "";
        for (size_t i = 0; i < 4 && i < f->size; i++) {
            unsigned char b = f->base[i];
            size_t l = strlen(m);
            snprintf(m + l, sizeof m - l, b >= 32 && b < 127 ? "%c" : "\\x%02x", b);
        }
        return dsc_set_error("%s: not a GGUF file (starts with '%s', expected 'GGUF')", f->name, m);
    }
    c.pos = 4;
    uint64_t n_t, n_kv;
    if (rd32(&c, &f->version, "", "the version")) return DSC_ERR;
    if (f->version != 2 && f->version != 3) {
        const char *hint = f->version == 1 ? " (GGUF v1 has 32-bit counts)"
                           : (f->version & 0xffff) == 0 ? " (a big-endian file?)" : "";
        return dsc_set_error("%s: GGUF version %u is not supported (expected 3, or 2)%s", f->name, f->version, hint);
    }
    if (rd64(&c, &n_t, "", "the tensor count") || rd64(&c, &n_kv, "", "the key/value count")) return DSC_ERR;
    /* a key/value needs at least 13 bytes, a tensor info 32 */
    if (n_kv > left(&c) / 13)
        return dsc_set_error("%s: key/value count %llu is impossible for a file of %zu bytes", f->name,
                             (unsigned long long)n_kv, f->size);
    if (n_t > left(&c) / 32 || n_t > INT_MAX)
        return dsc_set_error("%s: tensor count %llu is impossible for a file of %zu bytes", f->name,
                             (unsigned long long)n_t, f->size);
    f->kv = calloc((size_t)(n_kv ? n_kv : 1), sizeof(gguf_kv));
    f->t = calloc((size_t)(n_t ? n_t : 1), sizeof(gguf_tensor));
    if (!f->kv || !f->t) return dsc_set_error("out of memory");
    for (uint64_t i = 0; i < n_kv; i++) {
        f->n_kv = (int)i + 1;
        if (read_kv(&c, &f->kv[i], i)) return DSC_ERR;
    }
    f->n_kv = (int)n_kv;
    /* duplicate keys */
    const void **order = malloc(sizeof(void *) * (size_t)((n_kv > n_t ? n_kv : n_t) + 1));
    if (!order) return dsc_set_error("out of memory");
    for (int i = 0; i < f->n_kv; i++) order[i] = &f->kv[i];
    qsort(order, (size_t)f->n_kv, sizeof *order, cmp_kv_key);
    for (int i = 1; i < f->n_kv; i++)
        if (!strcmp(((const gguf_kv *)order[i])->key, ((const gguf_kv *)order[i - 1])->key)) {
            dsc_set_error("%s: duplicate key '%.256s'", f->name, ((const gguf_kv *)order[i])->key);
            free(order);
            return DSC_ERR;
        }
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *al = gguf_kv_find(f, "general.alignment");
    if (al) {
        uint32_t a = al->type == GGUF_V_UINT32 ? ld32(al->data) : 0;
        if (al->type != GGUF_V_UINT32 || a == 0 || (a & (a - 1))) {
            free(order);
            if (al->type != GGUF_V_UINT32)
                return dsc_set_error("%s: key 'general.alignment': expected a uint32, found a %s", f->name,
                                     vnames[al->type]);
            return dsc_set_error("%s: key 'general.alignment': expected a power of two, found %u", f->name, a);
        }
        f->alignment = a;
    }
    for (uint64_t i = 0; i < n_t; i++) {
        f->n_t = (int)i + 1;
        if (read_tensor_info(&c, &f->t[i], i)) {
            free(order);
            return DSC_ERR;
        }
    }
    f->n_t = (int)n_t;
    int rc = DSC_OK;
    for (int i = 0; i < f->n_t; i++) order[i] = &f->t[i];
    qsort(order, (size_t)f->n_t, sizeof *order, cmp_t_name);
    for (int i = 1; i < f->n_t && !rc; i++)
        if (!strcmp(((const gguf_tensor *)order[i])->name, ((const gguf_tensor *)order[i - 1])->name))
            rc = dsc_set_error("%s: duplicate tensor name '%s'", f->name, ((const gguf_tensor *)order[i])->name);
    if (!rc && f->n_t > 0) {
        /* the data section starts at the next multiple of the alignment */
        size_t pad = (f->alignment - c.pos % f->alignment) % f->alignment;
        if (pad > left(&c))
            rc = dsc_set_error("%s: truncated: the data section (at byte %zu) starts past the end of the file", f->name,
                               c.pos + pad);
        f->data_start = c.pos + pad;
    }
    size_t data_size = f->size - (f->data_start ? f->data_start : f->size);
    for (int i = 0; i < f->n_t && !rc; i++) {
        gguf_tensor *t = &f->t[i];
        if (t->offset % f->alignment)
            rc = dsc_set_error("%s: tensor '%s': offset %llu is not a multiple of the alignment %zu", f->name, t->name,
                               (unsigned long long)t->offset, f->alignment);
        else if (t->offset > data_size || t->nbytes > data_size - t->offset)
            rc = dsc_set_error("%s: tensor '%s': data [%llu, %llu) runs past the end of the data section (%zu bytes)",
                               f->name, t->name, (unsigned long long)t->offset,
                               (unsigned long long)t->offset + (unsigned long long)t->nbytes, data_size);
        else
            t->data = f->base + f->data_start + t->offset;
    }
    if (!rc) {
        qsort(order, (size_t)f->n_t, sizeof *order, cmp_t_off);
        for (int i = 1; i < f->n_t && !rc; i++) {
            const gguf_tensor *a = order[i - 1], *b = order[i];
            if (a->offset + a->nbytes > b->offset)
                rc = dsc_set_error("%s: tensors '%s' and '%s' overlap", f->name, a->name, b->name);
        }
    }
    free(order);
    return rc;
}

static dsc_status open_common(gguf_file *f, gguf_file **out) {
    if (parse(f)) {
        gguf_close(f);
        return DSC_ERR;
    }
    *out = f;
    return DSC_OK;
}

dsc_status gguf_open_memory(const void *data, size_t size, const char *name, gguf_file **out) {
    *out = NULL;
    gguf_file *f = calloc(1, sizeof *f);
    if (!f || !(f->name = strdup(name ? name : "(memory)"))) {
        free(f);
        return dsc_set_error("out of memory");
    }
    f->base = data;
    f->size = size;
    return open_common(f, out);
}

dsc_status gguf_open(const char *path, gguf_file **out) {
    *out = NULL;
    gguf_file *f = calloc(1, sizeof *f);
    if (!f || !(f->name = strdup(path))) {
        free(f);
        return dsc_set_error("out of memory");
    }
    if (dsc_map_file(path, &f->map)) {
        free(f->name);
        free(f);
        return DSC_ERR;
    }
    f->mapped = true;
    f->base = f->map.data;
    f->size = f->map.size;
    return open_common(f, out);
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n_kv; i++) {
        free((void *)f->kv[i].key);
        free((void *)f->kv[i].str_off);
    }
    for (int i = 0; i < f->n_t; i++) free((void *)f->t[i].name);
    free(f->kv);
    free(f->t);
    if (f->mapped) dsc_unmap_file(&f->map);
    free(f->name);
    free(f);
}

const char *gguf_path(const gguf_file *f) { return f->name; }
uint32_t gguf_version(const gguf_file *f) { return f->version; }
size_t gguf_alignment(const gguf_file *f) { return f->alignment; }
int gguf_kv_count(const gguf_file *f) { return f->n_kv; }
const gguf_kv *gguf_kv_at(const gguf_file *f, int i) { return i >= 0 && i < f->n_kv ? &f->kv[i] : NULL; }
int gguf_tensor_count(const gguf_file *f) { return f->n_t; }
const gguf_tensor *gguf_tensor_at(const gguf_file *f, int i) { return i >= 0 && i < f->n_t ? &f->t[i] : NULL; }

const gguf_kv *gguf_kv_find(const gguf_file *f, const char *key) {
    for (int i = 0; i < f->n_kv; i++)
        if (f->kv[i].key && !strcmp(f->kv[i].key, key)) return &f->kv[i];
    return NULL;
}

const gguf_tensor *gguf_tensor_find(const gguf_file *f, const char *name) {
    for (int i = 0; i < f->n_t; i++)
        if (f->t[i].name && !strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

/* An integer element (or scalar) of type t at p; false for a non-integer type. */
static bool load_int(gguf_vtype t, const unsigned char *p, int64_t *v, bool *too_big) {
    *too_big = false;
    switch (t) {
    case GGUF_V_UINT8: *v = p[0]; return true;
    case GGUF_V_INT8: *v = (int8_t)p[0]; return true;
    case GGUF_V_BOOL: *v = p[0] != 0; return true;
    case GGUF_V_UINT16: { uint16_t x; memcpy(&x, p, 2); *v = x; return true; }
    case GGUF_V_INT16: { int16_t x; memcpy(&x, p, 2); *v = x; return true; }
    case GGUF_V_UINT32: *v = ld32(p); return true;
    case GGUF_V_INT32: { int32_t x; memcpy(&x, p, 4); *v = x; return true; }
    case GGUF_V_INT64: { int64_t x; memcpy(&x, p, 8); *v = x; return true; }
    case GGUF_V_UINT64: {
        uint64_t x = ld64(p);
        *too_big = x > (uint64_t)INT64_MAX;
        *v = (int64_t)(x & (uint64_t)INT64_MAX);
        return true;
    }
    default: return false;
    }
}

static const gguf_kv *scalar(const gguf_file *f, const char *key) {
    const gguf_kv *kv = gguf_kv_find(f, key);
    if (!kv) {
        dsc_set_error("%s: key '%s' is missing", f->name, key);
        return NULL;
    }
    return kv;
}

dsc_status gguf_get_int(const gguf_file *f, const char *key, int64_t *out) {
    const gguf_kv *kv = scalar(f, key);
    if (!kv) return DSC_ERR;
    bool big;
    if (kv->type == GGUF_V_BOOL || !load_int(kv->type, kv->data, out, &big))
        return dsc_set_error("%s: key '%s': expected an integer, found a %s", f->name, key, vnames[kv->type]);
    if (big) return dsc_set_error("%s: key '%s': value out of range", f->name, key);
    return DSC_OK;
}

dsc_status gguf_get_float(const gguf_file *f, const char *key, double *out) {
    const gguf_kv *kv = scalar(f, key);
    if (!kv) return DSC_ERR;
    if (kv->type == GGUF_V_FLOAT32) {
        float x;
        memcpy(&x, kv->data, 4);
        *out = x;
    } else if (kv->type == GGUF_V_FLOAT64) {
        memcpy(out, kv->data, 8);
    } else {
        return dsc_set_error("%s: key '%s': expected a float32 or float64, found a %s", f->name, key, vnames[kv->type]);
    }
    return DSC_OK;
}

dsc_status gguf_get_bool(const gguf_file *f, const char *key, bool *out) {
    const gguf_kv *kv = scalar(f, key);
    if (!kv) return DSC_ERR;
    if (kv->type != GGUF_V_BOOL) return dsc_set_error("%s: key '%s': expected a bool, found a %s", f->name, key, vnames[kv->type]);
    *out = ((const unsigned char *)kv->data)[0] != 0;
    return DSC_OK;
}

dsc_status gguf_get_string(const gguf_file *f, const char *key, const char **s, size_t *len) {
    const gguf_kv *kv = scalar(f, key);
    if (!kv) return DSC_ERR;
    if (kv->type != GGUF_V_STRING)
        return dsc_set_error("%s: key '%s': expected a string, found a %s", f->name, key, vnames[kv->type]);
    *len = (size_t)ld64(kv->data);
    *s = (const char *)kv->data + 8;
    return DSC_OK;
}

void gguf_arr_string(const gguf_kv *kv, uint64_t i, const char **s, size_t *len) {
    const unsigned char *p = (const unsigned char *)kv->data + kv->str_off[i];
    *len = (size_t)ld64(p);
    *s = (const char *)p + 8;
}

int64_t gguf_arr_int(const gguf_kv *kv, uint64_t i) {
    int64_t v = 0;
    bool big;
    load_int(kv->elem, (const unsigned char *)kv->data + i * (uint64_t)vsize[kv->elem], &v, &big);
    return v;
}

double gguf_arr_float(const gguf_kv *kv, uint64_t i) {
    const unsigned char *p = (const unsigned char *)kv->data + i * (uint64_t)vsize[kv->elem];
    if (kv->elem == GGUF_V_FLOAT64) {
        double d;
        memcpy(&d, p, 8);
        return d;
    }
    float x;
    memcpy(&x, p, 4);
    return x;
}

dsc_status gguf_tensor_view(const gguf_file *f, const gguf_tensor *t, int64_t r0, int64_t rows, qtensor *out) {
    int qt = gguf_type_to_qt(t->type);
    if (qt < 0)
        return dsc_set_error("%s: unsupported tensor type %s for tensor '%s' (dsc computes with f32, f16, bf16, q8_0 "
                             "and q4_0)", f->name, gguf_type_name(t->type), t->name);
    int64_t total = 1;
    for (int i = 1; i < GGUF_MAX_DIMS; i++) total *= t->ne[i];
    if (r0 < 0 || rows < 1 || r0 > total || rows > total - r0)
        return dsc_set_error("%s: tensor '%s': rows [%lld, %lld) outside its %lld rows", f->name, t->name, (long long)r0,
                             (long long)(r0 + rows), (long long)total);
    if (t->ne[0] > INT_MAX || rows > INT_MAX)
        return dsc_set_error("%s: tensor '%s': too large for a qtensor view", f->name, t->name);
    size_t row = gguf_row_bytes(t->type, t->ne[0]);
    out->type = (qt_type)qt;
    out->rows = (int)rows;
    out->cols = (int)t->ne[0];
    out->data = (const unsigned char *)t->data + (size_t)r0 * row;
    out->scale_inv = NULL;
    return DSC_OK;
}

/* ---- writer ---------------------------------------------------------------------------------- */

typedef struct {
    char *key;
    gguf_vtype type, elem;
    uint64_t n;
    unsigned char *val;         /* the serialized value (after the type / array header) */
    size_t val_len;
} wkv;

typedef struct {
    char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    void *data;                 /* NULL when spilled */
    size_t nbytes;
    bool owned;
    off_t spill_off;            /* where the data is in the spill file */
} wtensor;

struct gguf_writer {
    wkv *kv;
    int n_kv, cap_kv;
    wtensor *t;
    int n_t, cap_t;
    FILE *spill;                /* gguf_writer_stream: tensor data goes here as it is added */
    off_t spill_len;
};

typedef struct {
    unsigned char *p;
    size_t n, cap;
    bool oom;
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put64(buf *b, uint64_t v) { put(b, &v, 8); }
static void putstr(buf *b, const char *s, size_t len) {
    put64(b, len);
    put(b, s, len);
}

dsc_status gguf_writer_create(gguf_writer **out) {
    *out = calloc(1, sizeof **out);
    return *out ? DSC_OK : dsc_set_error("out of memory");
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    for (int i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        if (w->t[i].owned) free(w->t[i].data);
    }
    free(w->kv);
    free(w->t);
    if (w->spill) fclose(w->spill);
    free(w);
}

dsc_status gguf_writer_stream(gguf_writer *w) {
    if (w->spill) return DSC_OK;
    w->spill = tmpfile();
    return w->spill ? DSC_OK : dsc_set_error("gguf: cannot create a temporary file for tensor data: %s", strerror(errno));
}

/* Takes val (malloc'ed, val_len bytes) as the value of key. */
static dsc_status set_kv(gguf_writer *w, const char *key, gguf_vtype type, gguf_vtype elem, uint64_t n, buf *val) {
    if (val->oom) {
        free(val->p);
        return dsc_set_error("out of memory");
    }
    wkv *kv = NULL;
    for (int i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) kv = &w->kv[i];
    if (kv) {
        free(kv->val);
    } else {
        if (w->n_kv == w->cap_kv) {
            int cap = w->cap_kv ? 2 * w->cap_kv : 32;
            wkv *q = realloc(w->kv, sizeof *q * (size_t)cap);
            if (!q) {
                free(val->p);
                return dsc_set_error("out of memory");
            }
            w->kv = q;
            w->cap_kv = cap;
        }
        kv = &w->kv[w->n_kv];
        if (!(kv->key = strdup(key))) {
            free(val->p);
            return dsc_set_error("out of memory");
        }
        w->n_kv++;
    }
    kv->type = type;
    kv->elem = elem;
    kv->n = n;
    kv->val = val->p;
    kv->val_len = val->n;
    return DSC_OK;
}

static dsc_status set_scalar(gguf_writer *w, const char *key, gguf_vtype t, const void *v) {
    buf b = {0};
    put(&b, v, (size_t)vsize[t]);
    return set_kv(w, key, t, t, 1, &b);
}

dsc_status gguf_set_u32(gguf_writer *w, const char *key, uint32_t v) { return set_scalar(w, key, GGUF_V_UINT32, &v); }
dsc_status gguf_set_i32(gguf_writer *w, const char *key, int32_t v) { return set_scalar(w, key, GGUF_V_INT32, &v); }
dsc_status gguf_set_f32(gguf_writer *w, const char *key, float v) { return set_scalar(w, key, GGUF_V_FLOAT32, &v); }
dsc_status gguf_set_f64(gguf_writer *w, const char *key, double v) { return set_scalar(w, key, GGUF_V_FLOAT64, &v); }
dsc_status gguf_set_bool(gguf_writer *w, const char *key, bool v) {
    uint8_t b = v;
    return set_scalar(w, key, GGUF_V_BOOL, &b);
}

dsc_status gguf_set_string(gguf_writer *w, const char *key, const char *s) {
    buf b = {0};
    putstr(&b, s, strlen(s));
    return set_kv(w, key, GGUF_V_STRING, GGUF_V_STRING, 1, &b);
}

dsc_status gguf_set_array(gguf_writer *w, const char *key, gguf_vtype elem, const void *data, uint64_t n) {
    if ((unsigned)elem >= GGUF_V_COUNT || elem == GGUF_V_STRING || elem == GGUF_V_ARRAY)
        return dsc_set_error("gguf: key '%s': arrays of %s are written with gguf_set_string_array or not at all", key,
                             gguf_vtype_name(elem));
    buf b = {0};
    put(&b, data, (size_t)n * (size_t)vsize[elem]);
    return set_kv(w, key, GGUF_V_ARRAY, elem, n, &b);
}

dsc_status gguf_set_string_array(gguf_writer *w, const char *key, const char *const *s, const size_t *len, uint64_t n) {
    buf b = {0};
    for (uint64_t i = 0; i < n; i++) putstr(&b, s[i], len ? len[i] : strlen(s[i]));
    return set_kv(w, key, GGUF_V_ARRAY, GGUF_V_STRING, n, &b);
}

dsc_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne,
                                  void *data, bool take) {
    dsc_status rc = DSC_OK;
    size_t len = strlen(name), nbytes = 0;
    if (len == 0 || len >= GGUF_MAX_NAME)
        rc = dsc_set_error("gguf: tensor name '%s' must have 1..%d bytes", name, GGUF_MAX_NAME - 1);
    else if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        rc = dsc_set_error("gguf: tensor '%s': %d dimensions (expected 1..%d)", name, n_dims, GGUF_MAX_DIMS);
    for (int i = 0; i < w->n_t && !rc; i++)
        if (!strcmp(w->t[i].name, name)) rc = dsc_set_error("gguf: tensor '%s' added twice", name);
    if (!rc) {
        size_t rows = 1;
        for (int i = 1; i < n_dims; i++) rows *= (size_t)ne[i];
        nbytes = gguf_row_bytes(type, ne[0]) * rows;
        if (!nbytes) rc = dsc_set_error("gguf: tensor '%s': a row of %lld values does not fit type %u", name,
                                        (long long)ne[0], type);
    }
    if (!rc && w->n_t == w->cap_t) {
        int cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *q = realloc(w->t, sizeof *q * (size_t)cap);
        if (!q) rc = dsc_set_error("out of memory");
        else {
            w->t = q;
            w->cap_t = cap;
        }
    }
    wtensor *t = rc ? NULL : &w->t[w->n_t];
    if (t && !(t->name = strdup(name))) rc = dsc_set_error("out of memory");
    if (rc) {
        if (take) free(data);
        return rc;
    }
    t->type = type;
    t->n_dims = n_dims;
    for (int i = 0; i < GGUF_MAX_DIMS; i++) t->ne[i] = i < n_dims ? ne[i] : 1;
    t->data = data;
    t->nbytes = nbytes;
    t->owned = take;
    w->n_t++;
    if (w->spill) {
        t->spill_off = w->spill_len;
        if (fseeko(w->spill, t->spill_off, SEEK_SET) || fwrite(data, 1, nbytes, w->spill) != nbytes)
            return dsc_set_error("gguf: writing tensor '%s' to the temporary file: %s", name, strerror(errno));
        w->spill_len += (off_t)nbytes;
        if (take) free(data);
        t->data = NULL;
        t->owned = false;
    }
    return DSC_OK;
}

/* Hands tensor t's data to put(ctx, bytes, n): from memory, or read back from the spill file in
 * pieces. */
static dsc_status tensor_data(gguf_writer *w, const wtensor *t, dsc_status (*put_fn)(void *, const void *, size_t),
                              void *ctx) {
    if (t->data) return put_fn(ctx, t->data, t->nbytes);
    enum { PIECE = 1 << 24 };
    unsigned char *p = malloc(t->nbytes < PIECE ? t->nbytes + 1 : PIECE);
    if (!p) return dsc_set_error("out of memory");
    dsc_status rc = fseeko(w->spill, t->spill_off, SEEK_SET)
                        ? dsc_set_error("gguf: temporary file: %s", strerror(errno))
                        : DSC_OK;
    for (size_t done = 0; done < t->nbytes && !rc;) {
        size_t n = t->nbytes - done < PIECE ? t->nbytes - done : PIECE;
        if (fread(p, 1, n, w->spill) != n) rc = dsc_set_error("gguf: reading back tensor '%s' from the temporary file", t->name);
        else rc = put_fn(ctx, p, n);
        done += n;
    }
    free(p);
    return rc;
}

#define ALIGN GGUF_DEFAULT_ALIGNMENT
static size_t padded(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

/* Header, key/values and tensor infos, padded to the start of the data section. */
static dsc_status header(const gguf_writer *w, buf *b) {
    put(b, "GGUF", 4);
    put32(b, 3);
    put64(b, (uint64_t)w->n_t);
    put64(b, (uint64_t)w->n_kv);
    for (int i = 0; i < w->n_kv; i++) {
        const wkv *kv = &w->kv[i];
        putstr(b, kv->key, strlen(kv->key));
        put32(b, kv->type);
        if (kv->type == GGUF_V_ARRAY) {
            put32(b, kv->elem);
            put64(b, kv->n);
        }
        put(b, kv->val, kv->val_len);
    }
    size_t off = 0;
    for (int i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        putstr(b, t->name, strlen(t->name));
        put32(b, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) put64(b, (uint64_t)t->ne[d]);
        put32(b, t->type);
        put64(b, off);
        off += padded(t->nbytes);
    }
    static const unsigned char zeros[ALIGN];
    put(b, zeros, padded(b->n) - b->n);
    return b->oom ? dsc_set_error("out of memory") : DSC_OK;
}

static dsc_status put_atomic(void *ctx, const void *p, size_t n) { return dsc_atomic_write(ctx, p, n); }
static dsc_status put_buf(void *ctx, const void *p, size_t n) {
    put(ctx, p, n);
    return DSC_OK;
}

dsc_status gguf_writer_write(gguf_writer *w, const char *path) {
    buf b = {0};
    if (header(w, &b)) {
        free(b.p);
        return DSC_ERR;
    }
    dsc_atomic_file af;
    if (dsc_atomic_open(&af, path)) {
        free(b.p);
        return DSC_ERR;
    }
    static const unsigned char zeros[ALIGN];
    int rc = dsc_atomic_write(&af, b.p, b.n);
    for (int i = 0; i < w->n_t && !rc; i++) {
        rc = tensor_data(w, &w->t[i], put_atomic, &af);
        if (!rc) rc = dsc_atomic_write(&af, zeros, padded(w->t[i].nbytes) - w->t[i].nbytes);
    }
    free(b.p);
    if (rc) {
        dsc_atomic_abort(&af);
        return DSC_ERR;
    }
    return dsc_atomic_commit(&af);
}

dsc_status gguf_writer_write_memory(gguf_writer *w, void **out, size_t *len) {
    buf b = {0};
    static const unsigned char zeros[ALIGN];
    if (header(w, &b)) {
        free(b.p);
        return DSC_ERR;
    }
    dsc_status rc = DSC_OK;
    for (int i = 0; i < w->n_t && !rc; i++) {
        rc = tensor_data(w, &w->t[i], put_buf, &b);
        put(&b, zeros, padded(w->t[i].nbytes) - w->t[i].nbytes);
    }
    if (rc) {
        free(b.p);
        return DSC_ERR;
    }
    if (b.oom) {
        free(b.p);
        return dsc_set_error("out of memory");
    }
    *out = b.p;
    *len = b.n;
    return DSC_OK;
}
