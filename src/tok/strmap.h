/* strmap.h: the two hash maps the tokenizer needs: byte strings -> 64-bit values (vocabulary, word
 * counts of training, the per-call encode cache) and 64-bit keys -> 64-bit values (token pairs).
 * Open addressing with linear probing; entries of the string map keep their insertion order. */
#ifndef DSC_TOK_STRMAP_H
#define DSC_TOK_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

uint64_t tok_hash_bytes(const void *p, size_t n);

typedef struct {
    uint64_t hash;
    uint64_t key_off;  /* into keys */
    uint32_t key_len;
    uint64_t value;
} strmap_entry;

typedef struct {
    uint32_t *slots;   /* entry index + 1, 0 = empty; slot count is a power of two */
    size_t n_slots;
    strmap_entry *e;   /* entries in insertion order */
    size_t n, e_cap;
    char *keys;        /* all keys back to back */
    size_t keys_len, keys_cap;
} dsc_strmap;

int strmap_init(dsc_strmap *m, size_t expect);
void strmap_free(dsc_strmap *m);
/* Entry index of key, or -1. */
int64_t strmap_find(const dsc_strmap *m, const void *key, size_t len);
/* Finds key or inserts it with value; *index gets the entry index, *added whether it is new. */
int strmap_insert(dsc_strmap *m, const void *key, size_t len, uint64_t value, size_t *index, bool *added);
static inline const char *strmap_key(const dsc_strmap *m, size_t i, size_t *len) {
    *len = m->e[i].key_len;
    return m->keys + m->e[i].key_off;
}

/* 64-bit keys (UINT64_MAX is reserved) to 64-bit values. */
typedef struct {
    uint64_t *keys, *vals;
    size_t cap, n;
} dsc_u64map;

int u64map_init(dsc_u64map *m, size_t expect);
void u64map_free(dsc_u64map *m);
/* Pointer to the value of key, or NULL. */
static inline uint64_t *u64map_find(const dsc_u64map *m, uint64_t key) {
    if (!m->cap) return NULL;
    size_t mask = m->cap - 1, i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & mask;
    for (;; i = (i + 1) & mask) {
        if (m->keys[i] == key) return &m->vals[i];
        if (m->keys[i] == UINT64_MAX) return NULL;
    }
}
/* Pointer to the value of key, inserted with value def if absent; NULL when out of memory. */
uint64_t *u64map_get(dsc_u64map *m, uint64_t key, uint64_t def);

#endif
