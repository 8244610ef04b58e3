#!/usr/bin/python3
"""gen_fixtures.py: writes the reference fixtures that the C tests compare against.

    /usr/bin/python3 tests/reference/gen_fixtures.py OUTDIR [NAME ...]

For every configuration (all of them, or the NAMEs given) it writes OUTDIR/NAME/ with
  config.json          the same fields dsc_config_save writes (HF names plus dsc's own)
  model.safetensors    F32 weights under the exact HF names of docs/MODEL.md §2
  fixture.safetensors  inputs and the reference's outputs (list in tests/reference/README.md)
Weights are random (seeded, numpy PCG64) with scales chosen so that every path matters. A draw is
kept only if every top-k decision of the forward pass (router groups, router top-K, indexer top-k
and its order) has a relative margin >= MARGIN; otherwise the next seed is tried. SEEDS holds the
seeds found so far, so a normal run tries once per configuration.
"""
import copy
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dsc_ref as R  # noqa: E402
import safetensors_np as st  # noqa: E402

MARGIN = 1e-4  # relative gap required at every top-k boundary
B = 2

# ------------------------------------------------------------------------------------------------
# Configurations
# ------------------------------------------------------------------------------------------------
BASE = dict(
    model_type="dsc", vocab_size=97, hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
    num_hidden_layers=2, first_k_dense_replace=1, num_attention_heads=2,
    n_routed_experts=0, n_shared_experts=0, num_experts_per_tok=0, n_group=1, topk_group=1,
    routed_scaling_factor=1.0, scoring_func="softmax", topk_method="greedy", norm_topk_prob=False,
    q_lora_rank=16, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8,
    rope_theta=10000.0, max_position_embeddings=256, rope_scaling=None, rms_norm_eps=1e-6,
    tie_word_embeddings=False, num_nextn_predict_layers=0,
    initializer_range=0.02, mtp_loss_weight=0.3, aux_loss_alpha=0.01, bias_update_speed=0.01)

MOE_SIGMOID = dict(n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2, n_group=4, topk_group=2,
                   routed_scaling_factor=2.5, scoring_func="sigmoid", topk_method="noaux_tc", norm_topk_prob=True)
MHC = dict(mhc_expansion_rate=4, mhc_sinkhorn_iters=20, mhc_rms_eps=1e-20, mhc_alpha_init=0.01,
           mhc_res_diag_init=4.0, mhc_phi_init_std=0.02)
DSA = dict(index_n_heads=2, index_head_dim=8, index_topk=6, index_rope_interleaved=False)


def yarn(factor, L0, beta_fast=32.0, beta_slow=1.0, mscale=1.0, mscale_all_dim=1.0):
    return dict(type="yarn", factor=factor, beta_fast=beta_fast, beta_slow=beta_slow, mscale=mscale,
                mscale_all_dim=mscale_all_dim, original_max_position_embeddings=L0)


# name -> (T, overrides). The YaRN choices: `yarn` has dr = 8, rope_theta 100, L0 = 128, so that
# low = 0, high = 3 and ramp = [0, 1/3, 2/3, 1]: two blended pairs, neither at ramp 0.5 (where
# swapping ramp and 1 − ramp would go unnoticed), with angles t·θ large enough at T = 20 to matter.
# (rope_theta 1e4 with L0 = 16 gives low 0, high 1: no blended pair.) `moe_softmax_plainq` has
# V2-Lite's numbers (theta 1e4, L0 4096, mscale 0.707): low 0, high 2, ramp [0, 0.5]. `full` has
# corr(beta_fast) < 0, clamped to low = 0, high = 1.
CONFIGS = {
    "dense": (12, dict()),
    "moe_sigmoid_groups": (16, dict(MOE_SIGMOID, num_hidden_layers=3)),
    "moe_softmax_plainq": (14, dict(n_routed_experts=8, n_shared_experts=2, num_experts_per_tok=3,
                                    scoring_func="softmax", topk_method="greedy", norm_topk_prob=False,
                                    routed_scaling_factor=1.0, q_lora_rank=0, max_position_embeddings=163840,
                                    rope_scaling=yarn(40.0, 4096, mscale=0.707, mscale_all_dim=0.707))),
    "yarn": (20, dict(qk_rope_head_dim=8, rope_theta=100.0, max_position_embeddings=640,
                      rope_scaling=yarn(40.0, 128))),
    "mhc": (12, dict(MOE_SIGMOID, **MHC)),
    "mtp": (13, dict(MOE_SIGMOID, num_nextn_predict_layers=1)),
    "mtp2": (15, dict(num_nextn_predict_layers=2)),
    "dsa": (16, dict(DSA)),
    "dsa_interleaved": (17, dict(DSA, index_rope_interleaved=True)),
    "full": (18, dict(MOE_SIGMOID, **MHC, **DSA, num_hidden_layers=3, num_nextn_predict_layers=2,
                      rope_theta=500.0, max_position_embeddings=4096,
                      rope_scaling=yarn(8.0, 64, beta_fast=16.0, beta_slow=2.0, mscale_all_dim=1.0))),
}

