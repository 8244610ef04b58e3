/* test_safetensors.c: the safetensors reader/writer (round trips, bf16/f16 conversions, and a
 * crafted bad file for every check the reader makes) and dsc_model_load/dsc_model_save (tiny
 * model round trip, bad config.json, missing/misshapen/NaN tensors, BF16/F16/FP8 files). */
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "base/error.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "testutil.h"

static char tmpdir[256];

static void path_in(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", tmpdir, name); }

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static void rm_rf(const char *p) { nftw(p, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(2);
    }
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static unsigned char *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

/* A file: 8-byte length (hlen, or strlen(header) when hlen == ~0), the header, data_len zero bytes. */
static unsigned char *craft(const char *header, uint64_t hlen, size_t data_len, size_t *n) {
    size_t hl = strlen(header);
    if (hlen == ~(uint64_t)0) hlen = hl;
    *n = 8 + hl + data_len;
    unsigned char *b = calloc(1, *n);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b + 8, header, hl);
    return b;
}

static int contains(const char *s, const char *w) { return !w || strstr(s, w) != NULL; }

/* Opens the bytes from a file and from memory: both must fail with messages holding w1 and w2. */
static void expect_bad_bytes(const char *what, const unsigned char *b, size_t n, const char *w1, const char *w2) {
    char path[512];
    path_in(path, sizeof path, "bad.safetensors");
    write_bytes(path, b, n);
    st_file *st = (st_file *)1;
    int rc = st_open(path, &st);
    const char *msg = dsc_last_error();
    CHECK(rc == DSC_ERR && st == NULL, "%s: st_open accepted a bad file", what);
    CHECK(contains(msg, path) && contains(msg, w1) && contains(msg, w2), "%s: message '%s' lacks '%s'/'%s'", what,
          msg, w1, w2 ? w2 : "");
    CHECK(strchr(msg, '\n') == NULL, "%s: message is not one line", what);
    if (getenv("DSC_TEST_VERBOSE")) printf("  %-32s %s\n", what, msg);
    rc = st_open_memory(b, n, "mem.safetensors", &st);
    msg = dsc_last_error();
    CHECK(rc == DSC_ERR && st == NULL, "%s: st_open_memory accepted a bad buffer", what);
    CHECK(contains(msg, "mem.safetensors") && contains(msg, w1) && contains(msg, w2), "%s (memory): message '%s'",
          what, msg);
}

static void expect_bad(const char *what, const char *header, size_t data_len, const char *w1, const char *w2) {
    size_t n;
    unsigned char *b = craft(header, ~(uint64_t)0, data_len, &n);
    expect_bad_bytes(what, b, n, w1, w2);
    free(b);
}

static void expect_good(const char *what, const char *header, size_t data_len, int count) {
    size_t n;
    unsigned char *b = craft(header, ~(uint64_t)0, data_len, &n);
    st_file *st = NULL;
    int rc = st_open_memory(b, n, "good", &st);
    CHECK(rc == DSC_OK, "%s: rejected: %s", what, dsc_last_error());
    if (!rc) {
        CHECK(st_count(st) == count, "%s: %d tensors, expected %d", what, st_count(st), count);
        st_close(st);
    }
    free(b);
}

/* ---- conversions ----------------------------------------------------------------------------- */
static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static double f16_ref(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static void test_conversions(void) {
    /* bf16 -> f32 -> bf16 is the identity on every non-NaN pattern; NaN stays NaN */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = st_bf16_to_f32((uint16_t)h);
        if (fbits(f) != h << 16) bad++;
        uint16_t back = st_f32_to_bf16(f);
        if (isnan(f) ? !isnan(st_bf16_to_f32(back)) : back != h) bad++;
    }
    CHECK(bad == 0, "bf16 round trip: %d bad patterns", bad);
    CHECK(st_f32_to_bf16(1.0f) == 0x3f80, "bf16(1)");
    CHECK(st_f32_to_bf16(bitsf(0x3f808000u)) == 0x3f80, "bf16 tie to even (down)");
    CHECK(st_f32_to_bf16(bitsf(0x3f818000u)) == 0x3f82, "bf16 tie to even (up)");
    CHECK(st_f32_to_bf16(bitsf(0x3f808001u)) == 0x3f81, "bf16 above the tie");
    CHECK(st_f32_to_bf16(INFINITY) == 0x7f80 && st_f32_to_bf16(-INFINITY) == 0xff80, "bf16 inf");
    CHECK(st_f32_to_bf16(bitsf(0x7f7fffffu)) == 0x7f80, "bf16 FLT_MAX rounds to inf");
    CHECK(isnan(st_bf16_to_f32(st_f32_to_bf16(NAN))), "bf16 NaN");
    CHECK(isnan(st_bf16_to_f32(st_f32_to_bf16(bitsf(0x7f800001u)))), "bf16 NaN with a low payload stays NaN");
    CHECK(st_f32_to_bf16(-0.0f) == 0x8000, "bf16 -0");

    /* f16 -> f32 against a reference on every pattern, and back */
    bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = st_f16_to_f32((uint16_t)h);
        int e = (h >> 10) & 31;
        if (e == 31) {
            if ((h & 1023) ? !isnan(f) : (!isinf(f) || (signbit(f) != 0) != (h >> 15))) bad++;
            continue;
        }
        if ((double)f != f16_ref((uint16_t)h) || (signbit(f) != 0) != (h >> 15)) bad++;
        if (st_f32_to_f16(f) != h) bad++;
    }
    CHECK(bad == 0, "f16 conversions: %d bad patterns", bad);
    CHECK(st_f16_to_f32(0x3c00) == 1.0f && st_f16_to_f32(0xc000) == -2.0f, "f16 1, -2");
    CHECK(st_f16_to_f32(0x7bff) == 65504.0f, "f16 max");
    CHECK(st_f16_to_f32(0x0001) == ldexpf(1, -24), "f16 smallest subnormal");
    CHECK(st_f16_to_f32(0x03ff) == ldexpf(1023, -24), "f16 largest subnormal");
    CHECK(st_f16_to_f32(0x0400) == ldexpf(1, -14), "f16 smallest normal");
    CHECK(st_f16_to_f32(0x8000) == 0 && signbit(st_f16_to_f32(0x8000)), "f16 -0");
    CHECK(isinf(st_f16_to_f32(0x7c00)) && st_f16_to_f32(0xfc00) < 0 && isinf(st_f16_to_f32(0xfc00)), "f16 inf");
    CHECK(isnan(st_f16_to_f32(0x7e00)) && isnan(st_f16_to_f32(0x7c01)) && isnan(st_f16_to_f32(0xfc01)), "f16 NaN");
    /* f32 -> f16 rounding edges */
    CHECK(st_f32_to_f16(65519.0f) == 0x7bff && st_f32_to_f16(65520.0f) == 0x7c00, "f16 overflow threshold");
    CHECK(st_f32_to_f16(ldexpf(1, -25)) == 0 && st_f32_to_f16(ldexpf(1.0001f, -25)) == 1, "f16 underflow tie");
    CHECK(st_f32_to_f16(ldexpf(3, -25)) == 2, "f16 subnormal tie to even");
    CHECK(st_f32_to_f16(ldexpf(1, -30)) == 0 && st_f32_to_f16(-ldexpf(1, -30)) == 0x8000, "f16 tiny -> signed 0");
    CHECK(st_f32_to_f16(1.0f + ldexpf(1, -11)) == 0x3c00, "f16 tie to even at 1");
    CHECK(st_f32_to_f16(NAN) >= 0x7c01 && st_f32_to_f16(INFINITY) == 0x7c00, "f16 NaN/inf");
    /* random finite values: the result is the nearest half (ties to even) */
    dsc_rng r;
    dsc_rng_seed(&r, 7);
    bad = 0;
    for (int i = 0; i < 200000; i++) {
        float x = ldexpf(dsc_rng_normal(&r), (int)(dsc_rng_u64(&r) % 44) - 28);
        if (!(fabsf(x) < 65504.0f)) continue;
        uint16_t h = st_f32_to_f16(x);
        double v = st_f16_to_f32(h), err = fabs(v - x);
        uint16_t mag = h & 0x7fff;
        double up = mag < 0x7bff ? fabs(f16_ref((uint16_t)(mag + 1)) - fabs((double)x)) : INFINITY;
        double dn = mag > 0 ? fabs(f16_ref((uint16_t)(mag - 1)) - fabs((double)x)) : INFINITY;
        if (err > up || err > dn || ((err == up || err == dn) && (mag & 1))) bad++;
    }
    CHECK(bad == 0, "f16 rounding: %d values not rounded to the nearest even", bad);
}

