"""Hyper-parameters chosen off the test set, with one search budget for every method (issue 26, part 4).

    python benchmarks/tuning.py --jobs 2      # MNIST-1D + digits, 40 % symmetric and 40 % flips, 2 seeds
    python benchmarks/tuning.py --smoke       # seconds; what the test suite runs

The protocol, the same for every tuned row of ``benchmarks/noisy_labels.py`` (the default included):

- one knob per method, its own main hyper-parameter (the model's learning rate for a method that has
  none), searched over ``nl.BUDGET`` values (``nl.SEARCH``), the value the benchmark used before among them;
- every run holds out half of each class's clean meta samples as a validation split
  (``Config.validation_per_class``) and reports its accuracy on them; the method gets the other half
  as its clean set. The test set is never read;
- the runs use the tuning seeds ``TUNING_SEEDS``: other splits and noise draws than the benchmark's
  seeds 0-2;
- a value's score is its last-epoch validation accuracy, averaged over the tuning seeds; the best
  scores wins (of equal scores, the first listed);
- the choice on symmetric-40 serves every symmetric column (small-clean-40 included) and the
  instance-dependent ones (no search ran on those), the choice on asymmetric-40 the class-flip column
  (``nl.FAMILY``).

``benchmarks/noisy_labels.py`` reads the choices (``chosen``) from ``tuning.json``. Resumable like every
harness script. Writes ``tuning.{json,md}`` and ``tuning.png`` (validation accuracy against each value)
under ``--out``.
"""
from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Mapping, Tuple

import confident_learning
import harness
import noisy_labels as nl
from common import save_figure
from labelmeta import Config
from labelmeta.compare import cell

#: the seeds the search runs on (the benchmark's are 0-2)
TUNING_SEEDS = [10, 11]


def variant(method: str, value: str) -> str:
    return f"{method} @ {nl.SEARCH[method][0]} {value}"


