/* docsplit.c: the documents of a corpus text file. A line holding exactly one form feed (then an
 * optional '\r') separates documents; scripts/corpus.sh writes "\n\f\n" between documents. */
#include <string.h>

#include "data/prepare.h"

static bool blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r\n\f\v", s[i]) || !s[i]) return false;
    return true;
}

/* Is there a delimiter line starting at i (i at a line start)? Sets *next past its newline. */
static bool delimiter_at(const char *t, size_t len, size_t i, size_t *next) {
    if (i >= len || t[i] != '\f') return false;
    size_t j = i + 1;
    if (j < len && t[j] == '\r') j++;
    if (j == len) {
        *next = len;
        return true;
    }
    if (t[j] != '\n') return false;
    *next = j + 1;
    return true;
}

bool dsc_next_document(const char *text, size_t len, size_t *pos, const char **doc, size_t *doc_len) {
    while (*pos < len) {
        size_t start = *pos, i = start, next = len, end = len;
        /* a delimiter right at the start (the file or the previous delimiter's end) */
        if (delimiter_at(text, len, i, &next)) {
            *pos = next;
            continue;
        }
        for (;;) {
            const char *nl = memchr(text + i, '\n', len - i);
            if (!nl) {
                end = next = len;
                break;
            }
            i = (size_t)(nl - text) + 1;
            if (delimiter_at(text, len, i, &next)) {
                end = (size_t)(nl - text); /* the newline before the delimiter is not content */
                break;
            }
        }
        *pos = next;
        if (!blank(text + start, end - start)) {
            *doc = text + start;
            *doc_len = end - start;
            return true;
        }
    }
    return false;
}
