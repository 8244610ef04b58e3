#!/usr/bin/python3
"""check_ref.py: self-checks of the PyTorch reference (no C code needed).

    /usr/bin/python3 tests/reference/check_ref.py

(a) torch.autograd.gradcheck in float64 on tiny instances: MLA (with and without q_lora, with
    YaRN, with a sparse DSA mask), MoE with fixed routing (sigmoid + bias + groups, and softmax),
    the balance loss, mHC including every Sinkhorn iteration, the MTP path, and the whole model;
(b) mHC initialised per MODEL.md §8 with phi = 0 maps n equal streams x to x + F(x) each;
(c) Sinkhorn-Knopp: rows sum to 1, columns to ~1, entries >= 0;
(d) the DSA indexer with T <= index_topk selects every causal key and attention stays dense;
(e) YaRN frequencies and softmax scale of the 671B config against DEEPSEEK_ARCHITECTURE.md;
plus the router against a plain per-row loop, the bias update rule, RoPE's relative-position
property, and a safetensors round trip. Prints a summary; exits non-zero on any failure.
"""
import math
import os
import sys
import tempfile
import time

import numpy as np
import torch
from torch.autograd import gradcheck
from torch.nn.utils.stateless import functional_call

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dsc_ref as R  # noqa: E402
import safetensors_np as st  # noqa: E402

F64 = torch.float64
CHECKS = []


def check(name):
    """Decorator: registers a check; it passes unless it raises. It may return a short message."""
    def wrap(fn):
        CHECKS.append((name, fn))
        return fn
    return wrap


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


# A tiny configuration with every feature; each check switches off what it does not need.
TINY = dict(model_type="dsc", vocab_size=11, hidden_size=8, intermediate_size=12, moe_intermediate_size=6,
            num_hidden_layers=2, first_k_dense_replace=1, num_attention_heads=2, n_routed_experts=4,
            n_shared_experts=1, num_experts_per_tok=2, n_group=2, topk_group=1, routed_scaling_factor=2.5,
            scoring_func="sigmoid", topk_method="noaux_tc", norm_topk_prob=True, q_lora_rank=6, kv_lora_rank=6,
            qk_nope_head_dim=4, qk_rope_head_dim=4, v_head_dim=4, rope_theta=10000.0,
            rope_scaling=dict(type="yarn", factor=40.0, beta_fast=32.0, beta_slow=1.0, mscale=1.0,
                              mscale_all_dim=1.0, original_max_position_embeddings=4096),
            num_nextn_predict_layers=2, mhc_expansion_rate=3, index_n_heads=2, index_head_dim=4, index_topk=3,
            aux_loss_alpha=0.1, mtp_loss_weight=0.3)


def tiny_cfg(**kw):
    d = dict(TINY)
    d.update(kw)
    return R.Config(d)


