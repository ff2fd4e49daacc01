"""The candidates tried for issue 14's default before the full benchmark: labels and weights from one hypergradient.

    python benchmarks/default_candidates.py --jobs 2      # the stored report (minutes: resumable cells)
    python benchmarks/default_candidates.py --smoke       # seconds; what the test suite runs

Each candidate is a set of Config overrides of ``noisy_labels.py``'s base configurations, run by
:func:`labelmeta.fit` through that script's resumable cells (same data, noise draw and seeds).
The stages as they were run: every candidate on MNIST-1D (seed 0; the weights-only row is the
reference) at 20/40/80 % symmetric noise and 40 % flips, then the per-sample candidates on digits
(3 seeds, the 5 settings), where a cell takes seconds. The winner became the default and went into
``noisy_labels.py`` (3 seeds, both datasets, every method, and the ablation). A second round tried
what might beat it (an amortised corrector, relabelling instead of dropping, the GCE loss, binary
weights), on clean labels too, against the default in the same run. A third round (issue 26) tried
the label-correction network (``corrector``) on digits, its step and options; the step it chose
went into ``noisy_labels.py`` beside the untuned one. Writes
``default_candidates.{json,md}`` under ``--out``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import harness
import noisy_labels as nl
from labelmeta.compare import cell

WEIGHTS_ONLY = "weights only (one-hot labels, one-step-reweight)"
DEFAULT = "weights + per-sample labels (the default)"
#: candidate -> Config overrides (the base is noisy_labels.DATASETS[dataset])
CANDIDATES: Dict[str, dict] = {
    WEIGHTS_ONLY: dict(labels="one-hot", strategy="one-step-reweight"),
    "weights + per-sample-ensemble labels": dict(labels="per-sample-ensemble", strategy="one-step-reweight"),
    "weights + per-sample-ensemble labels, GCE loss, ensemble weight 1":
        dict(labels="per-sample-ensemble", strategy="one-step-reweight", loss="gce", label_options=dict(weight=1.0)),
    DEFAULT: dict(labels="per-sample", strategy="one-step-reweight"),
    "weights + per-sample labels, label lr 2.0": dict(labels="per-sample", strategy="one-step-reweight", label_lr=2.0),
    "weights + per-sample labels, scale 2": dict(labels="per-sample", strategy="one-step-reweight",
                                                 label_options=dict(scale=2.0)),
    "Meta-Weight-Net": dict(labels="one-hot", strategy="meta-weight-net"),
    # second round, after the default was chosen: the corrector the issue names first, relabelling
    # the samples the weights drop, the GCE loss under the weights, and binary weights
    "weights + ensemble-trust labels (amortised corrector)": dict(labels="ensemble-trust"),
    "weights + self-ensemble labels, not meta-learned (relabel what the weights drop)":
        dict(labels="per-sample-ensemble", label_lr=1e-9),
    "default + GCE loss": dict(loss="gce"),
    "weights only, GCE loss": dict(labels="one-hot", loss="gce"),
    "weights only, binary weights": dict(labels="one-hot", strategy_options=dict(weighting="binary")),
    "default, binary weights": dict(strategy_options=dict(weighting="binary")),
    "weights (binary) + ensemble-trust labels": dict(labels="ensemble-trust", strategy_options=dict(weighting="binary")),
}
#: tried on digits only (on MNIST-1D it was stopped after two settings, 3.2-5.9 points below the default)
GCE_RELABEL = "weights + self-ensemble labels, not meta-learned, GCE loss"
CANDIDATES[GCE_RELABEL] = dict(labels="per-sample-ensemble", label_lr=1e-9, loss="gce")
SECOND = [WEIGHTS_ONLY, DEFAULT] + [name for name in list(CANDIDATES)[7:] if name != GCE_RELABEL]
#: the third round (issue 26): the label-correction network (labelmeta.labels.Corrector) under the
#: weights, its step, its ensemble's momentum, its prior, its width, a longer warm-up, and without weights
CORRECTORS: Dict[str, dict] = {
    "weights + corrector labels": dict(labels="corrector"),
    "weights + corrector labels, label lr 0.2, momentum 0.9": dict(labels="corrector", label_lr=0.2,
                                                                   label_options=dict(momentum=0.9)),
    "weights + corrector labels, label lr 0.1": dict(labels="corrector", label_lr=0.1),
    "weights + corrector labels, label lr 0.1, momentum 0.9": dict(labels="corrector", label_lr=0.1,
                                                                   label_options=dict(momentum=0.9)),
    "weights + corrector labels, label lr 0.05": dict(labels="corrector", label_lr=0.05),
    "weights + corrector labels, scale 8": dict(labels="corrector", label_options=dict(scale=8.0)),
    "weights + corrector labels, label lr 0.1, hidden 16": dict(labels="corrector", label_lr=0.1,
                                                                label_options=dict(hidden=16)),
    "weights + corrector labels, label lr 0.1, 6 warm-up epochs": dict(labels="corrector", label_lr=0.1,
                                                                       warmup_epochs=6),
    "corrector labels alone (no weights)": dict(labels="corrector", strategy="one-step"),
}
CANDIDATES.update(CORRECTORS)
#: the noise settings of noisy_labels.py when these rounds ran
FIVE = ["symmetric-20", "symmetric-40", "symmetric-60", "symmetric-80", "asymmetric-40"]
#: the stages as run: (round, dataset, candidates, settings, seeds)
STAGES: List[Tuple[str, str, List[str], List[str], List[int]]] = [
    ("first round", "mnist1d", list(CANDIDATES)[:4], ["symmetric-20", "symmetric-40", "symmetric-80", "asymmetric-40"], [0]),
    ("first round", "digits", [WEIGHTS_ONLY, "Meta-Weight-Net", DEFAULT, "weights + per-sample labels, label lr 2.0",
                               "weights + per-sample labels, scale 2"], FIVE, [0, 1, 2]),
    # the second round, on clean labels too (the default must cost nothing there)
    ("second round", "mnist1d", SECOND, ["clean", "symmetric-20", "symmetric-40", "symmetric-80", "asymmetric-40"], [0]),
    ("second round", "digits", SECOND + [GCE_RELABEL], ["clean"] + FIVE, [0, 1, 2]),
    ("third round", "digits", [WEIGHTS_ONLY, DEFAULT] + list(CORRECTORS),
     ["symmetric-20", "symmetric-40", "symmetric-80", "asymmetric-40"], [0, 1, 2]),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1, help="cells run at a time, one process each")
    parser.add_argument("--smoke", action="store_true", help="tiny data, 2 epochs, 1 seed, 1 setting")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    stem = "default_candidates_smoke" if args.smoke else "default_candidates"
    stages = [(r, d, c, s[:1], seeds[:1]) for r, d, c, s, seeds in STAGES] if args.smoke else STAGES
    cells = {}
    for _, dataset, candidates, settings, seeds in stages:
        cells.update(nl.plan([dataset], settings, candidates, seeds, {}, small=args.smoke, table=CANDIDATES))
    start = time.time()
    store = harness.run_cells(cells, Path(args.out) / f"{stem}.json", args.jobs)
    runs = harness.group_runs(store, cells)
    command = "python benchmarks/default_candidates.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# Candidates for the default (issue 14)", "",
             f"Command: `{command.strip()}`. Last-epoch test accuracy (%), mean ± std over the seeds shown; "
             "*corr.* corrupted labels corrected, *broken* clean labels broken (%). The chosen candidate went "
             "into `noisy_labels.py` (3 seeds, every method, the ablation).", ""]
    for round_, dataset, candidates, settings, seeds in stages:
        lines += [f"## {dataset}, {round_}, seeds {seeds}", "", "| candidate | " + " | ".join(settings) + " |",
                  "|---|" + "---|" * len(settings)]
        for name in candidates:
            row = []
            for setting in settings:
                rs = runs[(dataset, setting, name)]
                acc, corr, broken = (harness.stat(rs, f) for f in ("last_accuracy", "corrected", "clean_broken"))
                shown = cell(acc, spread=len(rs) > 1)  # one seed: no spread to show
                row.append(shown + ("" if math.isnan(corr[0]) else f" (corr. {corr[0]:.0f}, broken {broken[0]:.1f})"))
            lines.append(f"| {name} | " + " | ".join(row) + " |")
        lines.append("")
    text = "\n".join(lines)
    (Path(args.out) / f"{stem}.md").write_text(text)
    print(text)
    print(f"({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
