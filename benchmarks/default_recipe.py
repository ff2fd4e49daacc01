"""Which meta step should the default take: the fastest that keeps the exact step's gain.

    python benchmarks/default_recipe.py --jobs 2                 # 3 seeds, 40 epochs, noisy MNIST-1D (40 % symmetric)
    python benchmarks/default_recipe.py --noise asymmetric --jobs 2   # the same candidates on class flips
    python benchmarks/default_recipe.py --smoke                  # seconds; what the test suite runs

The default method (learned labels and per-sample weights, ``labels+weights``) with its meta step
taken in several ways: the reference is the exact unroll through ``higher`` at every training step
on a meta batch of 500 (``unrolled:labels+weights``); the default computes the same hypergradient
with ``one-step``'s Jacobian-vector product; the other candidates make it cheaper by taking the
meta step every ``m`` steps (optionally with a longer label step), on a smaller meta batch, or both,
or keep a meta step at every training step but recompute the meta loss's gradient only every ``r``
of them (``one-step``'s ``refresh``).
Cross-entropy runs in the same script, on the same data, noise draw and seeds. A candidate
qualifies when its last-epoch accuracy keeps >= 95 % of the reference's gain over cross-entropy
*and* lies within one standard deviation of the reference's; the fastest qualifying candidate is
named. Resumable cells (``benchmarks/harness.py``); writes ``default_recipe.{md,json,png}`` under
``--out``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Dict, List

import harness
from common import accuracy_against_cost, cost_row, run_arguments, smoke, warm_up, write_outputs
from labelmeta import Config
from labelmeta.compare import cell, mean_std, noise_summary

CE = "cross-entropy"
REFERENCE = "exact: unrolled (higher), every step, meta batch 500"
DEFAULT = "one-step, every step, meta batch 500 (the default)"
#: name -> Config overrides of the defaults (the strategy is the default's, one-step-reweight)
CANDIDATES: Dict[str, dict] = {
    DEFAULT: dict(),
    "one-step, every step, meta batch 128": dict(meta_batch_size=128),
    "one-step, every 2 steps": dict(meta_every=2),
    # fewer label steps, each longer in proportion (the label lr is a step length)
    "one-step, every 2 steps, label lr ×2": dict(meta_every=2, label_lr=1.0),
    "one-step, every 4 steps": dict(meta_every=4),
    "one-step, every 8 steps": dict(meta_every=8),
    "one-step, every 8 steps, meta batch 128": dict(meta_every=8, meta_batch_size=128),
    # a meta step at every training step (weights and labels for every batch), the meta loss's
    # gradient recomputed every r of them and reused in between (one-step's ``refresh``)
    "one-step, every step, meta gradient every 2": dict(strategy_options=dict(refresh=2)),
    "one-step, every step, meta gradient every 4": dict(strategy_options=dict(refresh=4)),
    "one-step, every step, meta gradient every 8": dict(strategy_options=dict(refresh=8)),
}
KEEP, WITHIN_STD = 0.95, 1.0
#: issue 28's target for the default's whole run: at most this many times cross-entropy's time, keeping
#: at least TARGET_GAIN of the gain, on both noise models
TARGET_TIME, TARGET_GAIN = 3.0, 0.97


def methods() -> Dict[str, dict]:
    return {CE: dict(labels="one-hot", strategy="none"),
            REFERENCE: dict(strategy="unrolled:labels+weights", meta_every=1, meta_batch_size=500),
            **CANDIDATES}


def summarise(results) -> List[dict]:
    """One row per method: accuracies, time and the share of the reference's gain it keeps."""
    ce_last = mean_std([r.last_accuracy for r in results[CE]])[0]
    ce_time = mean_std([r.wall_time for r in results[CE]], 1.0)[0]
    reference = mean_std([r.last_accuracy for r in results[REFERENCE]])
    rows = []
    for name, runs in results.items():
        row = cost_row(name, runs, ce_time)
        last = row["last"][0]
        gain = (last - ce_last) / (reference[0] - ce_last) if name != CE and reference[0] > ce_last else float("nan")
        rows.append({**row, "gain_kept": gain, "qualifies": name in CANDIDATES and gain >= KEEP
                     and last >= reference[0] - WITHIN_STD * reference[1]})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run_arguments(parser)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--noise", default="symmetric", choices=["symmetric", "asymmetric"],
                        help="the noise model (the choice is made on symmetric noise; asymmetric checks it)")
    parser.add_argument("--noise-rate", type=float, default=0.4)
    harness.add_jobs_argument(parser)
    args = parser.parse_args(argv)
    base = Config(labels="per-sample", epochs=args.epochs, progress=False, noise=args.noise,  # issue 14's default
                  noise_rate=args.noise_rate)
    seeds = args.seeds
    if args.smoke:
        base, seeds = smoke(base), seeds[:1]
    stem = "default_recipe" + ("" if args.noise == "symmetric" else f"_{args.noise}") + ("_smoke" if args.smoke else "")
    out = Path(args.out)
    # wall times are the figures: each worker first runs a throw-away (torch's start-up costs)
    store, results = harness.compare(base, methods(), seeds, out / f"{stem}.json", args.jobs,
                                     warm_up=warm_up(base))
    rows = summarise(results)
    qualifying = sorted((r for r in rows if r["qualifies"]), key=lambda r: r["time_ratio"])

    command = "python benchmarks/default_recipe.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# The default's meta step: the fastest that keeps the exact step's gain", "",
             f"Command: `{command.strip()}`; seeds {seeds}; {harness.where(args.jobs, store['cells'].values())}. "
             f"{noise_summary(results) or ''}. "
             f"MNIST-1D, {base.model}, {base.epochs} epochs, strategy `{base.strategy}`, labels `{base.labels}`, "
             f"label lr {base.label_lr} unless a row says otherwise. "
             f"*Gain kept*: (accuracy − cross-entropy's) / (the reference's − cross-entropy's), last epoch. "
             f"A candidate qualifies with ≥ {KEEP:.0%} of the gain and a last-epoch mean within {WITHIN_STD:g} std "
             "of the reference's.", "",
             "| method | test acc last (%) | test acc best (%) | corrupted corrected (%) | clean broken (%) "
             "| wall time (s) | × cross-entropy time | gain kept | qualifies |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gain = "–" if r["method"] == CE else f"{r['gain_kept'] * 100:.0f} %"
        lines.append(f"| {r['method']} | {cell(r['last'])} | {cell(r['best'])} | {cell(r['corrected'])} | "
                     f"{cell(r['broken'], 2)} | {cell(r['seconds'], 0)} | {r['time_ratio']:.2f} | {gain} | "
                     f"{'yes' if r['qualifies'] else ('–' if r['method'] not in CANDIDATES else 'no')} |")
    if qualifying:
        best = qualifying[0]
        lines += ["", f"Fastest qualifying candidate: **{best['method']}**, {best['time_ratio']:.2f}× cross-entropy's "
                  f"time, {best['gain_kept'] * 100:.0f} % of the gain."]
    else:
        lines += ["", "No candidate qualifies."]
    on_target = [r for r in rows if r["method"] in CANDIDATES and r["time_ratio"] <= TARGET_TIME
                 and r["gain_kept"] >= TARGET_GAIN]
    lines += [f"Target (issue 28, on both noise models): the whole run ≤ {TARGET_TIME:g}× cross-entropy's time at "
              f"≥ {TARGET_GAIN:.0%} of the gain; here: "
              + (", ".join(f"{r['method']} ({r['time_ratio']:.2f}×, {r['gain_kept'] * 100:.0f} %)" for r in on_target)
                 if on_target else "no candidate") + "."]
    lines.append("")
    report = "\n".join(lines)
    write_outputs(out, stem, report, {**store, "rows": rows, "candidates": CANDIDATES,
                                      "base": dataclasses.asdict(base)})
    reference = next(r for r in rows if r["method"] == REFERENCE)
    accuracy_against_cost(rows, out / f"{stem}.png", f"Noisy MNIST-1D ({args.noise}): the default's candidates", 2.0,
                          band=reference["last"], labels=[r["method"] + (" ✓" if r["qualifies"] else "") for r in rows])
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