def randomize(module, seed, std=0.4):
    """Random float64 weights of O(1) effect (norm weights around 1, matrices ~ 1/sqrt(fan_in))."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() == 1:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g, dtype=F64))
            else:
                p.copy_(torch.randn(p.shape, generator=g, dtype=F64) / math.sqrt(p.shape[1]))
            if name.endswith("_mhc.bias"):
                n = int(round((math.sqrt(1 + p.numel()) - 1)))
                p[:n] -= math.log(n - 1)
            if name.endswith("phi"):
                p.mul_(std)
        for m in module.modules():
            if isinstance(m, R.Gate) and m.e_score_correction_bias is not None:
                m.e_score_correction_bias.copy_(0.05 * torch.randn(m.e_score_correction_bias.shape, generator=g))


def grad_check(module, inputs, out_fn, names=None, fast=False):
    """gradcheck of out_fn(module(*inputs)) w.r.t. the float inputs and the named parameters."""
    params = dict(module.named_parameters())
    names = list(params) if names is None else names
    n_in = len(inputs)

    def f(*ts):
        p = dict(zip(names, ts[n_in:]))
        return out_fn(functional_call(module, p, tuple(ts[:n_in])))

    args = tuple(inputs) + tuple(params[k].detach().clone().requires_grad_(True) for k in names)
    expect(gradcheck(f, args, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=fast), "gradcheck failed")
    return f"{sum(a.numel() for a in args if a.requires_grad)} values"


def x64(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64).requires_grad_(True)


# ------------------------------------------------------------------------------------------------
# (a) gradients
# ------------------------------------------------------------------------------------------------
def mla_check(cfg, T, seed, forced_sel=None):
    mla = R.MLA(cfg).to(F64)
    randomize(mla, seed)
    cos, sin = R.rope_tables(cfg, T)
    if mla.indexer is not None:
        with torch.no_grad():
            mla(x64(2, T, cfg.hidden_size, seed=seed), cos, sin)
        mla.indexer.forced_sel = mla.last_sel               # routing fixed during the check
    return grad_check(mla, [x64(2, T, cfg.hidden_size, seed=seed), cos, sin], lambda y: y)


@check("gradcheck MLA (q_lora, YaRN)")
def _():
    return mla_check(tiny_cfg(index_n_heads=0), 5, 1)


@check("gradcheck MLA (plain q_proj, no YaRN)")
def _():
    return mla_check(tiny_cfg(index_n_heads=0, q_lora_rank=0, rope_scaling=None), 5, 2)


@check("gradcheck MLA (sparse DSA mask, T > index_topk)")
def _():
    return mla_check(tiny_cfg(), 6, 3)


def moe_check(cfg, seed):
    moe = R.MoE(cfg).to(F64)
    randomize(moe, seed)
    x = x64(2, 5, cfg.hidden_size, seed=seed)
    with torch.no_grad():
        moe(x)
    moe.gate.forced_idx = moe.gate.last_idx                 # fixed routing
    names = [n for n, _ in moe.named_parameters()]
    msg = grad_check(moe, [x], lambda y: y, names)
    return msg


@check("gradcheck MoE (sigmoid, bias, groups, norm, scale), fixed routing")
def _():
    return moe_check(tiny_cfg(), 4)


@check("gradcheck MoE (softmax, no bias, no norm, 2 shared), fixed routing")
def _():
    return moe_check(tiny_cfg(scoring_func="softmax", topk_method="greedy", n_group=1, topk_group=1,
                              norm_topk_prob=False, n_shared_experts=2, routed_scaling_factor=1.0), 5)


@check("gradcheck balance loss (router weight and input), fixed routing")
def _():
    cfg = tiny_cfg()
    moe = R.MoE(cfg).to(F64)
    randomize(moe, 6)
    x = x64(2, 5, cfg.hidden_size, seed=6)
    with torch.no_grad():
        moe(x)
    moe.gate.forced_idx = moe.gate.last_idx

    def bal(_):
        return moe.last_balance
    return grad_check(moe, [x], bal, ["gate.weight"])


@check("gradcheck mHC (coefficients, Sinkhorn 20 iterations, combine)")
def _():
    cfg = tiny_cfg()
    mhc = R.MHC(cfg).to(F64)
    randomize(mhc, 7, std=1.0)
    with torch.no_grad():
        mhc.alpha.copy_(torch.tensor([0.9, 1.2, 0.7]))
        mhc.bias[2 * 3:] += torch.eye(3).reshape(-1).to(F64)
    W = x64(cfg.hidden_size, cfg.hidden_size, seed=8)

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = mhc
            self.W = torch.nn.Parameter(W.detach().clone())

        def forward(self, x):
            return self.m(x, lambda u: torch.tanh(u @ self.W))

    return grad_check(Wrap(), [x64(2, 3, 3, cfg.hidden_size, seed=9)], lambda y: y)


def tiny_model(seed, **kw):
    cfg = tiny_cfg(**kw)
    m = R.Model(cfg, dtype=F64)
    randomize(m, seed)
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, cfg.vocab_size, (2, 5), generator=g)
    targets = torch.randint(0, cfg.vocab_size, (2, 5), generator=g)
    targets[0, 2] = -1
    targets[1, 4] = -1
    with torch.no_grad():                                   # fix routing and DSA selections
        m(tokens, targets)
    for mod in m.modules():
        if isinstance(mod, R.Gate):
            mod.forced_idx = mod.last_idx
        if isinstance(mod, R.MLA) and mod.indexer is not None:
            mod.indexer.forced_sel = mod.last_sel
    return m, tokens, targets


@check("gradcheck MTP path (D=2, dense): eh_proj, enorm, hnorm, shared_head.norm")
def _():
    m, tokens, targets = tiny_model(10, n_routed_experts=0, mhc_expansion_rate=0, index_n_heads=0)
    names = [n for n, _ in m.named_parameters() if any(k in n for k in ("eh_proj", "enorm", "hnorm", "shared_head"))]

    def total(o):
        return torch.stack((o.losses["mtp"], o.losses["total"]))
    return grad_check(m, [tokens, targets], total, names)


@check("gradcheck whole model, every feature (fast mode, all parameters)")
def _():
    m, tokens, targets = tiny_model(11)
    return grad_check(m, [tokens, targets], lambda o: o.losses["total"], fast=True)


@check("gradcheck whole model, every feature (full mode, selected mHC/router/MTP tensors)")
def _():
    m, tokens, targets = tiny_model(12)
    names = [n for n, _ in m.named_parameters()          # (all ~2000 values in full mode take minutes)
             if n.endswith("_mhc.alpha") or n in ("model.layers.3.attn_mhc.bias", "model.layers.2.ffn_mhc.bias",
                                                   "model.layers.1.mlp.gate.weight", "model.layers.3.hnorm.weight",
                                                   "model.layers.4.enorm.weight")]
    return grad_check(m, [tokens, targets], lambda o: o.losses["total"], names)


# ------------------------------------------------------------------------------------------------
# (b) (c) mHC
# ------------------------------------------------------------------------------------------------
@check("mHC at §8 init (phi = 0): every stream becomes x + F(x)")
def _():
    cfg = tiny_cfg(mhc_expansion_rate=4)
    mhc = R.MHC(cfg).to(F64)
    mhc.reset_parameters()                                  # in float64, so −ln(n−1) is not rounded to fp32
    with torch.no_grad():
        mhc.phi.zero_()
    x = x64(2, 3, cfg.hidden_size, seed=13).detach()
    W = x64(cfg.hidden_size, cfg.hidden_size, seed=14).detach()

    def fn(u):
        return torch.tanh(u @ W)
    xs = x[..., None, :].expand(2, 3, 4, cfg.hidden_size)
    y = mhc(xs, fn)
    err = float((y - (x + fn(x))[..., None, :]).abs().max())
    expect(err < 1e-12, f"max error {err:.3e}")
    h_pre, h_post, _ = mhc.coefficients(xs)
    expect(float((h_pre - 0.25).abs().max()) < 1e-12 and float((h_post - 1).abs().max()) < 1e-12,
           "H_pre != 1/n or H_post != 1")
    return f"max |x' - (x + F(x))| = {err:.1e}"


@check("Sinkhorn-Knopp: rows sum to 1, columns ~1, entries >= 0")
def _():
    g = torch.Generator().manual_seed(15)
    worst_row = worst_col = 0.0
    # Logits of O(1) spread, as the mHC path produces. (With std 2, 20 iterations leave column
    # sums up to ~3e-2 off for the most extreme of 1000 matrices: Sinkhorn converges slowly there.)
    for dtype in (torch.float32, F64):
        res = torch.randn(1000, 4, 4, generator=g).to(dtype)
        M = R.sinkhorn(res, 20)
        expect(bool((M >= 0).all()), "negative entry")
        rows = float((M.sum(-1) - 1).abs().max())
        cols = float((M.sum(-2) - 1).abs().max())
        tol_row = 1e-6 if dtype == torch.float32 else 1e-14
        expect(rows < tol_row, f"{dtype}: row sums off by {rows:.2e}")
        expect(cols < 1e-3, f"{dtype}: column sums off by {cols:.2e}")
        worst_row, worst_col = max(worst_row, rows), max(worst_col, cols)
    return f"max |row sum - 1| = {worst_row:.1e}, max |col sum - 1| = {worst_col:.1e}"


# ------------------------------------------------------------------------------------------------
# (d) DSA indexer
# ------------------------------------------------------------------------------------------------
@check("DSA indexer: T <= index_topk selects every causal key; attention is dense")
def _():
    for il in (False, True):
        cfg = tiny_cfg(index_topk=6, index_rope_interleaved=il)
        mla = R.MLA(cfg)
        randomize(mla, 16)
        mla.float()
        T = 6
        cos, sin = R.rope_tables(cfg, T)
        x = torch.randn(2, T, cfg.hidden_size, generator=torch.Generator().manual_seed(17))
        with torch.no_grad():
            y = mla(x, cos, sin)
            sel = mla.last_sel
            for i in range(T):
                got = sel[:, i]
                expect(all(sorted(r[: i + 1].tolist()) == list(range(i + 1)) for r in got), f"query {i}: {got}")
                expect(bool((got[:, i + 1:] == -1).all()), f"query {i}: padding {got}")
            ind = mla.indexer
            mla.indexer = None
            y_dense = mla(x, cos, sin)
            mla.indexer = ind
        expect(torch.equal(y, y_dense), "output differs from attention without the indexer")
        # and with T > index_topk the mask is really sparse
        cfg.index_topk = 3
        with torch.no_grad():
            y_sparse = mla(x, cos, sin)
        expect(float((y_sparse - y_dense).abs().max()) > 1e-3, "T > index_topk did not change attention")
        expect(bool(((mla.last_sel >= 0).sum(-1) == torch.minimum(torch.arange(T) + 1, torch.tensor(3))).all()),
               "selection sizes differ from min(topk, i+1)")
    return "half-split and interleaved"


# ------------------------------------------------------------------------------------------------
# (e) YaRN against the 671B numbers of DEEPSEEK_ARCHITECTURE.md §1.5/§1.6
# ------------------------------------------------------------------------------------------------
@check("YaRN 671B: low/high, θ_p, softmax_scale")
def _():
    cfg = R.Config(dict(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, kv_lora_rank=4,
                        qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, rope_theta=10000.0,
                        rope_scaling=dict(type="yarn", factor=40, beta_fast=32, beta_slow=1, mscale=1.0,
                                          mscale_all_dim=1.0, original_max_position_embeddings=4096)))
    low, high = R.yarn_correction_range(cfg)
    expect((low, high) == (10, 23), f"low/high = {low}/{high}, expected 10/23")
    th = R.rope_frequencies(cfg)
    want = {0: 1.0, 10: 0.0562341288, 11: 0.0390069261, 16: 0.00550000044, 22: 1.7782794e-4,
            23: 3.33380376e-5, 31: 3.33380376e-6}
    worst = max(abs(float(th[p]) - v) / v for p, v in want.items())
    expect(worst < 2e-7, f"θ relative error {worst:.2e}")
    scale = R.softmax_scale(cfg)
    expect(abs(scale - 0.1352337788608801) < 1e-15, f"softmax_scale {scale!r}")
    cfg16 = R.Config(dict(cfg.raw, rope_scaling=dict(type="yarn", factor=40, mscale=0.707, mscale_all_dim=0.707,
                                                      original_max_position_embeddings=4096)))
    s16 = R.softmax_scale(cfg16)
    expect(abs(s16 - 0.1147213867929261) < 1e-15, f"16B softmax_scale {s16!r}")
    cfg_off = R.Config(dict(cfg.raw, rope_scaling=None))
    expect(abs(R.softmax_scale(cfg_off) - 192 ** -0.5) < 1e-15, "no-YaRN scale")
    return f"max θ rel. error {worst:.1e}; scale {scale!r}"


# ------------------------------------------------------------------------------------------------
# Extra: router vs a per-row loop, bias update, RoPE, safetensors
# ------------------------------------------------------------------------------------------------
def router_loop(x, W, b, cfg):
    """The router of MODEL.md §6 written as plain Python loops over one row at a time."""
    E, K, G, TG = cfg.n_routed_experts, cfg.num_experts_per_tok, cfg.n_group, cfg.topk_group
    out = []
    for row in x.tolist():
        z = [sum(r * w for r, w in zip(row, W[e])) for e in range(E)]
        if cfg.scoring_func == "softmax":
            mz = max(z)
            ez = [math.exp(v - mz) for v in z]
            s = [v / sum(ez) for v in ez]
        else:
            s = [1 / (1 + math.exp(-v)) for v in z]
        sel = [s[e] + (b[e] if b is not None else 0.0) for e in range(E)]
        if G > 1:
            per = E // G
            gs = []
            for gi in range(G):
                grp = sorted(sel[gi * per:(gi + 1) * per], reverse=True)
                gs.append(grp[0] + grp[1] if b is not None else grp[0])
            keep = sorted(range(G), key=lambda gi: (-gs[gi], gi))[:TG]
            sel = [sel[e] if e // per in keep else -math.inf for e in range(E)]
        idx = sorted(range(E), key=lambda e: (-sel[e], e))[:K]
        w = [s[e] for e in idx]
        if cfg.norm_topk_prob:
            w = [v / sum(w) for v in w]
        out.append(sorted(zip(idx, [v * cfg.routed_scaling_factor for v in w])))
    return out


@check("router vs a per-row loop (sigmoid+bias+groups; softmax greedy)")
def _():
    for kw in (dict(n_routed_experts=8, n_group=4, topk_group=2),
               dict(n_routed_experts=8, scoring_func="softmax", topk_method="greedy", n_group=1, topk_group=1,
                    norm_topk_prob=False, num_experts_per_tok=3, routed_scaling_factor=1.0)):
        cfg = tiny_cfg(**kw)
        gate = R.Gate(cfg).to(F64)
        randomize(gate, 18)
        if gate.e_score_correction_bias is not None:
            gate.e_score_correction_bias = gate.e_score_correction_bias.to(torch.float32)
            with torch.no_grad():
                gate.e_score_correction_bias.copy_(0.1 * torch.randn(cfg.n_routed_experts))
        x = x64(64, cfg.hidden_size, seed=19).detach()
        w, idx, _ = gate(x)
        b = None if gate.e_score_correction_bias is None else gate.e_score_correction_bias.double().tolist()
        ref = router_loop(x, gate.weight.tolist(), b, cfg)
        for r in range(x.shape[0]):
            got = sorted(zip(idx[r].tolist(), w[r].tolist()))
            expect([e for e, _ in got] == [e for e, _ in ref[r]], f"row {r}: experts {got} vs {ref[r]}")
            expect(max(abs(a[1] - c[1]) for a, c in zip(got, ref[r])) < 1e-12, f"row {r}: weights")
    return "64 rows each"


@check("expert loads and bias update b += γ·sign(mean c − c)")
def _():
    idx = torch.tensor([[0, 1], [0, 2], [0, 1], [3, 2]])
    c = R.expert_load(idx, 5)
    expect(c.tolist() == [3, 2, 2, 1, 0], f"loads {c.tolist()}")
    b = torch.tensor([0.5, 0.0, -0.1, 0.2, 0.0])
    nb = R.update_expert_bias(b, torch.tensor([3, 1, 2, 2, 2]), 0.01)   # mean 2
    expect(torch.allclose(nb, torch.tensor([0.49, 0.01, -0.1, 0.2, 0.0])), f"bias {nb.tolist()}")
    return ""


@check("RoPE: q·k depends only on the position difference (both layouts)")
def _():
    cfg = tiny_cfg(qk_rope_head_dim=8)
    cos, sin = R.rope_tables(cfg, 12)
    cos, sin = cos.double(), sin.double()
    q, k = x64(1, 1, 8, seed=20).detach(), x64(1, 1, 8, seed=21).detach()
    for il in (True, False):
        qs = R.apply_rope(q.expand(1, 12, 8), cos, sin, il)
        ks = R.apply_rope(k.expand(1, 12, 8), cos, sin, il)
        dots = qs[0] @ ks[0].t()
        for delta in range(-3, 4):
            diag = torch.diagonal(dots, offset=delta)
            expect(float(diag.max() - diag.min()) < 1e-5, f"interleaved={il}: offset {delta}")
        n0 = float(qs[0].norm(dim=-1).std())
        expect(n0 < 1e-6, "rotation changed the norm")
    return ""


@check("safetensors round trip (F32, F16, BF16, I32, I64, metadata)")
def _():
    t = {"a": np.arange(12, dtype=np.float32).reshape(3, 4) / 7, "b": np.array([1, -2], dtype=np.int32),
         "c": np.array([[2 ** 40]], dtype=np.int64), "d": np.array([0.5, -1.25], dtype=np.float16),
         "e": np.array([1.0, -2.5, 3.0e-3], dtype=np.float32), "s": np.array(3.5, dtype=np.float32)}
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x.safetensors")
        st.save(p, t, metadata={"k": "v"}, bf16={"e"})
        back, meta = st.load(p, with_metadata=True)
        with open(p, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
    expect(meta == {"k": "v"} and n % 8 == 0, "metadata/header")
    for k in "abcds":
        expect(back[k].dtype == t[k].dtype and np.array_equal(back[k], t[k]), f"tensor {k}")
    expect(back["e"].dtype == np.float32 and np.allclose(back["e"], t["e"], rtol=2 ** -8), "bf16")
    return ""


def main():
    torch.set_num_threads(1)
    results = []
    t_all = time.time()
    for name, fn in CHECKS:
        t0 = time.time()
        try:
            ok, msg = True, fn() or ""
        except Exception as e:  # noqa: BLE001  (any failure is reported, then the next check runs)
            ok, msg = False, f"{type(e).__name__}: {e}"
        results.append((name, ok))
        print(f"[{'PASS' if ok else 'FAIL'}] {name} ({time.time() - t0:.1f}s) {msg}", flush=True)
    failed = [n for n, ok in results if not ok]
    print(f"\n{len(results) - len(failed)}/{len(results)} checks passed in {time.time() - t_all:.1f}s"
          + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