def plan(datasets: List[str], columns: List[str], methods: List[str], seeds: List[int],
         small: bool = False) -> Tuple[Dict[str, Config], dict]:
    """The validation cells: ``(key -> Config, key -> runner)``, keyed by ``noisy_labels.cell_key`` with
    the variant (``"method @ knob value"``) as the method."""
    table, options = {}, {}
    for method in methods:
        for value, tuned in nl.SEARCH[method][1].items():
            table[variant(method, value)], options[variant(method, value)] = \
                nl.split_runner_options(nl.merge(nl.METHODS[method], tuned))
    cells, runners = {}, {}
    for dataset in datasets:
        planned = nl.plan([dataset], columns, list(table), seeds, {}, small=small, table=table)
        for key, config in planned.items():
            # half of the clean set validates (the small-clean columns are served by symmetric-40's choice)
            cells[key] = config.replace(validation_per_class=config.meta_per_class // 2)
            name = key.split(" | ")[2]
            if name.split(" @ ")[0] in nl.RUNNERS:
                runners[key] = functools.partial(nl.RUNNERS[name.split(" @ ")[0]], **options[name])
    return dict(sorted(cells.items(), key=lambda kv: kv[0].split(" | ")[3])), runners  # seed-major


def scores(store: dict, cells: Dict[str, Config]) -> Dict[Tuple[str, str, str, str], Tuple[float, float]]:
    """``(dataset, column, method, value) -> (mean, std)`` of the last-epoch validation accuracy (%)."""
    out = {}
    for (dataset, column, name), runs in harness.group_runs(store, cells).items():
        method, value = name.split(" @ ")
        out[dataset, column, method, value.split(" ")[-1]] = harness.stat(runs, "last_accuracy")
    return out


def choose(found: Mapping[Tuple[str, str, str, str], Tuple[float, float]]) -> Dict[str, Dict[str, Dict[str, str]]]:
    """``dataset -> column -> method -> the chosen value``: the best mean; of equal means the incumbent
    (no change without evidence), else the first listed."""
    chosen: Dict[str, Dict[str, Dict[str, str]]] = {}
    for (dataset, column, method, _) in found:
        _, table, incumbent = nl.SEARCH[method]
        values = list(table)
        if all((dataset, column, method, v) in found for v in values):
            best = max(values, key=lambda v: (found[dataset, column, method, v][0], v == incumbent, -values.index(v)))
            chosen.setdefault(dataset, {}).setdefault(column, {})[method] = best
    return chosen


def report(found, chosen, datasets, columns, methods, seeds, command: str, jobs: int, cells=None) -> str:
    lines = ["# Hyper-parameters chosen on a validation split", "",
             f"Command: `{command}`; tuning seeds {seeds}; {harness.where(jobs, cells)}. Every method searches one knob "
             f"over {nl.BUDGET} values (the same budget for all); each run holds out half of each class's clean meta "
             "samples as its validation split and trains with the other half as its clean set; the score is the "
             "last-epoch validation accuracy (%), mean ± std over the tuning seeds. The test set is never read. "
             "**Bold**: the chosen value (the best mean; of equal means the incumbent, else the first listed); "
             "°: the incumbent, the value the benchmark ran before (its paper's, or our default). The choice on "
             "symmetric-40 serves every symmetric column of `noisy_labels.py` (small-clean-40 included), the "
             "choice on asymmetric-40 its flips column.", ""]
    for dataset in datasets:
        lines += [f"## {dataset}", "", "| method | knob | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
        for method in methods:
            knob, values, incumbent = nl.SEARCH[method]
            row = []
            for column in columns:
                pick = chosen.get(dataset, {}).get(column, {}).get(method)
                parts = []
                for v in values:
                    got = found.get((dataset, column, method, v))
                    text = f"{v}{'°' if v == incumbent else ''}: " + ("–" if got is None else cell(got))
                    parts.append(f"**{text}**" if v == pick else text)
                row.append("<br>".join(parts))
            lines.append(f"| {method} | {knob} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def plot(found, chosen, datasets, columns, methods, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(datasets), len(columns), figsize=(6 * len(columns), 4.2 * len(datasets)),
                             squeeze=False)
    for row, dataset in enumerate(datasets):
        for ax, column in zip(axes[row], columns):
            for i, method in enumerate(methods):
                values = list(nl.SEARCH[method][1])
                got = [found.get((dataset, column, method, v), (math.nan, math.nan)) for v in values]
                x = range(len(values))
                ax.errorbar(x, [g[0] for g in got], yerr=[g[1] for g in got], color=plt.get_cmap("tab20").colors[i % 20],
                            marker="o", ms=3, capsize=2, lw=2.5 if method == nl.LEARNED else 1.2, label=method)
                pick = chosen.get(dataset, {}).get(column, {}).get(method)
                if pick is not None:
                    j = values.index(pick)
                    ax.plot([j], [got[j][0]], marker="*", ms=11, color=plt.get_cmap("tab20").colors[i % 20], mec="k")
            ax.set(xticks=range(nl.BUDGET), xticklabels=["1st", "2nd", "3rd", "4th"][:nl.BUDGET],
                   xlabel="value of the method's knob (in the order of tuning.md; ★ chosen)",
                   ylabel="last-epoch validation accuracy (%)", title=f"{dataset}, {column}")
            ax.legend(fontsize=5, loc="lower left")
    save_figure(fig, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["mnist1d", "digits"], choices=["mnist1d", "digits"])
    parser.add_argument("--methods", nargs="+", default=list(nl.SEARCH), choices=list(nl.SEARCH), metavar="METHOD")
    harness.add_jobs_argument(parser)
    parser.add_argument("--smoke", action="store_true", help="tiny data, 2 epochs, 1 seed, 1 column")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    columns, seeds = (list(nl.FAMILY)[:1], TUNING_SEEDS[:1]) if args.smoke else (list(nl.FAMILY), TUNING_SEEDS)
    datasets = ["digits"] if args.smoke else args.datasets
    stem = "tuning_smoke" if args.smoke else "tuning"
    out = Path(args.out)
    if any(m in nl.RUNNERS for m in args.methods):
        confident_learning.import_cleanlab()
    cells, runners = plan(datasets, columns, args.methods, seeds, small=args.smoke)
    start = time.time()
    store = harness.run_cells(cells, out / f"{stem}.json", args.jobs, runners=runners,
                              complete=nl.ran_as_planned(runners))
    found = scores(store, cells)
    chosen = choose(found)
    store["chosen"] = chosen
    harness.save_store(out / f"{stem}.json", store)
    command = "python benchmarks/tuning.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report(found, chosen, datasets, columns, args.methods, seeds, command.strip(), args.jobs,
                  [store['cells'][key] for key in cells])
    (out / f"{stem}.md").write_text(text)
    plot(found, chosen, datasets, columns, args.methods, out / f"{stem}.png")
    print(text)
    print(f"({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
