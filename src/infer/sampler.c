/* sampler.c: greedy and filtered temperature sampling (see sampler.h). */
#include <math.h>
#include <stdlib.h>

#include "infer/sampler.h"

typedef struct {
    float p;
    int32_t id;
} cand;

static int by_prob_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->p > y->p) return -1;
    if (x->p < y->p) return 1;
    return (x->id > y->id) - (x->id < y->id);
}

int32_t sampler_pick(const float *logits, int V, const sampler_options *o, dsc_rng *rng, void *scratch) {
    int32_t best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best]) best = v;
    if (o->temperature <= 0) return best;
    cand *c = scratch;
    float mx = logits[best];
    double z = 0;
    for (int v = 0; v < V; v++) {
        c[v].p = expf((logits[v] - mx) / o->temperature);
        c[v].id = v;
        z += c[v].p;
    }
    if (o->top_k <= 0 && o->min_p <= 0 && (o->top_p <= 0 || o->top_p >= 1)) {
        /* no filter: draw from the whole distribution without sorting it (RL rollouts) */
        double u = dsc_rng_uniform(rng) * z, acc = 0;
        for (int v = 0; v < V; v++) {
            acc += c[v].p;
            if (u < acc) return v;
        }
        return best;
    }
    for (int v = 0; v < V; v++) c[v].p = (float)(c[v].p / z);
    qsort(c, (size_t)V, sizeof *c, by_prob_desc);
    int n = V;
    if (o->top_k > 0 && o->top_k < n) n = o->top_k;
    if (o->min_p > 0)
        while (n > 1 && c[n - 1].p < o->min_p * c[0].p) n--;
    if (o->top_p > 0 && o->top_p < 1) {
        double acc = 0;
        for (int i = 0; i < n; i++) {
            acc += c[i].p;
            if (acc >= o->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    double total = 0;
    for (int i = 0; i < n; i++) total += c[i].p;
    double u = dsc_rng_uniform(rng) * total, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += c[i].p;
        if (u < acc) return c[i].id;
    }
    return c[n - 1].id;
}
