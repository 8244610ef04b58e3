"""dsc_ref.py: the independent PyTorch reference of the dsc model, written from docs/MODEL.md.

One class per module (RMSNorm, RoPE/YaRN tables, MLA, Indexer, MLP, Gate/MoE, MHC, Block, MTP,
Model). Every computation is fp32 by default (pass dtype=torch.float64 for gradient checks; the
RoPE tables are always built in fp32 as MODEL.md §5 says, then cast). Autograd gives the
gradients. Module and parameter names are the Hugging Face names of MODEL.md §2, so
`Model.state_dict()` keys are exactly the checkpoint's tensor names.

Section references ("§5") are to docs/MODEL.md.
"""
import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# ------------------------------------------------------------------------------------------------
# §1 Configuration: the fields of config.json with the defaults of src/model/config.c
# (set_common_defaults + parse_config). Absent keys keep the default; `null` reads as 0 for the
# fields the C reader treats that way.
# ------------------------------------------------------------------------------------------------
_DEFAULTS = dict(
    model_type="dsc", vocab_size=None, hidden_size=None, intermediate_size=0, moe_intermediate_size=0,
    num_hidden_layers=None, first_k_dense_replace=0, num_attention_heads=None,
    n_routed_experts=0, n_shared_experts=0, num_experts_per_tok=0, n_group=1, topk_group=1,
    routed_scaling_factor=1.0, scoring_func="softmax", norm_topk_prob=False,
    q_lora_rank=0, kv_lora_rank=None, qk_nope_head_dim=None, qk_rope_head_dim=None, v_head_dim=None,
    rope_theta=10000.0, max_position_embeddings=4096, rms_norm_eps=1e-6, tie_word_embeddings=False,
    num_nextn_predict_layers=0, index_n_heads=0, index_head_dim=0, index_topk=0,
    index_rope_interleaved=False, mhc_expansion_rate=0, mhc_sinkhorn_iters=20, mhc_rms_eps=1e-20,
    mhc_alpha_init=0.01, mhc_res_diag_init=4.0, mhc_phi_init_std=0.02, initializer_range=0.006,
    mtp_loss_weight=0.3, aux_loss_alpha=1e-4, bias_update_speed=1e-3, bos_token_id=0, eos_token_id=1)
_NULL_IS_ZERO = {"moe_intermediate_size", "first_k_dense_replace", "n_routed_experts", "n_shared_experts",
                 "num_experts_per_tok", "q_lora_rank", "num_nextn_predict_layers", "index_n_heads",
                 "index_head_dim", "index_topk", "mhc_expansion_rate", "bos_token_id", "eos_token_id"}


class Config:
    """Attribute access to the config fields, plus the derived switches of §1."""

    def __init__(self, d):
        for k, v in _DEFAULTS.items():
            x = d.get(k, v)
            if x is None and k in _NULL_IS_ZERO:
                x = 0
            if x is None:
                raise ValueError(f"config field '{k}' is missing")
            setattr(self, k, x)
        # §1: topk_method "noaux_tc" => correction bias; another method => none; absent => sigmoid implies it.
        tm = d.get("topk_method")
        self.expert_bias = (tm == "noaux_tc") if tm is not None else (self.scoring_func == "sigmoid")
        # §1: YaRN is on when rope_scaling has type (or rope_type) "yarn".
        rs = d.get("rope_scaling") or {}
        self.yarn = (rs.get("type") or rs.get("rope_type")) == "yarn"
        self.rope_factor = float(rs.get("factor", 1.0))
        self.beta_fast = float(rs.get("beta_fast", 32.0))
        self.beta_slow = float(rs.get("beta_slow", 1.0))
        self.mscale = float(rs.get("mscale", 1.0))  # read and kept, never used (§1)
        self.mscale_all_dim = float(rs.get("mscale_all_dim", 0.0))
        self.original_max_position_embeddings = int(rs.get("original_max_position_embeddings", 4096))
        self.raw = dict(d)

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls(json.load(f))

    # Derived quantities (MODEL.md notation).
    @property
    def qk_head_dim(self):
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def mhc(self):
        return self.mhc_expansion_rate > 1  # 0 or 1 = plain residual

    def layer_is_moe(self, l):
        # §2: MoE when E > 0 and l >= first_k_dense_replace; every MTP block (l >= L) is MoE when E > 0.
        return self.n_routed_experts > 0 and (l >= self.num_hidden_layers or l >= self.first_k_dense_replace)


