/* test_data.c: the data layer without a tokenizer: token shards (round trip and every kind of bad
 * file), the loader (determinism, exact resume, epochs, each window once per epoch), generated
 * problems (determinism, disjoint held-out sets, every worked step re-checked) and the checkers on
 * tricky responses. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "data/data.h"
#include "data/prepare.h"
#include "data/synth.h"
#include "testutil.h"

static char tmpdir[256];

static void path_of(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", tmpdir, name); }

static unsigned char *read_all(const char *path, size_t *n) {
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

static void write_all(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static void put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void fix_header_sum(unsigned char *h) { put64(h + 56, dsc_fnv1a64(DSC_FNV_OFFSET, h, 56)); }

/* ---------------------------------------------------------------------------------------------
 * Shards
 * ------------------------------------------------------------------------------------------- */
static void test_shard_round_trip(void) {
    int vocabs[2] = {300, 70000};
    for (int v = 0; v < 2; v++) {
        int vocab = vocabs[v];
        char path[512];
        path_of(path, sizeof path, "rt.bin");
        dsc_shard_writer *w;
        CHECK(dsc_shard_writer_open(path, vocab, 0xabcdef1234ull, &w) == DSC_OK, "writer open: %s", dsc_last_error());
        int32_t ids[50000];
        dsc_rng r;
        dsc_rng_seed(&r, 5);
        for (int i = 0; i < 50000; i++) ids[i] = (int32_t)(dsc_rng_u64(&r) % (uint64_t)vocab);
        ids[0] = vocab - 1;
        ids[1] = 0;
        CHECK(dsc_shard_writer_add(w, ids, 20000) == DSC_OK, "add");
        CHECK(dsc_shard_writer_add(w, ids + 20000, 0) == DSC_OK, "add empty doc");
        CHECK(dsc_shard_writer_add(w, ids + 20000, 30000) == DSC_OK, "add");
        uint64_t sum = dsc_shard_writer_checksum(w);
        CHECK(dsc_shard_writer_tokens(w) == 50000 && dsc_shard_writer_docs(w) == 3, "writer counts");
        CHECK(dsc_shard_writer_commit(w) == DSC_OK, "commit: %s", dsc_last_error());
        dsc_shard *s;
        CHECK(dsc_shard_open(path, vocab, 0xabcdef1234ull, &s) == DSC_OK, "open: %s", dsc_last_error());
        if (!s) continue;
        CHECK(dsc_shard_tokens(s) == 50000, "tokens %llu", (unsigned long long)dsc_shard_tokens(s));
        CHECK(dsc_shard_docs(s) == 3, "docs");
        CHECK(dsc_shard_vocab(s) == vocab, "vocab");
        CHECK(dsc_shard_token_bytes(s) == (vocab <= 65536 ? 2 : 4), "width");
        CHECK(dsc_shard_tokenizer_hash(s) == 0xabcdef1234ull, "hash");
        CHECK(dsc_shard_checksum(s) == sum, "checksum matches the writer's");
        int bad = 0;
        for (int i = 0; i < 50000; i++) bad += dsc_shard_token(s, (uint64_t)i) != ids[i];
        CHECK(bad == 0, "%d tokens differ after the round trip (vocab %d)", bad, vocab);
        size_t n;
        unsigned char *b = read_all(path, &n);
        CHECK(n == 64 + 50000u * (vocab <= 65536 ? 2 : 4), "file size %zu", n);
        CHECK(b && !memcmp(b, "DSCTOKS1", 8), "magic on disk");
        free(b);
        dsc_shard_close(s);
        /* the convenience writer, and an empty shard */
        CHECK(dsc_shard_write(path, ids, 10, vocab, 7) == DSC_OK, "dsc_shard_write");
        CHECK(dsc_shard_open(path, 0, 0, &s) == DSC_OK && dsc_shard_tokens(s) == 10 && dsc_shard_docs(s) == 1,
              "reopen small");
        dsc_shard_close(s);
        CHECK(dsc_shard_write(path, ids, 0, vocab, 7) == DSC_OK, "empty shard");
        CHECK(dsc_shard_open(path, vocab, 7, &s) == DSC_OK && dsc_shard_tokens(s) == 0, "empty shard opens");
        dsc_shard_close(s);
    }
}

