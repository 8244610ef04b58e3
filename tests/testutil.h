/* testutil.h: the little the C tests share: checks that count failures, random fills, tensor
 * comparison with the project tolerance, and a finite-difference gradient check.
 * Header-only (static functions) so each test is one self-contained program. */
#ifndef DSC_TESTUTIL_H
#define DSC_TESTUTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"

static int tu_failures = 0;
static int tu_checks = 0;

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        tu_checks++;                                                                              \
        if (!(cond)) {                                                                            \
            tu_failures++;                                                                        \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                  \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fprintf(stderr, "\n");                                                                \
        }                                                                                         \
    } while (0)

/* Ends main(): prints a summary line and returns the exit code. */
__attribute__((unused)) static int tu_finish(const char *name) {
    printf("%s: %d checks, %d failures\n", name, tu_checks, tu_failures);
    return tu_failures ? 1 : 0;
}

__attribute__((unused)) static void tu_fill_normal(dsc_rng *r, float *x, size_t n, float std) {
    for (size_t i = 0; i < n; i++) x[i] = std * dsc_rng_normal(r);
}

/* max|a-b| / max|b| (error relative to the tensor's largest magnitude, docs/MODEL.md §11). */
__attribute__((unused)) static double tu_rel_error(const float *a, const float *b, size_t n, size_t *worst) {
    double maxdiff = 0, maxref = 0;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= maxdiff)) { /* also catches NaN */
            maxdiff = isnan(d) ? INFINITY : d;
            w = i;
        }
        if (fabs((double)b[i]) > maxref) maxref = fabs((double)b[i]);
    }
    if (worst) *worst = w;
    if (maxref == 0) return maxdiff;
    return maxdiff / maxref;
}

/* Checks a tensor against its reference; prints the worst element on failure. */
__attribute__((unused)) static int tu_check_close(const char *what, const float *got, const float *ref, size_t n, double tol) {
    size_t w;
    double e = tu_rel_error(got, ref, n, &w);
    CHECK(e <= tol, "%s: relative error %.3g > %.3g (worst at %zu: got %.8g, want %.8g)", what, e, tol, w,
          (double)got[w], (double)ref[w]);
    return e <= tol;
}

/* Finite-difference check of a scalar function's gradient along random directions and on a
 * sample of single coordinates. loss(ctx) evaluates the loss at the current params; grad holds
 * the analytic gradient at the unperturbed params. Central differences with step h.
 * Returns the worst relative error seen. */
typedef double (*tu_loss_fn)(void *ctx);
__attribute__((unused)) static double tu_gradcheck(const char *what, tu_loss_fn loss, void *ctx, float *params, const float *grad, size_t n,
                           float h, int n_dirs, int n_coords, double tol, dsc_rng *r) {
    double worst = 0;
    float *dir = malloc(sizeof(float) * n), *saved = malloc(sizeof(float) * n);
    memcpy(saved, params, sizeof(float) * n);
    for (int t = 0; t < n_dirs; t++) {
        double norm = 0;
        for (size_t i = 0; i < n; i++) {
            dir[i] = dsc_rng_normal(r);
            norm += (double)dir[i] * dir[i];
        }
        norm = sqrt(norm);
        double analytic = 0, gnorm = 0;
        for (size_t i = 0; i < n; i++) {
            dir[i] /= (float)norm;
            analytic += (double)grad[i] * dir[i];
            gnorm += (double)grad[i] * grad[i];
        }
        for (size_t i = 0; i < n; i++) params[i] = saved[i] + h * dir[i];
        double lp = loss(ctx);
        for (size_t i = 0; i < n; i++) params[i] = saved[i] - h * dir[i];
        double lm = loss(ctx);
        memcpy(params, saved, sizeof(float) * n);
        double numeric = (lp - lm) / (2 * h);
        /* relative to the gradient norm: the directional derivative can be near zero */
        double err = fabs(numeric - analytic) / (sqrt(gnorm) + 1e-12);
        if (err > worst) worst = err;
        CHECK(err <= tol, "%s: direction %d: numeric %.8g vs analytic %.8g (rel %.3g)", what, t, numeric, analytic, err);
    }
    for (int t = 0; t < n_coords && n > 0; t++) {
        size_t i = (size_t)(dsc_rng_u64(r) % n);
        double gmax = 0;
        for (size_t j = 0; j < n; j++) gmax = fmax(gmax, fabs(grad[j]));
        params[i] = saved[i] + h;
        double lp = loss(ctx);
        params[i] = saved[i] - h;
        double lm = loss(ctx);
        params[i] = saved[i];
        double numeric = (lp - lm) / (2 * h);
        double err = fabs(numeric - grad[i]) / (gmax + 1e-12);
        if (err > worst) worst = err;
        CHECK(err <= tol, "%s: coordinate %zu: numeric %.8g vs analytic %.8g (rel %.3g)", what, i, numeric,
              (double)grad[i], err);
    }
    free(dir);
    free(saved);
    return worst;
}

#endif
