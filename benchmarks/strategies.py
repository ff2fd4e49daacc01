"""Label parameterisations × strategies on noisy MNIST-1D: accuracy, label correction and time.

    python benchmarks/strategies.py --jobs 2        # 3 seeds, 40 epochs (resumable cells)
    python benchmarks/strategies.py --smoke         # seconds; what the test suite runs

Every row runs through ``harness.compare`` (the same ``fit`` loop, data, noise draw and seeds),
cross-entropy included. For each strategy the table gives its whole-run wall time as a multiple of
cross-entropy's and the share of the exact strategy's accuracy gain over cross-entropy it keeps
(last epoch, same parameterisation). Writes ``strategies.{md,json,png}`` under ``--out``.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

import harness
from common import accuracy_against_cost, cost_row, run_arguments, smoke, warm_up, write_outputs
from labelmeta.compare import cell, mean_std, noise_summary
from labelmeta import Config

CE = "cross-entropy"
EXACT = "exact k=1 (unrolled, higher)"
#: strategy name -> Config overrides
STRATEGIES = {
    EXACT: dict(strategy="unrolled"),
    "exact k=1 (functional, torch.func)": dict(strategy="functional"),
    "exact k=1 (one-step, forward product)": dict(strategy="one-step"),
    "truncated k=2, t=1": dict(strategy="truncated", strategy_options=dict(steps=2)),  # t=1: its default
    "finite-difference k=1": dict(strategy="finite-difference"),
    "head-only k=1": dict(strategy="head-only"),
    "functional, every 4 steps": dict(strategy="functional", meta_every=4),
    "head-only, every 4 steps": dict(strategy="head-only", meta_every=4),
    # amortised and on a smaller meta batch: the cheap candidates
    "functional, every 8 steps, meta batch 128": dict(strategy="functional", meta_every=8, meta_batch_size=128),
    "finite-difference, every 8 steps, meta batch 128": dict(strategy="finite-difference", meta_every=8,
                                                             meta_batch_size=128),
}
#: parameterisation -> the strategies it runs with (the default labels get every strategy)
GRID = {
    "per-sample-ensemble": list(STRATEGIES),
    "per-sample": [EXACT, "head-only k=1"],
    "per-class": [EXACT, "head-only k=1"],
    "class-temperature": [EXACT, "head-only k=1"],
}


def methods() -> dict:
    out = {CE: dict(labels="one-hot", strategy="none")}
    for labels, strategies in GRID.items():
        for strategy in strategies:
            out[f"{labels} | {strategy}"] = dict(labels=labels, **STRATEGIES[strategy])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run_arguments(parser)
    parser.add_argument("--epochs", type=int, default=Config.epochs)
    harness.add_jobs_argument(parser)
    args = parser.parse_args(argv)
    # a meta step every training step on a meta batch of 500 unless a row says otherwise (the
    # default's own candidates are default_recipe.py's subject)
    base = Config(labels="per-sample", epochs=args.epochs, progress=False, meta_every=1, meta_batch_size=500)
    seeds = args.seeds
    if args.smoke:
        base = smoke(base)
        seeds = seeds[:1]
    stem = "strategies_smoke" if args.smoke else "strategies"
    out = Path(args.out)
    store, results = harness.compare(base, methods(), seeds, out / f"{stem}.json", args.jobs,
                                     warm_up=warm_up(base))

    ce_last = mean_std([r.last_accuracy for r in results[CE]])[0]
    ce_time = mean_std([r.wall_time for r in results[CE]], 1.0)[0]
    rows = []
    for name, runs in results.items():
        labels = name.split(" | ")[0]
        exact = results.get(f"{labels} | {EXACT}")
        row = cost_row(name, runs, ce_time)
        gain = float("nan")
        if exact is not None and name != CE:
            exact_gain = mean_std([r.last_accuracy for r in exact])[0] - ce_last
            gain = (row["last"][0] - ce_last) / exact_gain if exact_gain > 0 else float("nan")
        rows.append({**row, "gain_kept": gain})

    command = "python benchmarks/strategies.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# Parameterisations × strategies", "",
             f"Command: `{command.strip()}`; seeds {seeds}; {harness.where(args.jobs, store['cells'].values())}. "
             f"{noise_summary(results) or ''}. MNIST-1D, 1-D CNN with BatchNorm, meta batch "
             f"{base.meta_batch_size}. *Gain kept*: (accuracy − cross-entropy's) / (the exact strategy's − "
             "cross-entropy's), last epoch, same parameterisation.", "",
             "| labels | strategy | test acc last (%) | test acc best (%) | corrupted corrected (%) | clean broken (%) "
             "| wall time (s) | × cross-entropy time | gain kept |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        labels, _, strategy = r["method"].partition(" | ")
        gain = "–" if math.isnan(r["gain_kept"]) else f"{r['gain_kept'] * 100:.0f} %"
        lines.append(f"| {labels} | {strategy or '–'} | {cell(r['last'])} | {cell(r['best'])} | {cell(r['corrected'])} | "
                     f"{cell(r['broken'], 2)} | {cell(r['seconds'], 0)} | {r['time_ratio']:.1f} | {gain} |")
    cheap = [r for r in rows if r["time_ratio"] <= 1.5 and r["gain_kept"] >= 0.9]
    lines += ["", "Strategies within 1.5× cross-entropy's time that keep ≥ 90 % of the exact gain: "
              + (", ".join(r["method"] for r in cheap) if cheap else "none."), ""]
    report = "\n".join(lines)
    write_outputs(out, stem, report, {**store, "rows": rows, "base": dataclasses.asdict(base)})
    accuracy_against_cost(rows, out / f"{stem}.png", "MNIST-1D, 40 % symmetric noise: accuracy against cost", 1.5)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