/* Writes `data` as a shard file and expects dsc_shard_open to fail naming the file and `word`. */
static void expect_bad(const char *what, const unsigned char *data, size_t n, int vocab, uint64_t hash, const char *word) {
    char path[512];
    path_of(path, sizeof path, "bad.bin");
    write_all(path, data, n);
    dsc_shard *s = NULL;
    int rc = dsc_shard_open(path, vocab, hash, &s);
    CHECK(rc == DSC_ERR && s == NULL, "%s: opened a bad shard", what);
    const char *msg = dsc_last_error();
    CHECK(strstr(msg, path) != NULL, "%s: the error does not name the file: %s", what, msg);
    CHECK(strstr(msg, word) != NULL, "%s: the error lacks '%s': %s", what, word, msg);
    CHECK(strchr(msg, '\n') == NULL, "%s: the error is not one line", what);
}

static void test_shard_bad(void) {
    char path[512];
    path_of(path, sizeof path, "good.bin");
    int32_t ids[100];
    for (int i = 0; i < 100; i++) ids[i] = i * 2;
    CHECK(dsc_shard_write(path, ids, 100, 300, 99) == DSC_OK, "write good");
    size_t n;
    unsigned char *good = read_all(path, &n), *b = malloc(n + 16);
    dsc_shard *s;
    CHECK(dsc_shard_open(path, 300, 99, &s) == DSC_OK, "the good shard opens");
    dsc_shard_close(s);

    expect_bad("empty file", good, 0, 0, 0, "truncated");
    expect_bad("half a header", good, 30, 0, 0, "truncated");
    memcpy(b, good, n), b[0] = 'X';
    expect_bad("magic", b, n, 0, 0, "magic");
    memcpy(b, good, n), put32(b + 8, 2), fix_header_sum(b);
    expect_bad("version", b, n, 0, 0, "version");
    memcpy(b, good, n), put32(b + 12, 128), fix_header_sum(b);
    expect_bad("header size", b, n, 0, 0, "header_size");
    memcpy(b, good, n), put32(b + 16, 301);
    expect_bad("header corrupt", b, n, 0, 0, "header checksum");
    memcpy(b, good, n), put32(b + 20, 4), fix_header_sum(b);
    expect_bad("token width", b, n, 0, 0, "token_bytes");
    memcpy(b, good, n), put32(b + 16, 0), fix_header_sum(b);
    expect_bad("zero vocab", b, n, 0, 0, "vocab_size");
    memcpy(b, good, n), put64(b + 32, 101), fix_header_sum(b);
    expect_bad("count too large", b, n, 0, 0, "truncated");
    memcpy(b, good, n), put64(b + 32, UINT64_MAX / 2), fix_header_sum(b);
    expect_bad("count overflows", b, n, 0, 0, "truncated");
    expect_bad("file cut short", good, n - 3, 0, 0, "truncated");
    memcpy(b, good, n), memset(b + n, 0, 2);
    expect_bad("trailing bytes", b, n + 2, 0, 0, "trailing");
    expect_bad("other vocabulary", good, n, 512, 0, "vocab_size");
    expect_bad("other tokenizer", good, n, 300, 98, "tokenizer_hash");
    memcpy(b, good, n), b[64 + 11] ^= 1;
    expect_bad("token bytes corrupt", b, n, 0, 0, "checksum");
    /* an id >= vocab with a consistent checksum */
    memcpy(b, good, n), b[64 + 2 * 7] = 0x2c, b[64 + 2 * 7 + 1] = 0x01; /* 300 */
    put64(b + 48, dsc_fnv1a64(DSC_FNV_OFFSET, b + 64, n - 64)), fix_header_sum(b);
    expect_bad("id out of range", b, n, 0, 0, "outside the vocabulary");

    path_of(path, sizeof path, "missing.bin");
    CHECK(dsc_shard_open(path, 0, 0, &s) == DSC_ERR && strstr(dsc_last_error(), "missing.bin"), "missing file");

    /* the writer rejects bad ids and leaves nothing behind on abort */
    path_of(path, sizeof path, "aborted.bin");
    dsc_shard_writer *w;
    CHECK(dsc_shard_writer_open(path, 300, 1, &w) == DSC_OK, "open");
    int32_t bad_ids[3] = {1, 300, 2}, neg[1] = {-1};
    CHECK(dsc_shard_writer_add(w, bad_ids, 3) == DSC_ERR && strstr(dsc_last_error(), "outside"), "id 300 rejected");
    CHECK(dsc_shard_writer_add(w, neg, 1) == DSC_ERR, "id -1 rejected");
    CHECK(dsc_shard_writer_tokens(w) == 0 && dsc_shard_writer_docs(w) == 0, "a rejected document leaves no trace");
    dsc_shard_writer_abort(w);
    CHECK(access(path, F_OK) != 0, "no file after abort");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls %s | grep -q tmp", tmpdir);
    CHECK(system(cmd) != 0, "no temporary file left behind");
    CHECK(dsc_shard_writer_open(path, 0, 1, &w) == DSC_ERR, "vocab 0 rejected");
    free(good);
    free(b);
}

