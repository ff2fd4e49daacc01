"""What each extra inner step buys and costs: unroll depth k (and truncation t) against accuracy,
label correction, time per step and memory.

    python benchmarks/unroll_depth.py                 # cost: CNN, k = 1..8; accuracy: digits, k = 1..8, 3 seeds
    python benchmarks/unroll_depth.py --accuracy-dataset mnist1d --ks 1 2 4 8 --truncations 1 2 --settings noisy
                                                      # accuracy on MNIST-1D (writes unroll_depth_mnist1d.*)
    python benchmarks/unroll_depth.py --smoke         # seconds; what the test suite runs

Cost part: one process, the same batch (meta batch of the same size), median time of a full
training step (meta + model step) and the graph memory it holds, per strategy and k, with a
straight-line fit ``time = a + b k`` whose slope ``b`` is reported in plain steps per extra
inner step. Accuracy part: ``labelmeta.fit`` runs with the exact unroll (and truncated
back-propagation through the last ``t`` steps) on a noisy (40 % symmetric) and a clean setting.
Writes ``unroll_depth.{md,json,png}`` under ``--out``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch

import harness
from common import (build, interleaved_times, machine, median, peak_cuda_bytes, plain_step, run_arguments, save_figure,
                    saved_tensor_bytes, timing_arguments, write_outputs)
from labelmeta import Config, Learner, make_label_optimizer, make_labels
from labelmeta.compare import cell, mean_std
from labelmeta.strategies import STRATEGIES, Strategy

#: the meta target every row trains: the default's (learned labels and per-sample weights)
TARGET = "labels+weights"
#: strategy -> factory of depth k (the backend with the default's target)
COST_STRATEGIES: Dict[str, Callable[[int], Strategy]] = {
    "exact (torch.func)": lambda k: STRATEGIES.build(f"functional:{TARGET}", options=dict(steps=k)),
    "truncated, t=1": lambda k: STRATEGIES.build(f"truncated:{TARGET}", options=dict(steps=k, through=1)),
    "finite-difference": lambda k: STRATEGIES.build(f"finite-difference:{TARGET}", options=dict(steps=k)),
    "head-only": lambda k: STRATEGIES.build(f"head-only:{TARGET}", options=dict(steps=k)),
}

#: accuracy settings: name -> Config overrides
SETTINGS = {"noisy (40 % symmetric)": dict(noise="symmetric", noise_rate=0.4),
            "clean": dict(noise="none", noise_rate=0.0)}
#: accuracy base per dataset: the defaults (labels, label lr, meta batch), sizes scaled to the data
ACCURACY_BASE = {"digits": Config(dataset="digits", model="mlp", meta_per_class=10, meta_batch_size=100, batch_size=64),
                 "mnist1d": Config()}


def cost(model_name: str, ks: List[int], device: str, batch_size: int, repeats: int, warmup: int) -> Dict[str, dict]:
    """Median seconds per full step and graph memory, per strategy and k (plus the plain step)."""
    batch, meta, targets, classes, model_and_optimizer = build(model_name, device, batch_size)
    model, opt = model_and_optimizer()

    plain = plain_step(model, opt, batch)
    out: Dict[str, dict] = {name: {"k": ks, "seconds": [], "memory": []} for name in COST_STRATEGIES}
    plain_times: List[float] = []
    for k in ks:
        steps: Dict[str, Callable[[], None]] = {"plain": plain}
        for name, factory in COST_STRATEGIES.items():
            m, o = model_and_optimizer()
            labels = make_labels(Config.labels, targets, classes).to(device)
            learner = Learner(m, o, labels, factory(k), make_label_optimizer("mirror", labels.parameters(), 0.5))
            steps[name] = lambda learner=learner: learner.step(batch, meta)
        times = interleaved_times(steps, repeats, warmup, device)
        plain_times += times["plain"]
        for name in COST_STRATEGIES:
            out[name]["seconds"].append(median(times[name]))
            if device.startswith("cuda"):
                out[name]["memory"].append(peak_cuda_bytes(steps[name], device))
            else:
                with saved_tensor_bytes() as saved:
                    steps[name]()
                out[name]["memory"].append(saved["bytes"])
    plain_s = median(plain_times)
    for name, row in out.items():
        row["ratio"] = [s / plain_s for s in row["seconds"]]
        slope, intercept = np.polyfit(ks, row["ratio"], 1) if len(ks) > 1 else (float("nan"), row["ratio"][0])
        row["slope_plain_steps_per_k"], row["intercept"] = float(slope), float(intercept)
        row["memory_growth"] = row["memory"][-1] / row["memory"][0]
    out["plain"] = {"seconds": plain_s}
    return out


def accuracy(dataset: str, ks: List[int], truncations: List[int], seeds: List[int], overrides: dict,
             settings: List[str], store_path: Path, jobs: int) -> Tuple[dict, Dict[str, dict]]:
    """``fit`` results per setting and (k, t), mean ± std over seeds, through the resumable store at
    ``store_path``: ``(store, "setting | variant" -> figures)``."""
    base = ACCURACY_BASE[dataset].replace(progress=False, **overrides)
    variants = [(f"exact k={k}", dict(strategy=f"functional:{TARGET}", strategy_options=dict(steps=k))) for k in ks]
    variants += [(f"truncated k={max(ks)}, t={t}", dict(strategy=f"truncated:{TARGET}",
                                                          strategy_options=dict(steps=max(ks), through=t)))
                 for t in truncations if t < max(ks)]
    variants.append(("cross-entropy (no meta-learning)", dict(labels="one-hot", strategy="none")))
    methods = {f"{setting} | {name}": {**noise, **changes} for setting, noise in SETTINGS.items()
               if setting.split(" ")[0] in settings for name, changes in variants}
    store, results = harness.compare(base, methods, seeds, store_path, jobs)
    out = {name: dict(last=mean_std([r.last_accuracy for r in runs]), best=mean_std([r.best_accuracy for r in runs]),
                      corrected=mean_std([r.corrected for r in runs]), broken=mean_std([r.clean_broken for r in runs]),
                      seconds=mean_std([r.wall_time for r in runs], 1.0))
           for name, runs in results.items()}
    return store, out


def plot(costs: Dict[str, dict], acc: Dict[str, dict], ks: List[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for name in COST_STRATEGIES:
        axes[0].plot(ks, costs[name]["ratio"], marker="o", label=name)
        axes[1].plot(ks, [m / 2**20 for m in costs[name]["memory"]], marker="o", label=name)
    axes[0].set(xlabel="inner steps k", ylabel="full step / plain step", title="time per training step (median)")
    axes[1].set(xlabel="inner steps k", ylabel="MB", title="graph memory of one step")
    for setting in SETTINGS:
        if f"{setting} | exact k={ks[0]}" not in acc:
            continue
        last = [acc[f"{setting} | exact k={k}"]["last"] for k in ks]
        axes[2].errorbar(ks, [m for m, _ in last], yerr=[s for _, s in last], marker="o", capsize=2, label=f"{setting}: exact")
        ce = acc[f"{setting} | cross-entropy (no meta-learning)"]["last"][0]
        axes[2].axhline(ce, ls=":", c=axes[2].lines[-1].get_color(), label=f"{setting}: cross-entropy")
    axes[2].set(xlabel="inner steps k", ylabel="last-epoch test accuracy (%)", title="accuracy (mean ± std over seeds)")
    for ax in axes:
        ax.legend(fontsize=7)
    save_figure(fig, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ks", type=int, nargs="+", default=list(range(1, 9)))
    parser.add_argument("--truncations", type=int, nargs="+", default=[1, 2, 4], help="t for truncated runs at the largest k")
    parser.add_argument("--cost-model", default="cnn1d-bn")
    parser.add_argument("--accuracy-dataset", default="digits", choices=list(ACCURACY_BASE))
    parser.add_argument("--settings", nargs="+", default=["noisy", "clean"], choices=["noisy", "clean"])
    timing_arguments(parser, repeats=30)
    run_arguments(parser)
    harness.add_jobs_argument(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides: dict = {"device": args.device}
    ks, seeds, repeats, batch = args.ks, args.seeds, args.repeats, args.batch_size
    if args.smoke:
        ks, seeds, repeats, batch = [1, 2], seeds[:1], 2, 16
        overrides.update(epochs=2, warmup_epochs=1)
    stem = "unroll_depth" + ("" if args.accuracy_dataset == "digits" else f"_{args.accuracy_dataset}")
    stem += "_smoke" if args.smoke else ""
    out = Path(args.out)
    costs = cost(args.cost_model, ks, args.device, batch, repeats, warmup=2)
    store, acc = accuracy(args.accuracy_dataset, ks, args.truncations, seeds, overrides, args.settings,
                          out / f"{stem}.json", args.jobs)

    command = "python benchmarks/unroll_depth.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# Unroll depth", "", f"Command: `{command.strip()}`; {machine(args.device)}.", "",
             f"## Cost per training step ({args.cost_model}, batch {batch}, meta batch the same size)", "",
             f"Median of {repeats} round-robin rounds; plain step {costs['plain']['seconds'] * 1e3:.2f} ms. Slope: "
             "extra time per extra inner step, in plain steps (least squares over k). Memory: "
             + ("autograd's saved tensors during one step." if args.device == "cpu" else "peak CUDA allocation."), "",
             "| strategy | " + " | ".join(f"k={k}" for k in ks) + " | slope (plain steps / k) | memory k=1 → k=max (MB) |",
             "|---" * (len(ks) + 3) + "|"]
    for name in COST_STRATEGIES:
        row = costs[name]
        lines.append(f"| {name} | " + " | ".join(f"{r:.2f}×" for r in row["ratio"]) +
                     f" | {row['slope_plain_steps_per_k']:.2f} | {row['memory'][0] / 2**20:.2f} → {row['memory'][-1] / 2**20:.2f} |")
    lines += ["", f"## Accuracy ({args.accuracy_dataset}, {len(seeds)} seed(s): {seeds}; mean ± std)", "",
              f"Strategy `BACKEND:{TARGET}` (the default's target), the default labels `{Config.labels}`; "
              f"{harness.where(args.jobs)}.", "",
              "| setting | method | test acc last (%) | test acc best (%) | corrupted corrected (%) | clean broken (%) | wall time (s) |",
              "|---|---|---|---|---|---|---|"]
    for key, r in acc.items():
        setting, name = key.split(" | ")
        lines.append(f"| {setting} | {name} | {cell(r['last'])} | {cell(r['best'])} | {cell(r['corrected'])} | "
                     f"{cell(r['broken'], 2)} | {cell(r['seconds'], 0)} |")
    report = "\n".join(lines) + "\n"
    write_outputs(out, stem, report, {**store, "cost": costs, "accuracy": acc, "machine": machine(args.device)})
    plot(costs, acc, ks, out / f"{stem}.png")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
