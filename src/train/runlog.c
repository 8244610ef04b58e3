/* runlog.c: the clock, metrics.jsonl, the loss plot and the resume check of the training loops
 * (see runlog.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "base/error.h"
#include "base/fileio.h"
#include "train/plot.h"
#include "train/runlog.h"

double runlog_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

dsc_status runlog_truncate(const char *path, long last_step) {
    FILE *f = fopen(path, "r");
    if (!f) return DSC_OK;
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap), line[8192];
    while (out && fgets(line, sizeof line, f)) {
        long step = -1;
        const char *p = strstr(line, "\"step\":");
        if (p) step = atol(p + 7);
        if (step < 0 || step > last_step) continue;
        size_t l = strlen(line);
        if (len + l + 1 > cap) {
            char *n = realloc(out, cap = (cap + l) * 2);
            if (!n) break;
            out = n;
        }
        memcpy(out + len, line, l);
        len += l;
    }
    fclose(f);
    int rc = out ? dsc_write_file_atomic(path, out, len) : dsc_set_error("out of memory");
    free(out);
    return rc;
}

dsc_status runlog_plot(const char *metrics, const char *svg, const char *title, const char *train_label,
                       const char *val_label, double baseline, const char *baseline_label) {
    FILE *f = fopen(metrics, "r");
    if (!f) return dsc_set_error("%s: cannot read: %s", metrics, strerror(errno));
    int cap = 1024, nt = 0, nv = 0;
    double *tx = malloc(sizeof(double) * cap), *ty = malloc(sizeof(double) * cap);
    double *vx = malloc(sizeof(double) * cap), *vy = malloc(sizeof(double) * cap);
    char line[8192];
    while (tx && ty && vx && vy && fgets(line, sizeof line, f)) {
        json_error_t e;
        json_t *o = json_loads(line, 0, &e);
        if (!o) continue;
        json_t *st = json_object_get(o, "step"), *lo = json_object_get(o, "ce"), *vl = json_object_get(o, "val_loss");
        if (nt == cap || nv == cap) {
            cap *= 2;
            tx = realloc(tx, sizeof(double) * cap), ty = realloc(ty, sizeof(double) * cap);
            vx = realloc(vx, sizeof(double) * cap), vy = realloc(vy, sizeof(double) * cap);
            if (!tx || !ty || !vx || !vy) {
                json_decref(o);
                break;
            }
        }
        if (json_is_integer(st) && json_is_number(lo)) {
            tx[nt] = (double)json_integer_value(st);
            ty[nt++] = json_number_value(lo);
        }
        if (json_is_integer(st) && json_is_number(vl)) {
            vx[nv] = (double)json_integer_value(st);
            vy[nv++] = json_number_value(vl);
        }
        json_decref(o);
    }
    fclose(f);
    int rc = DSC_ERR;
    if (tx && ty && vx && vy) {
        double *sy = malloc(sizeof(double) * (nt ? nt : 1)), ux[2] = {0, nt ? tx[nt - 1] : 1}, uy[2] = {baseline, baseline};
        double ema = nt ? ty[0] : 0;
        for (int i = 0; sy && i < nt; i++) sy[i] = ema = 0.95 * ema + 0.05 * ty[i];
        plot_series s[4] = {{train_label, "#9ecae1", tx, ty, nt},
                            {"train (moving average)", "#08519c", tx, sy, sy ? nt : 0},
                            {val_label, "#e6550d", vx, vy, nv},
                            {baseline_label, "#999999", ux, uy, isfinite(baseline) ? 2 : 0}};
        rc = sy ? plot_svg(svg, title, "step", "loss", s, isfinite(baseline) ? 4 : 3) : dsc_set_error("out of memory");
        free(sy);
    } else {
        dsc_set_error("out of memory reading %s", metrics);
    }
    free(tx), free(ty), free(vx), free(vy);
    return rc;
}

dsc_status runlog_check_resume(const char *stored_json, const char *current_json, const char *const *keys,
                               const char *dir) {
    if (!stored_json || !current_json) return DSC_OK;
    json_error_t e;
    json_t *s = json_loads(stored_json, 0, &e), *c = json_loads(current_json, 0, &e);
    int rc = DSC_OK;
    for (int i = 0; s && c && keys[i] && rc == DSC_OK; i++) {
        json_t *sv = json_object_get(s, keys[i]), *cv = json_object_get(c, keys[i]);
        if (!sv || !cv || json_equal(sv, cv)) continue;
        char *a = json_dumps(sv, JSON_ENCODE_ANY | JSON_COMPACT), *b = json_dumps(cv, JSON_ENCODE_ANY | JSON_COMPACT);
        rc = dsc_set_error("%s: the checkpoint was trained with %s %s, this run asks for %s (the data stream would "
                           "differ; use the same value to resume)",
                           dir, keys[i], a ? a : "?", b ? b : "?");
        free(a);
        free(b);
    }
    json_decref(s);
    json_decref(c);
    return rc;
}
