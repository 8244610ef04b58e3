/* rope.c: RoPE tables with exact YaRN frequencies (DeepSeek's precompute_freqs_cis), and the
 * rotation of one vector, forward or inverse. */
#include <math.h>

#include "base/error.h"
#include "base/mem.h"
#include "model/config.h"
#include "model/rope.h"

int rope_table_init(rope_table *r, const dsc_config *c, int max_pos) {
    int dr = c->qk_rope_head_dim, half = dr / 2;
    r->max_pos = max_pos;
    r->half = half;
    r->cos = dsc_alloc(sizeof(float) * (size_t)max_pos * half);
    r->sin = dsc_alloc(sizeof(float) * (size_t)max_pos * half);
    r->theta = dsc_alloc(sizeof(float) * half);
    if (!r->cos || !r->sin || !r->theta) {
        rope_table_free(r);
        return DSC_ERR;
    }
    /* fp32 as in DeepSeek: base ** (arange(0, dr, 2) / dr), then the reciprocal. */
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)dr;
        r->theta[i] = 1.0f / powf((float)c->rope_theta, e);
    }
    if (c->yarn && c->rope_factor > 1.0) {
        double L0 = c->original_max_position_embeddings, base = c->rope_theta;
        double corr_fast = dr * log(L0 / (c->beta_fast * 2 * M_PI)) / (2 * log(base));
        double corr_slow = dr * log(L0 / (c->beta_slow * 2 * M_PI)) / (2 * log(base));
        double low = floor(corr_fast), high = ceil(corr_slow);
        if (low < 0) low = 0;
        if (high > dr - 1) high = dr - 1;
        if (low == high) high += 0.001;
        for (int i = 0; i < half; i++) {
            float ramp = (float)(((float)i - (float)low) / (float)(high - low));
            if (ramp < 0) ramp = 0;
            if (ramp > 1) ramp = 1;
            float smooth = 1.0f - ramp;
            r->theta[i] = r->theta[i] / (float)c->rope_factor * (1.0f - smooth) + r->theta[i] * smooth;
        }
    }
    for (int t = 0; t < max_pos; t++)
        for (int i = 0; i < half; i++) {
            float ang = (float)t * r->theta[i];
            r->cos[(size_t)t * half + i] = cosf(ang);
            r->sin[(size_t)t * half + i] = sinf(ang);
        }
    return DSC_OK;
}

void rope_table_free(rope_table *r) {
    dsc_free(r->cos);
    dsc_free(r->sin);
    dsc_free(r->theta);
    r->cos = r->sin = r->theta = NULL;
}

void rope_apply(float *x, const rope_table *r, int pos, bool interleaved, bool inverse) {
    const float *cs = r->cos + (size_t)pos * r->half, *sn = r->sin + (size_t)pos * r->half;
    float sgn = inverse ? -1.0f : 1.0f;
    for (int i = 0; i < r->half; i++) {
        int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + r->half;
        float c = cs[i], s = sgn * sn[i];
        float x0 = x[a], x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
    }
}

float mla_softmax_scale(const dsc_config *c) {
    double scale = 1.0 / sqrt((double)cfg_qk_head_dim(c));
    if (c->yarn && c->rope_factor > 1.0 && c->mscale_all_dim > 0) {
        double m = 0.1 * c->mscale_all_dim * log(c->rope_factor) + 1.0;
        scale *= m * m;
    }
    return (float)scale;
}
