/* adamw.c: AdamW (Loshchilov & Hutter) with bias correction, decoupled weight decay and
 * global-norm clipping, applied tensor by tensor over the model's parameter layout. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "base/error.h"
#include "base/mem.h"
#include "model/model.h"
#include "train/adamw.h"

struct adamw {
    float *m, *v; /* first and second moments, same layout as the parameters */
    size_t n;
    long t;
};

dsc_status adamw_create(const dsc_model *model, adamw **out) {
    adamw *o = calloc(1, sizeof *o);
    if (!o) return dsc_set_error("out of memory");
    o->n = model->n_floats;
    o->m = dsc_alloc(o->n * sizeof(float));
    o->v = o->m ? dsc_alloc(o->n * sizeof(float)) : NULL;
    if (!o->v) {
        adamw_free(o);
        return DSC_ERR;
    }
    *out = o;
    return DSC_OK;
}

void adamw_free(adamw *o) {
    if (!o) return;
    dsc_free(o->m);
    dsc_free(o->v);
    free(o);
}

long adamw_steps(const adamw *o) { return o->t; }
float *adamw_first_moment(adamw *o) { return o->m; }
float *adamw_second_moment(adamw *o) { return o->v; }
void adamw_set_steps(adamw *o, long t) { o->t = t; }

/* Σ g² over one tensor, deterministic whatever the thread count: fixed chunks, each summed in
 * double, then the chunk sums added in order (the norm decides the clipping, so a resumed run
 * must get the same bits). */
enum { NORM_CHUNK = 8192 };
static double sum_squares(const float *g, size_t n) {
    size_t nc = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    double part[64], total = 0;
    for (size_t c0 = 0; c0 < nc; c0 += 64) {
        size_t cn = nc - c0 < 64 ? nc - c0 : 64;
#pragma omp parallel for schedule(static) if (cn > 4)
        for (size_t c = 0; c < cn; c++) {
            size_t beg = (c0 + c) * NORM_CHUNK, end = beg + NORM_CHUNK < n ? beg + NORM_CHUNK : n;
            double s = 0;
            for (size_t j = beg; j < end; j++) s += (double)g[j] * g[j];
            part[c] = s;
        }
        for (size_t c = 0; c < cn; c++) total += part[c];
    }
    return total;
}

double adamw_grad_norm(const dsc_model *m) {
    double ss = 0;
    for (int i = 0; i < m->n_descs; i++) {
        const tensor_desc *t = &m->descs[i];
        if (t->flags & TENSOR_NO_GRAD) continue;
        ss += sum_squares(m->grads + t->offset, t->numel);
    }
    return sqrt(ss);
}

double adamw_step(adamw *o, dsc_model *m, const adamw_params *p, float clip) {
    double norm = adamw_grad_norm(m);
    float gscale = (clip > 0 && norm > clip) ? (float)(clip / norm) : 1.0f;
    o->t++;
    float bc1 = 1.0f - powf(p->beta1, (float)o->t), bc2 = 1.0f - powf(p->beta2, (float)o->t);
    for (int i = 0; i < m->n_descs; i++) {
        const tensor_desc *t = &m->descs[i];
        if (t->flags & TENSOR_NO_GRAD) continue;
        float wd = (t->flags & TENSOR_NO_DECAY) ? 0.0f : p->weight_decay;
        float *w = m->params + t->offset, *g = m->grads + t->offset;
        float *mo = o->m + t->offset, *vo = o->v + t->offset;
#pragma omp parallel for schedule(static) if (t->numel > 65536)
        for (size_t j = 0; j < t->numel; j++) {
            float gj = g[j] * gscale;
            mo[j] = p->beta1 * mo[j] + (1 - p->beta1) * gj;
            vo[j] = p->beta2 * vo[j] + (1 - p->beta2) * gj * gj;
            float mhat = mo[j] / bc1, vhat = vo[j] / bc2;
            w[j] -= p->lr * (mhat / (sqrtf(vhat) + p->eps) + wd * w[j]);
        }
    }
    return norm;
}
