"""The default recipe on noisy MNIST-1D against cross-entropy, same data, noise draw and seeds.

    python benchmarks/noisy_recipe.py                 # 3 seeds, 40 epochs (≈ 10 min on 1 CPU core)
    python benchmarks/noisy_recipe.py --smoke         # seconds; what the test suite runs

Writes ``benchmarks/results/noisy_recipe.{md,json,png}`` (``--out`` to change the folder).
Every method runs through ``labelmeta.fit``; the learned labels are the recipe this report studied, the
default before issue 14 (``per-sample-ensemble`` labels, the ``one-step`` strategy; ``noisy_labels.py``
compares it with the default that replaced it).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch

from common import STORED_LABELS, run_arguments, save_figure, smoke
from labelmeta.compare import compare, format_table, noise_summary, summarize
from labelmeta import Config

METHODS = {
    "cross-entropy": dict(labels="one-hot", strategy="none"),
    "label smoothing 0.1": dict(labels="smoothing", strategy="none"),
    "cross-entropy, clean meta set added to training": dict(labels="one-hot", strategy="none", meta_in_train=True),
    "learned labels (default: per-sample-ensemble, one-step k=1)": dict(),
    # ablations of the default: without the model's predictions, and without meta-learning
    "meta-learned per-sample logits only (no ensemble)": dict(labels="per-sample"),
    "the same, label lr 1.0 constant (the previous default)": dict(labels="per-sample", label_lr=1.0,
                                                                   label_schedule="constant"),
    "self-ensemble only (no meta-learning)": dict(strategy="none"),
    "cross-entropy on clean labels (reference)": dict(labels="one-hot", strategy="none", noise="none"),
}

TARGETS = """Targets (issue #2): last-epoch test accuracy >= cross-entropy + 5 points; >= 80 % of corrupted
labels corrected; <= 2 % of clean labels broken (mean of 3 seeds)."""


def plot(results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (name, runs) in enumerate(results.items()):
        color = f"C{i}"
        acc = np.array([[h.test_accuracy * 100 for h in r.history] for r in runs])
        epochs = np.arange(1, acc.shape[1] + 1)
        ax1.plot(epochs, acc.mean(0), label=name, color=color)
        ax1.fill_between(epochs, acc.mean(0) - acc.std(0), acc.mean(0) + acc.std(0), alpha=0.2, color=color)
        if runs[0].history[0].corrected is not None:
            corr = np.array([[h.corrected * 100 for h in r.history] for r in runs]).mean(0)
            broken = np.array([[h.clean_broken * 100 for h in r.history] for r in runs]).mean(0)
            ax2.plot(epochs, corr, color=color, label=f"{name}: corrupted corrected")
            ax2.plot(epochs, broken, color=color, ls="--", label="clean broken")
    ax1.set(xlabel="epoch", ylabel="test accuracy (%)", title="MNIST-1D, 40 % symmetric noise (mean ± std over seeds)")
    ax1.legend(fontsize=7)
    ax2.set(xlabel="epoch", ylabel="% of samples", title="learned hard labels (targets: 80 % and 2 %, dotted)")
    ax2.axhline(80, ls=":", c="gray")
    ax2.axhline(2, ls=":", c="gray")
    ax2.legend(fontsize=6)
    save_figure(fig, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run_arguments(parser)
    parser.add_argument("--epochs", type=int, default=Config.epochs)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    base = Config(epochs=args.epochs, progress=sys.stderr.isatty(), strategy="one-step", **STORED_LABELS)
    seeds = args.seeds
    if args.smoke:
        base = smoke(base)
        seeds = seeds[:1]
    start = time.time()
    results = compare(base, METHODS, seeds=seeds)
    table = format_table(summarize(results))
    command = "python benchmarks/noisy_recipe.py " + " ".join(argv if argv is not None else sys.argv[1:])
    recipe = {k: v for k, v in dataclasses.asdict(base).items() if k not in ("progress", "output", "seed")}
    report = "\n".join([
        "# Noisy-label recipe: MNIST-1D, 40 % symmetric noise",
        "",
        f"Command: `{command.strip()}`; seeds {seeds}; {platform.machine()} CPU, {args.threads} torch thread(s); "
        f"total {time.time() - start:.0f} s.",
        noise_summary(results) or "",
        "",
        table,
        "",
        TARGETS,
        "",
        "Base config (each method overrides a few fields, see `METHODS` in the script):",
        "",
        "```",
        json.dumps(recipe, indent=1),
        "```",
        "",
    ])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "noisy_recipe_smoke" if args.smoke else "noisy_recipe"
    (out / f"{stem}.md").write_text(report)
    (out / f"{stem}.json").write_text(json.dumps(
        {name: [dataclasses.asdict(r) for r in runs] for name, runs in results.items()}, indent=1))
    plot(results, out / f"{stem}.png")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
