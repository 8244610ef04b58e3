/* loss.c: softmax cross-entropy, computed row by row with the max subtracted, and turned into its
 * gradient in place so the [N, V] logits buffer is reused. */
#include <math.h>
#include <omp.h>

#include <stddef.h>

#include "model/loss.h"

int64_t ce_count_targets(const int32_t *targets, int N) {
    int64_t n = 0;
    for (int i = 0; i < N; i++) n += targets[i] >= 0;
    return n;
}

double ce_forward_backward(float *logits, const int32_t *targets, int N, int V, float grad_scale) {
    double total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total)
    for (int i = 0; i < N; i++) {
        float *row = logits + (size_t)i * V;
        int t = targets[i];
        if (t < 0) {
            if (grad_scale != 0.0f)
                for (int v = 0; v < V; v++) row[v] = 0.0f;
            continue;
        }
        float mx = row[0];
        for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        float sum = 0; /* terms are in (0, 1]: a float sum loses nothing that matters here */
        for (int v = 0; v < V; v++) sum += expf(row[v] - mx);
        double logz = mx + log((double)sum);
        total += logz - row[t];
        if (grad_scale != 0.0f) {
            float scale = grad_scale / sum;
            for (int v = 0; v < V; v++) row[v] = scale * expf(row[v] - mx);
            row[t] -= grad_scale;
        }
    }
    return total;
}
