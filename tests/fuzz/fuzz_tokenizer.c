/* fuzz_tokenizer.c: libFuzzer target for the tokenizer. Input starting with byte 0: the rest is
 * a tokenizer.json; it must load or give a one-line error naming the file, and a loaded one must
 * round-trip a fixed text. Any other input: bytes that must encode (with and without special
 * tokens) to ids inside the vocabulary and decode back to exactly the same bytes, through a
 * tokenizer trained at start-up on a small mixed corpus. Never a crash or a sanitizer report. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tok/tokenizer.h"

#define REQUIRE(c)                                                                                                     \
    do {                                                                                                               \
        if (!(c)) __builtin_trap();                                                                                    \
    } while (0)

static dsc_tokenizer *trained;
static char json_path[64] = "/tmp/dsc_fuzz_tok_XXXXXX";

static void remove_json(void) { unlink(json_path); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char corpus[] = "/tmp/dsc_fuzz_corpus_XXXXXX";
    int fd = mkstemp(corpus);
    REQUIRE(fd >= 0);
    FILE *f = fdopen(fd, "w");
    for (int i = 0; i < 300; i++)
        fprintf(f,
                "Line %d: the quick brown fox, 深度求索 %d café 😀👍🏽\t<think>x</think>\n  def f(x): return "
                "x\n",
                i, i * 7919);
    fclose(f);
    const char *files[] = {corpus};
    dsc_bpe_options o = {.vocab_size = 700, .threads = 1};
    REQUIRE(dsc_tokenizer_train(files, 1, &o, &trained) == DSC_OK);
    unlink(corpus);
    fd = mkstemp(json_path);
    REQUIRE(fd >= 0);
    close(fd);
    atexit(remove_json);
    return 0;
}

static void roundtrip(const dsc_tokenizer *t, const char *s, size_t n, bool special) {
    int32_t *ids;
    size_t m;
    REQUIRE(dsc_tokenizer_encode(t, s, n, special, &ids, &m) == DSC_OK);
    for (size_t i = 0; i < m; i++) REQUIRE(ids[i] >= 0 && ids[i] < dsc_tokenizer_vocab_size(t));
    char *back;
    size_t len;
    REQUIRE(dsc_tokenizer_decode(t, ids, m, &back, &len) == DSC_OK);
    REQUIRE(len == n && (n == 0 || memcmp(back, s, n) == 0));
    free(back);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 0 && data[0] == 0) {
        FILE *f = fopen(json_path, "wb");
        REQUIRE(f && fwrite(data + 1, 1, size - 1, f) == size - 1);
        fclose(f);
        dsc_tokenizer *t;
        if (dsc_tokenizer_load(json_path, &t) != DSC_OK) {
            const char *msg = dsc_last_error();
            REQUIRE(strstr(msg, json_path) && !strchr(msg, '\n'));
            return 0;
        }
        static const char text[] = "Hello, world! 12345 深度 \xff\xfe <think>";
        roundtrip(t, text, sizeof text - 1, false);
        dsc_tokenizer_free(t);
        return 0;
    }
    roundtrip(trained, (const char *)data, size, true);
    roundtrip(trained, (const char *)data, size, false);
    return 0;
}