# ------------------------------------------------------------------------------------------------
# §3 RMSNorm, and the indexer's LayerNorm (§7)
# ------------------------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    """y = x · (mean(x²) + eps)^(-1/2) · w over the last dim."""

    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class LayerNorm(nn.Module):
    """y = (x − mean) · (var + eps)^(-1/2) · w + b, biased variance (the indexer's k_norm, eps 1e-6)."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x):
        mu = x.mean(-1, keepdim=True)
        var = (x - mu).pow(2).mean(-1, keepdim=True)
        return (x - mu) * torch.rsqrt(var + self.eps) * self.weight + self.bias


def linear(d_in, d_out):
    return nn.Linear(d_in, d_out, bias=False)  # y = x Wᵀ, W stored [out, in], never a bias


# ------------------------------------------------------------------------------------------------
# §5 RoPE with YaRN (DeepSeek's precompute_freqs_cis), tables in fp32
# ------------------------------------------------------------------------------------------------
def yarn_correction_range(cfg):
    """(low, high) of the YaRN ramp; corr(b) = dr·ln(L0/(2π b)) / (2 ln rope_theta), in double."""
    dr, base, L0 = cfg.qk_rope_head_dim, cfg.rope_theta, cfg.original_max_position_embeddings

    def corr(b):
        return dr * math.log(L0 / (b * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(corr(cfg.beta_fast)), 0)
    high = min(math.ceil(corr(cfg.beta_slow)), dr - 1)
    if low == high:
        high += 0.001
    return low, high


def yarn_active(cfg):
    # §5 says "YaRN (when on)" for the frequencies and "if YaRN and rope_factor > 1" for the scale.
    # With rope_factor == 1 the blend is mathematically a no-op; like DeepSeek's and dsc's code we
    # skip it then (so fp32 rounding of the blend cannot differ).
    return cfg.yarn and cfg.rope_factor > 1.0


def rope_frequencies(cfg):
    """θ_p, p = 0..dr/2−1, fp32: 1/rope_theta^(2p/dr), then the YaRN blend (§5)."""
    dr = cfg.qk_rope_head_dim
    theta = 1.0 / (cfg.rope_theta ** (torch.arange(0, dr, 2, dtype=torch.float32) / dr))
    if yarn_active(cfg):
        low, high = yarn_correction_range(cfg)
        ramp = ((torch.arange(dr // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
        smooth = 1 - ramp  # DeepSeek's form: θ/f·(1−smooth) + θ·smooth  ==  θ/f·ramp + θ·(1−ramp)
        theta = theta / cfg.rope_factor * (1 - smooth) + theta * smooth
    return theta


def rope_tables(cfg, T):
    """cos, sin [T, dr/2] in fp32; the angle t·θ_p is one fp32 product."""
    t = torch.arange(T, dtype=torch.float32)
    ang = torch.outer(t, rope_frequencies(cfg))
    return torch.cos(ang), torch.sin(ang)


def apply_rope(x, cos, sin, interleaved):
    """Rotate the last dim of x [B, T, ..., dr] by position t (dim 1).

    interleaved: pairs (2p, 2p+1) (MLA, DeepSeek's layout); otherwise half-split pairs (p, p+dr/2)
    (the indexer's default, §7). y0 = x0·c − x1·s, y1 = x0·s + x1·c."""
    T, half = cos.shape
    shape = (1, T) + (1,) * (x.dim() - 3) + (half,)
    c, s = cos.to(x.dtype).view(shape), sin.to(x.dtype).view(shape)
    if interleaved:
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)
    x0, x1 = x[..., :half], x[..., half:]
    return torch.cat((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1)


def softmax_scale(cfg):
    """scale = dqk^-1/2 · m², m = 0.1·mscale_all_dim·ln(rope_factor) + 1 under YaRN with factor > 1 (§5)."""
    scale = cfg.qk_head_dim ** -0.5
    if yarn_active(cfg):
        m = 0.1 * cfg.mscale_all_dim * math.log(cfg.rope_factor) + 1.0
        scale *= m * m
    return scale


# ------------------------------------------------------------------------------------------------
# §7 DSA lightning indexer: forward only, no gradient
# ------------------------------------------------------------------------------------------------
class Indexer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        HI, dI = cfg.index_n_heads, cfg.index_head_dim
        self.wq_b = linear(cfg.q_lora_rank, HI * dI)
        self.wk = linear(cfg.hidden_size, dI)
        self.k_norm = LayerNorm(dI, 1e-6)
        self.weights_proj = linear(cfg.hidden_size, HI)
        self.forced_sel = None  # tests: return this selection instead of the computed one

    @torch.no_grad()
    def forward(self, x, cq, cos, sin):
        """x [B,T,d] normed block input, cq [B,T,rq] query latent (after q_a_layernorm).

        Returns sel [B,T,index_topk] int64 (descending score, −1 padded) and the index scores
        I [B,T,T] (−inf above the diagonal). Nothing here carries gradient (§7)."""
        cfg = self.cfg
        B, T, _ = x.shape
        HI, dI, dr, k = cfg.index_n_heads, cfg.index_head_dim, cfg.qk_rope_head_dim, cfg.index_topk
        il = cfg.index_rope_interleaved
        x, cq = x.detach(), cq.detach()
        q = self.wq_b(cq).view(B, T, HI, dI)
        q = torch.cat((apply_rope(q[..., :dr], cos, sin, il), q[..., dr:]), dim=-1)  # RoPE on the FIRST dr dims
        kk = self.k_norm(self.wk(x))                                                  # [B,T,dI], one key "head"
        kk = torch.cat((apply_rope(kk[..., :dr], cos, sin, il), kk[..., dr:]), dim=-1)
        w = self.weights_proj(x) * HI ** -0.5 * dI ** -0.5                            # [B,T,HI]
        dots = torch.einsum("bihd,bjd->bijh", q, kk)                                  # qI[i,h]·kI[j]
        scores = (torch.relu(dots) * w[:, :, None, :]).sum(-1)                        # I[i,j] = Σ_h w·ReLU
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        # Top-k, descending; a stable sort breaks ties towards the lower index. The −inf keys
        # (j > i) sort last, so ranks 0..i are exactly the causal keys.
        order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]
        sel = torch.full((B, T, k), -1, dtype=torch.int64)
        sel[..., : order.shape[-1]] = order
        rank = torch.arange(k)
        n_valid = torch.minimum(torch.arange(T) + 1, torch.tensor(k))                 # min(topk, i+1)
        sel = sel.masked_fill(rank[None, None, :] >= n_valid[None, :, None], -1)
        if self.forced_sel is not None:
            sel = self.forced_sel
        return sel, scores


def selection_mask(sel, T):
    """[B,T,T] bool: True where key j is in query i's selection."""
    B = sel.shape[0]
    mask = torch.zeros(B, T, T + 1, dtype=torch.bool)
    mask.scatter_(2, sel.clamp(min=-1) % (T + 1), True)  # −1 goes to the spare column T
    return mask[..., :T]


# ------------------------------------------------------------------------------------------------
# §5 MLA (training/prefill form, causal)
# ------------------------------------------------------------------------------------------------
class MLA(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d, H, rq, rkv = cfg.hidden_size, cfg.num_attention_heads, cfg.q_lora_rank, cfg.kv_lora_rank
        dn, dr, dv = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
        if rq > 0:
            self.q_a_proj = linear(d, rq)
            self.q_a_layernorm = RMSNorm(rq, cfg.rms_norm_eps)
            self.q_b_proj = linear(rq, H * (dn + dr))
        else:
            self.q_proj = linear(d, H * (dn + dr))
        self.kv_a_proj_with_mqa = linear(d, rkv + dr)
        self.kv_a_layernorm = RMSNorm(rkv, cfg.rms_norm_eps)
        self.kv_b_proj = linear(rkv, H * (dn + dv))
        self.o_proj = linear(H * dv, d)
        self.indexer = Indexer(cfg) if cfg.index_n_heads > 0 else None
        self.last_sel = self.last_scores = None  # the indexer's output of the last forward

    def forward(self, x, cos, sin):
        """x [B,T,d] (already normed by input_layernorm) -> [B,T,d]."""
        cfg = self.cfg
        B, T, _ = x.shape
        H, rkv = cfg.num_attention_heads, cfg.kv_lora_rank
        dn, dr, dv = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
        if cfg.q_lora_rank > 0:
            cq = self.q_a_layernorm(self.q_a_proj(x))                        # [B,T,rq]
            q = self.q_b_proj(cq)
        else:
            cq = None
            q = self.q_proj(x)
        q = q.view(B, T, H, dn + dr)
        q_nope, q_pe = q[..., :dn], apply_rope(q[..., dn:], cos, sin, interleaved=True)
        kva = self.kv_a_proj_with_mqa(x)                                     # [B,T,rkv+dr]
        ckv = self.kv_a_layernorm(kva[..., :rkv])
        kpe = apply_rope(kva[..., rkv:], cos, sin, interleaved=True)          # one per token, shared by heads
        kvb = self.kv_b_proj(ckv).view(B, T, H, dn + dv)
        k_nope, v = kvb[..., :dn], kvb[..., dn:]
        s = torch.einsum("bihd,bjhd->bhij", q_nope, k_nope) + torch.einsum("bihd,bjd->bhij", q_pe, kpe)
        s = s * softmax_scale(cfg)                                           # [B,H,T,T]
        allowed = torch.ones(T, T, dtype=torch.bool).tril()[None]            # j <= i
        if self.indexer is not None:
            self.last_sel, self.last_scores = self.indexer(x, cq, cos, sin)
            if T > cfg.index_topk:                                           # §5/§7: sparse only when T > topk
                allowed = allowed & selection_mask(self.last_sel, T)
        s = s.masked_fill(~allowed[:, None], float("-inf"))
        p = torch.softmax(s, dim=-1)
        o = torch.einsum("bhij,bjhd->bihd", p, v)                           # [B,T,H,dv]
        return self.o_proj(o.reshape(B, T, H * dv))


# ------------------------------------------------------------------------------------------------
# §6 Feed-forward: SwiGLU MLP, router, MoE, expert loads, bias update, balance loss
# ------------------------------------------------------------------------------------------------
class MLP(nn.Module):
    """y = (silu(x w1ᵀ) ⊙ (x w3ᵀ)) w2ᵀ; w1 = gate_proj, w3 = up_proj, w2 = down_proj."""

    def __init__(self, d, inter):
        super().__init__()
        self.gate_proj = linear(d, inter)
        self.up_proj = linear(d, inter)
        self.down_proj = linear(inter, d)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Gate(nn.Module):
    """The router of §6. weight [E,d]; e_score_correction_bias [E] (a buffer: selection only, no gradient)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        E = cfg.n_routed_experts
        self.weight = nn.Parameter(torch.empty(E, cfg.hidden_size))
        if cfg.expert_bias:
            self.register_buffer("e_score_correction_bias", torch.zeros(E, dtype=torch.float32))
        else:
            self.e_score_correction_bias = None
        self.forced_idx = None  # tests: route to these experts instead of selecting (weights still from s)
        self.last_sel = self.last_group_scores = self.last_idx = None  # for margin checks and tests

    def forward(self, x):
        """x [N,d] -> routing weights w [N,K], expert indices idx [N,K], scores s [N,E]."""
        cfg = self.cfg
        N = x.shape[0]
        E, K, G, TG = cfg.n_routed_experts, cfg.num_experts_per_tok, cfg.n_group, cfg.topk_group
        z = x @ self.weight.t()                                               # [N,E]
        s = torch.softmax(z, dim=-1) if cfg.scoring_func == "softmax" else torch.sigmoid(z)
        # Selection: no gradient flows through it.
        sel = s.detach()
        b = self.e_score_correction_bias
        if b is not None:
            sel = sel + b.to(sel.dtype)                                       # bias affects selection only
        self.last_group_scores = None
        if G > 1:
            sg = sel.view(N, G, E // G)
            # group score: sum of the top-2 of sel when the bias is present, else the max
            g = sg.topk(2, dim=-1).values.sum(-1) if b is not None else sg.amax(-1)   # [N,G]
            keep_g = torch.sort(g, dim=-1, descending=True, stable=True).indices[:, :TG]
            keep = torch.zeros(N, G, dtype=torch.bool).scatter_(1, keep_g, True)
            sel = sg.masked_fill(~keep[:, :, None], float("-inf")).view(N, E)   # dsc convention: −inf
            self.last_group_scores = g
        self.last_sel = sel
        # top-K, ties towards the lower index (stable sort)
        idx = torch.sort(sel, dim=-1, descending=True, stable=True).indices[:, :K]
        if self.forced_idx is not None:
            idx = self.forced_idx
        self.last_idx = idx
        w = s.gather(1, idx)                                                  # un-biased scores
        if cfg.norm_topk_prob:
            w = w / w.sum(-1, keepdim=True)                                   # no epsilon
        w = w * cfg.routed_scaling_factor
        return w, idx, s


def expert_load(idx, E):
    """c_i = number of (row, slot) pairs that chose expert i (int64 [E])."""
    return torch.bincount(idx.reshape(-1), minlength=E).to(torch.int64)


def update_expert_bias(bias, counts, gamma):
    """§6: b_i += γ · sign(mean_j c_j − c_i), sign(0) = 0. Returns the new bias (dtype of bias)."""
    c = counts.to(torch.float64)
    step = torch.sign(c.mean() - c).to(bias.dtype)
    return bias + step * gamma


def balance_loss(s, idx, E, K):
    """§6 sequence-wise balance loss for s [B,T,E], idx [B,T,K]: mean over sequences of Σ_i f_i P_i.

    f_i = E/(K·T) · Σ_t 1[i ∈ idx_t] (a constant), P_i = (1/T) Σ_t s_{i,t}/Σ_j s_{j,t}.
    All T rows count, also positions whose target is −1 (MODEL.md says "per sequence of T rows")."""
    B, T, _ = s.shape
    counts = F.one_hot(idx, E).sum(dim=(1, 2)).to(s.dtype)                   # [B,E]
    f = (E / (K * T)) * counts
    P = (s / s.sum(-1, keepdim=True)).mean(dim=1)                           # [B,E]
    return (f * P).sum(-1).mean()


class MoE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        E, Ie, S = cfg.n_routed_experts, cfg.moe_intermediate_size, cfg.n_shared_experts
        self.gate = Gate(cfg)
        self.experts = nn.ModuleList([MLP(cfg.hidden_size, Ie) for _ in range(E)])
        self.shared_experts = MLP(cfg.hidden_size, S * Ie) if S > 0 else None
        self.last_load = self.last_balance = None

    def forward(self, x):
        """x [B,T,d] -> MoE(x) = Σ_k w_k · Expert_{idx_k}(x) + Shared(x). Records load and balance."""
        cfg = self.cfg
        B, T, d = x.shape
        E, K = cfg.n_routed_experts, cfg.num_experts_per_tok
        xf = x.reshape(B * T, d)
        w, idx, s = self.gate(xf)
        y = torch.zeros_like(xf)
        for e in range(E):                                     # experts in index order
            rows, slots = (idx == e).nonzero(as_tuple=True)
            if rows.numel():
                y = y.index_add(0, rows, w[rows, slots, None] * self.experts[e](xf[rows]))
        if self.shared_experts is not None:
            y = y + self.shared_experts(xf)
        self.last_load = expert_load(idx, E)
        self.last_balance = balance_loss(s.view(B, T, E), idx.view(B, T, K), E, K)
        return y.view(B, T, d)


# ------------------------------------------------------------------------------------------------
# §8 mHC: Manifold-Constrained Hyper-Connections
# ------------------------------------------------------------------------------------------------
def sinkhorn(res, iters):
    """res [..., n, n] -> M = exp(res − max(res)); iters × (columns to sum 1, then rows to sum 1).

    The max is a constant shift, which cancels in the first column normalisation, so it is
    detached (its gradient is exactly zero mathematically)."""
    M = torch.exp(res - res.detach().amax(dim=(-2, -1), keepdim=True))
    for _ in range(iters):
        M = M / M.sum(-2, keepdim=True)   # each column j: divide by Σ_k M[k][j]
        M = M / M.sum(-1, keepdim=True)   # each row k: divide by Σ_j M[k][j]
    return M


class MHC(nn.Module):
    """phi [n²+2n, n·d] (rows: pre(n), post(n), res(n·n) row-major), bias [n²+2n], alpha [3]."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        n, d = cfg.mhc_expansion_rate, cfg.hidden_size
        self.phi = nn.Parameter(torch.zeros(n * n + 2 * n, n * d))
        self.bias = nn.Parameter(torch.zeros(n * n + 2 * n))
        self.alpha = nn.Parameter(torch.zeros(3))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator=None):
        """§8 initialisation: phi ~ N(0, std²), alpha = alpha_init, bias = [−ln(n−1)]·n, [0]·n, diag·I."""
        cfg = self.cfg
        n = cfg.mhc_expansion_rate
        self.phi.normal_(0.0, cfg.mhc_phi_init_std, generator=generator)
        self.alpha.fill_(cfg.mhc_alpha_init)
        self.bias.zero_()
        self.bias[:n] = -math.log(n - 1)                      # logit(1/n)
        self.bias[2 * n:] = (cfg.mhc_res_diag_init * torch.eye(n)).reshape(-1)

    def coefficients(self, x):
        """x [..., n, d] -> H_pre [..., n], H_post [..., n], H_res [..., n, n]."""
        cfg = self.cfg
        n = cfg.mhc_expansion_rate
        xv = x.flatten(-2)                                                       # vec(x) [..., n·d]
        v = xv * torch.rsqrt(xv.pow(2).mean(-1, keepdim=True) + cfg.mhc_rms_eps)  # no weight
        a = v @ self.phi.t()                                                     # [..., n²+2n]
        pre = self.alpha[0] * a[..., :n] + self.bias[:n]
        post = self.alpha[1] * a[..., n:2 * n] + self.bias[n:2 * n]
        res = self.alpha[2] * a[..., 2 * n:] + self.bias[2 * n:]
        h_pre = torch.sigmoid(pre)
        h_post = 2 * torch.sigmoid(post)
        h_res = sinkhorn(res.unflatten(-1, (n, n)), cfg.mhc_sinkhorn_iters)     # res[k][j] row-major
        return h_pre, h_post, h_res

    def forward(self, x, fn):
        """x [B,T,n,d]; fn: the sub-layer F (with its own pre-norm) on [B,T,d]. Returns x' [B,T,n,d]."""
        h_pre, h_post, h_res = self.coefficients(x)
        u = torch.einsum("...j,...jd->...d", h_pre, x)            # u = Σ_j H_pre[j] x[j]
        y = fn(u)
        return torch.einsum("...kj,...jd->...kd", h_res, x) + h_post[..., None] * y[..., None, :]


def expand_streams(h, cfg):
    """[B,T,d] -> n copies [B,T,n,d] under mHC; plain: unchanged."""
    return h[..., None, :].expand(*h.shape[:-1], cfg.mhc_expansion_rate, h.shape[-1]) if cfg.mhc else h


def reduce_streams(x, cfg):
    """Sum of the n streams under mHC; plain: unchanged."""
    return x.sum(-2) if cfg.mhc else x


# ------------------------------------------------------------------------------------------------
# §4 Block, §9 MTP block
# ------------------------------------------------------------------------------------------------
class Block(nn.Module):
    def __init__(self, cfg, l):
        super().__init__()
        self.cfg, self.layer_id = cfg, l
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = MLA(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.is_moe = cfg.layer_is_moe(l)
        self.mlp = MoE(cfg) if self.is_moe else MLP(cfg.hidden_size, cfg.intermediate_size)
        if cfg.mhc:
            self.attn_mhc = MHC(cfg)
            self.ffn_mhc = MHC(cfg)

    def forward(self, x, cos, sin):
        """x: [B,T,d] plain, or [B,T,n,d] streams under mHC."""
        def attn(u):
            return self.self_attn(self.input_layernorm(u), cos, sin)

        def ffn(u):
            return self.mlp(self.post_attention_layernorm(u))

        if self.cfg.mhc:
            x = self.attn_mhc(x, attn)
            return self.ffn_mhc(x, ffn)
        x = x + attn(x)
        return x + ffn(x)


class SharedHead(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)   # shared_head.norm.weight


class MTPBlock(Block):
    """Depth k (block index L+k−1): enorm, hnorm, eh_proj, shared_head.norm around a normal Block (§9)."""

    def __init__(self, cfg, l):
        super().__init__(cfg, l)
        d = cfg.hidden_size
        self.enorm = RMSNorm(d, cfg.rms_norm_eps)
        self.hnorm = RMSNorm(d, cfg.rms_norm_eps)
        self.eh_proj = linear(2 * d, d)
        self.shared_head = SharedHead(cfg)

    def mtp_forward(self, e, g_prev, cos, sin):
        """e: embeddings [B,T,d]; g_prev: the previous depth's normed state. Returns g_k [B,T,d]."""
        h = self.eh_proj(torch.cat((self.enorm(e), self.hnorm(g_prev)), dim=-1))   # embedding first
        x = self.forward(expand_streams(h, self.cfg), cos, sin)
        return self.shared_head.norm(reduce_streams(x, self.cfg))


# ------------------------------------------------------------------------------------------------
# §3 top level, §9 MTP, §10 losses
# ------------------------------------------------------------------------------------------------
class Backbone(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        L, D = cfg.num_hidden_layers, cfg.num_nextn_predict_layers
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([Block(cfg, l) for l in range(L)] + [MTPBlock(cfg, L + k) for k in range(D)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Output:
    """What Model.forward returns."""

    def __init__(self):
        self.logits = None        # [B,T,V]
        self.mtp_logits = []      # D tensors [B,T,V], depth k = 1..D at index k−1
        self.losses = {}          # ce, mtp, balance, total (0-dim tensors)
        self.n_targets = 0        # targets counted in ce
        self.loads = {}           # MoE block l -> int64 [E] expert counts of this pass
        self.dsa = {}             # block l -> (sel [B,T,topk] int64, scores [B,T,T])


def cross_entropy(logits, targets):
    """Mean over counted targets (target >= 0) of −log softmax(logits)[target]."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)


class Model(nn.Module):
    def __init__(self, cfg, dtype=torch.float32):
        super().__init__()
        self.cfg = cfg
        self.model = Backbone(cfg)
        self.lm_head = None if cfg.tie_word_embeddings else linear(cfg.hidden_size, cfg.vocab_size)
        self.to(dtype)
        for m in self.modules():   # the correction bias stays fp32 like the C model's
            if isinstance(m, Gate) and m.e_score_correction_bias is not None:
                m.e_score_correction_bias = m.e_score_correction_bias.to(torch.float32)

    def head_weight(self):
        return self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    def forward(self, tokens, targets=None):
        """tokens, targets: int [B,T] (target −1 = not counted). Returns an Output."""
        cfg = self.cfg
        B, T = tokens.shape
        L, D = cfg.num_hidden_layers, cfg.num_nextn_predict_layers
        tokens = tokens.long()
        cos, sin = rope_tables(cfg, T)                    # positions 0..T−1 (restart in MTP blocks)
        embed = self.model.embed_tokens.weight
        out = Output()
        # §3 main model
        x = expand_streams(embed[tokens], cfg)            # no scaling
        for l in range(L):
            x = self.model.layers[l](x, cos, sin)
        hn = self.model.norm(reduce_streams(x, cfg))
        out.logits = hn @ self.head_weight().t()
        # §9 MTP: z[0..T] = tokens, then targets[T−1] (0 if −1)
        if D > 0:
            targets_ = targets.long() if targets is not None else torch.full((B, T), -1, dtype=torch.long)
            last = targets_[:, T - 1:].clamp(min=0)
            z = torch.cat((tokens, last), dim=1)                           # [B,T+1]
            g = hn          # g0: the main model's post-final-norm state; not detached, so the
            for k in range(1, D + 1):   # MTP loss also trains the main model through it
                t = torch.arange(T)
                zk = torch.where(t + k <= T, z[:, (t + k).clamp(max=T)], torch.zeros_like(tokens))
                g = self.model.layers[L + k - 1].mtp_forward(embed[zk], g, cos, sin)
                out.mtp_logits.append(g @ self.head_weight().t())
        # expert loads, indexer selections, balance
        balance = out.logits.new_zeros(())
        for l, blk in enumerate(self.model.layers):
            if blk.is_moe:
                out.loads[l] = blk.mlp.last_load
                balance = balance + blk.mlp.last_balance       # summed over MoE blocks (MTP included)
            if blk.self_attn.indexer is not None:
                out.dsa[l] = (blk.self_attn.last_sel, blk.self_attn.last_scores)
        # §10 losses
        if targets is not None:
            targets = targets.long()
            ce = cross_entropy(out.logits, targets)
            out.n_targets = int((targets >= 0).sum())
            mtp = out.logits.new_zeros(())
            for k, lg in enumerate(out.mtp_logits, start=1):
                tk = torch.full_like(targets, -1)
                tk[:, : T - k] = targets[:, k:]                             # targets[t+k] if t+k < T
                mtp = mtp + cross_entropy(lg, tk)
            if D > 0:
                mtp = mtp / D
            total = ce + cfg.mtp_loss_weight * mtp + cfg.aux_loss_alpha * balance
            out.losses = dict(ce=ce, mtp=mtp, balance=balance, total=total)
        return out

    def moe_blocks(self):
        return [l for l, b in enumerate(self.model.layers) if b.is_moe]

    @torch.no_grad()
    def update_expert_bias(self, loads, gamma):
        """Applies §6's bias update to every MoE block with a correction bias, from loads {l: counts}."""
        for l, counts in loads.items():
            gate = self.model.layers[l].mlp.gate
            if gate.e_score_correction_bias is not None:
                gate.e_score_correction_bias.copy_(update_expert_bias(gate.e_score_correction_bias, counts, gamma))
