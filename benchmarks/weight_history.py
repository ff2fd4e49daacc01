"""Which per-sample weight statistic finds the corrupted labels: the last visit's weight, or its history?

    python benchmarks/weight_history.py --jobs 2   # 3 seeds, MNIST-1D, the benchmark's configurations
    python benchmarks/weight_history.py --smoke    # seconds; what the test suite runs

The label-issue rule (:mod:`labelmeta.label_issues`) scored a weight-learning method by each
sample's weight at its *last* visit, one meta step's verdict. This script runs the weight-learning
rows of ``noisy_labels.py`` (the default, L2RW, the ablation with fixed one-hot labels) on MNIST-1D
with the values ``tuning.py`` chose, records every sample's weight at every visit (a
:class:`~labelmeta.hooks.RunHook`), and scores the corrupted-label detection of:

- *last weight*: zero at the last visit flags, ``1 - min(w, 1)`` ranks (the earlier rule, weights alone);
- *zero fraction*: the share of a sample's weighted visits at which its weight was zero, ranked,
  flagged above one half;
- *mean weight*: ``1 - min(mean w, 1)`` over all visits, flagged below one half.

Writes ``weight_history.{md,json}``. Research for issue 26: the zero fraction ranked best for every
row, and is the rule's weight term now (``kept = 1 - zero fraction``).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Callable, Dict

import torch

import harness
import noisy_labels
from common import run_arguments, write_outputs
from labelmeta import Config
from labelmeta.compare import cell, mean_std
from labelmeta.hooks import RunHook
from labelmeta.label_issues import LabelIssues
from labelmeta.runner import fit_learner

METHODS = [noisy_labels.LEARNED, noisy_labels.L2RW, "ablation: weights only (labels fixed; L2RW by one-step)"]
SETTINGS = ["symmetric-40", "asymmetric-40"]


class WeightHistory(RunHook):
    """Per training sample: how many of its visits had a weight and how many a zero one (the run's own
    counts, :class:`~labelmeta.checkpoint.RunState`'s ``weighed`` and ``rejected``), and, kept here, the
    sum of its weights and the last one (relative to uniform: 1 is an average sample)."""

    def __init__(self) -> None:
        self.state = self.total = self.last = None

    @property
    def visits(self) -> torch.Tensor:
        return self.state.weighed

    @property
    def zeros(self) -> torch.Tensor:
        return self.state.rejected

    def after_step(self, run, stats) -> None:
        if stats.sample_weights is None:
            return
        if self.total is None:
            n = len(run.splits.labels.noisy)
            self.state, self.total = run.state, torch.zeros(n, dtype=torch.float64)
            self.last = torch.ones(n, dtype=torch.float64)  # never weighed: an average sample
        index = stats.indices.cpu()
        w = stats.sample_weights.detach().double().cpu() * len(index)  # relative to uniform
        self.total[index] += w
        self.last[index] = w


def _detection(score: torch.Tensor, flagged: torch.Tensor, annotated: torch.Tensor, true: torch.Tensor) -> dict:
    issues = LabelIssues(score=score.double(), suggested=annotated, suggested_probability=torch.ones(len(score)),
                         annotated=annotated, flagged=flagged, true=true)
    s = issues.stats()
    return {"precision": s.precision, "recall": s.recall, "f1": s.f1, "average precision": s.average_precision}


#: rule name -> (suspicion score [N], flags [N]) of a weight history
RULES: Dict[str, Callable[[WeightHistory], tuple]] = {
    "last weight": lambda h: (1 - h.last.clamp(max=1), h.last == 0),
    "zero fraction": lambda h: (h.zeros / h.visits.clamp_min(1), h.zeros > h.visits / 2),
    "mean weight": lambda h: (1 - (h.total / h.visits.clamp_min(1)).clamp(max=1), h.total < h.visits / 2),
}


def history_cell(config: Config) -> dict:
    """One training run with its weight history; the detection of each rule in :data:`RULES`."""
    history, seen = WeightHistory(), {}

    def remember(learner, splits, record):
        seen["splits"] = splits

    _, results = fit_learner(config, on_epoch=remember, hooks=[history])
    annotated, true = seen["splits"].labels.noisy, seen["splits"].labels.true
    rules = {name: _detection(*rule(history), annotated, true) for name, rule in RULES.items()}
    return dict(config=dataclasses.asdict(config), last_accuracy=results.last_accuracy, rules=rules)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run_arguments(parser)
    harness.add_jobs_argument(parser)
    args = parser.parse_args(argv)
    seeds, settings = (args.seeds[:1], SETTINGS[:1]) if args.smoke else (args.seeds, SETTINGS)
    chosen = noisy_labels.load_chosen(Path(__file__).parent / "results" / "tuning.json")
    cells = noisy_labels.plan(["mnist1d"], settings, METHODS, seeds, {}, small=args.smoke, chosen=chosen)
    stem = "weight_history_smoke" if args.smoke else "weight_history"
    store = harness.run_cells(cells, Path(args.out) / f"{stem}.json", args.jobs, run=history_cell)

    command = "python benchmarks/weight_history.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# Finding corrupted labels from a method's weights: the last visit or the history", "",
             f"Command: `{command.strip()}`; seeds {seeds}; {harness.where(args.jobs, store['cells'].values())}. MNIST-1D, the rows of "
             "`noisy_labels.py` with the values `tuning.py` chose; corrupted-label detection (%) from the weights "
             "alone, mean ± std over seeds. Flags: *last weight* zero at the last visit; *zero fraction* zero at "
             "more than half of the visits; *mean weight* below one half of uniform. AP ranks by the same statistic.",
             "", "| setting | method | rule | test acc last (%) | precision | recall | F1 | AP |",
             "|---|---|---|---|---|---|---|---|"]
    for setting in settings:
        for method in METHODS:
            runs = [store["cells"][noisy_labels.cell_key("mnist1d", setting, method, s)] for s in seeds]
            accuracy = cell(mean_std([r["last_accuracy"] for r in runs]))
            for rule in RULES:
                values = [cell(mean_std([r["rules"][rule][k] for r in runs]), 0)
                          for k in ("precision", "recall", "f1", "average precision")]
                lines.append(f"| {setting} | {method} | {rule} | {accuracy} | " + " | ".join(values) + " |")
    report = "\n".join(lines) + "\n"
    write_outputs(Path(args.out), stem, report, store)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