/* ---------------------------------------------------------------------------------------------
 * Loader
 * ------------------------------------------------------------------------------------------- */
/* A shard whose token i is i, so a window's first token tells where it starts. */
static dsc_shard *counting_shard(int n) {
    char path[512];
    path_of(path, sizeof path, "count.bin");
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < n; i++) ids[i] = i;
    dsc_shard_write(path, ids, (uint64_t)n, n + 10, 1);
    free(ids);
    dsc_shard *s = NULL;
    CHECK(dsc_shard_open(path, 0, 0, &s) == DSC_OK, "counting shard: %s", dsc_last_error());
    return s;
}

static void test_loader(void) {
    const int T = 7;
    int sizes[5] = {8, 9, 15, 22, 1000};
    for (int z = 0; z < 5; z++) {
        dsc_shard *s = counting_shard(sizes[z]);
        dsc_loader *l;
        CHECK(dsc_loader_create(s, T, 42, &l) == DSC_OK, "create: %s", dsc_last_error());
        uint64_t W = dsc_loader_windows(l);
        CHECK(W == (uint64_t)(sizes[z] - 1) / T, "windows %llu for %d tokens", (unsigned long long)W, sizes[z]);
        /* every window exactly once per epoch, three epochs; windows are consecutive tokens */
        int32_t x[T], y[T];
        char *seen = calloc(W, 1);
        int32_t *order0 = malloc(sizeof(int32_t) * W);
        bool same_order = true;
        for (int e = 0; e < 3; e++) {
            memset(seen, 0, W);
            int dup = 0, bad = 0;
            for (uint64_t k = 0; k < W; k++) {
                dsc_loader_next(l, 1, x, y);
                if (x[0] % T || (uint64_t)(x[0] / T) >= W) {
                    bad++;
                    continue;
                }
                dup += seen[x[0] / T]++;
                for (int t = 0; t < T; t++) bad += x[t] != x[0] + t || y[t] != x[0] + t + 1;
                if (e == 0) order0[k] = x[0];
                else if (order0[k] != x[0]) same_order = false;
            }
            CHECK(dup == 0 && bad == 0, "epoch %d: %d windows repeated, %d bad (W=%llu)", e, dup, bad, (unsigned long long)W);
            dsc_loader_state st;
            dsc_loader_get_state(l, &st);
            CHECK(st.epoch == (uint64_t)e + 1 && st.position == 0 && st.seed == 42, "rollover after epoch %d", e);
        }
        if (W >= 20) CHECK(!same_order, "each epoch has its own order");
        free(seen);
        free(order0);
        dsc_loader_free(l);
        dsc_shard_close(s);
    }

    /* determinism, other seeds, save/restore mid-epoch and across an epoch boundary */
    dsc_shard *s = counting_shard(1000);
    dsc_loader *a, *b, *c;
    dsc_loader_create(s, T, 7, &a);
    dsc_loader_create(s, T, 7, &b);
    dsc_loader_create(s, T, 8, &c);
    int32_t xa[4 * T], ya[4 * T], xb[4 * T], yb[4 * T], xc[4 * T], yc[4 * T];
    int differ_ab = 0, differ_ac = 0;
    for (int i = 0; i < 100; i++) {
        dsc_loader_next(a, 4, xa, ya);
        dsc_loader_next(b, 4, xb, yb);
        dsc_loader_next(c, 4, xc, yc);
        differ_ab += memcmp(xa, xb, sizeof xa) != 0 || memcmp(ya, yb, sizeof ya) != 0;
        differ_ac += memcmp(xa, xc, sizeof xa) != 0;
    }
    CHECK(differ_ab == 0, "same seed, same stream");
    CHECK(differ_ac > 90, "another seed gives another stream");
    dsc_loader_state st;
    dsc_loader_get_state(a, &st);
    CHECK(st.epoch == 400 / 142 && st.position == 400 % 142, "state after 400 windows: epoch %llu position %llu",
          (unsigned long long)st.epoch, (unsigned long long)st.position);
    int32_t want[300 * T], got[300 * T], yw[300 * T];
    dsc_loader_next(a, 300, want, yw); /* crosses two epoch boundaries */
    dsc_loader *d;
    dsc_loader_create(s, T, 12345, &d);
    CHECK(dsc_loader_set_state(d, &st) == DSC_OK, "set_state");
    dsc_loader_next(d, 300, got, yw);
    CHECK(!memcmp(want, got, sizeof want), "a restored state continues the exact stream");
    dsc_loader_state bad = st;
    bad.position = 142;
    CHECK(dsc_loader_set_state(d, &bad) == DSC_ERR && strstr(dsc_last_error(), "position"), "position >= W rejected");
    dsc_loader_free(a);
    dsc_loader_free(b);
    dsc_loader_free(c);
    dsc_loader_free(d);
    CHECK(dsc_loader_create(s, 999, 1, &a) == DSC_OK && dsc_loader_windows(a) == 1, "one window of 999");
    dsc_loader_free(a);
    CHECK(dsc_loader_create(s, 1000, 1, &a) == DSC_ERR && strstr(dsc_last_error(), "fewer"), "T+1 > tokens rejected");
    CHECK(dsc_loader_create(s, 0, 1, &a) == DSC_ERR, "T = 0 rejected");
    dsc_shard_close(s);
}

