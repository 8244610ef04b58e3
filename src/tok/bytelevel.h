/* bytelevel.h: GPT-2's bytes_to_unicode alphabet, as Hugging Face's ByteLevel pre-tokenizer and
 * decoder use it: each byte value is written as one printable character (the printable Latin-1
 * bytes as themselves, the other 68 as U+0100..U+0143 in byte order), so any byte string becomes
 * a valid UTF-8 token string and back. Also the strict UTF-8 checks the pre-tokenizer needs. */
#ifndef DSC_TOK_BYTELEVEL_H
#define DSC_TOK_BYTELEVEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The code point that stands for byte b. */
static inline uint32_t bytelevel_char(uint8_t b) {
    if (b <= 0x20) return 0x100 + b;                    /* controls and space: 0..32 */
    if (b <= 0x7e) return b;                            /* '!' .. '~' */
    if (b <= 0xa0) return 0x100 + 33 + (b - 0x7f);      /* DEL, C1 controls, NBSP: 33..66 */
    if (b == 0xad) return 0x100 + 67;                   /* soft hyphen */
    return b;                                           /* the other Latin-1 characters */
}

/* The byte that code point cp stands for, or -1 if cp is not in the alphabet. */
int bytelevel_byte(uint32_t cp);

/* Writes the byte-level form of in[0..n) to out (room for 2n bytes); returns its length. */
size_t bytelevel_encode(const uint8_t *in, size_t n, char *out);
/* Decodes a byte-level token string into out (room for n bytes). Returns false, leaving *out_n
 * undefined, if s holds a character outside the alphabet or is not valid UTF-8. */
bool bytelevel_decode(const char *s, size_t n, uint8_t *out, size_t *out_n);

/* Length of the valid UTF-8 character at s[0..n) (1-4), or 0 if the bytes there are not one
 * (overlong forms, surrogates and code points above U+10FFFF are invalid, as in Unicode). */
size_t utf8_char_len(const uint8_t *s, size_t n);
/* Length of the longest valid UTF-8 prefix of s[0..n). */
size_t utf8_valid_prefix(const uint8_t *s, size_t n);
/* Decodes the valid character at s (see utf8_char_len) into *cp; returns its length or 0. */
size_t utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);

#endif