/* ---- writer + reader round trip --------------------------------------------------------------- */
static void test_roundtrip(void) {
    char path[512];
    path_in(path, sizeof path, "rt.safetensors");
    float a[6] = {1.5f, -2.25f, 0.0f, -0.0f, 3.4e38f, 1e-45f};
    int32_t b[4] = {1, -2, INT32_MAX, INT32_MIN};
    uint16_t c[6];
    float cf[6] = {1.0f, -0.0078125f, 3.0f, 65504.0f, -1e-3f, 2.5f};
    for (int i = 0; i < 6; i++) c[i] = st_f32_to_bf16(cf[i]);
    int64_t d[2] = {INT64_MIN, 42};
    float s = 7.0f;
    st_writer *w;
    CHECK(st_writer_create(&w) == DSC_OK, "writer create");
    CHECK(st_writer_set_metadata(w, "format", "pt") == DSC_OK, "metadata");
    CHECK(st_writer_add(w, "a.f32", ST_F32, 2, (int64_t[]){2, 3}, a) == DSC_OK, "add a: %s", dsc_last_error());
    CHECK(st_writer_add(w, "b.i32", ST_I32, 1, (int64_t[]){4}, b) == DSC_OK, "add b");
    CHECK(st_writer_add(w, "scalar", ST_F32, 0, NULL, &s) == DSC_OK, "add scalar");
    CHECK(st_writer_add(w, "c.bf16", ST_BF16, 2, (int64_t[]){3, 2}, c) == DSC_OK, "add c");
    CHECK(st_writer_add(w, "d.i64", ST_I64, 1, (int64_t[]){2}, d) == DSC_OK, "add d");
    CHECK(st_writer_add(w, "empty", ST_F32, 2, (int64_t[]){0, 5}, NULL) == DSC_OK, "add empty");
    /* writer refusals */
    CHECK(st_writer_add(w, "a.f32", ST_F32, 1, (int64_t[]){1}, a) == DSC_ERR && contains(dsc_last_error(), "twice"),
          "duplicate name accepted");
    CHECK(st_writer_add(w, "__metadata__", ST_F32, 1, (int64_t[]){1}, a) == DSC_ERR, "__metadata__ name accepted");
    CHECK(st_writer_add(w, "neg", ST_F32, 1, (int64_t[]){-1}, a) == DSC_ERR, "negative shape accepted");
    CHECK(st_writer_add(w, "nodata", ST_F32, 1, (int64_t[]){2}, NULL) == DSC_ERR, "NULL data accepted");
    CHECK(st_writer_write(w, path) == DSC_OK, "write: %s", dsc_last_error());
    st_writer_free(w);

    size_t n;
    unsigned char *raw = read_bytes(path, &n);
    CHECK(raw && n >= 8, "file written");
    if (!raw) return;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | raw[i];
    CHECK((8 + hlen) % 8 == 0, "data section not 8-aligned (header %llu)", (unsigned long long)hlen);
    CHECK(hlen + 8 + 24 + 16 + 4 + 12 + 16 == n, "file size %zu", n);
    CHECK(raw[8] == '{' && memcmp(raw + 9, "\"__metadata__\"", 14) == 0, "__metadata__ first");
    CHECK(raw[8 + hlen - 1] == ' ' || raw[8 + hlen - 1] == '}', "header padding");

    for (int pass = 0; pass < 2; pass++) {
        st_file *st = NULL;
        int rc = pass == 0 ? st_open(path, &st) : st_open_memory(raw, n, "mem", &st);
        CHECK(rc == DSC_OK, "open (pass %d): %s", pass, dsc_last_error());
        if (rc) continue;
        CHECK(st_count(st) == 6, "count %d", st_count(st));
        const char *order[6] = {"a.f32", "b.i32", "scalar", "c.bf16", "d.i64", "empty"};
        for (int i = 0; i < 6 && i < st_count(st); i++)
            CHECK(strcmp(st_tensor_at(st, i)->name, order[i]) == 0, "order %d: %s", i, st_tensor_at(st, i)->name);
        CHECK(st_tensor_at(st, 6) == NULL && st_tensor_at(st, -1) == NULL, "st_tensor_at out of range");
        const char *fmt = st_metadata(st, "format");
        CHECK(fmt && strcmp(fmt, "pt") == 0, "metadata format");
        CHECK(st_metadata(st, "nope") == NULL, "absent metadata");
        const st_tensor *t = st_find(st, "a.f32");
        CHECK(t && t->dtype == ST_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->numel == 6 &&
                  t->nbytes == 24 && memcmp(t->data, a, 24) == 0,
              "a.f32 read back");
        t = st_find(st, "b.i32");
        CHECK(t && t->dtype == ST_I32 && t->numel == 4 && memcmp(t->data, b, 16) == 0, "b.i32 read back");
        t = st_find(st, "c.bf16");
        CHECK(t && t->dtype == ST_BF16 && t->shape[0] == 3 && memcmp(t->data, c, 12) == 0, "c.bf16 read back");
        t = st_find(st, "d.i64");
        CHECK(t && t->dtype == ST_I64 && memcmp(t->data, d, 16) == 0, "d.i64 read back");
        t = st_find(st, "scalar");
        CHECK(t && t->ndim == 0 && t->numel == 1 && memcmp(t->data, &s, 4) == 0, "scalar read back");
        t = st_find(st, "empty");
        CHECK(t && t->ndim == 2 && t->numel == 0 && t->nbytes == 0, "empty read back");
        CHECK(st_find(st, "zzz") == NULL && st_find(st, "") == NULL, "find absent");

        float out[6];
        CHECK(st_read_f32(st, "a.f32", out, 6) == DSC_OK && memcmp(out, a, 24) == 0, "read_f32 F32");
        CHECK(st_read_f32(st, "c.bf16", out, 6) == DSC_OK, "read_f32 BF16");
        for (int i = 0; i < 6; i++) CHECK(out[i] == st_bf16_to_f32(c[i]), "bf16 value %d", i);
        CHECK(out[0] == 1.0f && out[2] == 3.0f && out[3] == 65536.0f, "bf16 rounded values");
        CHECK(st_read_f32(st, "empty", NULL, 0) == DSC_OK, "read_f32 of an empty tensor");
        CHECK(st_read_f32(st, "b.i32", out, 4) == DSC_ERR && contains(dsc_last_error(), "I32") &&
                  contains(dsc_last_error(), "b.i32"),
              "read_f32 of I32: %s", dsc_last_error());
        CHECK(st_read_f32(st, "a.f32", out, 5) == DSC_ERR && contains(dsc_last_error(), "holds 6"),
              "read_f32 wrong count: %s", dsc_last_error());
        CHECK(st_read_f32(st, "nope", out, 1) == DSC_ERR && contains(dsc_last_error(), "'nope' is missing"),
              "read_f32 missing: %s", dsc_last_error());
        st_close(st);
    }
    free(raw);

    /* F16 data written raw reads back converted */
    uint16_t h[4] = {0x3c00, 0x0001, 0xfbff, 0x8000};
    CHECK(st_writer_create(&w) == DSC_OK, "writer create");
    CHECK(st_writer_add(w, "h", ST_F16, 1, (int64_t[]){4}, h) == DSC_OK, "add f16");
    CHECK(st_writer_write(w, path) == DSC_OK, "write f16");
    st_writer_free(w);
    st_file *st;
    CHECK(st_open(path, &st) == DSC_OK, "open f16 file: %s", dsc_last_error());
    float hf[4];
    CHECK(st_read_f32(st, "h", hf, 4) == DSC_OK && hf[0] == 1.0f && hf[1] == ldexpf(1, -24) && hf[2] == -65504.0f &&
              hf[3] == 0 && signbit(hf[3]),
          "f16 values");
    CHECK(st_metadata(st, "format") == NULL, "no metadata written when none set");
    st_close(st);
    st_close(NULL);
}

