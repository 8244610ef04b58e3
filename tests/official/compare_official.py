#!/usr/bin/python3
"""compare_official.py: does `dsc forward` compute what DeepSeek's own inference code computes?

    /usr/bin/python3 tests/official/compare_official.py --deepseek-v3 PATH --dsc build/dsc
        [--deepseek-v32 PATH] [--workdir DIR] [--configs NAME,...] [--tokens T] [--keep]

PATH is a checkout of github.com/deepseek-ai/DeepSeek-V3 (resp. DeepSeek-V3.2-Exp): a directory
holding inference/model.py and inference/convert.py. Nothing of DeepSeek's code lives in this
repository; it is imported from PATH at run time, through small shims of our own for what a CPU
build of PyTorch 1.13 lacks (see tests/official/README.md):
  * a stand-in `kernel` module (the official one needs triton/tilelang and a GPU): V3's
    act_quant / weight_dequant / fp8_gemm raise if called (fp32 weights never reach them);
    V3.2's act_quant / fp8_index are fp32 torch versions of the kernels' maths;
  * `torch.nn.functional.rms_norm` (PyTorch >= 2.4) when missing;
  * V3.2 only: `torch.float8_e4m3fn` (an alias used for the indexer's key-cache buffer),
    `einops.rearrange` (the one pattern the file uses), `fast_hadamard_transform` (the indexer's
    `rotate_activation` asserts bf16 and calls a CUDA library; it is replaced by an fp32
    Walsh-Hadamard transform), and a `dist.broadcast` that is a no-op without a process group;
  * `tqdm` / `safetensors.torch`, only so that convert.py (whose name table we use) imports.

For every configuration it
  1. writes config.json (Hugging Face names), runs `dsc init --config`, then redraws every weight
     with O(1)-effect scales (numpy, seeded) into model.safetensors under the HF names;
  2. builds the official Transformer from ModelArgs mapped from that config.json, converts it to
     float32, attaches the router's correction bias by hand where the config has one (the official
     Gate creates it only when dim == 7168), fills every parameter with NaN and then loads our
     weights under the names convert.py gives them (MTP layers skipped), failing if any official
     parameter is left unloaded or any non-MTP tensor is left unused;
  3. gets the logits of every position from the official model: prefixes tokens[:t+1] with
     start_pos 0 (the official forward returns only the last position), for V3 with both the
     default attn_impl "absorb" and "naive"; and a cached decode (one token per call) as well;
  4. runs `dsc forward` on the same tokens and prints max|dsc - official|, max|official| and their
     ratio per path; the exit status is 1 if any ratio exceeds 1e-4 (MODEL.md §11).
Router (and DSA indexer) top-k decisions are discontinuous: a weight draw is used only if every
decision the official forward makes has a relative margin >= 1e-4; otherwise the next seed is tried.
"""
import argparse
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import types

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True          # no __pycache__ in the source tree (ours or the checkout's)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import safetensors_np as st  # noqa: E402

TOL = 1e-4      # max |dsc - official| / max |official| per configuration and path
MARGIN = 1e-4   # relative gap required at every top-k boundary of the official forward pass
DEFAULT_T = 24


# ================================================================================================
# Configurations (Hugging Face field names; every one representable by DeepSeek's ModelArgs)
# ================================================================================================
def yarn(factor, L0, mscale=1.0, mscale_all_dim=1.0, beta_fast=32.0, beta_slow=1.0):
    return {"type": "yarn", "factor": factor, "original_max_position_embeddings": L0, "beta_fast": beta_fast,
            "beta_slow": beta_slow, "mscale": mscale, "mscale_all_dim": mscale_all_dim}


BASE = dict(
    model_type="deepseek_v3", architectures=["DeepseekV3ForCausalLM"], vocab_size=500, hidden_size=64,
    intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=3, first_k_dense_replace=1,
    num_attention_heads=4, num_key_value_heads=4, n_routed_experts=16, n_shared_experts=1,
    num_experts_per_tok=2, n_group=1, topk_group=1, routed_scaling_factor=1.0, scoring_func="softmax",
    topk_method="greedy", norm_topk_prob=False, moe_layer_freq=1, q_lora_rank=32, kv_lora_rank=32,
    qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, rope_theta=10000.0,
    max_position_embeddings=163840, rope_scaling=None, rms_norm_eps=1e-6, tie_word_embeddings=False,
    num_nextn_predict_layers=0, hidden_act="silu", attention_bias=False, bos_token_id=0, eos_token_id=1,
    mhc_expansion_rate=0)