# Seeds whose draws pass the margin checks: for each configuration the draw with the largest
# smallest margin among the first 150 seeds from 1000·k (1500 for `full`) in which every expert
# is used. The script moves on by itself if a seed fails (e.g. on another torch build) and says so.
SEEDS = {"dense": 1000, "moe_sigmoid_groups": 2095, "moe_softmax_plainq": 3033, "yarn": 4000, "mhc": 5109,
         "mtp": 6092, "mtp2": 7000, "dsa": 8051, "dsa_interleaved": 9144, "full": 10608}


def config_json(overrides):
    """The dict dsc_config_save would write for this configuration (same keys)."""
    c = copy.deepcopy(BASE)
    c.update(overrides)
    out = dict(c)
    out["architectures"] = ["DeepseekV3ForCausalLM"]
    out["num_key_value_heads"] = c["num_attention_heads"]
    out["moe_layer_freq"] = 1
    out["q_lora_rank"] = c["q_lora_rank"] if c["q_lora_rank"] > 0 else None
    out["hidden_act"] = "silu"
    out["attention_bias"] = False
    out["bos_token_id"], out["eos_token_id"] = 0, 1
    out["torch_dtype"] = "float32"
    return dict(sorted(out.items()))


# ------------------------------------------------------------------------------------------------
# Weights: scales that keep activations O(1) and make every path matter
# ------------------------------------------------------------------------------------------------
def draw_weights(model, cfg, rng):
    """Returns {HF name: float32 array} for every tensor of model.state_dict()."""
    out = {}
    n = cfg.mhc_expansion_rate
    for name, t in model.state_dict().items():
        shape = tuple(t.shape)
        if name.endswith("embed_tokens.weight"):
            w = rng.normal(0.0, 1.0, shape)
        elif name.endswith("e_score_correction_bias"):
            w = rng.normal(0.0, 0.05, shape)                      # moves some selections, not all
        elif name.endswith("k_norm.bias"):
            w = rng.normal(0.0, 0.1, shape)
        elif name.endswith("_mhc.phi"):
            w = rng.normal(0.0, 0.05, shape)
        elif name.endswith("_mhc.alpha"):
            w = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("_mhc.bias"):
            # near the §8 init, but a diagonal of 1 instead of 4 so that H_res mixes the streams
            w = rng.normal(0.0, 0.3, shape)
            w[:n] += -math.log(n - 1)
            w[2 * n:] += np.eye(n).reshape(-1)
        elif len(shape) == 1:                                       # every norm weight
            w = 1.0 + rng.normal(0.0, 0.1, shape)
        else:                                                       # matrices: unit gain
            w = rng.normal(0.0, 1.0 / math.sqrt(shape[1]), shape)
        out[name] = w.astype(np.float32)
    # Indexer: each odd head's query rows are the negation of the previous head's, so that
    # qI[i,h+1] = −qI[i,h] and ReLU(q·k) is zero for at most one head of the pair. With independent
    # heads, I[i,j] is exactly 0 for about a quarter of the keys (every head's ReLU clipped) and the
    # top-k sits on exact ties. The heads still differ through weights_proj (independent w).
    dI, HI = cfg.index_head_dim, cfg.index_n_heads
    for name, w in out.items():
        if name.endswith("indexer.wq_b.weight"):
            for h in range(1, HI, 2):
                w[h * dI:(h + 1) * dI] = -w[(h - 1) * dI:h * dI]
    return out


def draw_inputs(cfg, T, rng):
    """tokens [B,T]; targets[t] = tokens[t+1], the last a fresh token; two targets set to −1:
    one inside sequence 0 and the LAST of sequence 1 (so the MTP rule z[T] = 0 is exercised)."""
    V = cfg.vocab_size
    tokens = rng.integers(0, V, size=(B, T + 1))
    targets = tokens[:, 1:].copy()
    tokens = tokens[:, :T].copy()
    targets[0, 3] = -1
    targets[1, T - 1] = -1
    return tokens.astype(np.int32), targets.astype(np.int32)


# ------------------------------------------------------------------------------------------------
# Margins of the top-k decisions
# ------------------------------------------------------------------------------------------------
def _gap(vals, r, scale):
    """Relative gap between the sorted (descending) vals at ranks r and r+1."""
    a, b = vals[..., r], vals[..., r + 1]
    gap = torch.where(torch.isinf(b), torch.full_like(a, float("inf")), a - b)
    return gap / scale