/* ---- bad files ---------------------------------------------------------------------------- */
#define T1(x) "{\"t\":" x "}"
static void test_bad_files(void) {
    size_t n;
    unsigned char *b;
    expect_bad_bytes("empty file", (const unsigned char *)"", 0, "empty", NULL);
    expect_bad_bytes("5 bytes", (const unsigned char *)"\x02\0\0\0\0", 5, "too short", NULL);
    b = craft("{}", 100, 0, &n);
    expect_bad_bytes("header length past the file", b, n, "past the end", "100");
    free(b);
    b = craft("{}", (uint64_t)1 << 63, 0, &n);
    expect_bad_bytes("header length 2^63", b, n, "exceeds the limit", NULL);
    free(b);
    b = craft("{}", ~(uint64_t)0 - 1, 0, &n);
    expect_bad_bytes("header length 2^64-2", b, n, "exceeds the limit", NULL);
    free(b);
    b = craft("{}", 1, 0, &n);
    expect_bad_bytes("header length 1", b, n, "too small", NULL);
    free(b);
    b = craft("{}", 0, 0, &n);
    expect_bad_bytes("header length 0", b, n, "too small", NULL);
    free(b);
    b = craft("{}", 101000000, 0, &n);
    expect_bad_bytes("header length 101 MB", b, n, "exceeds the limit", NULL);
    free(b);
    expect_bad("not JSON", "{abc", 0, "not valid JSON", NULL);
    expect_bad("truncated JSON", "{\"t\":{\"dtype\":\"F32\"", 0, "not valid JSON", NULL);
    expect_bad("trailing garbage", "{} x", 0, "not valid JSON", NULL);
    b = craft("{\"aX\":1}", ~(uint64_t)0, 0, &n);
    b[11] = 0; /* the X */
    expect_bad_bytes("NUL in header", b, n, "not valid JSON", NULL);
    free(b);
    expect_bad("array header", "[1, 2]", 0, "must be a JSON object", "an array");
    expect_bad("string header", "\"abc\"", 0, "must be a JSON object", NULL);
    expect_bad("entry not an object", "{\"w.x\": 5}", 0, "tensor 'w.x'", "expected an object");
    expect_bad("missing dtype", T1("{\"shape\":[1],\"data_offsets\":[0,4]}"), 4, "tensor 't'", "'dtype' is missing");
    expect_bad("missing shape", T1("{\"dtype\":\"F32\",\"data_offsets\":[0,4]}"), 4, "tensor 't'", "'shape' is missing");
    expect_bad("missing offsets", T1("{\"dtype\":\"F32\",\"shape\":[1]}"), 4, "tensor 't'", "'data_offsets' is missing");
    expect_bad("dtype not a string", T1("{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}"), 4, "tensor 't'", "dtype");
    expect_bad("unknown dtype", T1("{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}"), 4, "unknown dtype 'F33'",
               "tensor 't'");
    expect_bad("lower-case dtype", T1("{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}"), 4, "unknown dtype",
               NULL);
    expect_bad("shape not an array", T1("{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}"), 4, "tensor 't'",
               "'shape' must be an array");
    expect_bad("negative shape", T1("{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,4]}"), 4, "tensor 't'",
               "shape[1] is -1");
    expect_bad("real shape", T1("{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}"), 4, "shape[0]",
               "a real number");
    expect_bad("integral real shape", T1("{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}"), 4, "shape[0]",
               "non-negative integer");
    expect_bad("string shape", T1("{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}"), 4, "shape[0]",
               "a string");
    expect_bad("shape overflow", T1("{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}"), 4,
               "tensor 't'", "overflows");
    expect_bad("byte count overflow", T1("{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,4]}"),
               4, "tensor 't'", "overflow");
    expect_bad("integer too big for JSON", T1("{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}"),
               4, "not valid JSON", NULL);
    expect_bad("9 dims", T1("{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}"), 4, "tensor 't'",
               "9 dimensions");
    expect_bad("offsets not an array", T1("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":4}"), 4, "tensor 't'",
               "data_offsets");
    expect_bad("three offsets", T1("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}"), 8, "tensor 't'",
               "two integers");
    expect_bad("negative offset", T1("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}"), 4, "tensor 't'",
               "data_offsets[0] is -4");
    expect_bad("real offset", T1("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}"), 4, "tensor 't'",
               "data_offsets[1]");
    expect_bad("offsets reversed", T1("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}"), 8, "tensor 't'",
               "reversed");
    expect_bad("offsets past end",
               "{\"model.layers.0.self_attn.o_proj.weight\":{\"dtype\":\"F32\",\"shape\":[200],"
               "\"data_offsets\":[100,900]}}",
               812, "tensor 'model.layers.0.self_attn.o_proj.weight': data_offsets [100, 900) end past the data section "
                    "(812 bytes)",
               NULL);
    expect_bad("huge offsets", T1("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[9223372036854775803,9223372036854775807]}"),
               4, "end past the data section", NULL);
    expect_bad("nbytes != numel x size", T1("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}"), 8, "tensor 't'",
               "hold 4 bytes, but F32 [2] needs 8");
    expect_bad("overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               12, "'a' [0, 8) and 'b' [4, 12) overlap", NULL);
    expect_bad("same range", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               8, "overlap", NULL);
    expect_bad("overlap behind a small one",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
               "\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}",
               16, "overlap", NULL);
    expect_bad("duplicate names", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, "duplicate", NULL);
    expect_bad("metadata not an object", "{\"__metadata__\":[1]}", 0, "__metadata__", "an array");
    expect_bad("metadata value not a string", "{\"__metadata__\":{\"format\":1}}", 0, "__metadata__ 'format'",
               "must be a string");
    expect_bad("bad tensor after good metadata",
               "{\"__metadata__\":{\"format\":\"pt\"},\"x\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,4]}}",
               4, "tensor 'x'", "BF16 [3] needs 6");
    expect_bad("control bytes in a name", "{\"a\\nb\": 1}", 0, "tensor 'a?b'", NULL);

    /* a missing file, a directory */
    char path[512];
    st_file *st = NULL;
    path_in(path, sizeof path, "does-not-exist.safetensors");
    CHECK(st_open(path, &st) == DSC_ERR && contains(dsc_last_error(), "cannot open") && st == NULL, "missing file: %s",
          dsc_last_error());
    CHECK(st_open(tmpdir, &st) == DSC_ERR && contains(dsc_last_error(), "not a regular file"), "directory: %s",
          dsc_last_error());
    CHECK(st_open_memory(NULL, 0, NULL, &st) == DSC_ERR && contains(dsc_last_error(), "empty"), "NULL buffer");

    /* accepted edge cases */
    expect_good("empty header object", "{}", 0, 0);
    expect_good("only metadata", "{\"__metadata__\":{}}", 0, 0);
    expect_good("padded header", "{}      ", 0, 0);
    expect_good("gap between tensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                                       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}",
                16, 2);
    expect_good("empty tensors anywhere", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                          "\"b\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
                                          "\"c\":{\"dtype\":\"BOOL\",\"shape\":[0],\"data_offsets\":[8,8]}}",
                8, 3);
    expect_good("zero dim with large others",
                T1("{\"dtype\":\"F32\",\"shape\":[0,4294967296,4294967295],\"data_offsets\":[0,0]}"), 0, 1);
    /* the product of the non-zero dims must fit, wherever the zero is */
    expect_bad("zero dim after overflowing dims",
               T1("{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,0],\"data_offsets\":[0,0]}"), 0, "overflows", NULL);
    expect_bad("zero dim before overflowing dims",
               T1("{\"dtype\":\"F32\",\"shape\":[0,4294967296,4294967296],\"data_offsets\":[0,0]}"), 0, "overflows", NULL);
    expect_good("every dtype",
                "{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[8,16]},"
                "\"c\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[16,18]},"
                "\"d\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[18,19]},"
                "\"e\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[19,20]},"
                "\"f\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[20,21]},"
                "\"g\":{\"dtype\":\"F8_E5M2\",\"shape\":[1],\"data_offsets\":[21,22]},"
                "\"h\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[22,24]}}",
                24, 8);
}

/* ---- model directories ---------------------------------------------------------------------- */
static int n_bad_values(const dsc_model *a, const dsc_model *b) {
    int bad = 0;
    for (int i = 0; i < a->n_descs; i++) {
        const tensor_desc *d = &a->descs[i];
        if (memcmp(a->params + d->offset, b->params + d->offset, d->numel * sizeof(float)) != 0) bad++;
    }
    return bad;
}

/* Writes dir/model.safetensors from m's tensors in dtype dt; skip: a name left out; reshape: a name
 * whose shape is reversed; poison: a name whose element 3 becomes NaN; extra: add unused tensors. */
static int write_weights(const dsc_model *m, const char *dir, st_dtype dt, const char *skip, const char *reshape,
                         const char *poison, int extra) {
    st_writer *w;
    if (st_writer_create(&w)) return DSC_ERR;
    void **bufs = calloc((size_t)m->n_descs, sizeof *bufs);
    int rc = DSC_OK;
    for (int i = 0; !rc && i < m->n_descs; i++) {
        const tensor_desc *d = &m->descs[i];
        if (skip && !strcmp(d->name, skip)) continue;
        const float *src = m->params + d->offset;
        size_t es = st_dtype_size(dt);
        unsigned char *buf = malloc(d->numel * es + 1);
        bufs[i] = buf;
        for (size_t j = 0; j < d->numel; j++) {
            float v = (poison && !strcmp(d->name, poison) && j == 3) ? NAN : src[j];
            uint16_t h = dt == ST_BF16 ? st_f32_to_bf16(v) : st_f32_to_f16(v);
            if (dt == ST_F32) memcpy(buf + 4 * j, &v, 4);
            else if (dt == ST_F16 || dt == ST_BF16) memcpy(buf + 2 * j, &h, 2);
            else buf[j] = 0x38; /* an FP8 pattern */
        }
        int64_t shape[4];
        for (int k = 0; k < d->ndim; k++) shape[k] = d->shape[reshape && !strcmp(d->name, reshape) ? d->ndim - 1 - k : k];
        if (reshape && !strcmp(d->name, reshape) && d->ndim == 1) shape[0] = d->shape[0] + 1;
        if (reshape && !strcmp(d->name, reshape) && d->ndim == 1) {
            free(buf);
            bufs[i] = buf = calloc(d->numel + 1, es);
        }
        rc = st_writer_add(w, d->name, dt, d->ndim, shape, buf);
    }
    static float junk[4];
    if (!rc && extra) {
        char name[96];
        snprintf(name, sizeof name, "model.layers.%d.embed_tokens.weight", m->cfg.num_hidden_layers);
        rc = st_writer_add(w, name, ST_F32, 2, (int64_t[]){2, 2}, junk);
        snprintf(name, sizeof name, "model.layers.%d.shared_head.head.weight", m->cfg.num_hidden_layers);
        if (!rc) rc = st_writer_add(w, name, ST_I8, 1, (int64_t[]){3}, junk);
    }
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!rc) rc = st_writer_write(w, path);
    st_writer_free(w);
    for (int i = 0; i < m->n_descs; i++) free(bufs[i]);
    free(bufs);
    return rc;
}

