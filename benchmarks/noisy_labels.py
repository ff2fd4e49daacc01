"""Noisy-label correction: datasets × noise settings × methods × seeds, every method in one runner.

    python benchmarks/noisy_labels.py                      # MNIST-1D + digits, 5 settings, 3 seeds
    python benchmarks/noisy_labels.py --jobs 2             # the same on two processes
    python benchmarks/noisy_labels.py --datasets cifar10 --data-root ~/data --device cuda   # GPU
    python benchmarks/noisy_labels.py --smoke              # seconds; what the test suite runs

Resumable: every finished cell (dataset, setting, method, seed) is stored in
``noisy_labels.json`` as soon as it ends, and a rerun skips the cells whose configuration is
unchanged. Writes ``noisy_labels.{json,md}``, ``noisy_labels_accuracy.png`` (test accuracy vs
noise) and ``noisy_labels_correction.png`` (corrupted labels corrected per epoch) under ``--out``.
Every method is a set of :class:`~labelmeta.Config` overrides run by :func:`labelmeta.fit` on the
same data, noise draw and seed.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, List, Tuple

from common import STORED_META_STEP, save_figure, smoke
from labelmeta.compare import cell, mean_std
from labelmeta import Config, Results, fit

#: base configuration per dataset (each method overrides a few fields)
DATASETS: Dict[str, Config] = {
    # the meta step the stored results were run with (one-step's hypergradient to round-off)
    "mnist1d": Config(**STORED_META_STEP),
    "digits": Config(dataset="digits", model="mlp", meta_per_class=10, meta_batch_size=100, batch_size=64,
                     **STORED_META_STEP),
    # GPU: torchvision CIFAR-10 from --data-root, CIFAR ResNet-18, standard augmentation
    "cifar10": Config(dataset="cifar10", model="resnet18", lr=0.1, epochs=120, batch_size=128,
                      meta_per_class=100, meta_batch_size=200, warmup_epochs=10),
}

#: noise settings: name -> (kind, nominal rate)
SETTINGS: Dict[str, Tuple[str, float]] = {
    "symmetric-20": ("symmetric", 0.2),
    "symmetric-40": ("symmetric", 0.4),
    "symmetric-60": ("symmetric", 0.6),
    "symmetric-80": ("symmetric", 0.8),
    "asymmetric-40": ("asymmetric", 0.4),
}

LEARNED = "learned labels: per-sample-ensemble (default)"
REFERENCE = "cross-entropy on clean labels (reference)"
#: method name -> Config overrides; the reference runs once per dataset and seed, without noise
METHODS: Dict[str, dict] = {
    "cross-entropy": dict(labels="one-hot", strategy="none"),
    "label smoothing 0.1": dict(labels="smoothing", strategy="none"),
    "bootstrapping, soft (β 0.95)": dict(labels="one-hot", strategy="none", loss="bootstrap-soft"),
    "bootstrapping, hard (β 0.8)": dict(labels="one-hot", strategy="none", loss="bootstrap-hard"),
    "generalised cross-entropy (q 0.7)": dict(labels="one-hot", strategy="none", loss="gce"),
    "meta-reweighting (L2RW, k=1 unroll)": dict(labels="one-hot", strategy="reweight"),
    LEARNED: dict(),
    "learned labels: per-sample-ensemble + GCE loss": dict(loss="gce", label_options=dict(weight=1.0)),
    "learned labels: per-sample": dict(labels="per-sample"),
    "learned labels: per-class": dict(labels="per-class"),
    "learned labels: class-temperature": dict(labels="class-temperature"),
    "self-ensemble only (no meta-learning)": dict(strategy="none"),
    REFERENCE: dict(labels="one-hot", strategy="none", noise="none", noise_rate=0.0),
}


def cell_key(dataset: str, setting: str, method: str, seed: int) -> str:
    return f"{dataset} | {setting} | {method} | seed {seed}"


def plan(datasets: List[str], settings: List[str], methods: List[str], seeds: List[int],
         overrides: dict, small: bool = False) -> Dict[str, Config]:
    """Every cell to run, keyed by :func:`cell_key`, with its full configuration (``small``: the smoke version)."""
    cells: Dict[str, Config] = {}
    for dataset in datasets:
        base = DATASETS[dataset].replace(progress=False, **overrides)
        base = smoke(base) if small else base
        for seed in seeds:
            for method in methods:
                for setting in settings if method != REFERENCE else ["clean"]:
                    noise = {} if setting == "clean" else dict(noise=SETTINGS[setting][0], noise_rate=SETTINGS[setting][1])
                    cells[cell_key(dataset, setting, method, seed)] = base.replace(seed=seed, **noise, **METHODS[method])
    return cells


def _run(config: Config) -> dict:
    import torch

    torch.set_num_threads(1)  # one core per cell keeps wall times comparable
    return dataclasses.asdict(fit(config))


def _save(path: Path, store: dict) -> None:
    """Write the store atomically, so that an interrupted run loses at most the cells in flight."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(store, f, indent=1)
    os.replace(tmp, path)