# YaRN notes (dr = 8, so 4 frequency pairs): theta 100 with L0 128 gives low 0, high 3, ramp
# [0, 1/3, 2/3, 1] (two blended pairs, neither at 0.5); theta 1e4 with L0 1024 gives the same
# ramp. Angles t*theta_p at t < 24 are then large enough for the blend to matter.
CONFIGS = {
    # V3 style: sigmoid + noaux_tc correction bias, 4 groups keep 2 (top-2-sum group scores),
    # K 2, 1 shared expert, scale 2.5, q_lora, YaRN 40 (mscale 1), 1 dense block, MTP in the file.
    "v3": dict(n_group=4, topk_group=2, scoring_func="sigmoid", topk_method="noaux_tc", norm_topk_prob=True,
               routed_scaling_factor=2.5, rope_theta=100.0, rope_scaling=yarn(40.0, 128),
               num_nextn_predict_layers=1),
    # V2-Lite style: softmax, no bias, no groups, plain q_proj, 2 shared, no renormalisation,
    # YaRN with mscale = mscale_all_dim = 0.707.
    "v2lite": dict(model_type="deepseek_v2", architectures=["DeepseekV2ForCausalLM"], q_lora_rank=None,
                   n_shared_experts=2, num_experts_per_tok=3, scoring_func="softmax", topk_method="greedy",
                   norm_topk_prob=False, rope_scaling=yarn(40.0, 1024, mscale=0.707, mscale_all_dim=0.707)),
    # V2 (236B) style: softmax with group-limited routing (max-per-group scores, no bias),
    # 4 groups keep 2, K 3, 2 shared, scale 16, q_lora, YaRN with mscale_all_dim 1.
    "v2groups": dict(model_type="deepseek_v2", architectures=["DeepseekV2ForCausalLM"], n_group=4, topk_group=2,
                     n_shared_experts=2, num_experts_per_tok=3, routed_scaling_factor=16.0,
                     topk_method="group_limited_greedy", rope_theta=100.0, rope_scaling=yarn(40.0, 128)),
    # dense only (n_routed_experts 0; the official code gets n_dense_layers = n_layers), no YaRN.
    "dense": dict(n_routed_experts=0, n_shared_experts=0, num_experts_per_tok=0, moe_intermediate_size=0,
                  first_k_dense_replace=0, num_hidden_layers=2, rope_theta=100.0),
}

# V3.2-Exp (commit 3b99a53): the DSA lightning indexer. Its kernels work on blocks of 128, so the
# indexer head dim is 128. index_topk 8 < T: sparse from position 8 on. The commit's indexer RoPE
# is interleaved (DeepSeek's later fix made it half-split): index_rope_interleaved true.
V32_CONFIGS = {
    "v32_dsa": dict(model_type="deepseek_v32", architectures=["DeepseekV32ForCausalLM"], n_group=4, topk_group=2,
                    scoring_func="sigmoid", topk_method="noaux_tc", norm_topk_prob=True, routed_scaling_factor=2.5,
                    rope_theta=100.0, rope_scaling=yarn(40.0, 128), index_n_heads=4, index_head_dim=128,
                    index_topk=8, index_rope_interleaved=True),
}

SEED_BASE = {"v3": 1000, "v2lite": 2000, "v2groups": 3000, "dense": 4000, "v32_dsa": 5000}


def make_config(overrides):
    c = dict(BASE)
    c.update(overrides)
    return c


# ================================================================================================
# Shims (ours) and importing DeepSeek's files from the user's checkout
# ================================================================================================
def _not_available(name):
    def f(*a, **k):
        raise RuntimeError(f"shim: kernel.{name} was called; the fp32 comparison must never reach the FP8 kernels")
    f.__name__ = name
    return f


def rms_norm_shim(x, normalized_shape, weight=None, eps=None):
    """torch >= 2.4's F.rms_norm, for the last len(normalized_shape) dims."""
    dims = tuple(range(-len(normalized_shape), 0))
    if eps is None:
        eps = torch.finfo(x.dtype).eps
    y = x * torch.rsqrt(x.pow(2).mean(dim=dims, keepdim=True) + eps)
    return y * weight if weight is not None else y


def e4m3_round(y):
    """Round float32 values (already within +-448) to the nearest float8 e4m3fn value, ties to even."""
    a = y.abs()
    _, e = torch.frexp(a)                       # a = m * 2^e, m in [0.5, 1): floor(log2 a) = e - 1
    e = torch.clamp(e - 1, min=-6)              # subnormals share the quantum of the smallest normal
    q = torch.ldexp(torch.ones_like(a), (e - 3).to(a.dtype))
    return torch.sign(y) * torch.round(a / q) * q