/* Loading must fail with a message holding w1 and w2; no model is returned. */
static void expect_load_error(const char *what, const char *dir, const char *w1, const char *w2) {
    dsc_model *m = (dsc_model *)1;
    int rc = dsc_model_load(dir, &m);
    const char *msg = dsc_last_error();
    CHECK(rc == DSC_ERR && m == NULL, "%s: load succeeded", what);
    CHECK(contains(msg, w1) && contains(msg, w2), "%s: message '%s' lacks '%s'/'%s'", what, msg, w1, w2 ? w2 : "");
    CHECK(strchr(msg, '\n') == NULL, "%s: message is not one line", what);
    if (getenv("DSC_TEST_VERBOSE")) printf("  %-32s %s\n", what, msg);
}

/* Rewrites one field of dir/config.json. */
static void patch_config(const char *dir, const char *key, json_t *value) {
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *root = json_load_file(path, 0, NULL);
    json_object_set_new(root, key, value);
    json_dump_file(root, path, JSON_INDENT(2));
    json_decref(root);
}

static void test_model_io(void) {
    dsc_config cfg;
    dsc_model *m = NULL, *back = NULL;
    CHECK(dsc_config_preset("tiny", &cfg) == DSC_OK, "preset");
    if (dsc_model_create(&cfg, &m)) {
        CHECK(0, "create: %s", dsc_last_error());
        return;
    }
    CHECK(dsc_model_init(m, 1234) == DSC_OK, "init: %s", dsc_last_error());
    char dir[384], path[512];
    path_in(dir, sizeof dir, "tiny");

    /* F32 round trip, bit-exact */
    CHECK(dsc_model_save(m, dir) == DSC_OK, "save: %s", dsc_last_error());
    CHECK(dsc_model_save(m, dir) == DSC_OK, "save over an existing directory: %s", dsc_last_error());
    CHECK(dsc_model_load(dir, &back) == DSC_OK, "load: %s", dsc_last_error());
    if (back) {
        CHECK(back->n_descs == m->n_descs && back->n_floats == m->n_floats, "layout differs");
        CHECK(back->cfg.hidden_size == cfg.hidden_size && back->cfg.n_routed_experts == cfg.n_routed_experts &&
                  back->cfg.mhc_expansion_rate == cfg.mhc_expansion_rate && !strcmp(back->cfg.model_type, cfg.model_type),
              "config differs");
        CHECK(n_bad_values(m, back) == 0, "%d tensors differ after the round trip", n_bad_values(m, back));
        dsc_model_free(back);
        back = NULL;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st_file *st;
    CHECK(st_open(path, &st) == DSC_OK, "open saved weights: %s", dsc_last_error());
    if (st) {
        CHECK(st_count(st) == m->n_descs, "saved %d tensors, model has %d", st_count(st), m->n_descs);
        CHECK(st_metadata(st, "format") && !strcmp(st_metadata(st, "format"), "pt"), "format metadata");
        CHECK(st_find(st, "lm_head.weight") && st_find(st, "model.layers.1.mlp.experts.7.down_proj.weight") &&
                  st_find(st, "model.layers.3.eh_proj.weight"),
              "expected names present");
        for (int i = 0; i < st_count(st); i++) CHECK(st_tensor_at(st, i)->dtype == ST_F32, "saved dtype");
        st_close(st);
    }

    /* a trailing slash on the directory is fine */
    char slash[400];
    snprintf(slash, sizeof slash, "%s/", dir);
    CHECK(dsc_model_load(slash, &back) == DSC_OK && back && n_bad_values(m, back) == 0, "load from 'dir/': %s",
          dsc_last_error());
    dsc_model_free(back);
    back = NULL;

    /* unused tensors are ignored */
    CHECK(write_weights(m, dir, ST_F32, NULL, NULL, NULL, 1) == DSC_OK, "write: %s", dsc_last_error());
    CHECK(dsc_model_load(dir, &back) == DSC_OK, "load with extra tensors: %s", dsc_last_error());
    if (back) CHECK(n_bad_values(m, back) == 0, "values differ with extra tensors");
    dsc_model_free(back);
    back = NULL;

    /* BF16 and F16 files load, rounded */
    for (int k = 0; k < 2; k++) {
        st_dtype dt = k ? ST_F16 : ST_BF16;
        CHECK(write_weights(m, dir, dt, NULL, NULL, NULL, 0) == DSC_OK, "write: %s", dsc_last_error());
        CHECK(dsc_model_load(dir, &back) == DSC_OK, "load %s: %s", st_dtype_name(dt), dsc_last_error());
        if (!back) continue;
        int bad = 0;
        for (int i = 0; i < m->n_descs; i++) {
            const tensor_desc *d = &m->descs[i];
            for (size_t j = 0; j < d->numel; j++) {
                float x = m->params[d->offset + j];
                float want = dt == ST_BF16 ? st_bf16_to_f32(st_f32_to_bf16(x)) : st_f16_to_f32(st_f32_to_f16(x));
                if (fbits(back->params[d->offset + j]) != fbits(want)) bad++;
            }
        }
        CHECK(bad == 0, "%s load: %d values not the rounded originals", st_dtype_name(dt), bad);
        dsc_model_free(back);
        back = NULL;
    }

    /* bad weights */
    const char *victim = "model.layers.1.self_attn.kv_b_proj.weight";
    CHECK(write_weights(m, dir, ST_F32, victim, NULL, NULL, 0) == DSC_OK, "write");
    expect_load_error("missing tensor", dir, "model.safetensors: tensor 'model.layers.1.self_attn.kv_b_proj.weight' is missing",
                      "expected shape [");
    CHECK(write_weights(m, dir, ST_F32, NULL, victim, NULL, 0) == DSC_OK, "write");
    expect_load_error("transposed tensor", dir, "model.safetensors: tensor 'model.layers.1.self_attn.kv_b_proj.weight'",
                      "the model expects [");
    CHECK(write_weights(m, dir, ST_F32, NULL, "model.norm.weight", NULL, 0) == DSC_OK, "write");
    expect_load_error("longer vector", dir, "tensor 'model.norm.weight': shape [33] in the file", "expects [32]");
    CHECK(write_weights(m, dir, ST_F32, NULL, NULL, victim, 0) == DSC_OK, "write");
    expect_load_error("NaN value", dir, "tensor 'model.layers.1.self_attn.kv_b_proj.weight'", "NaN");
    CHECK(write_weights(m, dir, ST_BF16, NULL, NULL, "model.embed_tokens.weight", 0) == DSC_OK, "write");
    expect_load_error("NaN value in BF16", dir, "tensor 'model.embed_tokens.weight'", "NaN");
    CHECK(write_weights(m, dir, ST_F8_E4M3, NULL, NULL, NULL, 0) == DSC_OK, "write");
    expect_load_error("FP8 file", dir, "model.safetensors: tensor", "FP8 tensors need dsc quantize/inference support");
    CHECK(write_weights(m, dir, ST_I8, NULL, NULL, NULL, 0) == DSC_OK, "write");
    expect_load_error("I8 file", dir, "dtype I8", "expected F32, BF16 or F16");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_bytes(path, "\x10\0\0\0\0\0\0\0{", 9);
    expect_load_error("corrupt weights", dir, "model.safetensors", "past the end");
    remove(path);
    expect_load_error("no weights", dir, "model.safetensors", "cannot open");
    CHECK(dsc_model_save(m, dir) == DSC_OK, "save: %s", dsc_last_error());

    /* bad config.json */
    patch_config(dir, "hidden_size", json_integer(-1));
    expect_load_error("hidden_size -1", dir, "config.json", "hidden_size");
    CHECK(dsc_model_save(m, dir) == DSC_OK, "save");
    patch_config(dir, "n_group", json_integer(3));
    expect_load_error("n_group 3", dir, "config.json", "n_group");
    CHECK(dsc_model_save(m, dir) == DSC_OK, "save");
    patch_config(dir, "model_type", json_string("llama"));
    expect_load_error("model_type llama", dir, "config.json", "model_type");
    CHECK(dsc_model_save(m, dir) == DSC_OK, "save");
    patch_config(dir, "hidden_size", json_integer(48)); /* valid config, weights of another model */
    expect_load_error("weights of another width", dir, "model.safetensors: tensor 'model.embed_tokens.weight'",
                      "the model expects [97, 48]");
    snprintf(path, sizeof path, "%s/config.json", dir);
    remove(path);
    expect_load_error("no config", dir, "config.json", NULL);
    path_in(path, sizeof path, "nowhere");
    expect_load_error("no directory", path, "nowhere/config.json", NULL);

    /* saving where a file blocks the directory */
    path_in(path, sizeof path, "blocker");
    write_bytes(path, "x", 1);
    CHECK(dsc_model_save(m, path) == DSC_ERR && contains(dsc_last_error(), "not a directory"), "save onto a file: %s",
          dsc_last_error());

    /* tied head: no lm_head tensor, round trip */
    dsc_model_free(m);
    m = NULL;
    cfg.tie_word_embeddings = true;
    if (dsc_model_create(&cfg, &m) == DSC_OK) {
        dsc_model_init(m, 99);
        path_in(dir, sizeof dir, "tied");
        CHECK(dsc_model_save(m, dir) == DSC_OK, "save tied: %s", dsc_last_error());
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (st_open(path, &st) == DSC_OK) {
            CHECK(st_find(st, "lm_head.weight") == NULL, "tied model saved an lm_head");
            st_close(st);
        }
        CHECK(dsc_model_load(dir, &back) == DSC_OK, "load tied: %s", dsc_last_error());
        if (back) {
            CHECK(back->cfg.tie_word_embeddings && n_bad_values(m, back) == 0, "tied round trip");
            dsc_model_free(back);
        }
    } else {
        CHECK(0, "create tied: %s", dsc_last_error());
    }
    dsc_model_free(m);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dsc_test_st_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    test_conversions();
    test_roundtrip();
    test_bad_files();
    test_model_io();
    rm_rf(tmpdir);
    return tu_finish("test_safetensors");
}