def run_cells(cells: Dict[str, Config], path: Path, jobs: int) -> dict:
    """Run the cells not yet in ``path`` (or whose configuration changed); return the whole store."""
    store = json.loads(path.read_text()) if path.exists() else {"cells": {}}
    defaults = dataclasses.asdict(Config())

    def done(key: str, config: Config) -> bool:
        stored = store["cells"].get(key, {}).get("config")
        # a Config field added after a cell ran has its default there (defaults keep behaviour)
        return stored is not None and {**defaults, **stored} == json.loads(json.dumps(dataclasses.asdict(config)))

    todo = {k: c for k, c in cells.items() if not done(k, c)}
    print(f"{len(cells) - len(todo)} of {len(cells)} cells already done; running {len(todo)} on {jobs} process(es)",
          flush=True)
    from tqdm.auto import tqdm

    with ProcessPoolExecutor(jobs) as pool, tqdm(total=len(todo), desc="cells", disable=not sys.stderr.isatty()) as bar:
        futures = {key: pool.submit(_run, config) for key, config in todo.items()}
        for key, future in futures.items():
            store["cells"][key] = future.result()
            _save(path, store)
            bar.update(1)
            if not sys.stderr.isatty():
                print(f"done: {key}", flush=True)
    return store


# ---------------------------------------------------------------------------------------------
# Tables and plots.

def _runs(store: dict, cells: Dict[str, Config]) -> Dict[Tuple[str, str, str], List[Results]]:
    """``(dataset, setting, method) -> [Results per seed]`` for the planned cells."""
    out: Dict[Tuple[str, str, str], List[Results]] = {}
    for key in cells:
        dataset, setting, method, _ = key.split(" | ")
        out.setdefault((dataset, setting, method), []).append(Results.from_dict(store["cells"][key]))
    return out


def _stat(runs: List[Results], field: str, scale: float = 100.0) -> tuple:
    return mean_std([getattr(r, field) for r in runs], scale)


def targets_report(runs, dataset: str, settings: List[str]) -> List[str]:
    """The issue's targets, checked against the measured means (MNIST-1D)."""
    lines = []

    def last(setting, method):
        return _stat(runs[(dataset, setting, method)], "last_accuracy")[0] if (dataset, setting, method) in runs else math.nan

    def check(ok: bool) -> str:
        return "met" if ok else "**missed**"

    ce, learned = "cross-entropy", LEARNED
    if "symmetric-40" in settings:
        l40, c40, ref = last("symmetric-40", learned), last("symmetric-40", ce), last("clean", REFERENCE)
        corr = _stat(runs[(dataset, "symmetric-40", learned)], "corrected")[0]
        broken = _stat(runs[(dataset, "symmetric-40", learned)], "clean_broken")[0]
        lines += [
            f"- 40 % symmetric, last-epoch accuracy ≥ cross-entropy + 5: {l40:.1f} vs {c40:.1f} + 5 → {check(l40 >= c40 + 5)} ({l40 - c40:+.1f})",
            f"- 40 % symmetric, within 3 points of clean-label training: {l40:.1f} vs {ref:.1f} → {check(l40 >= ref - 3)} ({l40 - ref:+.1f})",
            f"- 40 % symmetric, ≥ 80 % of corrupted labels corrected: {corr:.1f} → {check(corr >= 80)}",
            f"- 40 % symmetric, ≤ 2 % of clean labels broken: {broken:.2f} → {check(broken <= 2)}",
        ]
    if "asymmetric-40" in settings:
        la, ca = last("asymmetric-40", learned), last("asymmetric-40", ce)
        lines.append(f"- 40 % asymmetric, ≥ cross-entropy + 10: {la:.1f} vs {ca:.1f} + 10 → {check(la >= ca + 10)} ({la - ca:+.1f})")
    for setting in settings:
        if SETTINGS[setting][1] < 0.4:
            continue
        best_other = max(((last(setting, m), m) for m in METHODS if m not in (LEARNED, REFERENCE)
                          and (dataset, setting, m) in runs), default=(math.nan, ""))
        mine = last(setting, learned)
        lines.append(f"- {setting}: default learned labels ≥ every other method (last epoch): {mine:.1f} vs "
                     f"{best_other[0]:.1f} ({best_other[1]}) → {check(mine >= best_other[0])} ({mine - best_other[0]:+.1f})")
    return lines


