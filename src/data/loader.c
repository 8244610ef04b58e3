/* loader.c: deterministic training batches from a shard. The shard is cut into W windows of T+1
 * tokens starting at k*T (k = 0..W-1, W = floor((n_tokens-1)/T)); each epoch visits every window
 * once in the order of a seeded bijection of [0, W) (a Feistel network with cycle walking, keyed
 * by (seed, epoch)), so no O(W) table exists and any (epoch, position) is reached in O(1).
 * The same seed gives the same stream on every machine. */
#include <stdlib.h>

#include "base/error.h"
#include "data/data.h"

#define FEISTEL_ROUNDS 6

struct dsc_loader {
    const dsc_shard *shard;
    int T;
    uint64_t windows;                /* W */
    dsc_loader_state st;
    int half_bits;                   /* the permuted domain is [0, 2^(2*half_bits)) >= W */
    uint64_t keys[FEISTEL_ROUNDS];   /* round keys of st.epoch */
    uint64_t keys_epoch;             /* the epoch the keys belong to */
    uint64_t keys_seed;
};

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void derive_keys(dsc_loader *l) {
    uint64_t x = mix64(l->st.seed ^ 0x6a09e667f3bcc908ull) ^ mix64(l->st.epoch + 0x9E3779B97F4A7C15ull);
    for (int r = 0; r < FEISTEL_ROUNDS; r++) {
        x += 0x9E3779B97F4A7C15ull;
        l->keys[r] = mix64(x);
    }
    l->keys_epoch = l->st.epoch;
    l->keys_seed = l->st.seed;
}

/* A bijection of [0, 2^(2h)): balanced Feistel rounds on two h-bit halves. */
static uint64_t feistel(const dsc_loader *l, uint64_t x) {
    int h = l->half_bits;
    uint64_t mask = h == 32 ? 0xffffffffull : ((1ull << h) - 1);
    uint64_t L = (x >> h) & mask, R = x & mask;
    for (int r = 0; r < FEISTEL_ROUNDS; r++) {
        uint64_t f = mix64(R ^ l->keys[r]) & mask;
        uint64_t t = L ^ f;
        L = R;
        R = t;
    }
    return (L << h) | R;
}

/* The window visited at `position` of the current epoch (cycle walking keeps values < W). */
static uint64_t window_at(dsc_loader *l, uint64_t position) {
    if (l->keys_epoch != l->st.epoch || l->keys_seed != l->st.seed) derive_keys(l);
    uint64_t x = position;
    do x = feistel(l, x);
    while (x >= l->windows);
    return x;
}

dsc_status dsc_loader_create(const dsc_shard *s, int T, uint64_t seed, dsc_loader **out) {
    *out = NULL;
    if (T < 1) return dsc_set_error("loader: sequence length T must be >= 1, found %d", T);
    uint64_t n = dsc_shard_tokens(s);
    if (n < (uint64_t)T + 1)
        return dsc_set_error("loader: the shard holds %llu tokens, fewer than one window of T+1 = %d",
                             (unsigned long long)n, T + 1);
    dsc_loader *l = calloc(1, sizeof *l);
    if (!l) return dsc_set_error("loader: out of memory");
    l->shard = s;
    l->T = T;
    l->windows = (n - 1) / (uint64_t)T;
    int bits = 2;
    while (bits < 64 && (1ull << bits) < l->windows) bits++;
    if (bits & 1) bits++;
    l->half_bits = bits / 2;
    l->st.seed = seed;
    derive_keys(l);
    *out = l;
    return DSC_OK;
}

void dsc_loader_free(dsc_loader *l) { free(l); }

uint64_t dsc_loader_windows(const dsc_loader *l) { return l->windows; }

void dsc_loader_next(dsc_loader *l, int B, int32_t *tokens, int32_t *targets) {
    int T = l->T;
    for (int b = 0; b < B; b++) {
        uint64_t start = window_at(l, l->st.position) * (uint64_t)T;
        int32_t *x = tokens + (size_t)b * T, *y = targets + (size_t)b * T; /* [T] each */
        int32_t prev = dsc_shard_token(l->shard, start);
        for (int t = 0; t < T; t++) {
            int32_t next = dsc_shard_token(l->shard, start + t + 1);
            x[t] = prev;
            y[t] = next;
            prev = next;
        }
        if (++l->st.position == l->windows) {
            l->st.position = 0;
            l->st.epoch++;
        }
    }
}

void dsc_loader_get_state(const dsc_loader *l, dsc_loader_state *st) { *st = l->st; }

dsc_status dsc_loader_set_state(dsc_loader *l, const dsc_loader_state *st) {
    if (st->position >= l->windows)
        return dsc_set_error("loader state: position: expected < %llu (windows of T=%d in this shard), found %llu "
                             "(a state from another shard or sequence length?)",
                             (unsigned long long)l->windows, l->T, (unsigned long long)st->position);
    l->st = *st;
    return DSC_OK;
}