/* ---------------------------------------------------------------------------------------------
 * Generated problems
 * ------------------------------------------------------------------------------------------- */
/* Every "a op b = c" in the reasoning holds: lines are "label: seg, seg, ..." and each segment
 * with " = " must have sides of equal value. Returns the number of equations checked. */
static int check_steps(const char *what, const char *reasoning) {
    int n_eq = 0;
    const char *line = reasoning;
    while (*line) {
        const char *end = strchr(line, '\n');
        if (!end) end = line + strlen(line);
        char buf[4096];
        size_t len = (size_t)(end - line) < sizeof buf - 1 ? (size_t)(end - line) : sizeof buf - 1;
        memcpy(buf, line, len);
        buf[len] = 0;
        char *rest = strstr(buf, ": ");
        rest = rest ? rest + 2 : buf;
        for (char *seg = strtok(rest, ","); seg; seg = strtok(NULL, ",")) {
            while (*seg == ' ') seg++;
            if (!strncmp(seg, "so ", 3)) seg += 3;
            if (!strstr(seg, " = ")) continue;
            dsc_rational first = {0, 1};
            int side = 0;
            char *p = seg;
            while (p) {
                char *q = strstr(p, " = ");
                size_t l = q ? (size_t)(q - p) : strlen(p);
                dsc_rational v;
                char err[128];
                bool ok = dsc_expr_eval(p, l, true, &v, NULL, 0, NULL, err, sizeof err);
                CHECK(ok, "%s: step '%s' does not parse: %s", what, seg, err);
                if (!ok) break;
                if (side++ == 0) first = v;
                else CHECK(v.num == first.num && v.den == first.den, "%s: wrong step '%s'", what, seg);
                p = q ? q + 3 : NULL;
            }
            n_eq++;
        }
        line = *end ? end + 1 : end;
    }
    return n_eq;
}

static void i128_str(__int128 v, char *out) {
    char tmp[64];
    int n = 0;
    bool neg = v < 0;
    unsigned __int128 u = neg ? -(unsigned __int128)v : (unsigned __int128)v;
    do tmp[n++] = (char)('0' + (int)(u % 10)), u /= 10;
    while (u);
    int k = 0;
    if (neg) out[k++] = '-';
    while (n) out[k++] = tmp[--n];
    out[k] = 0;
}

static __int128 parse_i128(const char *s, const char **end) {
    bool neg = false;
    if (*s == '(') s++;
    if (*s == '-') neg = true, s++;
    __int128 v = 0;
    while (*s >= '0' && *s <= '9') v = v * 10 + (*s++ - '0');
    if (*s == ')') s++;
    *end = s;
    return neg ? -v : v;
}

/* The answer recomputed from the prompt "What is A op B?" with 128-bit integers. */
static void arithmetic_reference(const dsc_problem *p, char *out) {
    const char *s = p->prompt + strlen("What is "), *e;
    __int128 a = parse_i128(s, &e);
    char op = e[1];
    __int128 b = parse_i128(e + 3, &e);
    i128_str(op == '+' ? a + b : op == '-' ? a - b : a * b, out);
}

