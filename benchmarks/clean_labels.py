"""Learned labels as a regulariser on clean data: one-hot vs label smoothing vs learned labels.

    python benchmarks/clean_labels.py              # MNIST-1D and digits, 5 seeds
    python benchmarks/clean_labels.py --smoke      # seconds; what the test suite runs

No label noise. Baselines train on all the training data. Learned labels take their meta
batches either from a held-out clean split (50 per class on MNIST-1D, 10 on digits, not trained
on) or from the training data itself. Label smoothing runs at several epsilons and the best one
(by mean last-epoch accuracy, on the test set: an optimistic pick for the baseline) is named.
Reports best / last test accuracy and the expected calibration error (15 bins, last epoch).
Writes ``clean_labels.{md,json,png}``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from common import STORED_META_STEP, run_arguments, save_figure, smoke, write_outputs
from labelmeta.compare import cell, compare, mean_std
from labelmeta import Config

DATASETS = {
    "mnist1d": Config(noise="none", noise_rate=0.0, progress=False, **STORED_META_STEP),
    "digits": Config(dataset="digits", model="mlp", noise="none", noise_rate=0.0, meta_per_class=10,
                     meta_batch_size=100, batch_size=64, progress=False, **STORED_META_STEP),
}
EPSILONS = (0.05, 0.1, 0.2, 0.3)
ONE_HOT = "one-hot"
LEARNED = {"per-class": dict(labels="per-class", label_lr=2.0),
           "class-temperature": dict(labels="class-temperature"),
           "per-sample": dict(labels="per-sample"),
           "per-sample-ensemble": dict(labels="per-sample-ensemble")}
SOURCES = {"held-out meta split": dict(meta_source="clean"), "meta from training batches": dict(meta_source="train")}


def methods() -> dict:
    out = {ONE_HOT: dict(labels="one-hot", strategy="none", meta_source="train")}
    for eps in EPSILONS:
        out[f"label smoothing {eps}"] = dict(labels="smoothing", label_options=dict(smoothing=eps), strategy="none",
                                                    meta_source="train")
    for name, labels in LEARNED.items():
        for source, changes in SOURCES.items():
            out[f"learned {name}, {source}"] = dict(**labels, **changes)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    run_arguments(parser, seeds=(0, 1, 2, 3, 4))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = args.seeds[:1] if args.smoke else args.seeds
    command = "python benchmarks/clean_labels.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# Learned labels on clean data", "", f"Command: `{command.strip()}`; seeds {seeds}; CPU, 1 torch thread. "
             "Mean ± std over seeds; ECE: expected calibration error on the test set (last epoch).", ""]
    data, figures = {}, {}
    for dataset in args.datasets:
        base = DATASETS[dataset]
        if args.smoke:
            base = smoke(base)
        results = compare(base, methods(), seeds)
        stats = {name: dict(last=mean_std([r.last_accuracy for r in runs]), best=mean_std([r.best_accuracy for r in runs]),
                            ece=mean_std([r.ece for r in runs]), seconds=mean_std([r.wall_time for r in runs], 1.0))
                 for name, runs in results.items()}
        smoothing = [n for n in stats if n.startswith("label smoothing")]
        best_ls = max(smoothing, key=lambda n: stats[n]["last"][0])
        learned = [n for n in stats if n.startswith("learned")]
        best_learned = max(learned, key=lambda n: stats[n]["last"][0])
        lines += [f"## {dataset}", "", "| method | test acc last (%) | test acc best (%) | ECE (%) | wall time (s) |",
                  "|---|---|---|---|---|"]
        for name, s in stats.items():
            mark = " (best smoothing)" if name == best_ls else ""
            lines.append(f"| {name}{mark} | {cell(s['last'])} | {cell(s['best'])} | {cell(s['ece'])} | {cell(s['seconds'], 0)} |")
        one_hot, ls = stats[ONE_HOT]["last"][0], stats[best_ls]["last"][0]
        top = stats[best_learned]["last"][0]
        lines += ["", f"Best learned labels (last epoch): {best_learned}, {top:.2f} %: "
                  f"{top - one_hot:+.2f} points over one-hot (target +1), {top - ls:+.2f} over the best label smoothing "
                  f"({best_ls}; target +0.5).", ""]
        data[dataset] = {"stats": stats, "runs": {n: [dataclasses.asdict(r) for r in rs] for n, rs in results.items()}}
        figures[dataset] = stats

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(figures), figsize=(7 * len(figures), 5), squeeze=False)
    for ax, (dataset, stats) in zip(axes[0], figures.items()):
        names = list(stats)
        ax.barh(range(len(names)), [stats[n]["last"][0] for n in names], xerr=[stats[n]["last"][1] for n in names],
                color=["C0" if n == ONE_HOT else "C1" if n.startswith("label") else "C2" for n in names])
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names, fontsize=7)
        ax.invert_yaxis()
        lo = min(stats[n]["last"][0] for n in names)
        ax.set_xlim(lo - 2, max(stats[n]["last"][0] for n in names) + 1)
        ax.set(xlabel="last-epoch test accuracy (%)", title=f"{dataset}, clean labels (mean ± std)")
    out = Path(args.out)
    stem = "clean_labels_smoke" if args.smoke else "clean_labels"
    save_figure(fig, out / f"{stem}.png", dpi=110)
    report = "\n".join(lines)
    write_outputs(out, stem, report, data)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