def report(store: dict, cells: Dict[str, Config], datasets, settings, methods, seeds, command: str, jobs: int) -> str:
    runs = _runs(store, cells)
    lines = [
        "# Noisy-label benchmark",
        "",
        f"Command: `{command}`; seeds {seeds}; {platform.machine()} CPU, 1 torch thread per cell, "
        f"{jobs} cell(s) at a time. Mean ± std over seeds; *last* is the final epoch, *best* the best epoch "
        "(on the test set, so an optimistic figure). *Flagged*: samples a method marks as mislabelled "
        "(a learned hard label that differs from the annotation; a zero weight at the last visit for "
        "L2RW), precision / recall against the truth.",
        "",
    ]
    for dataset in datasets:
        lines += [f"## {dataset}", "", "Last-epoch test accuracy (%):", ""]
        header = "| method | " + " | ".join(settings) + " |"
        lines += [header, "|---" * (len(settings) + 1) + "|"]
        for method in methods:
            if method == REFERENCE:
                continue
            row = [cell(_stat(runs[(dataset, s, method)], "last_accuracy")) for s in settings]
            lines.append(f"| {method} | " + " | ".join(row) + " |")
        if REFERENCE in methods:
            ref = cell(_stat(runs[(dataset, "clean", REFERENCE)], "last_accuracy"))
            lines.append(f"| {REFERENCE} | " + " | ".join([ref] * len(settings)) + " |")
        for setting in settings:
            effective = mean_std([r.effective_noise for r in runs[(dataset, setting, methods[0])]])
            lines += ["", f"### {dataset}, {setting} (effective noise {effective[0]:.1f} %)", "",
                      "| method | test acc best (%) | test acc last (%) | corrupted corrected (%) | clean broken (%) "
                      "| flagged: precision / recall (%) | wall time (s) |",
                      "|---|---|---|---|---|---|---|"]
            for method in methods:
                if method == REFERENCE:
                    continue
                rs = runs[(dataset, setting, method)]
                prec, rec = _stat(rs, "detect_precision"), _stat(rs, "detect_recall")
                flags = "–" if math.isnan(prec[0]) and math.isnan(rec[0]) else f"{cell(prec, 0)} / {cell(rec, 0)}"
                lines.append(f"| {method} | {cell(_stat(rs, 'best_accuracy'))} | {cell(_stat(rs, 'last_accuracy'))} | "
                             f"{cell(_stat(rs, 'corrected'))} | {cell(_stat(rs, 'clean_broken'), 2)} | {flags} | "
                             f"{cell(_stat(rs, 'wall_time', 1.0), 0)} |")
        if dataset == "mnist1d":
            lines += ["", "Targets (issue #3, mean of the seeds above):", ""] + targets_report(runs, dataset, settings)
        lines.append("")
    lines += ["Base configurations (each method overrides a few fields, see `METHODS` in the script):", ""]
    for dataset in datasets:
        base = {k: v for k, v in dataclasses.asdict(DATASETS[dataset]).items() if k not in ("progress", "output", "seed")}
        lines += [f"- `{dataset}`: `{json.dumps(base)}`"]
    return "\n".join(lines) + "\n"


