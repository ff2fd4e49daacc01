"""The depth study: what each inner step changes in the hypergradient, what it buys, and what it costs.

    python benchmarks/unroll_depth.py --jobs 2    # quality on MNIST-1D snapshots, cost on the CNN,
                                                  # accuracy on digits; k = 1, 2, 4, 8, 16; seeds 0-2
    python benchmarks/unroll_depth.py --smoke     # seconds; what the test suite runs

Rows, for each depth k: the *exact* unroll (``functional``), the exact unroll *checkpointed* in
segments of ``ceil(sqrt(k))`` steps (same gradient, less memory), *truncated* back-propagation
through the last step (``truncated``, t = 1) and *one-step* (``one-step``: the same quantity as
truncated t = 1, by a Jacobian-vector product). The *implicit* rows (``implicit``: conjugate
gradient with several iteration counts, after ``k_max`` graph-free inner steps) do not depend on k:
the plots draw them as horizontal references.

1. **Quality.** Default training runs on MNIST-1D (one per seed) are stopped at a few epochs; on
   fixed training batches and a meta batch of each snapshot, every row's hypergradient with respect
   to the per-sample label logits is compared with a long-horizon reference, the exact unroll of
   ``4 k_max`` steps (checkpointed): cosine similarity and relative norm ``|g| / |g_ref|``.
2. **Cost.** One process, the same batch: median time of a full training step (meta + model step)
   in plain steps (round-robin rounds), and the peak CPU tensor memory of one step
   (``common.peak_cpu_bytes``); the memory exponent is the least-squares slope of log memory
   against log k (1: linear; below 1: sublinear).
3. **Accuracy.** ``labelmeta.fit`` on digits (noisy 40 % symmetric, and clean), per row, seeds.

Every row trains the default's target (``BACKEND:labels+weights``) in the cost and accuracy parts;
the quality part takes the ``labels`` target's gradient (the labels are what depth is about).
Writes ``unroll_depth.{md,json,png}`` under ``--out``.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import sys
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch

import harness
from common import (build, interleaved_times, machine, median, peak_cpu_bytes, peak_cuda_bytes, plain_step,
                    run_arguments, save_figure, smoke, timing_arguments, write_outputs)
from labelmeta import Config, Learner, make_label_optimizer, make_labels
from labelmeta.compare import cell, mean_std
from labelmeta.data import loader
from labelmeta.runner import fit_learner
from labelmeta.strategies import BACKENDS, STRATEGIES, MetaProblem, Strategy

#: the meta target the cost and accuracy rows train: the default's (learned labels and per-sample weights)
TARGET = "labels+weights"


def _segment(k: int) -> int:
    return math.ceil(math.sqrt(k))


#: row -> backend options at depth k (the rows that depend on k)
DEPTH_ROWS: Dict[str, Callable[[int], Tuple[str, dict]]] = {
    "exact": lambda k: ("functional", dict(steps=k)),
    "exact, checkpointed": lambda k: ("functional", dict(steps=k, checkpoint=_segment(k))),
    "truncated, t=1": lambda k: ("truncated", dict(steps=k, through=1)),
    "one-step": lambda k: ("one-step", dict(steps=k)),
}
#: rows measured for cost only (their gradient is another row's, or not a label hypergradient of depth k)
COST_ONLY = ("exact, checkpointed",)
#: conjugate-gradient iterations of the implicit rows, with ``DAMPING * I`` added to the Hessian (the
#: CNN's Hessian is indefinite in mid-training: undamped, CG stops at negative curvature within a few
#: products, which the undamped row shows)
ITERATIONS, DAMPING = (5, 20, 50), 1.0
#: training epochs at which the quality part takes its snapshots, and batches per snapshot
SNAPSHOTS, BATCHES = (5, 15, 30), 2


def implicit_rows(k_max: int, iterations=ITERATIONS) -> Dict[str, Tuple[str, dict]]:
    """The implicit rows: ``k_max`` graph-free inner steps, then ``i`` CG iterations (no early stop) on
    the Hessian damped by :data:`DAMPING`, and the most iterations on the Hessian undamped."""
    rows = {f"implicit, CG {i}, damping {DAMPING:g}": ("implicit", dict(steps=k_max, iterations=i, tolerance=0.0,
                                                                      damping=DAMPING)) for i in iterations}
    rows[f"implicit, CG {max(iterations)}, undamped"] = ("implicit", dict(steps=k_max, iterations=max(iterations),
                                                                          tolerance=0.0))
    return rows


# ---------------------------------------------------------------------------------------------
# 1. Quality against a long-horizon reference, on snapshots of a training run.

def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


def quality_cell(config: Config, ks: List[int], iterations: List[int], snapshots: List[int], batches: int) -> dict:
    """One training run's snapshots: each row's label hypergradient against the ``4 max(ks)``-step reference."""
    taken: Dict[int, tuple] = {}

    def snapshot(learner, splits, record):
        if record.epoch in snapshots:
            taken[record.epoch] = copy.deepcopy((learner.model, learner.optimizer, learner.labels)) + (splits,)

    fit_learner(config, on_epoch=snapshot)
    k_ref = 4 * max(ks)
    rows = {f"{name}, k={k}": DEPTH_ROWS[name](k) for name in DEPTH_ROWS if name not in COST_ONLY for k in ks}
    rows.update(implicit_rows(max(ks), iterations))
    reference = BACKENDS.build("functional", options=dict(steps=k_ref, checkpoint=_segment(k_ref)))
    out: Dict[str, Dict[str, list]] = {name: {"cosine": [], "norm": [], "iterations": []} for name in rows}
    for epoch in snapshots:
        model, optimizer, labels, splits = taken[epoch]
        model.train()
        meta = next(iter(loader(splits.meta, config.meta_batch_size, shuffle=True, seed=config.seed + 1)))
        train = iter(loader(splits.train, config.batch_size, shuffle=True, seed=config.seed + epoch))
        for _ in range(batches):
            batch = next(train)
            problem = MetaProblem(model, optimizer, labels, batch, meta, loss=config.loss)
            rows_of = batch[2]

            def label_gradient(backend) -> torch.Tensor:
                _, [grad] = backend.hypergradient(problem, [labels.logits])
                return grad[rows_of]

            ref = label_gradient(reference)
            for name, (backend_name, options) in rows.items():
                backend = BACKENDS.build(backend_name, options=options)
                grad = label_gradient(backend)
                out[name]["cosine"].append(_cosine(grad, ref))
                out[name]["norm"].append(float(grad.norm() / ref.norm()))
                solve = getattr(backend, "last_solve", None)
                out[name]["iterations"].append(solve.iterations if solve is not None else float("nan"))
    return {"config": dataclasses.asdict(config), "k_ref": k_ref, "rows": out}


# ---------------------------------------------------------------------------------------------
# 2. Cost per training step.

def _strategy(backend: str, options: dict) -> Strategy:
    return STRATEGIES.build(f"{backend}:{TARGET}", options=options)


def cost(model_name: str, ks: List[int], iterations: List[int], device: str, batch_size: int, repeats: int,
         warmup: int) -> Dict[str, dict]:
    """Median seconds per full step (in plain steps) and peak memory, per row and k; the implicit rows once."""
    batch, meta, targets, classes, model_and_optimizer = build(model_name, device, batch_size)
    model, opt = model_and_optimizer()

    def learner_step(backend: str, options: dict) -> Callable[[], None]:
        m, o = model_and_optimizer()
        labels = make_labels(Config.labels, targets, classes).to(device)
        learner = Learner(m, o, labels, _strategy(backend, options), make_label_optimizer("mirror", labels.parameters(), 0.5))
        return lambda: learner.step(batch, meta)

    def memory(step: Callable[[], None]) -> int:
        return peak_cuda_bytes(step, device) if device.startswith("cuda") else peak_cpu_bytes(step)

    plain = plain_step(model, opt, batch)
    out: Dict[str, dict] = {name: {"k": ks, "seconds": [], "memory": []} for name in DEPTH_ROWS}
    plain_times: List[float] = []
    for k in ks:
        steps: Dict[str, Callable[[], None]] = {"plain": plain}
        steps.update({name: learner_step(*row(k)) for name, row in DEPTH_ROWS.items()})
        times = interleaved_times(steps, repeats, warmup, device)
        plain_times += times["plain"]
        for name in DEPTH_ROWS:
            out[name]["seconds"].append(median(times[name]))
            out[name]["memory"].append(memory(steps[name]))
    implicit = {name: learner_step(*row) for name, row in implicit_rows(max(ks), iterations).items()}
    times = interleaved_times({"plain": plain, **implicit}, repeats, warmup, device)
    plain_times += times["plain"]
    for name, step in implicit.items():
        out[name] = {"seconds": median(times[name]), "memory": memory(step)}
    plain_s = median(plain_times)
    for name, row in out.items():
        if "k" not in row:
            row["ratio"] = row["seconds"] / plain_s
            continue
        row["ratio"] = [s / plain_s for s in row["seconds"]]
        slope, intercept = np.polyfit(ks, row["ratio"], 1) if len(ks) > 1 else (float("nan"), row["ratio"][0])
        row["slope_plain_steps_per_k"], row["intercept"] = float(slope), float(intercept)
        row["memory_exponent"] = (float(np.polyfit(np.log(ks), np.log(row["memory"]), 1)[0])
                                  if len(ks) > 1 and min(row["memory"]) > 0 else float("nan"))
    out["plain"] = {"seconds": plain_s}
    return out


# ---------------------------------------------------------------------------------------------
# 3. Accuracy after training.

#: accuracy settings: name -> Config overrides
SETTINGS = {"noisy (40 % symmetric)": dict(noise="symmetric", noise_rate=0.4),
            "clean": dict(noise="none", noise_rate=0.0)}
#: accuracy base per dataset: the defaults (labels, label lr, meta batch), sizes scaled to the data
#: (per-sample labels: the default when the study ran, whose labels learn from the first meta step)
ACCURACY_BASE = {"digits": Config(dataset="digits", model="mlp", meta_per_class=10, meta_batch_size=100, batch_size=64,
                                  labels="per-sample"),
                 "mnist1d": Config(labels="per-sample")}


def accuracy_variants(ks: List[int], truncations: List[int]) -> Dict[str, dict]:
    """Row name -> Config overrides of the accuracy part."""
    k_max = max(ks)
    variants = {f"exact k={k}": dict(strategy=f"functional:{TARGET}", strategy_options=dict(steps=k)) for k in ks}
    variants.update({f"truncated k={k_max}, t={t}": dict(strategy=f"truncated:{TARGET}",
                                                         strategy_options=dict(steps=k_max, through=t))
                     for t in truncations if t < k_max})
    # the row as first run, undamped (stored cells), and on the Hessian damped as the quality and cost rows
    # are (issue 36): undamped, CG stops at the CNN's negative curvature within a few products
    variants[f"implicit, CG 20 (k={k_max} inner steps)"] = dict(
        strategy=f"implicit:{TARGET}", strategy_options=dict(steps=k_max, iterations=20, tolerance=0.0))
    variants[f"implicit, CG 20, damping {DAMPING:g} (k={k_max} inner steps)"] = dict(
        strategy=f"implicit:{TARGET}", strategy_options=dict(steps=k_max, iterations=20, tolerance=0.0,
                                                             damping=DAMPING))
    variants["cross-entropy (no meta-learning)"] = dict(labels="one-hot", strategy="none")
    return variants


def accuracy(dataset: str, ks: List[int], truncations: List[int], seeds: List[int], overrides: dict,
             settings: List[str], store_path: Path, jobs: int) -> Tuple[dict, Dict[str, dict]]:
    """``fit`` results per setting and row, mean ± std over seeds, through the resumable store at
    ``store_path``: ``(store, "setting | row" -> figures)``."""
    base = ACCURACY_BASE[dataset].replace(progress=False, **overrides)
    methods = {f"{setting} | {name}": {**noise, **changes} for setting, noise in SETTINGS.items()
               if setting.split(" ")[0] in settings for name, changes in accuracy_variants(ks, truncations).items()}
    store, results = harness.compare(base, methods, seeds, store_path, jobs)
    out = {name: dict(last=mean_std([r.last_accuracy for r in runs]), best=mean_std([r.best_accuracy for r in runs]),
                      corrected=mean_std([r.corrected for r in runs]), broken=mean_std([r.clean_broken for r in runs]),
                      seconds=mean_std([r.wall_time for r in runs], 1.0))
           for name, runs in results.items()}
    return store, out


# ---------------------------------------------------------------------------------------------
# Report and plots.

def summarise_quality(cells: List[dict]) -> Dict[str, dict]:
    """Row -> mean ± std (over seeds, snapshots and batches) of the cosine, the relative norm and CG's iterations."""
    rows = cells[0]["rows"]
    return {name: {measure: mean_std([v for c in cells for v in c["rows"][name][measure]], 1.0)
                   for measure in ("cosine", "norm", "iterations")} for name in rows}


