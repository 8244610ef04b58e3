"""Greedy generation by the PyTorch reference, for `dsc generate --temperature 0 --print-ids`.

Every step recomputes the whole sequence from scratch (no cache: nothing of the engine's latent
cache, absorption or chunking is shared) in float64, and appends the argmax. Prints the generated
ids, comma-separated, and the smallest gap between the top two logits seen (a check is only
meaningful when that gap is far above fp32 rounding).
Usage: generate_ref.py MODEL_DIR --tokens 0,17,42 --max-tokens N [--perturb SEED]
  --perturb SEED  first moves every weight by noise (norms 0.2, the rest 0.05) and saves the model
                  back, so that logits are far from ties; run it before dsc reads the model."""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dsc_ref  # noqa: E402
import safetensors_np  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--max-tokens", type=int, required=True)
    ap.add_argument("--perturb", type=int)
    a = ap.parse_args()
    torch.set_num_threads(1)
    path = os.path.join(a.model, "model.safetensors")
    weights = safetensors_np.load(path)
    if a.perturb is not None:
        rng = np.random.default_rng(a.perturb)
        for k, v in weights.items():
            std = 0.2 if "norm" in k else 0.05
            if "e_score_correction_bias" not in k:
                weights[k] = (np.array(v) + std * rng.standard_normal(v.shape)).astype(np.float32)
        safetensors_np.save(path, weights)
    cfg = dsc_ref.Config.load(os.path.join(a.model, "config.json"))
    model = dsc_ref.Model(cfg, dtype=torch.float64)
    model.load_state_dict({k: torch.from_numpy(np.array(v)).double() for k, v in weights.items()}, strict=True)
    model.eval()
    toks = [int(t) for t in a.tokens.split(",")]
    out, gap = [], float("inf")
    with torch.no_grad():
        for _ in range(a.max_tokens):
            logits = model(torch.tensor([toks + out])).logits[0, -1]
            top = torch.topk(logits, 2).values
            gap = min(gap, float(top[0] - top[1]))
            out.append(int(torch.argmax(logits)))
    print(",".join(map(str, out)))
    print(f"smallest top-2 logit gap {gap:.3g}", file=sys.stderr)


if __name__ == "__main__":
    main()