static void test_synth_generators(void) {
    dsc_synth_options o;
    dsc_synth_default_options(&o);
    static dsc_problem p, q;
    char ref[64];
    /* arithmetic: the answer is right, each step holds, the checker accepts it */
    for (int digits = 1; digits <= 18; digits += (digits < 9 ? 1 : 3)) {
        o.max_digits = digits;
        for (int i = 0; i < 300; i++) {
            CHECK(dsc_synth_generate(DSC_TASK_ARITHMETIC, DSC_SPLIT_TRAIN, 3, (uint64_t)i, &o, &p) == DSC_OK, "gen: %s",
                  dsc_last_error());
            arithmetic_reference(&p, ref);
            CHECK(!strcmp(ref, p.answer), "'%s': answer %s, expected %s", p.prompt, p.answer, ref);
            if (digits <= 9) CHECK(check_steps(p.prompt, p.reasoning) >= 1, "'%s': no checkable step", p.prompt);
            dsc_check_result r;
            char resp[300];
            snprintf(resp, sizeof resp, "</think>\n%s", p.answer);
            CHECK(dsc_synth_check(&p, resp, &r) == DSC_OK && r.correct, "'%s': checker rejects %s", p.prompt, p.answer);
            CHECK(!dsc_synth_is_heldout(&p), "a training problem is held out");
        }
    }
    /* countdown: the stored solution reaches the target with the given numbers */
    dsc_synth_default_options(&o);
    int count[7] = {0};
    for (int i = 0; i < 1500; i++) {
        CHECK(dsc_synth_generate(DSC_TASK_COUNTDOWN, DSC_SPLIT_TRAIN, 3, (uint64_t)i, &o, &p) == DSC_OK, "gen: %s",
              dsc_last_error());
        CHECK(p.n_numbers >= 3 && p.n_numbers <= 6, "numbers %d", p.n_numbers);
        count[p.n_numbers]++;
        CHECK(p.target >= 10 && p.target <= 999, "target %lld", (long long)p.target);
        for (int k = 0; k < p.n_numbers; k++)
            CHECK(p.numbers[k] >= 1 && p.numbers[k] <= 100 && p.numbers[k] != p.target, "number %lld", (long long)p.numbers[k]);
        dsc_check_result r;
        CHECK(dsc_synth_check(&p, p.answer, &r) == DSC_OK && r.correct, "'%s': own answer '%s' rejected: %s", p.prompt,
              p.answer, r.reason);
        CHECK(check_steps(p.prompt, p.reasoning) >= 2, "'%s': too few checkable steps", p.prompt);
        CHECK(!dsc_synth_is_heldout(&p), "a training problem is held out");
    }
    for (int k = 3; k <= 6; k++) CHECK(count[k] > 200, "%d numbers drawn only %d times", k, count[k]);

    /* determinism and seeds */
    for (int t = 0; t < 2; t++) {
        dsc_task task = (dsc_task)t;
        int same_other_seed = 0;
        for (int i = 0; i < 50; i++) {
            dsc_synth_generate(task, DSC_SPLIT_TRAIN, 11, (uint64_t)i, NULL, &p);
            dsc_synth_generate(task, DSC_SPLIT_TRAIN, 11, (uint64_t)i, NULL, &q);
            CHECK(!strcmp(p.prompt, q.prompt) && !strcmp(p.reasoning, q.reasoning) && !strcmp(p.answer, q.answer),
                  "problem %d is not deterministic", i);
            dsc_synth_generate(task, DSC_SPLIT_TRAIN, 12, (uint64_t)i, NULL, &q);
            same_other_seed += !strcmp(p.prompt, q.prompt);
        }
        CHECK(same_other_seed < 5, "seeds 11 and 12 share %d of 50 %s problems", same_other_seed, dsc_task_name(task));
    }
    /* a fixed problem, so that a change of the generator is noticed */
    dsc_synth_generate(DSC_TASK_ARITHMETIC, DSC_SPLIT_TRAIN, 1, 0, NULL, &p);
    printf("arithmetic seed 1 #0: %s -> %s\n", p.prompt, p.answer);
    dsc_synth_generate(DSC_TASK_COUNTDOWN, DSC_SPLIT_TRAIN, 1, 0, NULL, &p);
    printf("countdown seed 1 #0: %s -> %s\n", p.prompt, p.answer);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_heldout(void) {
    static dsc_problem p;
    for (int t = 0; t < 2; t++) {
        dsc_task task = (dsc_task)t;
        int nh = t ? 150 : 400, nt = t ? 3000 : 20000;
        uint64_t *held = malloc(sizeof(uint64_t) * (size_t)nh);
        int distinct = 0;
        for (int i = 0; i < nh; i++) {
            CHECK(dsc_synth_generate(task, DSC_SPLIT_HELDOUT, DSC_SYNTH_HELDOUT_SEED, (uint64_t)i, NULL, &p) == DSC_OK,
                  "held-out: %s", dsc_last_error());
            CHECK(dsc_synth_is_heldout(&p), "held-out problem %d is not in the held-out class", i);
            held[i] = dsc_synth_content_hash(&p);
            dsc_check_result r;
            CHECK(dsc_synth_check(&p, p.answer, &r) == DSC_OK && r.correct, "held-out answer rejected");
        }
        qsort(held, (size_t)nh, sizeof *held, cmp_u64);
        for (int i = 0; i < nh; i++) distinct += i == 0 || held[i] != held[i - 1];
        CHECK(distinct > nh * 9 / 10, "held-out set has only %d distinct of %d", distinct, nh);
        /* training streams of several seeds (the held-out seed too) never meet the held-out set */
        int met = 0;
        uint64_t seeds[3] = {1, 2, DSC_SYNTH_HELDOUT_SEED};
        for (int s = 0; s < 3; s++)
            for (int i = 0; i < nt / 3; i++) {
                dsc_synth_generate(task, DSC_SPLIT_TRAIN, seeds[s], (uint64_t)i, NULL, &p);
                uint64_t h = dsc_synth_content_hash(&p);
                met += bsearch(&h, held, (size_t)nh, sizeof *held, cmp_u64) != NULL;
                met += dsc_synth_is_heldout(&p);
            }
        CHECK(met == 0, "%s: %d training problems are in the held-out set", dsc_task_name(task), met);
        free(held);
    }
    /* the split depends on content only: reordering countdown numbers keeps the hash */
    dsc_synth_generate(DSC_TASK_COUNTDOWN, DSC_SPLIT_TRAIN, 1, 3, NULL, &p);
    uint64_t h = dsc_synth_content_hash(&p);
    int64_t t = p.numbers[0];
    p.numbers[0] = p.numbers[p.n_numbers - 1];
    p.numbers[p.n_numbers - 1] = t;
    CHECK(dsc_synth_content_hash(&p) == h, "reordered numbers change the content hash");
}

static void test_render_json(void) {
    static dsc_problem p, q;
    static char buf[32768];
    dsc_synth_generate(DSC_TASK_COUNTDOWN, DSC_SPLIT_TRAIN, 1, 1, NULL, &p);
    size_t n = dsc_synth_render(&p, buf, sizeof buf);
    CHECK(n == strlen(buf), "render length");
    const char *bos = "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c><\xef\xbd\x9cUser\xef\xbd\x9c>";
    const char *eos = "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";
    CHECK(!strncmp(buf, bos, strlen(bos)), "starts with BOS and the user role");
    CHECK(n > strlen(eos) && !strcmp(buf + n - strlen(eos), eos), "ends with EOS");
    CHECK(strstr(buf, "\xef\xbd\x9c" "Assistant\xef\xbd\x9c><think>\n") && strstr(buf, "\n</think>\n"), "think block");
    printf("--- rendered countdown ---\n%s\n", buf);
    dsc_synth_generate(DSC_TASK_ARITHMETIC, DSC_SPLIT_TRAIN, 1, 1, NULL, &q);
    dsc_synth_render(&q, buf, sizeof buf);
    printf("--- rendered arithmetic ---\n%s\n---\n", buf);
    CHECK(dsc_synth_render(&p, buf, 10) == n && strlen(buf) == 9, "truncated render reports the full length");
    CHECK(dsc_chat_render("hi", NULL, "yo", buf, sizeof buf) > 0 && !strstr(buf, "<think>"), "no think without reasoning");
    size_t pn = dsc_synth_render_prompt(&p, buf, sizeof buf);
    CHECK(pn > 0 && strstr(buf, "<think>\n") == buf + pn - 8, "the prompt ends with <think>");

    for (int t = 0; t < 2; t++) {
        dsc_synth_generate((dsc_task)t, DSC_SPLIT_TRAIN, 4, 9, NULL, &p);
        char *line;
        CHECK(dsc_synth_to_json(&p, &line) == DSC_OK, "to_json");
        CHECK(dsc_synth_from_json(line, &q) == DSC_OK, "from_json: %s", dsc_last_error());
        CHECK(q.task == p.task && !strcmp(q.prompt, p.prompt) && !strcmp(q.answer, p.answer) &&
                  !strcmp(q.reasoning, p.reasoning) && q.n_numbers == p.n_numbers && q.target == p.target &&
                  !memcmp(q.numbers, p.numbers, sizeof p.numbers),
              "JSON round trip of %s", dsc_task_name(p.task));
        CHECK(dsc_synth_content_hash(&q) == dsc_synth_content_hash(&p), "JSON keeps the content hash");
        if (t == 1) printf("countdown JSONL: %s\n", line);
        free(line);
    }
    const char *bad[][2] = {
        {"{\"prompt\":\"x\",\"answer\":\"1\"}", "checker"},
        {"{\"prompt\":\"x\",\"answer\":\"1\",\"checker\":\"poetry\"}", "checker"},
        {"{\"checker\":\"arithmetic\",\"answer\":\"1\"}", "prompt"},
        {"{\"checker\":\"arithmetic\",\"prompt\":\"x\",\"answer\":1}", "answer"},
        {"{\"checker\":\"countdown\",\"prompt\":\"x\",\"answer\":\"1\",\"target\":5}", "numbers"},
        {"{\"checker\":\"countdown\",\"prompt\":\"x\",\"answer\":\"1\",\"numbers\":[1,2,3,4,5,6,7],\"target\":5}", "numbers"},
        {"{\"checker\":\"countdown\",\"prompt\":\"x\",\"answer\":\"1\",\"numbers\":[1,\"2\"],\"target\":5}", "numbers"},
        {"{\"checker\":\"countdown\",\"prompt\":\"x\",\"answer\":\"1\",\"numbers\":[1,2]}", "target"},
        {"[1,2]", "object"},
        {"{\"checker\":", "JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(dsc_synth_from_json(bad[i][0], &q) == DSC_ERR && strstr(dsc_last_error(), bad[i][1]),
              "bad JSON %zu: '%s' (%s)", i, dsc_last_error(), bad[i][1]);
    dsc_task task;
    CHECK(dsc_task_parse("countdown", &task) == DSC_OK && task == DSC_TASK_COUNTDOWN, "task parse");
    CHECK(dsc_task_parse("Countdown", &task) == DSC_ERR, "task names are exact");
    dsc_synth_options o;
    dsc_synth_default_options(&o);
    o.max_digits = 19;
    CHECK(dsc_synth_generate(DSC_TASK_ARITHMETIC, DSC_SPLIT_TRAIN, 1, 0, &o, &p) == DSC_ERR &&
              strstr(dsc_last_error(), "max_digits"), "max_digits 19 rejected");
}

/* ---------------------------------------------------------------------------------------------
 * Checkers on tricky responses
 * ------------------------------------------------------------------------------------------- */
static void expect(const dsc_problem *p, const char *resp, bool correct, bool parsed) {
    dsc_check_result r;
    CHECK(dsc_synth_check(p, resp, &r) == DSC_OK, "check failed");
    CHECK(r.correct == correct && r.parsed == parsed, "'%s': correct %d parsed %d (want %d %d), reason '%s'", resp,
          r.correct, r.parsed, correct, parsed, r.reason);
}

static void test_checkers(void) {
    static dsc_problem a, c, d;
    memset(&a, 0, sizeof a);
    a.task = DSC_TASK_ARITHMETIC;
    strcpy(a.answer, "-5535");
    const char *eos = "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";
    char buf[256];
    expect(&a, "-5535", true, true);
    expect(&a, "<think>\n123 * 45 = 5535\n</think>\n-5535", true, true);
    snprintf(buf, sizeof buf, "</think>  -5535 \n%s", eos);
    expect(&a, buf, true, true);
    expect(&a, "-05535", true, true);
    expect(&a, "5535", false, true);
    expect(&a, "-5536", false, true);
    expect(&a, "The answer is -5535", false, false);
    expect(&a, "-5535.", false, false);
    expect(&a, "-5535 -5535", false, false);
    expect(&a, "- 5535", false, false);
    expect(&a, "<think>-5535", false, false);
    expect(&a, "</think>", false, false);
    expect(&a, "", false, false);
    expect(&a, "-", false, false);
    expect(&a, "999999999999999999999999999999999999999999999999", false, true);
    expect(&a, "</think>7</think>-5535", true, true);
    expect(&a, "-5535</think>7", false, true);
    strcpy(a.answer, "0");
    expect(&a, "-0", true, true);
    expect(&a, "000", true, true);

    memset(&c, 0, sizeof c);
    c.task = DSC_TASK_COUNTDOWN;
    int64_t nums[4] = {25, 3, 7, 50};
    memcpy(c.numbers, nums, sizeof nums);
    c.n_numbers = 4;
    c.target = 118;
    expect(&c, "25*3+50-7", true, true);
    expect(&c, "<think>search</think>\n(25 * 3) + 50 - 7 = 118", true, true);
    expect(&c, "25 \xc3\x97 3 + 50 \xe2\x88\x92 7", true, true);  /* × and − */
    expect(&c, "50 + 25 * 3 - 7", true, true);
    expect(&c, "(50 + 25 * 3 - 7)", true, true);
    expect(&c, "25*3+50-7 = 119", false, true);
    expect(&c, "25*3+50-7 = ", false, false);
    expect(&c, "25*3+50-7 = 118 yes", false, false);
    expect(&c, "25*3+50-7+0", false, true);             /* 0 is not given */
    expect(&c, "25*3*3+50-7", false, true);             /* 3 used twice */
    expect(&c, "25*3+50+50-57", false, true);
    expect(&c, "((25*3)+50-7", false, false);           /* unbalanced */
    expect(&c, "25*3)+50-7", false, false);
    expect(&c, "25*3+50-7)", false, false);
    expect(&c, "()", false, false);
    expect(&c, "50/(7-7)", false, true);                /* division by zero */
    expect(&c, "50/(25-25)", false, true);
    expect(&c, "99999999999999999999*3", false, true);  /* too many digits */
    expect(&c, "-25+3", false, false);                  /* unary minus */
    expect(&c, "25 3", false, false);
    expect(&c, "The answer: 25*3+50-7", false, false);
    expect(&c, "25*3+50-7\n\nso that works", false, false);
    expect(&c, "118", false, true);
    expect(&c, "25 ** 3", false, false);
    expect(&c, "<think>25*3+50-7", false, false);
    snprintf(buf, sizeof buf, "25*3+50-7%s", eos);
    expect(&c, buf, true, true);
    char deep[410];
    memset(deep, '(', 200);
    memcpy(deep + 200, "25", 2);
    memset(deep + 202, ')', 200);
    deep[402] = 0;
    expect(&c, deep, false, false);                     /* nesting > 64 */
    /* numbers given twice may be used twice; overflow of rationals is wrong, not a crash */
    memset(&d, 0, sizeof d);
    d.task = DSC_TASK_COUNTDOWN;
    int64_t big[6] = {100, 100, 100, 100, 100, 100};
    memcpy(d.numbers, big, sizeof big);
    d.n_numbers = 6;
    d.target = 200;
    expect(&d, "100+100", true, true);
    expect(&d, "100*100*100*100*100*100", false, true);
    expect(&d, "100/(100*100*100*100*100)", false, true);
    expect(&d, "100+100+100-100-100+100-100", false, true); /* seven uses of six */
    dsc_problem e = d;
    e.n_numbers = 3, e.numbers[0] = 7, e.numbers[1] = 2, e.numbers[2] = 4, e.target = 14;
    expect(&e, "7 / 2 * 4", true, true);                /* exact rationals: 7/2 is fine */
    expect(&e, "7 / (2 * 4) * 4", false, true);         /* 4 twice */
    e = d;
    e.numbers[0] = 999999999;
    e.numbers[1] = 999999999;
    e.numbers[2] = 999999999;
    expect(&e, "999999999*999999999*999999999", false, true); /* 1e27: overflow */

    /* random garbage never crashes and is never accepted */
    dsc_rng r;
    dsc_rng_seed(&r, 9);
    const char alphabet[] = "0123456789+-*/() =\n<>/think";
    int accepted = 0;
    for (int i = 0; i < 20000; i++) {
        char s[40];
        int n = (int)(dsc_rng_u64(&r) % 39);
        for (int k = 0; k < n; k++) s[k] = alphabet[dsc_rng_u64(&r) % (sizeof alphabet - 1)];
        s[n] = 0;
        dsc_check_result res;
        dsc_synth_check(&c, s, &res);
        accepted += res.correct;
        dsc_synth_check(&a, s, &res); /* answer "0": "0" or "</think>00" may legitimately pass */
    }
    CHECK(accepted == 0, "random strings accepted %d times by the countdown checker", accepted);
}

/* ---------------------------------------------------------------------------------------------
 * Corpus documents (the form-feed delimiter)
 * ------------------------------------------------------------------------------------------- */
static void expect_docs(const char *text, const char *want) {
    char got[256] = "";
    size_t pos = 0, len;
    const char *doc;
    while (dsc_next_document(text, strlen(text), &pos, &doc, &len))
        snprintf(got + strlen(got), sizeof got - strlen(got), "[%.*s]", (int)len, doc);
    CHECK(!strcmp(got, want), "documents of '%s': %s, expected %s", text, got, want);
}

static void test_docsplit(void) {
    expect_docs("", "");
    expect_docs("one", "[one]");
    expect_docs("one\n\f\ntwo", "[one][two]");
    expect_docs("one\n\f\ntwo\n", "[one][two\n]");
    expect_docs("\f\none\n\f\n\f\ntwo\n\f", "[one][two]");
    expect_docs("one\n\f\r\ntwo", "[one][two]");
    expect_docs("one\n\f\n  \n\t\n\f\ntwo", "[one][two]");      /* blank documents skipped */
    expect_docs("a\fb\n\f x\nc", "[a\fb\n\f x\nc]");              /* form feeds inside lines */
    expect_docs("line1\nline2\n\n\f\nline3", "[line1\nline2\n][line3]");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dsc_test_data.%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", tmpdir);
    if (system(cmd) != 0) return 1;
    test_shard_round_trip();
    test_shard_bad();
    test_loader();
    test_synth_generators();
    test_heldout();
    test_render_json();
    test_checkers();
    test_docsplit();
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) return 1;
    return tu_finish("test_data");
}
