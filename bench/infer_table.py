"""Table of bench/infer.sh's results: dsc against llama.cpp per model, test and thread count.

Each figure is the best over the rounds; "best" columns compare the best thread count of each
implementation (on 2 vCPUs either can lose at 2 threads under contention). Decode bandwidth is
the weight bytes one decode token reads (bench_infer, the same GGUF for both) times tokens/s,
against the best DRAM bandwidth probe of the model's runs (bench_infer); for dsc also "paired":
each tg run against the probes taken just before and after it, the median of the runs at the
best thread count (the probe moves by a fifth within minutes on a shared machine)."""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
best = defaultdict(float)          # (model, impl, test, threads) -> tokens/s
wbytes, bw = {}, defaultdict(float)
paired = defaultdict(list)         # (model, threads) -> dsc's paired fractions of its tg runs
for r in rows:
    m, impl, t = r["model"], r["impl"], r["threads"]
    if impl == "dsc":
        if r["test"] == "batched":
            keys = [(f"prompts S={r['seqs']}", r["pp_tokens_per_s"]), (f"decode S={r['seqs']}", r["tg_tokens_per_s"])]
        else:
            keys = [(r["test"], r["tokens_per_s"])]
            if "weight_bytes" in r:
                wbytes[m] = r["weight_bytes"]
                bw[m] = max(bw[m], r["bandwidth_gbs"])
                if "paired_fraction" in r:
                    paired[(m, t)].append(r["paired_fraction"])
    elif "pl" in r:  # llama-batched-bench
        keys = [(f"prompts S={r['pl']}", r["speed_pp"]), (f"decode S={r['pl']}", r["speed_tg"])]
    else:            # llama-bench
        test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
        keys = [(test, r["avg_ts"])]
    for test, v in keys:
        best[(m, impl, test, t)] = max(best[(m, impl, test, t)], v)

order = ["pp512", "tg64", "prompts S=1", "decode S=1", "prompts S=4", "decode S=4", "prompts S=16", "decode S=16"]
threads = sorted({k[3] for k in best})
for m in dict.fromkeys(k[0] for k in best):
    have_llama = any(k[0] == m and k[1] == "llama.cpp" for k in best)
    print(f"\n{m}: tokens/s (best of the rounds)" + (f"; a decode token reads {wbytes[m] / 1e6:.0f} MB of weights,"
          f" DRAM bandwidth {bw[m]:.1f} GB/s" if m in wbytes else ""))
    head = f"{'test':<14}" + "".join(f"{'dsc t' + str(t):>10}" for t in threads)
    if have_llama:
        head += "".join(f"{'llama t' + str(t):>10}" for t in threads) + f"{'best/best':>11}"
    print(head)
    for test in order:
        d = [best.get((m, "dsc", test, t), 0) for t in threads]
        if not any(d):
            continue
        line = f"{test:<14}" + "".join(f"{v:10.1f}" for v in d)
        if have_llama:
            l = [best.get((m, "llama.cpp", test, t), 0) for t in threads]
            line += "".join(f"{v:10.1f}" for v in l)
            line += f"{max(d) / max(l):10.2f}x" if max(l) else f"{'-':>11}"
        if test.startswith("tg") or test == "decode S=1":
            if m in wbytes and bw[m]:
                line += f"   dsc {max(d) * wbytes[m] / 1e9 / bw[m]:.0%} of bandwidth"
                pf = paired.get((m, threads[d.index(max(d))]))
                if test.startswith("tg") and pf:
                    line += f" ({statistics.median(pf):.0%} paired)"
                if have_llama and max(l):
                    line += f", llama.cpp {max(l) * wbytes[m] / 1e9 / bw[m]:.0%}"
        print(line)
