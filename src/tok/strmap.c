/* strmap.c: open-addressing hash maps for the tokenizer (see strmap.h). Not thread-safe for
 * writers; concurrent finds on a map nobody writes are fine. */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "tok/strmap.h"

uint64_t tok_hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xC2B2AE3D27D4EB4Full);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, s, n);
    h = (h ^ v) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    h *= 0x94D049BB133111EBull;
    h ^= h >> 32;
    return h;
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

int strmap_init(dsc_strmap *m, size_t expect) {
    memset(m, 0, sizeof *m);
    m->n_slots = pow2_at_least(expect * 2);
    m->slots = calloc(m->n_slots, sizeof *m->slots);
    if (!m->slots) return dsc_set_error("tokenizer: out of memory for a hash map of %zu entries", expect);
    return DSC_OK;
}

void strmap_free(dsc_strmap *m) {
    free(m->slots);
    free(m->e);
    free(m->keys);
    memset(m, 0, sizeof *m);
}

int64_t strmap_find(const dsc_strmap *m, const void *key, size_t len) {
    uint64_t h = tok_hash_bytes(key, len);
    size_t mask = m->n_slots - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        uint32_t s = m->slots[i];
        if (!s) return -1;
        const strmap_entry *e = &m->e[s - 1];
        if (e->hash == h && e->key_len == len && !memcmp(m->keys + e->key_off, key, len)) return (int64_t)s - 1;
    }
}

static int grow_slots(dsc_strmap *m) {
    size_t n_slots = m->n_slots * 2, mask = n_slots - 1;
    uint32_t *slots = calloc(n_slots, sizeof *slots);
    if (!slots) return dsc_set_error("tokenizer: out of memory growing a hash map to %zu slots", n_slots);
    for (size_t k = 0; k < m->n; k++) {
        size_t i = (size_t)m->e[k].hash & mask;
        while (slots[i]) i = (i + 1) & mask;
        slots[i] = (uint32_t)(k + 1);
    }
    free(m->slots);
    m->slots = slots;
    m->n_slots = n_slots;
    return DSC_OK;
}

int strmap_insert(dsc_strmap *m, const void *key, size_t len, uint64_t value, size_t *index, bool *added) {
    uint64_t h = tok_hash_bytes(key, len);
    size_t mask = m->n_slots - 1, i = (size_t)h & mask;
    for (;; i = (i + 1) & mask) {
        uint32_t s = m->slots[i];
        if (!s) break;
        const strmap_entry *e = &m->e[s - 1];
        if (e->hash == h && e->key_len == len && !memcmp(m->keys + e->key_off, key, len)) {
            if (index) *index = s - 1;
            if (added) *added = false;
            return DSC_OK;
        }
    }
    if (m->n >= UINT32_MAX - 1 || len > UINT32_MAX) return dsc_set_error("tokenizer: hash map full");
    if (m->n == m->e_cap) {
        size_t cap = m->e_cap ? m->e_cap * 2 : 64;
        strmap_entry *e = realloc(m->e, cap * sizeof *e);
        if (!e) return dsc_set_error("tokenizer: out of memory for %zu hash map entries", cap);
        m->e = e;
        m->e_cap = cap;
    }
    if (m->keys_len + len > m->keys_cap) {
        size_t cap = m->keys_cap ? m->keys_cap : 1024;
        while (cap < m->keys_len + len) cap *= 2;
        char *k = realloc(m->keys, cap);
        if (!k) return dsc_set_error("tokenizer: out of memory for %zu bytes of hash map keys", cap);
        m->keys = k;
        m->keys_cap = cap;
    }
    if (len) memcpy(m->keys + m->keys_len, key, len);
    m->e[m->n] = (strmap_entry){h, m->keys_len, (uint32_t)len, value};
    m->keys_len += len;
    m->slots[i] = (uint32_t)(m->n + 1);
    if (index) *index = m->n;
    if (added) *added = true;
    m->n++;
    if (m->n * 2 > m->n_slots) return grow_slots(m);
    return DSC_OK;
}

int u64map_init(dsc_u64map *m, size_t expect) {
    m->n = 0;
    m->cap = pow2_at_least(expect * 2);
    m->keys = malloc(m->cap * sizeof *m->keys);
    m->vals = malloc(m->cap * sizeof *m->vals);
    if (!m->keys || !m->vals) {
        u64map_free(m);
        return dsc_set_error("tokenizer: out of memory for a pair map of %zu entries", expect);
    }
    memset(m->keys, 0xff, m->cap * sizeof *m->keys);
    return DSC_OK;
}

void u64map_free(dsc_u64map *m) {
    free(m->keys);
    free(m->vals);
    m->keys = m->vals = NULL;
    m->cap = m->n = 0;
}

static size_t u64_slot(const dsc_u64map *m, uint64_t key) {
    size_t mask = m->cap - 1, i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & mask;
    while (m->keys[i] != key && m->keys[i] != UINT64_MAX) i = (i + 1) & mask;
    return i;
}

uint64_t *u64map_get(dsc_u64map *m, uint64_t key, uint64_t def) {
    size_t i = u64_slot(m, key);
    if (m->keys[i] == key) return &m->vals[i];
    if ((m->n + 1) * 2 > m->cap) {
        dsc_u64map g;
        if (u64map_init(&g, m->cap)) return NULL;
        for (size_t k = 0; k < m->cap; k++)
            if (m->keys[k] != UINT64_MAX) {
                size_t j = u64_slot(&g, m->keys[k]);
                g.keys[j] = m->keys[k];
                g.vals[j] = m->vals[k];
            }
        g.n = m->n;
        u64map_free(m);
        *m = g;
        i = u64_slot(m, key);
    }
    m->keys[i] = key;
    m->vals[i] = def;
    m->n++;
    return &m->vals[i];
}
