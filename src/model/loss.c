/* loss.c: softmax cross-entropy, computed row by row with the max subtracted, and turned into its
 * gradient in place so the [N, V] logits buffer is reused. The exponentials are computed once,
 * vectorised (dsc_expf), and kept in the row for the gradient. */
#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <stdlib.h>

#include "kernels/vmath.h"
#include "model/loss.h"

int64_t ce_count_targets(const int32_t *targets, int N) {
    int64_t n = 0;
    for (int i = 0; i < N; i++) n += targets[i] >= 0;
    return n;
}

double ce_forward_backward(float *logits, const int32_t *targets, int N, int V, float grad_scale) {
    /* Per-row losses summed in row order afterwards: the total is the same bits whatever the
     * thread count or scheduling (a resumed run must reproduce the losses exactly). */
    double *row_loss = malloc(sizeof(double) * (N > 0 ? N : 1));
    if (!row_loss) return NAN;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        row_loss[i] = 0;
        float *row = logits + (size_t)i * V;
        int t = targets[i];
        if (t < 0) {
            if (grad_scale != 0.0f)
                for (int v = 0; v < V; v++) row[v] = 0.0f;
            continue;
        }
        float lt = row[t], mx = row[0];
#pragma omp simd reduction(max : mx)
        for (int v = 0; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        float sum = 0; /* 16 partial sums of terms in (0, 1]: accurate to a few ulp */
        if (grad_scale != 0.0f) {
#pragma omp simd reduction(+ : sum)
            for (int v = 0; v < V; v++) {
                float e = dsc_expf(row[v] - mx);
                row[v] = e;
                sum += e;
            }
            float scale = grad_scale / sum;
#pragma omp simd
            for (int v = 0; v < V; v++) row[v] *= scale;
            row[t] -= grad_scale;
        } else {
#pragma omp simd reduction(+ : sum)
            for (int v = 0; v < V; v++) sum += dsc_expf(row[v] - mx);
        }
        row_loss[i] = mx + log((double)sum) - lt;
    }
    double total = 0;
    for (int i = 0; i < N; i++) total += row_loss[i];
    free(row_loss);
    return total;
}

/* With z = row/τ (s = 1/τ): log softmax(z)[t] and, when wanted, the entropy −Σ p log p =
 * lse − Σ p·z, both in double. */
static void row_logprob(const float *row, int t, int V, float s, float *logp, float *entropy) {
    float mx = row[0];
#pragma omp simd reduction(max : mx)
    for (int v = 0; v < V; v++) mx = row[v] > mx ? row[v] : mx;
    float sum = 0, dot = 0;
#pragma omp simd reduction(+ : sum, dot)
    for (int v = 0; v < V; v++) {
        float z = (row[v] - mx) * s, e = dsc_expf(z);
        sum += e;
        dot += e * z;
    }
    double lse = log((double)sum); /* log Σ exp(z − max z) */
    *logp = (float)((double)((row[t] - mx) * s) - lse);
    if (entropy) *entropy = (float)(lse - (double)dot / sum);
}

void logprob_forward(const float *logits, const int32_t *targets, int N, int V, float temperature, float *logp,
                     float *entropy) {
    const float s = 1.0f / temperature;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        if (targets[i] < 0) {
            logp[i] = 0.0f;
            if (entropy) entropy[i] = 0.0f;
            continue;
        }
        row_logprob(logits + (size_t)i * V, targets[i], V, s, &logp[i], entropy ? &entropy[i] : NULL);
    }
}

void logprob_backward(float *logits, const int32_t *targets, const float *coef, int N, int V, float temperature) {
    const float s = 1.0f / temperature;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        float *row = logits + (size_t)i * V;
        int t = targets[i];
        float c = t >= 0 ? coef[i] : 0.0f;
        if (c == 0.0f) {
            for (int v = 0; v < V; v++) row[v] = 0.0f;
            continue;
        }
        float mx = row[0];
#pragma omp simd reduction(max : mx)
        for (int v = 0; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        float sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int v = 0; v < V; v++) {
            float e = dsc_expf((row[v] - mx) * s);
            row[v] = e;
            sum += e;
        }
        float scale = -c * s / sum; /* ∂(c·logp_t)/∂x = (c/τ)·(onehot − softmax(x/τ)) */
#pragma omp simd
        for (int v = 0; v < V; v++) row[v] *= scale;
        row[t] += c * s;
    }
}
