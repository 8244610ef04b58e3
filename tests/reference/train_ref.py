#!/usr/bin/python3
"""train_ref.py: the PyTorch reference of `dsc train`'s optimisation loop, for checking that the
C trainer follows the same loss curve: same initial weights (a checkpoint directory), same
batches (the file `dsc train --dump-batches` wrote), same hyperparameters (the checkpoint's
state.json), same AdamW with decoupled weight decay on matrices only, global-norm clipping,
warm-up + cosine / WSD / constant schedule, gradient accumulation, and the aux-loss-free
expert-bias update after every step.

Usage: /usr/bin/python3 train_ref.py INIT_CHECKPOINT BATCHES --steps N [--json]
Prints one loss per step (the mean over micro-batches of the total loss, like metrics.jsonl).
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dsc_ref  # noqa: E402
import safetensors_np  # noqa: E402


def schedule_lr(h, step):
    """src/train/schedule.c, step 0-based."""
    lr, min_lr, warmup, total = h["lr"], h["min_lr"], h["warmup"], h["steps"]
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    total = total if total > warmup else warmup + 1
    kind = h["schedule"]
    if kind == "constant":
        return lr
    if kind == "wsd":
        decay = math.ceil(h["decay_frac"] * total)
        start = total - decay
        if step < start or decay <= 0:
            return lr
        f = min(1.0, (step - start + 1) / decay)
        return lr + (min_lr - lr) * f
    f = min(1.0, (step - warmup) / (total - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * f))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("batches")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)

    state = json.load(open(os.path.join(args.checkpoint, "state.json")))
    h = state["hparams"]
    cfg = dsc_ref.Config.load(os.path.join(args.checkpoint, "config.json"))
    model = dsc_ref.Model(cfg)
    weights = safetensors_np.load(os.path.join(args.checkpoint, "model.safetensors"))
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()}, strict=True)

    B, T, accum = h["batch"], h["seq"], h["accum"]
    raw = np.fromfile(args.batches, dtype=np.int32)
    per_micro = 2 * B * T
    need = args.steps * accum * per_micro
    if raw.size < need:
        sys.exit(f"{args.batches}: {raw.size} ints, need {need} for {args.steps} steps")

    # Decay on matrices only (1-D tensors are norms, biases and mHC scalars); the correction
    # bias is not trained by gradients at all.
    params = [(n, p) for n, p in model.named_parameters() if "e_score_correction_bias" not in n]
    for n, p in model.named_parameters():
        if "e_score_correction_bias" in n:
            p.requires_grad_(False)
    groups = [dict(params=[p for n, p in params if p.dim() > 1], weight_decay=h["weight_decay"]),
              dict(params=[p for n, p in params if p.dim() <= 1], weight_decay=0.0)]
    opt = torch.optim.AdamW(groups, lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=1e-8)

    losses = []
    off = 0
    for step in range(args.steps):
        lr = schedule_lr(h, step)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        total = 0.0
        loads = {}
        for _ in range(accum):
            tok = torch.from_numpy(raw[off:off + B * T].reshape(B, T).copy())
            tgt = torch.from_numpy(raw[off + B * T:off + 2 * B * T].reshape(B, T).copy())
            off += per_micro
            out = model(tok, tgt)
            (out.losses["total"] / accum).backward()
            total += float(out.losses["total"])
            for l, c in out.loads.items():
                loads[l] = loads.get(l, 0) + c
        if h["clip"] > 0:
            torch.nn.utils.clip_grad_norm_([p for _, p in params], h["clip"])
        opt.step()
        model.update_expert_bias(loads, cfg.bias_update_speed)
        losses.append(total / accum)
        if not args.json:
            print(f"step {step + 1:4d}  loss {losses[-1]:.9g}  lr {lr:.6g}")
    if args.json:
        print(json.dumps(losses))


if __name__ == "__main__":
    main()
