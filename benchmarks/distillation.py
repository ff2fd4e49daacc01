"""Are learned labels better teachers? Students distilled from one-hot, smoothing and learned-label teachers.

    python benchmarks/distillation.py --jobs 2    # 5 seeds, MNIST-1D (clean labels); resumable
    python benchmarks/distillation.py --smoke     # seconds; what the test suite runs

Teachers (``TEACHERS``): the 1-D CNN on clean MNIST-1D (all training samples) trained with one-hot
labels, with label smoothing at every epsilon of ``EPSILONS``, and with learned labels
(``LEARNED``: the exact one-step hypergradient, meta batches from the training data, the
configurations ``clean_labels.py`` compares). Every teacher's tempered predictions train the MLP
student by :func:`labelmeta.distill.fit_student` (``alpha T^2 KL + (1 - alpha) CE``) at every
temperature ``T`` in ``TEMPERATURES`` and every ``alpha`` in ``ALPHAS``; the MLP with plain
cross-entropy is the floor. Each teacher family (one-hot, smoothing, learned) is reported at its
best (teacher, T, alpha) by mean last-epoch student test accuracy (on the test set: an optimistic
pick, made alike for every family), with the student's calibration. Same data and seed for every
row. One cell is a teacher and its students for one seed, run through the harness's resumable
store (``distillation.json``: a rerun skips the finished cells). Writes ``distillation.{md,json,png}``.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

import harness
from common import smoke
from labelmeta import Config, Results
from labelmeta.compare import cell, mean_std

BASE = Config(noise="none", noise_rate=0.0, meta_per_class=0, meta_source="train", progress=False,
              labels="per-sample")
EPSILONS = (0.05, 0.1, 0.2, 0.3)
ONE_HOT = "one-hot"
TEACHERS: Dict[str, dict] = {ONE_HOT: dict(labels="one-hot", strategy="none")}
TEACHERS.update({f"label smoothing {eps}": dict(labels="smoothing", label_options=dict(smoothing=eps), strategy="none")
                 for eps in EPSILONS})
LEARNED: Dict[str, dict] = {
    "learned per-class": dict(labels="per-class", label_lr=2.0, strategy="one-step"),
    "learned class-temperature": dict(labels="class-temperature", strategy="one-step"),
    "learned per-sample": dict(labels="per-sample", strategy="one-step"),
}
TEACHERS.update(LEARNED)
FAMILIES = {"one-hot": [ONE_HOT], "label smoothing": [t for t in TEACHERS if t.startswith("label smoothing")],
            "learned labels": list(LEARNED)}
TEMPERATURES = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
ALPHAS = (0.5, 0.9, 1.0)
STUDENT = dict(model="mlp")
ALONE = "student alone (cross-entropy)"


def student_key(t: float, alpha: float) -> str:
    return f"T={t:g} alpha={alpha:g}"


def job(teacher: Config, temperatures: Tuple[float, ...], alphas: Tuple[float, ...]) -> dict:
    """Train ``teacher``, then one student per (T, alpha) on its predictions; every Results as a dict."""
    from labelmeta.build import splits_for
    from labelmeta.distill import fit_student, logits_by_index
    from labelmeta.runner import fit_learner

    splits = splits_for(teacher)
    learner, result = fit_learner(teacher, splits)
    logits = logits_by_index(learner.model, splits.train, len(splits.labels.noisy), teacher.device)
    students = {}
    for t in temperatures:
        for alpha in alphas:
            config = teacher.replace(loss_options=dict(temperature=t, alpha=alpha), label_options={}, **STUDENT)
            students[student_key(t, alpha)] = dataclasses.asdict(fit_student(logits, config, splits))
    return dict(config=dataclasses.asdict(teacher), teacher=dataclasses.asdict(result), students=students)


def alone(config: Config) -> dict:
    """The student architecture trained with plain cross-entropy (the floor), in a job's layout."""
    from labelmeta import fit

    return dict(config=dataclasses.asdict(config), teacher=dataclasses.asdict(fit(config)), students={})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    harness.add_jobs_argument(parser)
    parser.add_argument("--smoke", action="store_true", help="tiny data, 2 epochs, 1 seed, 2 temperatures")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    base, seeds, temperatures, alphas, teachers = BASE, args.seeds, TEMPERATURES, ALPHAS, TEACHERS
    if args.smoke:
        base = smoke(base).replace(meta_per_class=0)
        seeds, temperatures, alphas = seeds[:1], temperatures[:2], alphas[1:]
        teachers = {n: teachers[n] for n in (ONE_HOT, "label smoothing 0.1", "learned per-class")}
    stem = "distillation_smoke" if args.smoke else "distillation"
    out = Path(args.out)
    path = out / f"{stem}.json"
    teacher_jobs = {f"{name} | seed {s}": base.replace(seed=s, **overrides) for name, overrides in teachers.items()
                    for s in seeds}
    alone_jobs = {f"{ALONE} | seed {s}": base.replace(seed=s, labels="one-hot", strategy="none", **STUDENT)
                  for s in seeds}
    grid_keys = {student_key(t, a) for t in temperatures for a in alphas}
    harness.run_cells(teacher_jobs, path, args.jobs, run=functools.partial(job, temperatures=temperatures, alphas=alphas),
                      complete=lambda key, stored: set(stored["students"]) == grid_keys)
    store = harness.run_cells(alone_jobs, path, args.jobs, run=alone)

    def teacher_runs(name: str) -> List[Results]:
        return [Results.from_dict(store["cells"][f"{name} | seed {s}"]["teacher"]) for s in seeds]

    def student_runs(name: str, t: float, a: float) -> List[Results]:
        return [Results.from_dict(store["cells"][f"{name} | seed {s}"]["students"][student_key(t, a)]) for s in seeds]

    grid = [(t, a) for t in temperatures for a in alphas]
    mean_last = {(n, t, a): mean_std([r.last_accuracy for r in student_runs(n, t, a)])[0] for n in teachers
                 for t, a in grid}
    best_of = {n: max(grid, key=lambda g: mean_last[(n, *g)]) for n in teachers}
    families = {f: [n for n in names if n in teachers] for f, names in FAMILIES.items()}
    family_best = {f: max(names, key=lambda n: mean_last[(n, *best_of[n])]) for f, names in families.items()}

    command = "python benchmarks/distillation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    head = ["| teacher | teacher acc last (%) | teacher ECE (%) | best T | best α | student acc last (%) | "
            "student acc best (%) | student ECE (%) |", "|---|---|---|---|---|---|---|---|"]

    def line(name: str) -> str:
        t, a = best_of[name]
        runs, tr = student_runs(name, t, a), teacher_runs(name)
        return (f"| {name} | {cell(mean_std([r.last_accuracy for r in tr]))} | {cell(mean_std([r.ece for r in tr]))} | "
                f"{t:g} | {a:g} | {cell(mean_std([r.last_accuracy for r in runs]))} | "
                f"{cell(mean_std([r.best_accuracy for r in runs]))} | {cell(mean_std([r.ece for r in runs]))} |")

    solo = teacher_runs(ALONE)
    lines = ["# Distillation from one-hot, smoothing and learned-label teachers", "",
             f"Command: `{command.strip()}`; seeds {seeds}; CPU, one torch thread per job, {args.jobs} at a time. "
             f"MNIST-1D with clean labels, every training sample trained on; teacher `{base.model}`, student "
             f"`{STUDENT['model']}`; T in {list(temperatures)}, α in {list(alphas)} (the KL term's weight). "
             "Mean ± std over seeds; ECE on the test set, last epoch.", "",
             "## Each family at its best teacher, T and α", "", *head]
    lines += [line(family_best[f]) for f in families]
    lines.append(f"| {ALONE} | – | – | – | – | {cell(mean_std([r.last_accuracy for r in solo]))} | "
                 f"{cell(mean_std([r.best_accuracy for r in solo]))} | {cell(mean_std([r.ece for r in solo]))} |")
    learned = mean_last[(family_best["learned labels"], *best_of[family_best["learned labels"]])]
    others = {f: mean_last[(family_best[f], *best_of[family_best[f]])] for f in families if f != "learned labels"}
    verdict = all(learned >= v for v in others.values())
    lines += ["", "Target: the learned-label teacher's student ≥ the one-hot and the smoothing teachers' students, each "
              f"at its own best T and α: **{'met' if verdict else 'missed'}** ("
              + ", ".join(f"{learned - v:+.2f} points against {f}" for f, v in others.items()) + ").", "",
              "## Every teacher at its best T and α", "", *head, *[line(n) for n in teachers], "",
              "## Every teacher, T and α (student acc last, %)", "",
              "| teacher | " + " | ".join(f"α {a:g}" for a in alphas) + " |", "|---|" + "---|" * len(alphas)]
    for n in teachers:
        for t in temperatures:
            lines.append(f"| {n}, T = {t:g} | " + " | ".join(
                cell(mean_std([r.last_accuracy for r in student_runs(n, t, a)])) for a in alphas) + " |")
    text = "\n".join(lines) + "\n"
    (out / f"{stem}.md").write_text(text)
    plot(teachers, temperatures, alphas, student_runs, family_best, out / f"{stem}.png")
    print(text)
    return 0


def plot(teachers, temperatures, alphas, student_runs, family_best, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from common import save_figure

    fig, axes = plt.subplots(1, len(alphas), figsize=(5 * len(alphas), 4.5), sharey=True, squeeze=False)
    shown = list(family_best.values())
    for ax, a in zip(axes[0], alphas):
        for i, n in enumerate(shown):
            stats = np.array([mean_std([r.last_accuracy for r in student_runs(n, t, a)]) for t in temperatures])
            ax.errorbar(temperatures, stats[:, 0], yerr=stats[:, 1], marker="o", capsize=2, label=n, color=f"C{i}")
        ax.set(xscale="log", xlabel="distillation temperature T", title=f"α = {a:g}")
        ax.set_xticks(temperatures)
        ax.set_xticklabels([f"{t:g}" for t in temperatures])
    axes[0][0].set_ylabel("student last-epoch test accuracy (%)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("MLP students of CNN teachers on MNIST-1D (each family's best teacher; mean ± std)")
    save_figure(fig, path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
