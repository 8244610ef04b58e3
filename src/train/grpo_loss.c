/* grpo_loss.c: the GRPO objective over per-token log-probabilities (grpo_loss.h). Each token's
 * gradient is closed-form: with ρ = exp(logp − old),
 *   ∂/∂logp min(ρA, clip(ρ)A) = ρA when the unclipped term is the smaller one (or ρ lies inside the
 *   clip range), and 0 when the clip holds it (ρ > 1+ε_hi with A > 0, ρ < 1−ε_lo with A < 0);
 *   ∂KL/∂logp = 1 − exp(ref − logp).
 * Sums run in double, in token order, so the loss is the same bits at any thread count. */
#include <math.h>
#include <stddef.h>

#include "train/grpo_loss.h"

void grpo_advantages(const float *rewards, int n_groups, int G, bool scale_std, float *adv) {
    for (int g = 0; g < n_groups; g++) {
        const float *r = rewards + (size_t)g * G;
        float *a = adv + (size_t)g * G;
        double mean = 0;
        bool all_equal = true;
        for (int i = 0; i < G; i++) {
            mean += r[i];
            all_equal = all_equal && r[i] == r[0];
        }
        mean /= G;
        if (all_equal) {
            for (int i = 0; i < G; i++) a[i] = 0.0f;
            continue;
        }
        double var = 0;
        for (int i = 0; i < G; i++) var += (r[i] - mean) * (r[i] - mean);
        double sd = G > 1 ? sqrt(var / (G - 1)) : 0.0;
        for (int i = 0; i < G; i++) a[i] = (float)(scale_std ? (r[i] - mean) / (sd + 1e-4) : r[i] - mean);
    }
}

double grpo_loss(const grpo_loss_options *o, const grpo_batch *b, const float *logp, float *dlogp,
                 grpo_loss_stats *st) {
    int S = b->S, T = b->T;
    int64_t total_tokens = 0;
    for (int i = 0; i < S * T; i++) total_tokens += b->targets[i] >= 0;
    double norm_tokens = b->norm_tokens > 0 ? b->norm_tokens : (double)total_tokens;
    int norm_seqs = b->norm_seqs > 0 ? b->norm_seqs : S;
    double J = 0, pg = 0, kl_sum = 0, ratio_sum = 0;
    int64_t clipped = 0;
    for (int s = 0; s < S; s++) {
        const int32_t *tg = b->targets + (size_t)s * T;
        int len = 0;
        for (int t = 0; t < T; t++) len += tg[t] >= 0;
        for (int t = 0; t < T; t++) dlogp[(size_t)s * T + t] = 0.0f;
        if (len == 0) continue;
        double w;
        switch (o->agg) {
        case GRPO_AGG_TOKEN: w = 1.0 / norm_tokens; break;
        case GRPO_AGG_CONSTANT: w = 1.0 / ((double)norm_seqs * (o->max_len > 0 ? o->max_len : T)); break;
        default: w = 1.0 / ((double)norm_seqs * len); break;
        }
        double A = b->adv[s];
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)s * T + t;
            if (tg[t] < 0) continue;
            double lp = logp[i];
            double old = b->old_logp ? b->old_logp[i] : lp;
            double rho = exp(lp - old);
            double lo = 1.0 - o->eps_low, hi = 1.0 + o->eps_high;
            double rc = rho < lo ? lo : rho > hi ? hi : rho;
            double un = rho * A, cl = rc * A;
            double term = un < cl ? un : cl;
            /* the gradient flows through the unclipped term unless the clip is what binds */
            bool clip_binds = cl < un;
            double g = clip_binds ? 0.0 : rho * A;
            clipped += clip_binds;
            ratio_sum += rho;
            double kl = 0, gkl = 0;
            if (o->beta != 0.0f && b->ref_logp) {
                double dr = (double)b->ref_logp[i] - lp;
                kl = exp(dr) - dr - 1.0;
                gkl = 1.0 - exp(dr);
            }
            kl_sum += kl;
            J += w * (term - o->beta * kl);
            pg += w * term;
            dlogp[i] = (float)(-w * (g - o->beta * gkl));
        }
    }
    if (st) {
        st->loss = -J;
        st->pg = pg;
        st->kl = total_tokens ? kl_sum / total_tokens : 0.0;
        st->clip_frac = total_tokens ? (double)clipped / total_tokens : 0.0;
        st->ratio_mean = total_tokens ? ratio_sum / total_tokens : 0.0;
        st->tokens = total_tokens;
    }
    return -J;
}
