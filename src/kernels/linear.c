/* linear.c: the three products of a linear layer, expressed with dsc_sgemm. */
#include "kernels/kernels.h"

void dsc_linear_forward(float *y, const float *x, const float *W, int N, int in, int out, bool accumulate) {
    dsc_sgemm(false, true, N, out, in, 1.0f, x, in, W, in, accumulate ? 1.0f : 0.0f, y, out);
}

void dsc_linear_backward_input(float *dx, const float *dy, const float *W, int N, int in, int out, bool accumulate) {
    dsc_sgemm(false, false, N, in, out, 1.0f, dy, out, W, in, accumulate ? 1.0f : 0.0f, dx, in);
}

void dsc_linear_backward_weight(float *dW, const float *dy, const float *x, int N, int in, int out) {
    dsc_sgemm(true, false, out, in, N, 1.0f, dy, out, x, in, 1.0f, dW, in);
}
