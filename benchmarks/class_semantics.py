"""Do learned per-class labels find which classes resemble each other?

    python benchmarks/class_semantics.py --jobs 2   # 3 seeds (resumable cells)
    python benchmarks/class_semantics.py --smoke    # seconds; what the test suite runs

Check on ``digits-twins``: scikit-learn's digits with every class split at random into two
look-alike classes ``c`` and ``c + 10``, so the right neighbour of every class is known. Per-class
labels are learned (clean labels, meta batches from a held-out clean split) and each row's
largest off-diagonal entry is compared with the twin (chance: 1 in 19). The same labels are also
learned on MNIST-1D and drawn as class-similarity heat-maps. Writes ``class_semantics.{md,json,png}``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

import harness
from common import run_arguments, save_figure, smoke, write_outputs
from labelmeta.compare import cell, mean_std
from labelmeta.plots import plot_label_matrix
from labelmeta import Config
from labelmeta.build import splits_for
from labelmeta.runner import fit_learner

TWINS = Config(dataset="digits-twins", model="mlp", labels="per-class", noise="none", noise_rate=0.0,
               meta_per_class=10, meta_batch_size=200, batch_size=64, label_lr=2.0, progress=False, strategy="one-step")
MNIST1D = Config(labels="per-class", noise="none", noise_rate=0.0, label_lr=2.0, progress=False, strategy="one-step")


def twin_ranks(similarity: torch.Tensor) -> np.ndarray:
    """Rank (1 = largest) of each class's twin among its row's off-diagonal entries."""
    n = len(similarity)
    twins = (torch.arange(n) + n // 2) % n
    off = similarity.clone()
    off.fill_diagonal_(-1.0)
    order = off.argsort(dim=1, descending=True)
    return np.array([(order[i] == twins[i]).nonzero().item() + 1 for i in range(n)])


def twins_cell(config: Config) -> dict:
    """Per-class labels on digits-twins: where each class's twin ranks among its label's entries."""
    learner, result = fit_learner(config)
    similarity = learner.labels.similarity()
    ranks = twin_ranks(similarity)
    n = len(similarity)
    twin_mass = similarity[torch.arange(n), (torch.arange(n) + n // 2) % n]
    return dict(config=dataclasses.asdict(config), seed=config.seed, top1=float((ranks == 1).mean()),
                mean_rank=float(ranks.mean()), twin_mass=float(twin_mass.mean()), accuracy=result.last_accuracy,
                similarity=similarity.tolist())


def similarity_cell(config: Config) -> dict:
    """Per-class labels learned on ``config``'s data: the class-similarity matrix and the accuracy."""
    learner, result = fit_learner(config)
    return dict(config=dataclasses.asdict(config), accuracy=result.last_accuracy,
                similarity=learner.labels.similarity().tolist())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run_arguments(parser)
    harness.add_jobs_argument(parser)
    args = parser.parse_args(argv)
    twins_cfg, mnist_cfg, seeds = TWINS, MNIST1D, args.seeds
    if args.smoke:
        twins_cfg = twins_cfg.replace(epochs=2, warmup_epochs=1)
        mnist_cfg = smoke(mnist_cfg)
        seeds = seeds[:1]
    out = Path(args.out)
    stem = "class_semantics_smoke" if args.smoke else "class_semantics"
    path = out / f"{stem}.json"
    harness.run_cells({f"digits-twins | seed {s}": twins_cfg.replace(seed=s) for s in seeds}, path, args.jobs,
                      run=twins_cell)
    store = harness.run_cells({f"mnist1d | seed {seeds[0]}": mnist_cfg.replace(seed=seeds[0])}, path, args.jobs,
                              run=similarity_cell)
    twins_cells = [store["cells"][f"digits-twins | seed {s}"] for s in seeds]
    rows = [{k: c[k] for k in ("seed", "top1", "mean_rank", "twin_mass", "accuracy")} for c in twins_cells]
    mnist_cell = store["cells"][f"mnist1d | seed {seeds[0]}"]
    matrices = {"twins": torch.tensor(twins_cells[0]["similarity"]), "mnist1d": torch.tensor(mnist_cell["similarity"])}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(16, 7.5))
    plot_label_matrix(matrices["twins"], splits_for(twins_cfg).class_names, ax=axes[0],
                      title=f"digits-twins (c and c+10 look alike), seed {seeds[0]}")
    plot_label_matrix(matrices["mnist1d"], splits_for(mnist_cfg).class_names, ax=axes[1],
                      title=f"MNIST-1D, clean labels, seed {seeds[0]}")
    save_figure(fig, out / f"{stem}.png", dpi=110)

    command = "python benchmarks/class_semantics.py " + " ".join(argv if argv is not None else sys.argv[1:])
    top1 = mean_std([r["top1"] for r in rows])
    lines = ["# Class semantics from learned per-class labels", "",
             f"Command: `{command.strip()}`; seeds {seeds}; {harness.where(args.jobs, store['cells'].values())}.", "",
             "digits-twins (20 classes; class c and c + 10 are the same digit split at random): per-class "
             "labels learned with the exact one-step hypergradient (`one-step`) on clean labels. *Twin first*: "
             "share of classes whose largest off-diagonal label entry is their twin (chance 1/19 = 5.3 %).", "",
             "| seed | twin first (%) | mean rank of the twin (1 = first, of 19) | mean label mass on the twin | test acc (%) |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['top1'] * 100:.0f} | {r['mean_rank']:.2f} | {r['twin_mass']:.3f} | {r['accuracy'] * 100:.1f} |")
    lines += [f"| mean ± std | {cell(top1, 0)} | {cell(mean_std([r['mean_rank'] for r in rows], 1.0), 2)} | "
              f"{cell(mean_std([r['twin_mass'] for r in rows], 1.0), 3)} | {cell(mean_std([r['accuracy'] for r in rows]))} |",
              "", f"Heat-maps: `{stem}.png` (left: digits-twins; right: MNIST-1D, test accuracy "
              f"{mnist_cell['accuracy'] * 100:.1f} %).", ""]
    report = "\n".join(lines)
    write_outputs(out, stem, report, {**store, "twins": rows, "mnist1d_similarity": matrices["mnist1d"].tolist(),
                                      "twins_similarity": matrices["twins"].tolist()})
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