def min_margin(model):
    """Smallest relative gap over every top-k decision of the last forward pass, and where."""
    cfg = model.cfg
    worst = (float("inf"), "none")

    def note(g, what):
        nonlocal worst
        if g.numel():
            m = float(g.min())
            if m < worst[0]:
                worst = (m, what)

    for l, blk in enumerate(model.model.layers):
        if blk.is_moe:
            gate = blk.mlp.gate
            sel = gate.last_sel
            fin = torch.where(torch.isinf(sel), torch.zeros_like(sel), sel)
            v = torch.sort(sel, dim=-1, descending=True).values
            note(_gap(v, cfg.num_experts_per_tok - 1, fin.abs().amax(-1)), f"block {l} router top-K")
            if gate.last_group_scores is not None:
                g = gate.last_group_scores
                v = torch.sort(g, dim=-1, descending=True).values
                note(_gap(v, cfg.topk_group - 1, g.abs().amax(-1)), f"block {l} router groups")
        if blk.self_attn.indexer is not None:
            sc = blk.self_attn.last_scores
            T, k = sc.shape[1], cfg.index_topk
            for i in range(1, T):
                v = torch.sort(sc[:, i, : i + 1], dim=-1, descending=True).values
                scale = v.abs().amax(-1).clamp(min=1e-30)
                for r in range(min(k, i)):         # the order of the listed keys and the boundary
                    note(_gap(v, r, scale), f"block {l} indexer query {i} rank {r}")
    return worst


# ------------------------------------------------------------------------------------------------
# One configuration
# ------------------------------------------------------------------------------------------------
def build(name, seed):
    T, overrides = CONFIGS[name]
    cj = config_json(overrides)
    cfg = R.Config(cj)
    rng = np.random.default_rng(seed)
    model = R.Model(cfg)
    weights = draw_weights(model, cfg, rng)
    # The reference computes in float64 on the float32 weights: the fixtures are then the exact
    # answer to fp32 precision, and the comparison measures only the C code's own rounding.
    model = R.Model(cfg, dtype=torch.float64)
    model.load_state_dict({k: torch.from_numpy(v).double() for k, v in weights.items()})
    tokens, targets = draw_inputs(cfg, T, rng)
    return cj, cfg, model, weights, tokens, targets


def run_config(name, outdir, verbose=True):
    seed = SEEDS[name]
    for attempt in range(200):
        cj, cfg, model, weights, tokens, targets = build(name, seed)
        model.zero_grad(set_to_none=True)
        out = model(torch.from_numpy(tokens), torch.from_numpy(targets))
        margin, where = min_margin(model)
        unused = [f"block {l} expert {e}" for l, c in out.loads.items() for e in range(len(c)) if c[e] == 0]
        if unused and margin >= MARGIN:      # every expert must see a token, or its path goes untested
            margin, where = 0.0, "unused " + unused[0]
        if margin >= MARGIN:
            break
        if verbose:
            print(f"  {name}: seed {seed} rejected (margin {margin:.2e} at {where})")
        seed += 1
    else:
        raise RuntimeError(f"{name}: no seed with top-k margins >= {MARGIN}")
    if seed != SEEDS[name]:
        print(f"  {name}: NOTE seed {SEEDS[name]} failed here; used {seed} (update SEEDS)")
    out.losses["total"].backward()

    f32 = lambda t: t.detach().numpy().astype(np.float32)
    fx = {"tokens": tokens, "targets": targets, "logits": f32(out.logits)}
    for k, lg in enumerate(out.mtp_logits, start=1):
        fx[f"mtp_logits.{k}"] = f32(lg)
    for key in ("total", "ce", "mtp", "balance"):
        fx[f"loss.{key}"] = out.losses[key].detach().reshape(1).numpy().astype(np.float32)
    fx["loss.n_targets"] = np.array([out.n_targets], dtype=np.int64)
    for pname, p in model.named_parameters():
        if ".indexer." in pname:
            continue                        # §7: no gradient reaches the indexer (C grads must be 0)
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        fx[f"grad.{pname}"] = f32(g)
    for l, counts in out.loads.items():
        fx[f"load.{l}"] = counts.numpy().astype(np.int64)
        gate = model.model.layers[l].mlp.gate
        if gate.e_score_correction_bias is not None:
            new = R.update_expert_bias(gate.e_score_correction_bias, counts, cfg.bias_update_speed)
            fx[f"bias_after.{l}"] = f32(new)
    for l, (sel, scores) in out.dsa.items():
        fx[f"dsa_sel.{l}"] = sel.numpy().astype(np.int32)
        fx[f"dsa_scores.{l}"] = f32(scores)

    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cj, f, indent=2, sort_keys=True)
        f.write("\n")
    meta = {"config": name, "seed": str(seed), "B": str(B), "T": str(tokens.shape[1]),
            "generator": "tests/reference/gen_fixtures.py", "min_topk_margin": f"{margin:.3e}"}
    st.save(os.path.join(d, "model.safetensors"), weights, metadata={"format": "pt"})
    st.save(os.path.join(d, "fixture.safetensors"), fx, metadata=meta)
    if verbose:
        L = {k: round(float(v), 5) for k, v in out.losses.items()}
        print(f"{name:20s} seed {seed:6d}  T={tokens.shape[1]:2d}  margin {margin:.2e}  losses {L}")
    return seed


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    torch.set_num_threads(1)
    outdir = argv[1]
    names = argv[2:] or list(CONFIGS)
    for n in names:
        if n not in CONFIGS:
            print(f"unknown configuration '{n}' (known: {', '.join(CONFIGS)})")
            return 2
    os.makedirs(outdir, exist_ok=True)
    for n in names:
        run_config(n, outdir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
