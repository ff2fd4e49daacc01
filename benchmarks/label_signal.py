"""Why the default labels also listen to the model: how much a per-sample hypergradient says.

    python benchmarks/label_signal.py --jobs 2   # 3 seeds, 40 epochs (resumable cells)
    python benchmarks/label_signal.py --smoke    # seconds; what the test suite runs

Trains meta-learned per-sample logits alone (label lr 1.0, constant: the earlier default) on
MNIST-1D with 40 % symmetric noise and, at epochs 10, 20 and 30, measures on every training sample:

- *one-step signal*: the exact k=1 hypergradient of the meta loss with respect to the sample's
  label distribution (full meta set); the share of corrupted samples for which it prefers the true
  class to the (wrong) annotation;
- *learned table*: the hard labels of the accumulated table, with the annotation favoured by a
  log-odds bonus beta (beta < 0 lowers the bar for changing a label): corrected / clean broken;
- *model*: the model's own prediction with the same bonus for the annotation.

Writes ``label_signal.{md,json}``.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from pathlib import Path
from typing import Dict, Iterable, List

import torch
import torch.nn.functional as F

import harness
from common import run_arguments, smoke, write_outputs
from labelmeta.compare import cell, mean_std
from labelmeta.data import loader
from labelmeta import Config
from labelmeta.runner import fit_learner
from labelmeta.strategies import Functional, MetaProblem, Strategy

CONFIG = Config(labels="per-sample", label_lr=1.0, label_schedule="constant", progress=False, strategy="one-step")
EPOCHS = (10, 20, 30)
BETAS = {"learned table": (0.0, -1.0), "model": (0.0, 1.0, 2.0)}


def measure(learner, splits, meta_size: int) -> Dict[str, float]:
    noisy, true = splits.labels.noisy, splits.labels.true
    corrupted = noisy != true
    meta = next(iter(loader(splits.meta, meta_size, shuffle=False)))
    prefer, logits_all = torch.zeros(len(noisy), dtype=torch.bool), torch.zeros(len(noisy), splits.num_classes)
    params = list(learner.labels.parameters())
    for batch in loader(splits.train, 128, shuffle=False):
        idx = batch[2]
        for p in params:
            p.grad = None
        Strategy(Functional(steps=1)).compute(MetaProblem(learner.model, learner.optimizer, learner.labels, batch, meta))
        probs = learner.labels(idx).detach()
        d = learner.labels.logits.grad[idx] / probs  # gradient w.r.t. the label distribution, centred
        prefer[idx] = d.gather(1, true[idx, None]).squeeze(1) < d.gather(1, noisy[idx, None]).squeeze(1)
        with torch.no_grad():
            learner.model.eval()
            logits_all[idx] = learner.model(batch[0])
            learner.model.train()
    for p in params:
        p.grad = None
    out = {"signal prefers the true class (% of corrupted)": prefer[corrupted].float().mean().item()}
    bonus = F.one_hot(noisy, splits.num_classes).float()
    scores = {"learned table": learner.labels.logits.detach(), "model": F.log_softmax(logits_all, 1)}
    for name, betas in BETAS.items():
        for beta in betas:
            hard = (scores[name] + beta * bonus).argmax(1)
            out[f"{name}, beta {beta:+g}: corrected"] = (hard[corrupted] == true[corrupted]).float().mean().item()
            out[f"{name}, beta {beta:+g}: clean broken"] = (hard[~corrupted] != true[~corrupted]).float().mean().item()
    return out


def signal_cell(config: Config, epochs: Iterable[int]) -> dict:
    """One training run, measured (:func:`measure`) at the end of each epoch in ``epochs``."""
    epochs = set(epochs)
    measured: Dict[str, Dict[str, float]] = {}

    def snapshot(learner, splits, record):
        if record.epoch in epochs:
            measured[str(record.epoch)] = measure(learner, splits, config.meta_batch_size)

    fit_learner(config, on_epoch=snapshot)
    return dict(config=dataclasses.asdict(config), epochs=measured)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run_arguments(parser)
    harness.add_jobs_argument(parser)
    args = parser.parse_args(argv)
    config, seeds, epochs = CONFIG, args.seeds, EPOCHS
    if args.smoke:
        config = smoke(config)
        seeds, epochs = seeds[:1], (1, 2)
    stem = "label_signal_smoke" if args.smoke else "label_signal"
    store = harness.run_cells({f"seed {s}": config.replace(seed=s) for s in seeds}, Path(args.out) / f"{stem}.json",
                              args.jobs, run=functools.partial(signal_cell, epochs=epochs),
                              complete=lambda key, stored: set(stored["epochs"]) == {str(e) for e in epochs})
    rows: Dict[int, List[Dict[str, float]]] = {e: [store["cells"][f"seed {s}"]["epochs"][str(e)] for s in seeds]
                                               for e in epochs}

    command = "python benchmarks/label_signal.py " + " ".join(argv if argv is not None else sys.argv[1:])
    keys = list(rows[epochs[0]][0])
    lines = ["# How much a per-sample hypergradient says", "",
             f"Command: `{command.strip()}`; seeds {seeds}; {harness.where(args.jobs, store['cells'].values())}. Meta-learned per-sample logits alone "
             "(label lr 1.0, constant), MNIST-1D, 40 % symmetric noise. Mean ± std over seeds, in %.", "",
             "| measure | " + " | ".join(f"epoch {e}" for e in epochs) + " |", "|---" * (len(epochs) + 1) + "|"]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(cell(mean_std([r[key] for r in rows[e]])) for e in epochs) + " |")
    report = "\n".join(lines) + "\n"
    write_outputs(Path(args.out), stem, report, {**store, "epochs": {str(e): r for e, r in rows.items()}})
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
