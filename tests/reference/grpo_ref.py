"""grpo_ref.py: the PyTorch reference of the GRPO objective (DeepSeekMath, DeepSeek-R1) and its
DAPO / Dr. GRPO variants, written from the algorithm notes (MHC_DSA_GRPO.md §3), not from the C.

Everything is a plain tensor expression; the gradient with respect to the log-probabilities (and,
through them, the model) comes from autograd. Shapes: S sequences padded to T positions; `mask`
[S,T] is true on completion tokens (target >= 0) and false on prompt and padding positions.

    A_i   = (r_i − mean_g r) / (std_g r + 1e-4)        std unbiased; or r_i − mean_g r (Dr. GRPO)
    ρ     = exp(logp − logp_old)
    J_tok = min(ρ A, clip(ρ, 1 − ε_low, 1 + ε_high) A) − β (π_ref/π − log(π_ref/π) − 1)
    J     = GRPO:     1/S Σ_i 1/|o_i| Σ_t J_tok
            DAPO:     1/Σ_i|o_i| Σ_i Σ_t J_tok
            Dr. GRPO: 1/(S · max_len) Σ_i Σ_t J_tok
    loss  = −J (minimised)
"""
import torch

AGGREGATIONS = ("sequence", "token", "constant")


def advantages(rewards, scale_std=True):
    """rewards [n_groups, G] -> advantages [n_groups, G]. A group whose rewards are all equal
    gets exactly 0 (no division by a zero std)."""
    mean = rewards.mean(dim=-1, keepdim=True)
    centred = rewards - mean
    if scale_std:
        std = rewards.std(dim=-1, unbiased=True, keepdim=True)
        adv = centred / (std + 1e-4)
    else:
        adv = centred
    all_equal = (rewards == rewards[:, :1]).all(dim=-1, keepdim=True)
    return torch.where(all_equal, torch.zeros_like(adv), adv)


def k3_kl(logp, ref_logp):
    """The k3 estimate of KL(π || π_ref) per token: π_ref/π − log(π_ref/π) − 1 >= 0."""
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1


def clipped_surrogate(logp, old_logp, adv, eps_low, eps_high):
    """min(ρ A, clip(ρ, 1 − ε_low, 1 + ε_high) A) per token, with A [S] broadcast over T."""
    ratio = torch.exp(logp - old_logp)
    A = adv[:, None]
    unclipped = ratio * A
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * A
    return torch.min(unclipped, clipped), ratio


def aggregate(per_token, mask, agg, max_len=None):
    """Sums the masked per-token objective with the weights of the aggregation."""
    m = mask.to(per_token.dtype)
    S = per_token.shape[0]
    if agg == "sequence":      # GRPO: mean over each sequence's tokens, then over the sequences
        lengths = m.sum(dim=-1)
        per_seq = (per_token * m).sum(dim=-1) / lengths.clamp(min=1)
        return per_seq.sum() / S
    if agg == "token":         # DAPO: mean over every completion token of the batch
        return (per_token * m).sum() / m.sum()
    if agg == "constant":      # Dr. GRPO: sum over tokens / (sequences x maximum length)
        return (per_token * m).sum() / (S * max_len)
    raise ValueError(f"unknown aggregation '{agg}'")


class Result:
    """What grpo_objective returns: the loss (−J, differentiable) and the batch statistics."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def grpo_objective(logp, old_logp, ref_logp, adv, mask, eps_low=0.2, eps_high=0.2, beta=0.0,
                   agg="sequence", max_len=None):
    """logp [S,T] (requires grad), old_logp / ref_logp [S,T] (constants; ref_logp unused when
    beta == 0), adv [S], mask [S,T] bool. Returns Result(loss, pg, kl, clip_frac, ratio_mean,
    tokens); loss = −J is what a trainer minimises."""
    surrogate, ratio = clipped_surrogate(logp, old_logp, adv, eps_low, eps_high)
    per_token = surrogate
    kl = torch.zeros_like(logp)
    if beta != 0:
        kl = k3_kl(logp, ref_logp)
        per_token = surrogate - beta * kl
    J = aggregate(per_token, mask, agg, max_len)
    pg = aggregate(surrogate, mask, agg, max_len)
    # The clip "binds" (takes the gradient away) where the clipped term is strictly the smaller:
    # ρ above 1 + ε_high with A > 0, or ρ below 1 − ε_low with A < 0.
    A = adv[:, None].expand_as(ratio)
    binds = ((ratio > 1 + eps_high) & (A > 0)) | ((ratio < 1 - eps_low) & (A < 0))
    n = mask.sum()
    with torch.no_grad():
        stats = dict(kl=(kl * mask).sum() / n, clip_frac=(binds & mask).sum().double() / n,
                     ratio_mean=(ratio * mask).sum() / n, pg=pg.detach(), tokens=int(n))
    return Result(loss=-J, **stats)


def token_logprobs(logits, targets):
    """log softmax(logits)[target] per position [S,T] (0 where target = −1) and the entropy of each
    position's next-token distribution [S,T] (0 where target = −1)."""
    logsm = torch.log_softmax(logits, dim=-1)
    mask = targets >= 0
    safe = targets.clamp(min=0).long()
    logp = logsm.gather(-1, safe[..., None]).squeeze(-1)
    entropy = -(logsm.exp() * logsm).sum(dim=-1)
    zero = torch.zeros_like(logp)
    return torch.where(mask, logp, zero), torch.where(mask, entropy, zero)
