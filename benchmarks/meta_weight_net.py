"""Why Meta-Weight-Net trails L2RW here (issue 26): its network's learning rate against the number of steps.

    python benchmarks/meta_weight_net.py --jobs 2     # MNIST-1D + digits, 40 % symmetric and flips, 3 seeds
    python benchmarks/meta_weight_net.py --smoke      # seconds; what the test suite runs

The paper trains its weight network with Adam at 1e-3 for the ~40 000 steps of CIFAR; a run here has
2 000-2 400 (MNIST-1D: 40 epochs of 59 batches). The hypothesis: at 1e-3 the network barely leaves its
start (every sample's weight about the same), so Meta-Weight-Net is cross-entropy with a little
reweighting. The cells vary only the network's Adam learning rate, on ``noisy_labels.py``'s data,
noise draws and seeds; L2RW and the default are read from ``noisy_labels.json`` (same configurations)
for reference. Chosen on the test set: an explanation, not a tuned baseline. Writes
``meta_weight_net.{json,md}`` under ``--out``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict

import harness
import noisy_labels as nl
from labelmeta.compare import cell

#: the network's Adam learning rate; 1e-3 is the paper's (and the benchmark's row)
RATES = [1e-4, 1e-3, 1e-2, 3e-2]
VARIANTS: Dict[str, dict] = {f"Meta-Weight-Net, network lr {lr:g}": dict(labels="one-hot", strategy="meta-weight-net",
                                                                         strategy_options=dict(lr=lr)) for lr in RATES}
#: read from noisy_labels.json, for reference
REFERENCES = ["meta-reweighting (L2RW, k=1 unroll)", nl.LEARNED, "cross-entropy"]
SETTINGS = ["symmetric-40", "asymmetric-40"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_jobs_argument(parser)
    parser.add_argument("--smoke", action="store_true", help="tiny data, 2 epochs, 1 seed, 1 setting")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    stem = "meta_weight_net_smoke" if args.smoke else "meta_weight_net"
    datasets, settings, seeds = (["digits"], SETTINGS[:1], [0]) if args.smoke else (["mnist1d", "digits"], SETTINGS, [0, 1, 2])
    out = Path(args.out)
    cells = nl.plan(datasets, settings, list(VARIANTS), seeds, {}, small=args.smoke, table=VARIANTS)
    start = time.time()
    store = harness.run_cells(cells, out / f"{stem}.json", args.jobs)
    runs = harness.group_runs(store, cells)
    reference_cells = nl.plan(datasets, settings, REFERENCES, seeds, {}, small=args.smoke)
    stored = harness.load_store(out / ("noisy_labels_smoke.json" if args.smoke else "noisy_labels.json"))
    done = {k: c for k, c in reference_cells.items() if harness.is_done(stored, k, c)}
    references = harness.group_runs(stored, done)
    command = "python benchmarks/meta_weight_net.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# Meta-Weight-Net: the network's learning rate", "",
             f"Command: `{command.strip()}`; seeds {seeds}; {harness.where(args.jobs, store['cells'].values())}. Last-epoch test accuracy (%), "
             "mean ± std over the seeds. The reference rows are cells of `noisy_labels.py` with the same "
             "configuration (– where that store lacks them). Chosen on the test set: this explains a gap, it "
             "does not tune a baseline.", ""]
    for dataset in datasets:
        lines += [f"## {dataset}", "", "| method | " + " | ".join(settings) + " |", "|---" * (len(settings) + 1) + "|"]
        for name in VARIANTS:
            lines.append(f"| {name} | " + " | ".join(cell(harness.stat(runs[(dataset, s, name)], "last_accuracy"),
                                                          spread=len(seeds) > 1) for s in settings) + " |")
        for name in REFERENCES:
            shown = [cell(harness.stat(references[(dataset, s, name)], "last_accuracy"), spread=len(seeds) > 1)
                     if (dataset, s, name) in references
                     else "–" for s in settings]
            lines.append(f"| {name} (stored) | " + " | ".join(shown) + " |")
        lines.append("")
    text = "\n".join(lines)
    (out / f"{stem}.md").write_text(text)
    print(text)
    print(f"({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