class V32Kernels:
    """fp32 stand-ins for V3.2's tilelang kernels. mode 'exact': act_quant scales but does not round
    (the fp32 model of MODEL.md §7); mode 'e4m3': it also rounds to float8 e4m3 (DeepSeek's precision)."""

    def __init__(self, mode):
        self.mode = mode
        self.records = []       # index scores of every fp8_index call (for the margin check)

    def act_quant(self, x, block_size=128, scale_fmt=None):
        n = x.size(-1)
        assert n % block_size == 0, f"shim act_quant: last dim {n} not a multiple of {block_size}"
        xb = x.float().reshape(*x.shape[:-1], n // block_size, block_size)
        amax = xb.abs().amax(-1).clamp(min=1e-4)
        s = amax * (1.0 / 448.0)
        if scale_fmt is not None:               # ue8m0: a power of two, rounded up
            s = torch.pow(2.0, torch.ceil(torch.log2(s)))
        y = torch.clamp(xb / s.unsqueeze(-1), -448.0, 448.0)
        if self.mode == "e4m3":
            y = e4m3_round(y)
        return y.reshape(x.shape), s

    def fp8_index(self, q, q_s, k, k_s):
        """I[b,m,n] = k_s[b,n] * sum_h q_s[b,m,h] * relu(q[b,m,h] . k[b,n]), in fp32."""
        b, m, h, d = q.shape
        logits = torch.einsum("bmhd,bnd->bmhn", q.float(), k.float()).clamp(min=0)
        out = (logits * q_s.reshape(b, m, h, 1).float()).sum(2) * k_s.reshape(b, 1, -1).float()
        self.records.append(out.clone())
        return out

    def last_row_selections(self, topk):
        """For prefix runs: the key set the indexer selects for the last query of every call
        (None where every causal key is kept)."""
        out = []
        for sc in self.records:
            end = sc.shape[2]
            row = sc[0, -1, :end]
            out.append(None if end <= topk else frozenset(row.topk(topk)[1].tolist()))
        return out

    def module(self):
        mod = types.ModuleType("kernel")
        mod.act_quant = self.act_quant
        mod.fp8_index = self.fp8_index
        mod.fp8_gemm = _not_available("fp8_gemm")
        mod.weight_dequant = _not_available("weight_dequant")
        return mod


def hadamard_fp32(x):
    """Orthonormal Walsh-Hadamard transform over the last dim (Sylvester order), in fp32: what
    V3.2's rotate_activation computes with fast_hadamard_transform (scale = n^-1/2)."""
    n = x.size(-1)
    assert n & (n - 1) == 0, "Hadamard size must be a power of two"
    y = x.float().reshape(-1, n)
    h = 1
    while h < n:
        y = y.reshape(-1, n // (2 * h), 2, h)
        a, b = y[:, :, 0, :], y[:, :, 1, :]
        y = torch.stack((a + b, a - b), dim=2)
        h *= 2
    return (y.reshape(x.shape) * n ** -0.5).to(x.dtype)


def rearrange_shim(t, pattern, **sizes):
    """The part of einops.rearrange that model.py uses: un-grouping axes, e.g. 'b s (h d) -> b s h d'."""
    lhs, rhs = [s.strip() for s in pattern.split("->")]

    def parse(side):
        out, i, toks = [], 0, side.replace("(", " ( ").replace(")", " ) ").split()
        while i < len(toks):
            if toks[i] == "(":
                j = toks.index(")", i)
                out.append(toks[i + 1:j])
                i = j + 1
            else:
                out.append([toks[i]])
                i += 1
        return out

    left, right = parse(lhs), parse(rhs)
    if [a for g in left for a in g] != [a for g in right for a in g] or any(len(g) != 1 for g in right):
        raise NotImplementedError(f"rearrange shim: unsupported pattern '{pattern}'")
    shape = []
    for g, dim in zip(left, t.shape):
        if len(g) == 1:
            shape.append(dim)
            continue
        known = [sizes.get(a) for a in g]
        if known.count(None) > 1:
            raise NotImplementedError(f"rearrange shim: need the sizes of all but one of {g}")
        rest = dim // math.prod(k for k in known if k is not None)
        shape.extend(k if k is not None else rest for k in known)
    return t.reshape(shape)


class DistShim:
    """torch.distributed as model.py sees it; broadcast is a no-op without a process group
    (V3.2's Indexer calls dist.broadcast unconditionally)."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def broadcast(self, tensor, src=0, *a, **k):
        if self._real.is_available() and self._real.is_initialized():
            return self._real.broadcast(tensor, src, *a, **k)
        return None


def _import_file(path, modname, fake_modules):
    """Imports path as modname with fake_modules temporarily in sys.modules (restored afterwards)."""
    saved = {k: sys.modules.get(k) for k in fake_modules}
    sys.modules.update(fake_modules)
    try:
        spec = importlib.util.spec_from_file_location(modname, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return mod


def _missing(name):
    try:
        importlib.import_module(name)
        return False
    except ImportError:
        return True


def import_convert_mapping(checkout, tag):
    """convert.py's HF -> official name table, imported from the checkout."""
    fakes = {}
    if _missing("tqdm"):
        m = types.ModuleType("tqdm")
        m.tqdm, m.trange = (lambda it=None, *a, **k: it), (lambda *a, **k: range(*a))
        fakes["tqdm"] = m
    if _missing("safetensors.torch"):
        pkg, sub = types.ModuleType("safetensors"), types.ModuleType("safetensors.torch")
        sub.safe_open, sub.save_file = _not_available("safe_open"), _not_available("save_file")
        pkg.torch = sub
        fakes["safetensors"], fakes["safetensors.torch"] = pkg, sub
    mod = _import_file(os.path.join(checkout, "inference", "convert.py"), f"deepseek_convert_{tag}", fakes)
    return {k: v[0] for k, v in mod.mapping.items()}


def import_official_model(checkout, tag, kernel_module):
    if not hasattr(F, "rms_norm"):
        F.rms_norm = rms_norm_shim
    fakes = {"kernel": kernel_module}
    if tag == "v32":
        if not hasattr(torch, "float8_e4m3fn"):
            # Only the indexer's k_cache buffer is created with it (converted to fp32 below); any
            # dtype other than float32 keeps `weight.dtype != float8_e4m3fn` true for fp32 weights.
            torch.float8_e4m3fn = torch.float16
        if _missing("einops"):
            e = types.ModuleType("einops")
            e.rearrange = rearrange_shim
            fakes["einops"] = e
    mod = _import_file(os.path.join(checkout, "inference", "model.py"), f"deepseek_model_{tag}", fakes)
    if tag == "v32":
        mod.rotate_activation = hadamard_fp32
        mod.dist = DistShim(mod.dist)
    return mod


def git_head(checkout):
    try:
        r = subprocess.run(["git", "-C", checkout, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
        return r.stdout.strip() or "unknown (not a git checkout)"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ================================================================================================
# config.json -> ModelArgs, HF names -> official names
# ================================================================================================
def model_args(mod, cj, T, overrides=None):
    """ModelArgs equivalent to our config.json (DEEPSEEK_ARCHITECTURE.md §1.1), or an error if the
    official code cannot represent it."""
    def bad(why):
        raise ValueError(f"config not representable by DeepSeek's ModelArgs: {why}")

    E = cj.get("n_routed_experts") or 0
    L = cj["num_hidden_layers"]
    if (cj.get("mhc_expansion_rate") or 0) > 1:
        bad("mHC")
    if abs(cj.get("rms_norm_eps", 1e-6) - 1e-6) > 1e-12:
        bad("rms_norm_eps must be 1e-6 (hard-coded there)")
    if cj.get("num_key_value_heads", cj["num_attention_heads"]) != cj["num_attention_heads"]:
        bad("num_key_value_heads")
    has_indexer = (cj.get("index_n_heads") or 0) > 0
    if has_indexer != hasattr(mod, "Indexer"):
        bad("the DSA indexer needs V3.2's model.py, and V3.2's model.py always has one")
    if has_indexer and not cj.get("index_rope_interleaved", False):
        bad("the V3.2-Exp commit's indexer RoPE is interleaved (index_rope_interleaved: true)")
    if E > 0:
        sigmoid = cj.get("scoring_func", "softmax") == "sigmoid"
        if bool(cj.get("norm_topk_prob", False)) != sigmoid:
            bad("DeepSeek's Gate renormalises the top-K weights iff scoring_func is sigmoid")
    kw = dict(max_batch_size=1, dtype="bf16", vocab_size=cj["vocab_size"], dim=cj["hidden_size"],
              inter_dim=cj.get("intermediate_size") or 1, moe_inter_dim=cj.get("moe_intermediate_size") or 1,
              n_layers=L, n_dense_layers=L if E == 0 else cj.get("first_k_dense_replace", 0),
              n_heads=cj["num_attention_heads"], n_routed_experts=E, n_shared_experts=cj.get("n_shared_experts") or 0,
              n_activated_experts=cj.get("num_experts_per_tok") or 0, n_expert_groups=cj.get("n_group", 1),
              n_limited_groups=cj.get("topk_group", 1), score_func=cj.get("scoring_func", "softmax"),
              route_scale=float(cj.get("routed_scaling_factor", 1.0)), q_lora_rank=cj.get("q_lora_rank") or 0,
              kv_lora_rank=cj["kv_lora_rank"], qk_nope_head_dim=cj["qk_nope_head_dim"],
              qk_rope_head_dim=cj["qk_rope_head_dim"], v_head_dim=cj["v_head_dim"],
              rope_theta=float(cj.get("rope_theta", 10000.0)))
    rs = cj.get("rope_scaling")
    if rs and (rs.get("type") or rs.get("rope_type")) == "yarn":
        # Official rule: YaRN iff max_seq_len > original_seq_len. Ours: iff rope_scaling is yarn.
        L0 = int(rs["original_max_position_embeddings"])
        kw.update(original_seq_len=L0, max_seq_len=max(2 * L0, T), rope_factor=float(rs["factor"]),
                  beta_fast=rs.get("beta_fast", 32), beta_slow=rs.get("beta_slow", 1),
                  mscale=float(rs.get("mscale_all_dim") or 0.0))   # ModelArgs.mscale == HF mscale_all_dim
    else:
        kw.update(max_seq_len=max(T, 64), original_seq_len=max(T, 64))   # not greater: no YaRN
    if has_indexer:
        kw.update(index_n_heads=cj["index_n_heads"], index_head_dim=cj["index_head_dim"],
                  index_topk=cj["index_topk"])
    kw.update(overrides or {})
    return mod.ModelArgs(**kw)


def official_name(hf, table):
    """HF tensor name -> the official state-dict name, as convert.py renames it (world size 1)."""
    parts = hf.split(".")
    if parts[0] == "model":
        parts = parts[1:]
    ren = {"self_attn": "attn", "mlp": "ffn", "e_score_correction_bias": "bias", "weight_scale_inv": "scale"}
    parts = [ren.get(p, p) for p in parts]
    if len(parts) < 2 or parts[-2] not in table:
        raise KeyError(f"{hf}: '{parts[-2] if len(parts) > 1 else hf}' is not in convert.py's name table")
    parts[-2] = table[parts[-2]]
    return ".".join(parts)


def build_official(mod, cj, weights, table, T, attn_impl=None, perturb=None):
    """The official Transformer in fp32 with our weights. Returns (model, one-line report).
    perturb (negative controls only): {"args": {ModelArgs field: value}, "no_bias": True}."""
    perturb = perturb or {}
    if attn_impl is not None:
        mod.attn_impl = attn_impl        # read at MLA construction (cache buffers) and in forward
    args = model_args(mod, cj, T, perturb.get("args"))
    torch.manual_seed(0)
    model = mod.Transformer(args).float()
    model.eval()
    E = cj.get("n_routed_experts") or 0
    wants_bias = E > 0 and (cj.get("topk_method") == "noaux_tc" or
                            (cj.get("topk_method") is None and cj.get("scoring_func") == "sigmoid"))
    dropped = []
    if perturb.get("no_bias") and wants_bias:
        wants_bias = False
        dropped = [w for w in weights if w.endswith("e_score_correction_bias")]
        weights = {k: v for k, v in weights.items() if k not in dropped}
    for blk in model.layers:
        gate = getattr(blk.ffn, "gate", None)
        if gate is None:
            continue
        if wants_bias and gate.bias is None:     # the official Gate makes it only when dim == 7168
            gate.bias = torch.nn.Parameter(torch.zeros(E, dtype=torch.float32))
        if not wants_bias and gate.bias is not None:
            raise ValueError("official Gate has a correction bias but the config has none (dim 7168?)")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for p in params.values():
            p.fill_(float("nan"))             # whatever is not loaded poisons the logits
    L = cj["num_hidden_layers"]
    loaded, unused, skipped = set(), [], 0
    with torch.no_grad():
        for hf, arr in weights.items():
            parts = hf.split(".")
            if len(parts) > 2 and parts[1] == "layers" and int(parts[2]) >= L:
                skipped += 1                  # MTP blocks: not part of the official model
                continue
            name = official_name(hf, table)
            if name not in params:
                unused.append(f"{hf} -> {name}")
                continue
            p = params[name]
            if tuple(p.shape) != tuple(arr.shape):
                raise ValueError(f"{hf} -> {name}: shape {arr.shape} vs official {tuple(p.shape)}")
            p.copy_(torch.from_numpy(np.ascontiguousarray(arr)))
            loaded.add(name)
        if cj.get("tie_word_embeddings") and "head.weight" not in loaded:
            params["head.weight"].copy_(params["embed.weight"])
            loaded.add("head.weight")
    missing = sorted(n for n, p in params.items() if n not in loaded and p.numel() > 0)
    if missing or unused:
        raise RuntimeError("weight mapping incomplete:\n  official parameters not loaded: "
                           f"{missing}\n  our tensors with no official parameter: {unused}")
    bad_dtype = sorted({str(p.dtype) for p in params.values()} - {"torch.float32"})
    if bad_dtype:
        raise RuntimeError(f"official parameters not all float32: {bad_dtype}")
    info = f"{len(loaded)} official parameters loaded from {len(loaded)} of our tensors, {skipped} MTP tensors skipped"
    return model, info


# ================================================================================================
# Weights
# ================================================================================================
def draw_weights(names_shapes, rng, index_head_dim=0):
    """O(1)-effect weights (not dsc's tiny init): matrices N(0, 1/fan_in), embedding N(0, 1), norm
    weights 1 + N(0, 0.1^2), k_norm.bias N(0, 0.1^2), correction bias N(0, 0.05^2).
    Indexer: head 2m+1 of wq_b is the negation of head 2m, so that ReLU(q.k) is zero for at most one
    head of a pair; with independent heads, I[i,j] is exactly 0 (every head clipped) for a fraction
    of the keys, and the top-k boundary sits on exact ties."""
    out = {}
    for name, shape in names_shapes:
        if name.endswith("embed_tokens.weight"):
            w = rng.normal(0.0, 1.0, shape)
        elif name.endswith("e_score_correction_bias"):
            w = rng.normal(0.0, 0.05, shape)
        elif name.endswith("k_norm.bias"):
            w = rng.normal(0.0, 0.1, shape)
        elif len(shape) == 1:
            w = 1.0 + rng.normal(0.0, 0.1, shape)
        else:
            w = rng.normal(0.0, 1.0 / math.sqrt(shape[1]), shape)
        if name.endswith("indexer.wq_b.weight"):
            dI = index_head_dim
            for h in range(1, shape[0] // dI, 2):
                w[h * dI:(h + 1) * dI] = -w[(h - 1) * dI:h * dI]
        out[name] = w.astype(np.float32)
    return out


# ================================================================================================
# Margins of the official top-k decisions (computed from the Gate's input, our own arithmetic)
# ================================================================================================
class MarginRecorder:
    def __init__(self):
        self.worst = (float("inf"), "none")
        self.counts = {}

    def note(self, gap, what):
        if gap.numel():
            m = float(gap.min())
            if m < self.worst[0]:
                self.worst = (m, what)

    @staticmethod
    def _gap(vals, r):
        """Relative gap between ranks r and r+1 of each row (descending), over the row's max |finite|."""
        v = torch.sort(vals, dim=-1, descending=True).values
        fin = torch.where(torch.isinf(vals), torch.zeros_like(vals), vals)
        scale = fin.abs().amax(-1).clamp(min=1e-30)
        a, b = v[..., r], v[..., r + 1]
        g = torch.where(torch.isinf(b), torch.full_like(a, float("inf")), a - b)
        return g / scale

    def gate_hook(self, layer):
        def hook(gate, inputs, output):
            x = inputs[0].float()
            s = x @ gate.weight.float().t()
            s = s.softmax(-1) if gate.score_func == "softmax" else s.sigmoid()
            sel = s + gate.bias if gate.bias is not None else s
            if gate.n_groups > 1:
                g = sel.view(x.size(0), gate.n_groups, -1)
                gs = g.topk(2, dim=-1)[0].sum(-1) if gate.bias is not None else g.amax(-1)
                self.note(self._gap(gs, gate.topk_groups - 1), f"layer {layer} router groups")
                keep = gs.topk(gate.topk_groups, dim=-1)[1]
                mask = torch.ones_like(gs, dtype=torch.bool).scatter_(1, keep, False)
                sel = g.masked_fill(mask.unsqueeze(-1), float("-inf")).flatten(1)
            self.note(self._gap(sel, gate.topk - 1), f"layer {layer} router top-K")
            c = self.counts.setdefault(layer, torch.zeros(gate.weight.shape[0], dtype=torch.long))
            c += torch.bincount(output[1].flatten(), minlength=gate.weight.shape[0])
        return hook

    def indexer_scores(self, scores, topk):
        """scores [1, S, end] of one fp8_index call; the rows are the last S positions."""
        S, end = scores.shape[1], scores.shape[2]
        for r in range(S):
            i = end - S + r
            if i + 1 <= topk:
                continue                     # every causal key is selected
            row = scores[0, r, :i + 1]
            self.note(self._gap(row.unsqueeze(0), topk - 1), f"indexer query {i}")


def attach_margins(model):
    rec = MarginRecorder()
    handles = []
    for l, blk in enumerate(model.layers):
        gate = getattr(blk.ffn, "gate", None)
        if gate is not None:
            handles.append(gate.register_forward_hook(rec.gate_hook(l)))
    return rec, handles


# ================================================================================================
# Running
# ================================================================================================
def official_logits(model, tokens, mode):
    """[T, V] logits. mode 'prefix': forward(tokens[:t+1], 0) for every t (fresh caches each time);
    'decode': one token per call with start_pos t (the generate.py way, using the caches)."""
    T = len(tokens)
    tok = torch.tensor(tokens, dtype=torch.long).unsqueeze(0)
    rows = []
    for t in range(T):
        if mode == "prefix":
            rows.append(model(tok[:, :t + 1], 0)[0])
        else:
            rows.append(model(tok[:, t:t + 1], t)[0])
    return torch.stack(rows).float().numpy()


def run_dsc(dsc, mdir, tokens, out):
    r = subprocess.run([dsc, "forward", "--model", mdir, "--tokens", ",".join(map(str, tokens)), "--out", out],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"dsc forward failed ({r.returncode}): {r.stderr.strip()}")
    return np.fromfile(out, dtype="<f4")


def compare(ours, ref):
    d = float(np.max(np.abs(ours.astype(np.float64) - ref.astype(np.float64))))
    m = float(np.max(np.abs(ref)))
    return d, m, d / m if m > 0 else float("inf")


def prepare_model_dir(dsc, work, name, cj, seed, T):
    """dsc init from our config.json, then our own weights (same names and shapes) drawn with seed."""
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    cfg_path = os.path.join(work, f"{name}.config.json")
    with open(cfg_path, "w") as f:
        json.dump(cj, f, indent=2, sort_keys=True)
    mdir = os.path.join(d, "model")
    r = subprocess.run([dsc, "init", "--config", cfg_path, "--out", mdir, "--seed", str(seed)],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"dsc init failed ({r.returncode}): {r.stderr.strip()}")
    init = st.load(os.path.join(mdir, "model.safetensors"))
    rng = np.random.default_rng(seed)
    weights = draw_weights([(n, a.shape) for n, a in init.items()], rng, cj.get("index_head_dim") or 0)
    st.save(os.path.join(mdir, "model.safetensors"), weights, metadata={"format": "pt"})
    with open(os.path.join(mdir, "config.json")) as f:
        written = json.load(f)                  # what dsc itself wrote: the ModelArgs come from it
    tokens = [int(t) for t in rng.integers(0, cj["vocab_size"], size=T)]
    return mdir, written, weights, tokens



def run_config(name, cj, ctx, rows):
    """Appends result rows (name, path, maxabs, maxref, rel, ok) to rows and prints them."""
    tag = "v32" if name in V32_CONFIGS else "v3"
    mod, table = ctx[tag]["mod"], ctx[tag]["table"]
    T = ctx["T"]
    seed = SEED_BASE[name]
    for _ in range(50):
        mdir, written, weights, tokens = prepare_model_dir(ctx["dsc"], ctx["work"], name, cj, seed, T)
        kern = ctx[tag].get("kernels")
        if kern is not None:
            kern.mode, kern.records = "exact", []
        model, info = build_official(mod, written, weights, table, T, "absorb" if tag == "v3" else None)
        rec, handles = attach_margins(model)
        ref_prefix = official_logits(model, tokens, "prefix")
        if kern is not None:
            for sc in kern.records:
                rec.indexer_scores(sc, written["index_topk"])
        for h in handles:
            h.remove()
        if rec.worst[0] >= MARGIN:
            break
        print(f"  {name}: seed {seed} rejected (top-k margin {rec.worst[0]:.2e} at {rec.worst[1]})")
        seed += 1
    else:
        raise RuntimeError(f"{name}: no seed with top-k margins >= {MARGIN}")
    used = {l: int((c > 0).sum()) for l, c in rec.counts.items()}
    E = written.get("n_routed_experts") or 0
    print(f"\n== {name}: seed {seed}, T = {T}, {info}")
    print(f"   min top-k margin {rec.worst[0]:.2e} ({rec.worst[1]})"
          + (f"; experts used per MoE layer: {used} of {E}" if used else ""))
    ours = run_dsc(ctx["dsc"], mdir, tokens, os.path.join(ctx["work"], name, "logits.f32"))
    ours = ours.reshape(T, written["vocab_size"])
    results = {}
    if tag == "v3":
        results["absorb (prefixes)"] = ref_prefix
        results["absorb (cached decode)"] = official_logits(model, tokens, "decode")
        naive, _ = build_official(mod, written, weights, table, T, "naive")
        results["naive (prefixes)"] = official_logits(naive, tokens, "prefix")
        results["naive (cached decode)"] = official_logits(naive, tokens, "decode")
        mod.attn_impl = "absorb"
    else:
        results["prefill MHA + DSA (prefixes)"] = ref_prefix
        kern.records = []
        results["absorb decode + DSA (cached)"] = official_logits(model, tokens, "decode")
    print(f"   {'official path':32s} {'max|dsc-off|':>13s} {'max|off|':>10s} {'rel':>10s}")
    for path, ref in results.items():
        d, m, rel = compare(ours, ref)
        ok = rel <= TOL and np.isfinite(ref).all() and np.isfinite(ours).all()
        rows.append((name, path, d, m, rel, ok))
        print(f"   {path:32s} {d:13.3e} {m:10.3f} {rel:10.2e}  {'ok' if ok else 'FAIL'}")
    keys = list(results)
    pairs = [(keys[-1], keys[0])] + ([("naive (prefixes)", "absorb (prefixes)")] if tag == "v3" else [])
    for a, b in pairs:                          # the official paths must agree among themselves too
        d, m, rel = compare(results[a], results[b])
        print(f"   (official '{a}' vs '{b}': max {d:.3e}, rel {rel:.2e})")
        if rel > TOL:
            rows.append((name, f"official {a} vs {b}", d, m, rel, False))
    if tag == "v32" and ctx.get("v32_e4m3"):
        topk = written["index_topk"]
        kern.mode, kern.records = "exact", []
        official_logits(model, tokens, "prefix")
        sel_exact = kern.last_row_selections(topk)
        kern.mode, kern.records = "e4m3", []
        e4 = official_logits(model, tokens, "prefix")
        sel_e4 = kern.last_row_selections(topk)
        kern.mode = "exact"
        n = sum(a is not None for a in sel_exact)
        flips = sum(a is not None and a != b for a, b in zip(sel_exact, sel_e4))
        d, m, rel = compare(ours, e4)
        print(f"   (informational, not checked: official with FP8 e4m3 rounding in act_quant vs dsc: max {d:.3e}, "
              f"rel {rel:.2e}; FP8 changes the indexer's key set in {flips} of {n} sparse (layer, query) "
              "selections; dsc's fp32 indexer has no FP8, MODEL.md §7)")
    if ctx.get("controls"):
        rows += negative_controls(name, tag, mod, written, weights, table, T, tokens, ours, ctx["dsc"], mdir)


def control_list(tag, cj):
    """Deliberate departures from our config on the official side; each must be detected."""
    E = cj.get("n_routed_experts") or 0
    rs = cj.get("rope_scaling")
    out = []
    if E > 0 and cj.get("topk_method") == "noaux_tc":
        out.append(("no router correction bias", {"no_bias": True}))
    if E > 0 and float(cj.get("routed_scaling_factor", 1.0)) != 1.0:
        out.append(("route_scale 1", {"args": {"route_scale": 1.0}}))
    if E > 0 and cj.get("first_k_dense_replace", 0) < cj["num_hidden_layers"]:
        out.append(("one more dense layer", {"args": {"n_dense_layers": cj.get("first_k_dense_replace", 0) + 1}}))
    if rs:
        out.append(("YaRN off (original_seq_len > max_seq_len)", {"args": {"original_seq_len": 1 << 30}}))
        if (rs.get("mscale_all_dim") or 0) > 0:
            out.append(("no YaRN softmax factor (mscale 0)", {"args": {"mscale": 0.0}}))
    out.append(("rope_theta x 2", {"args": {"rope_theta": 2 * float(cj.get("rope_theta", 10000.0))}}))
    if tag == "v32":
        out.append(("dense attention (index_topk 4096)", {"args": {"index_topk": 4096}}))
    return out


def dsc_control_list(cj):
    """Departures on the dsc side (config.json edits, same weights); each must be detected."""
    E = cj.get("n_routed_experts") or 0
    out = []
    if E > 0:
        out.append(("dsc: norm_topk_prob flipped", {"norm_topk_prob": not cj.get("norm_topk_prob", False)}))
    if (cj.get("index_n_heads") or 0) > 0:
        out.append(("dsc: half-split indexer RoPE", {"index_rope_interleaved": False}))
    return out


def negative_controls(name, tag, mod, cj, weights, table, T, tokens, ours, dsc, mdir):
    rows = []
    print("   negative controls (one side deliberately changed; each must be detected):")
    for label, pert in control_list(tag, cj):
        try:
            model, _ = build_official(mod, cj, weights, table, T, "absorb" if tag == "v3" else None, pert)
        except RuntimeError as e:
            if "weight mapping incomplete" not in str(e):
                raise
            rows.append((name, f"control: {label}", float("nan"), float("nan"), float("nan"), True))
            print(f"     {label:44s} refused by the weight mapping check  detected")
            continue
        ref = official_logits(model, tokens, "prefix")
        d, m, rel = compare(ours, ref)
        ok = rel > TOL
        rows.append((name, f"control: {label}", d, m, rel, ok))
        print(f"     {label:44s} rel {rel:9.2e}  {'detected' if ok else 'NOT DETECTED'}")
    if tag == "v3":
        mod.attn_impl = "absorb"
    official = official_logits(build_official(mod, cj, weights, table, T, "absorb" if tag == "v3" else None)[0],
                               tokens, "prefix")
    for label, patch in dsc_control_list(cj):
        d2 = mdir + ".control"
        os.makedirs(d2, exist_ok=True)
        shutil.copyfile(os.path.join(mdir, "model.safetensors"), os.path.join(d2, "model.safetensors"))
        with open(os.path.join(d2, "config.json"), "w") as f:
            json.dump(dict(cj, **patch), f, indent=2, sort_keys=True)
        theirs = run_dsc(dsc, d2, tokens, os.path.join(d2, "logits.f32")).reshape(official.shape)
        d, m, rel = compare(theirs, official)
        ok = rel > TOL
        rows.append((name, f"control: {label}", d, m, rel, ok))
        print(f"     {label:44s} rel {rel:9.2e}  {'detected' if ok else 'NOT DETECTED'}")
    return rows


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deepseek-v3", required=True, help="checkout of deepseek-ai/DeepSeek-V3 (has inference/model.py)")
    ap.add_argument("--deepseek-v32", help="checkout of deepseek-ai/DeepSeek-V3.2-Exp (optional: DSA indexer)")
    ap.add_argument("--dsc", required=True, help="the dsc executable")
    ap.add_argument("--workdir", help="scratch directory (default: a fresh temporary one, removed afterwards)")
    ap.add_argument("--configs", help="comma-separated subset of: " + ", ".join(list(CONFIGS) + list(V32_CONFIGS)))
    ap.add_argument("--tokens", type=int, default=DEFAULT_T, help=f"sequence length (default {DEFAULT_T})")
    ap.add_argument("--v32-e4m3", action="store_true",
                    help="also run V3.2 with FP8 e4m3 rounding in act_quant (informational, not checked)")
    ap.add_argument("--negative-controls", action="store_true",
                    help="also change the official side on purpose (no bias, no YaRN, ...) and require a mismatch")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    a = ap.parse_args(argv[1:])
    torch.set_num_threads(1)
    if a.tokens < 2:
        print("--tokens: need at least 2")
        return 2

    for path, what in ((a.deepseek_v3, "--deepseek-v3"), (a.deepseek_v32, "--deepseek-v32")):
        if path and not os.path.isfile(os.path.join(path, "inference", "model.py")):
            print(f"{what} {path}: no inference/model.py there")
            return 2
    dsc = os.path.abspath(a.dsc)
    if not os.access(dsc, os.X_OK):
        print(f"--dsc {a.dsc}: not an executable")
        return 2

    names = list(CONFIGS) + (list(V32_CONFIGS) if a.deepseek_v32 else [])
    if a.configs:
        names = [n.strip() for n in a.configs.split(",") if n.strip()]
        for n in names:
            if n not in CONFIGS and n not in V32_CONFIGS:
                print(f"unknown configuration '{n}'")
                return 2
            if n in V32_CONFIGS and not a.deepseek_v32:
                print(f"configuration '{n}' needs --deepseek-v32")
                return 2

    work = a.workdir or tempfile.mkdtemp(prefix="dsc-official-")
    os.makedirs(work, exist_ok=True)
    ctx = {"dsc": dsc, "work": work, "v32_e4m3": a.v32_e4m3, "controls": a.negative_controls, "T": a.tokens}
    v3k = types.ModuleType("kernel")
    for f in ("act_quant", "weight_dequant", "fp8_gemm"):
        setattr(v3k, f, _not_available(f))
    ctx["v3"] = {"mod": import_official_model(a.deepseek_v3, "v3", v3k),
                 "table": import_convert_mapping(a.deepseek_v3, "v3")}
    print(f"DeepSeek-V3 code: {a.deepseek_v3} at {git_head(a.deepseek_v3)}")
    if a.deepseek_v32:
        kern = V32Kernels("exact")
        ctx["v32"] = {"mod": import_official_model(a.deepseek_v32, "v32", kern.module()),
                      "table": import_convert_mapping(a.deepseek_v32, "v32"), "kernels": kern}
        print(f"DeepSeek-V3.2-Exp code: {a.deepseek_v32} at {git_head(a.deepseek_v32)}")
    print(f"dsc: {dsc}; torch {torch.__version__}; fp32 on CPU; tolerance max|dsc-off|/max|off| <= {TOL:g}")

    rows, failed = [], False
    try:
        for n in names:
            cj = make_config(CONFIGS[n] if n in CONFIGS else V32_CONFIGS[n])
            try:
                run_config(n, cj, ctx, rows)
            except Exception as e:  # noqa: BLE001 - report and go on with the next configuration
                print(f"\n== {n}: ERROR {type(e).__name__}: {e}")
                failed = True
    finally:
        if not a.workdir and not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        elif a.keep or a.workdir:
            print(f"\nscratch kept in {work}")

    print("\nSummary (max|dsc - official| / max|official| over all positions and vocab):")
    print(f"  {'config':10s} {'official path':44s} {'max abs':>10s} {'rel':>10s}")
    for n, path, d, m, rel, ok in rows:
        verdict = ("detected" if ok else "NOT DETECTED") if path.startswith("control:") else ("ok" if ok else "FAIL")
        print(f"  {n:10s} {path:44s} {d:10.2e} {rel:10.2e}  {verdict}")
        failed |= not ok
    print("RESULT:", "FAIL" if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
