/* norm.c: RMSNorm and LayerNorm. Row sums are accumulated in double so that the C code and the
 * fp32 PyTorch reference differ only by the final rounding. */
#include <math.h>
#include <omp.h>
#include <stddef.h>

#include "model/norm.h"

void rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int N, int C, float eps) {
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && (long)N * C > 32768)
    for (int i = 0; i < N; i++) {
        const float *xi = x + (size_t)i * C;
        float *yi = y + (size_t)i * C;
        double ss = 0;
        for (int c = 0; c < C; c++) ss += (double)xi[c] * xi[c];
        float r = (float)(1.0 / sqrt(ss / C + eps));
        if (rstd) rstd[i] = r;
        if (w)
            for (int c = 0; c < C; c++) yi[c] = xi[c] * r * w[c];
        else
            for (int c = 0; c < C; c++) yi[c] = xi[c] * r;
    }
}

/* y_c = x_c r w_c with r = (Σx²/C + eps)^-1/2:
 *   ∂L/∂x_c = r w_c dy_c − x_c r³/C · Σ_k dy_k w_k x_k ;  ∂L/∂w_c = Σ_rows dy_c x_c r */
void rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                      int N, int C) {
    for (int i = 0; i < N; i++) {
        const float *xi = x + (size_t)i * C, *dyi = dy + (size_t)i * C;
        float *dxi = dx + (size_t)i * C;
        float r = rstd[i];
        double dot = 0;
        if (w)
            for (int c = 0; c < C; c++) dot += (double)dyi[c] * w[c] * xi[c];
        else
            for (int c = 0; c < C; c++) dot += (double)dyi[c] * xi[c];
        float coef = (float)(dot * r * r * r / C);
        if (w)
            for (int c = 0; c < C; c++) dxi[c] += r * w[c] * dyi[c] - xi[c] * coef;
        else
            for (int c = 0; c < C; c++) dxi[c] += r * dyi[c] - xi[c] * coef;
        if (dw)
            for (int c = 0; c < C; c++) dw[c] += dyi[c] * xi[c] * r;
    }
}

void layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b, int N,
                       int C, float eps) {
    for (int i = 0; i < N; i++) {
        const float *xi = x + (size_t)i * C;
        float *yi = y + (size_t)i * C;
        double s = 0, ss = 0;
        for (int c = 0; c < C; c++) s += xi[c];
        double m = s / C;
        for (int c = 0; c < C; c++) ss += (xi[c] - m) * (xi[c] - m);
        float r = (float)(1.0 / sqrt(ss / C + eps));
        if (mean) mean[i] = (float)m;
        if (rstd) rstd[i] = r;
        for (int c = 0; c < C; c++) yi[c] = (float)(xi[c] - m) * r * w[c] + b[c];
    }
}