def plot(store: dict, cells: Dict[str, Config], datasets, settings, methods, out: Path, stem: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = _runs(store, cells)
    symmetric = [s for s in settings if s.startswith("symmetric")]
    fig, axes = plt.subplots(1, len(datasets), figsize=(7 * len(datasets), 4.8), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        palette = plt.get_cmap("tab20").colors
        for i, method in enumerate(m for m in methods if m != REFERENCE):
            color = palette[(2 * i) % 20 + (2 * i) // 20]  # the saturated tab20 colours first
            style = "-" if method.startswith("learned") or "meta" in method else "--"
            if symmetric:
                rates = [SETTINGS[s][1] * 100 for s in symmetric]
                acc = [_stat(runs[(dataset, s, method)], "last_accuracy") for s in symmetric]
                ax.errorbar(rates, [a[0] for a in acc], yerr=[a[1] for a in acc], color=color, ls=style,
                            marker="o", ms=4, capsize=2, label=method)
            if "asymmetric-40" in settings:
                a = _stat(runs[(dataset, "asymmetric-40", method)], "last_accuracy")
                ax.errorbar([42 + i * 0.4], [a[0]], yerr=[a[1]], color=color, marker="s", ms=5, capsize=2)
        if REFERENCE in methods:
            ax.axhline(_stat(runs[(dataset, "clean", REFERENCE)], "last_accuracy")[0], c="k", ls=":", label="clean labels")
        ax.set(xlabel="symmetric noise rate (%)   [squares: 40 % asymmetric]", ylabel="last-epoch test accuracy (%)",
               title=f"{dataset}: accuracy vs noise (mean ± std over seeds)")
        ax.legend(fontsize=6, loc="lower left")
    save_figure(fig, out / f"{stem}_accuracy.png")

    learned = [m for m in methods if m.startswith("learned") or m.startswith("self-ensemble")]
    shown = [s for s in ("symmetric-40", "asymmetric-40", "symmetric-80") if s in settings]
    if not learned or not shown:
        return
    fig, axes = plt.subplots(len(datasets), len(shown), figsize=(5 * len(shown), 3.8 * len(datasets)), squeeze=False)
    for row, dataset in enumerate(datasets):
        for ax, setting in zip(axes[row], shown):
            for i, method in enumerate(learned):
                rs = runs[(dataset, setting, method)]
                corr = np.array([[h.corrected * 100 for h in r.history] for r in rs]).mean(0)
                broken = np.array([[h.clean_broken * 100 for h in r.history] for r in rs]).mean(0)
                epochs = np.arange(1, len(corr) + 1)
                ax.plot(epochs, corr, color=f"C{i}", label=method)
                ax.plot(epochs, broken, color=f"C{i}", ls="--")
            ax.set(xlabel="epoch", ylabel="% of samples", title=f"{dataset}, {setting}: corrected (—), clean broken (--)")
            ax.legend(fontsize=6)
    save_figure(fig, out / f"{stem}_correction.png")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["mnist1d", "digits"], choices=list(DATASETS))
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="METHOD")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="override every dataset's epochs")
    parser.add_argument("--data-root", default=None, help="torchvision data (cifar10)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1, help="cells run at a time, one process each")
    parser.add_argument("--smoke", action="store_true", help="tiny data, 2 epochs, 1 seed, 2 settings")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)

    overrides = dict(device=args.device)
    if args.data_root:
        overrides["data_root"] = args.data_root
    if args.epochs:
        overrides["epochs"] = args.epochs
    settings, seeds = args.settings, args.seeds
    if args.smoke:
        settings, seeds = [s for s in settings if s in ("symmetric-40", "asymmetric-40")] or settings[:1], seeds[:1]
    stem = "noisy_labels_smoke" if args.smoke else "noisy_labels"
    out = Path(args.out)
    cells = plan(args.datasets, settings, args.methods, seeds, overrides, small=args.smoke)
    start = time.time()
    store = run_cells(cells, out / f"{stem}.json", args.jobs)
    command = "python benchmarks/noisy_labels.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report(store, cells, args.datasets, settings, args.methods, seeds, command.strip(), args.jobs)
    (out / f"{stem}.md").write_text(text)
    plot(store, cells, args.datasets, settings, args.methods, out, stem)
    print(text)
    print(f"({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
