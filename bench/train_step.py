#!/usr/bin/python3
"""train_step.py: the PyTorch peer of bench_train_step: the same training step (forward +
backward + AdamW + expert-bias update) of the same model (the reference in tests/reference,
loaded from the weights bench_train_step wrote) on the same batch, timed the same way.

Usage: /usr/bin/python3 bench/train_step.py MODEL_DIR BATCH_FILE --batch B --seq T
           [--steps N] [--warmup N] [--threads K] [--json]
Run with OPENBLAS_CORETYPE=SkylakeX on this CPU (bench/run.sh sets it), or Debian's OpenBLAS
falls back to a slow generic kernel.
"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
import dsc_ref  # noqa: E402
import safetensors_np  # noqa: E402


def matmul_gflops(n=1024, reps=20):
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("batch_file")
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--seq", type=int, required=True)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    B, T = args.batch, args.seq

    cfg = dsc_ref.Config.load(os.path.join(args.model_dir, "config.json"))
    model = dsc_ref.Model(cfg)
    weights = safetensors_np.load(os.path.join(args.model_dir, "model.safetensors"))
    state = {k: torch.from_numpy(np.array(v)) for k, v in weights.items()}
    model.load_state_dict(state, strict=True)
    # With T <= index_topk every causal key is selected: the indexer cannot change the result,
    # so the peer skips it, as dsc does (no work is counted that neither side needs).
    if cfg.index_n_heads > 0 and T <= cfg.index_topk:
        for blk in model.model.layers:
            blk.self_attn.indexer = None

    raw = np.fromfile(args.batch_file, dtype=np.int32)
    tokens = torch.from_numpy(raw[: B * T].reshape(B, T).copy())
    targets = torch.from_numpy(raw[B * T:].reshape(B, T).copy())

    no_decay = lambda n: ("norm" in n or n.endswith(".bias") or n.endswith(".alpha")
                          or "e_score_correction_bias" in n)
    params = [(n, p) for n, p in model.named_parameters() if "e_score_correction_bias" not in n]
    groups = [dict(params=[p for n, p in params if not no_decay(n)], weight_decay=0.1),
              dict(params=[p for n, p in params if no_decay(n)], weight_decay=0.0)]
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.95), eps=1e-8)

    times, first, last = [], None, None
    for s in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(tokens, targets)
        out.losses["total"].backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
        opt.step()
        model.update_expert_bias(out.loads, cfg.bias_update_speed)
        dt = time.perf_counter() - t0
        loss = float(out.losses["total"])
        first = loss if first is None else first
        last = loss
        if not args.json:
            print(f"step {s:2d}  loss {loss:.4f}  {dt:.3f} s{'  (warm-up)' if s < args.warmup else ''}")
        if s >= args.warmup:
            times.append(dt)
    med = sorted(times)[len(times) // 2]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    mm = matmul_gflops()
    res = dict(impl="pytorch", torch=torch.__version__, threads=args.threads, batch=B, seq=T, step_s=med,
               tokens_per_s=B * T / med, max_rss_mb=rss, first_loss=first, last_loss=last,
               matmul_1024_gflops=mm, openblas_coretype=os.environ.get("OPENBLAS_CORETYPE", ""))
    if args.json:
        print(json.dumps(res))
    else:
        print(f"\nPyTorch {torch.__version__}, {args.threads} threads: step {med:.3f} s -> {B * T / med:.0f} tokens/s, "
              f"max RSS {rss:.0f} MiB; 1024^3 matmul {mm:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