def plot(quality: Dict[str, dict], costs: Dict[str, dict], acc: Dict[str, dict], ks: List[int], k_max: int,
         path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(17, 9))
    implicit = [n for n in quality if n.startswith("implicit")]
    styles = dict(zip(implicit, (":", "--", "-.", (0, (1, 4)))))

    def references(ax, values: Dict[str, float]) -> None:
        for name, value in values.items():
            ax.axhline(value, ls=styles.get(name, ":"), c="grey", lw=1, label=name)

    for name in DEPTH_ROWS:
        if name in COST_ONLY:
            continue
        for ax, measure in ((axes[0, 0], "cosine"), (axes[0, 1], "norm")):
            stats = [quality[f"{name}, k={k}"][measure] for k in ks]
            ax.errorbar(ks, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", capsize=2, label=name)
    references(axes[0, 0], {n: quality[n]["cosine"][0] for n in implicit})
    references(axes[0, 1], {n: quality[n]["norm"][0] for n in implicit})
    axes[0, 0].set(xscale="log", xlabel="inner steps k", ylabel="cosine similarity",
                   title="label hypergradient vs the 4·k_max-step unroll")
    axes[0, 1].set(xscale="log", yscale="log", xlabel="inner steps k", ylabel="|g| / |g_ref|", title="relative norm")
    for name in DEPTH_ROWS:
        axes[0, 2].plot(ks, costs[name]["ratio"], marker="o", label=name)
        axes[1, 0].plot(ks, [m / 2**20 for m in costs[name]["memory"]], marker="o", label=name)
    references(axes[0, 2], {n: costs[n]["ratio"] for n in implicit})
    references(axes[1, 0], {n: costs[n]["memory"] / 2**20 for n in implicit})
    axes[0, 2].set(xscale="log", yscale="log", xlabel="inner steps k", ylabel="full step / plain step",
                   title="time per training step (median)")
    axes[1, 0].set(xscale="log", yscale="log", xlabel="inner steps k", ylabel="MB", title="peak memory of one step")
    exact_rows = [f"exact k={k}" for k in ks]
    implicit = [n.split(" | ")[1] for n in acc if " | implicit" in n]
    implicit_row = next((n for n in implicit if "damping" in n), implicit[0] if implicit else None)  # the damped one
    for setting in SETTINGS:
        if f"{setting} | {exact_rows[0]}" not in acc:
            continue
        for ax, measure in ((axes[1, 1], "last"), (axes[1, 2], "corrected")):
            if measure == "corrected" and setting == "clean":
                continue
            stats = [acc[f"{setting} | {row}"][measure] for row in exact_rows]
            line = ax.errorbar(ks, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", capsize=2,
                               label=f"{setting}: exact")
            if implicit_row is not None:
                ax.axhline(acc[f"{setting} | {implicit_row}"][measure][0], ls="--", c=line[0].get_color(),
                           label=f"{setting}: {implicit_row}")
            if measure == "last":
                ax.axhline(acc[f"{setting} | cross-entropy (no meta-learning)"]["last"][0], ls=":",
                           c=line[0].get_color(), label=f"{setting}: cross-entropy")
    axes[1, 1].set(xscale="log", xlabel="inner steps k", ylabel="last-epoch test accuracy (%)",
                   title="accuracy after training (mean ± std)")
    axes[1, 2].set(xscale="log", xlabel="inner steps k", ylabel="corrupted labels corrected (%)",
                   title="labels corrected after training")
    for ax in axes.flat:
        ax.set_xticks(ks, [str(k) for k in ks]) if ax.get_xscale() == "log" else None
        ax.legend(fontsize=7)
    fig.suptitle(f"Unroll depth (implicit rows: {k_max} graph-free inner steps, then conjugate gradient)")
    save_figure(fig, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--truncations", type=int, nargs="+", default=[1, 4], help="t for truncated runs at the largest k")
    parser.add_argument("--cost-model", default="cnn1d-bn")
    parser.add_argument("--accuracy-dataset", default="digits", choices=list(ACCURACY_BASE))
    parser.add_argument("--settings", nargs="+", default=["noisy", "clean"], choices=["noisy", "clean"])
    timing_arguments(parser, repeats=20)
    run_arguments(parser)
    harness.add_jobs_argument(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides: dict = {"device": args.device}
    ks, seeds, repeats, batch, truncations = args.ks, args.seeds, args.repeats, args.batch_size, args.truncations
    iterations, snapshots, batches = list(ITERATIONS), list(SNAPSHOTS), BATCHES
    quality_config = Config(labels="per-sample", progress=False, device=args.device)
    if args.smoke:
        ks, seeds, repeats, batch, truncations = [1, 2], seeds[:1], 2, 16, [1]
        iterations, snapshots, batches = [2], [1, 2], 1
        overrides.update(epochs=2, warmup_epochs=1)
        # snapshots before the last epoch: the cosine schedule ends at a learning rate of 0 (no gradient)
        quality_config = smoke(quality_config).replace(epochs=3)
    stem = "unroll_depth" + ("" if args.accuracy_dataset == "digits" else f"_{args.accuracy_dataset}")
    stem += "_smoke" if args.smoke else ""
    out = Path(args.out)
    store_path = out / f"{stem}.json"
    quality_cells = {f"quality | seed {s}": quality_config.replace(seed=s) for s in seeds}
    harness.run_cells(quality_cells, store_path, args.jobs,
                      run=_QualityRun(ks, iterations, snapshots, batches),
                      complete=lambda key, stored: stored.get("k_ref") == 4 * max(ks)
                      and set(stored["rows"]) == set(_quality_rows(ks, iterations)))
    store, acc = accuracy(args.accuracy_dataset, ks, truncations, seeds, overrides, args.settings, store_path,
                          args.jobs)
    quality = summarise_quality([store["cells"][key] for key in quality_cells])
    costs = cost(args.cost_model, ks, iterations, args.device, batch, repeats, warmup=2)
    report = _report(argv, args, ks, seeds, batch, repeats, quality, costs, acc, quality_config, snapshots, batches,
                     store['cells'].values())
    write_outputs(out, stem, report, {**store, "quality": quality, "cost": costs, "accuracy": acc,
                                      "machine": machine(args.device)})
    plot(quality, costs, acc, ks, max(ks), out / f"{stem}.png")
    print(report)
    return 0


def _quality_rows(ks: List[int], iterations: List[int]) -> List[str]:
    return ([f"{name}, k={k}" for name in DEPTH_ROWS if name not in COST_ONLY for k in ks]
            + list(implicit_rows(max(ks), iterations)))


class _QualityRun:
    """:func:`quality_cell` with the study's settings, as a picklable callable for the harness's workers."""

    def __init__(self, ks, iterations, snapshots, batches) -> None:
        self.args = (list(ks), list(iterations), list(snapshots), batches)

    def __call__(self, config: Config) -> dict:
        return quality_cell(config, *self.args)


def _report(argv, args, ks, seeds, batch, repeats, quality, costs, acc, quality_config, snapshots, batches, cells) -> str:
    command = "python benchmarks/unroll_depth.py " + " ".join(argv if argv is not None else sys.argv[1:])
    k_max = max(ks)
    lines = ["# Unroll depth", "", f"Command: `{command.strip()}`; {machine(args.device)}; {harness.where(args.jobs, cells)}.",
             "", "## Hypergradient quality against a long-horizon reference", "",
             f"{quality_config.dataset}, the default configuration ({quality_config.epochs} epochs), seeds {seeds}; "
             f"snapshots at epochs {snapshots}, {batches} training batch(es) each, one meta batch. Each cell: the "
             f"cosine similarity of the row's label hypergradient to that of the exact {4 * k_max}-step unroll "
             "(checkpointed), then its relative norm |g| / |g_ref|; mean ± std over seeds × snapshots × batches. "
             f"Truncated t=1 and one-step compute the same quantity two ways. The implicit rows take {k_max} "
             "graph-free inner steps, then conjugate gradient for the inverse-Hessian-vector product, on the "
             f"Hessian plus {DAMPING:g}·I, and undamped (no early stop; CG stops at a direction of negative "
             "curvature, *iterations* says when).", "",
             "| row | " + " | ".join(f"k={k}" for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]
    for name in DEPTH_ROWS:
        if name in COST_ONLY:
            continue
        values = [quality[f"{name}, k={k}"] for k in ks]
        lines.append(f"| {name} | " + " | ".join(f"{cell(v['cosine'], 3)} ({cell(v['norm'], 2)})" for v in values) + " |")
    lines += ["", "| implicit row | cosine | relative norm | CG iterations taken |", "|---|---|---|---|"]
    for name, v in quality.items():
        if name.startswith("implicit"):
            lines.append(f"| {name} | {cell(v['cosine'], 3)} | {cell(v['norm'], 2)} | {cell(v['iterations'], 1)} |")
    lines += ["", f"## Cost per training step ({args.cost_model}, batch {batch}, meta batch the same size)", "",
              f"Median of {repeats} round-robin rounds; plain step {costs['plain']['seconds'] * 1e3:.2f} ms. Slope: extra "
              "time per extra inner step, in plain steps (least squares over k). Memory: "
              + ("the peak of CPU tensors alive during one step (the profiler's memory timeline)"
                 if args.device == "cpu" else "peak CUDA allocation")
              + "; exponent: the slope of log memory against log k (1 is linear growth).", "",
              "| row | " + " | ".join(f"k={k}" for k in ks) + " | slope (plain steps / k) | memory k=1 → k=max (MB) "
              "| memory exponent |", "|---" * (len(ks) + 4) + "|"]
    for name in DEPTH_ROWS:
        row = costs[name]
        lines.append(f"| {name} | " + " | ".join(f"{r:.2f}×" for r in row["ratio"]) +
                     f" | {row['slope_plain_steps_per_k']:.2f} | {row['memory'][0] / 2**20:.2f} → "
                     f"{row['memory'][-1] / 2**20:.2f} | {row['memory_exponent']:.2f} |")
    lines += ["", "| implicit row | full step / plain step | memory (MB) |", "|---|---|---|"]
    for name, row in costs.items():
        if name.startswith("implicit"):
            lines.append(f"| {name} | {row['ratio']:.2f}× | {row['memory'] / 2**20:.2f} |")
    lines += ["", f"## Accuracy ({args.accuracy_dataset}, {len(seeds)} seed(s): {seeds}; mean ± std)", "",
              f"Strategy `BACKEND:{TARGET}` (the default's target), the default labels `{Config.labels}`.", "",
              "| setting | row | test acc last (%) | test acc best (%) | corrupted corrected (%) | clean broken (%) | wall time (s) |",
              "|---|---|---|---|---|---|---|"]
    for key, r in acc.items():
        setting, name = key.split(" | ")
        lines.append(f"| {setting} | {name} | {cell(r['last'])} | {cell(r['best'])} | {cell(r['corrected'])} | "
                     f"{cell(r['broken'], 2)} | {cell(r['seconds'], 0)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
