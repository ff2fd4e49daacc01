"""Are learned labels better teachers? Students distilled from a one-hot and a learned-label teacher.

    python benchmarks/distillation.py            # 3 seeds, MNIST-1D (clean labels), about 15 min
    python benchmarks/distillation.py --smoke    # seconds; what the test suite runs

Teachers: the 1-D CNN trained with one-hot labels, and with learned per-class labels (exact k=1
unroll, meta batches from a held-out clean split). Students: an MLP trained by
``labelmeta.distill.fit_student`` on each teacher's tempered predictions (alpha = 0.9) at every
temperature T of ``--temperatures`` (the same sweep for both teachers; each teacher's best T, by
mean last-epoch test accuracy, is named: an optimistic pick made equally for both), and the same MLP
with plain cross-entropy. Same data and seed for every row. Writes ``distillation.{md,json}``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from common import STORED_META_STEP, run_arguments, smoke, write_outputs
from labelmeta import LOSSES, Config, fit
from labelmeta.build import splits_for
from labelmeta.compare import cell, mean_std
from labelmeta.distill import fit_student, logits_by_index
from labelmeta.runner import fit_learner

BASE = Config(noise="none", noise_rate=0.0, progress=False, **STORED_META_STEP)
TEACHERS = {"one-hot teacher": dict(labels="one-hot", strategy="none"),
            "learned-label teacher (per-class)": dict(labels="per-class", label_lr=2.0)}
STUDENT = dict(model="mlp")
#: the distillation loss's weight of its KL term (its declared default)
ALPHA = LOSSES.schema("distillation").options["alpha"].default


def student(config: Config, temperature: float) -> Config:
    """The student's run: the MLP, distilled at ``temperature`` (``fit_student`` sets the loss)."""
    options = {} if temperature == LOSSES.schema("distillation").options["temperature"].default else \
        dict(temperature=temperature)
    return config.replace(loss="distillation", loss_options=options, **STUDENT)
ALONE = "student alone (cross-entropy)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run_arguments(parser)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    base, seeds, temperatures = BASE, args.seeds, args.temperatures
    if args.smoke:
        base = smoke(base)
        seeds, temperatures = seeds[:1], temperatures[:2]
    teachers = {name: [] for name in TEACHERS}
    students = {(name, t): [] for name in TEACHERS for t in temperatures}
    alone = []
    for seed in seeds:
        config = base.replace(seed=seed)
        splits = splits_for(config)
        for name, overrides in TEACHERS.items():
            learner, result = fit_learner(config.replace(**overrides), splits)
            teachers[name].append(result)
            logits = logits_by_index(learner.model, splits.train, len(splits.labels.noisy), config.device)
            for t in temperatures:  # one teacher, one student per temperature
                students[name, t].append(fit_student(logits, student(config, t), splits))
        alone.append(fit(config.replace(labels="one-hot", strategy="none", **STUDENT), splits))

    def row(name: str, teacher: str, runs) -> str:
        return (f"| {name} | {teacher} | {cell(mean_std([s.last_accuracy for s in runs]))} | "
                f"{cell(mean_std([s.best_accuracy for s in runs]))} | {cell(mean_std([s.ece for s in runs]))} |")

    mean_last = {k: mean_std([s.last_accuracy for s in v])[0] for k, v in students.items()}
    command = "python benchmarks/distillation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# Distillation from one-hot and learned-label teachers", "",
             f"Command: `{command.strip()}`; seeds {seeds}; CPU, {args.threads} torch thread(s). MNIST-1D with "
             f"clean labels; teacher `{base.model}`, student `{STUDENT['model']}`; alpha = {ALPHA}; "
             f"temperatures {temperatures}. Mean ± std over seeds.", "",
             "Each teacher at its best temperature (picked by mean last-epoch test accuracy, equally for both):", "",
             "| student of | teacher acc last (%) | student acc last (%) | student acc best (%) | student ECE (%) |",
             "|---|---|---|---|---|"]
    best = {}
    for name in TEACHERS:
        best[name] = max(temperatures, key=lambda t: mean_last[name, t])
        teacher = cell(mean_std([r.last_accuracy for r in teachers[name]]))
        lines.append(row(f"{name}, T = {best[name]:g}", teacher, students[name, best[name]]))
    lines.append(row(ALONE, "–", alone))
    lines += ["", "Every temperature:", "",
              "| student of | teacher acc last (%) | student acc last (%) | student acc best (%) | student ECE (%) |",
              "|---|---|---|---|---|"]
    for (name, t), runs in students.items():
        lines.append(row(f"{name}, T = {t:g}", cell(mean_std([r.last_accuracy for r in teachers[name]])), runs))
    report = "\n".join(lines) + "\n"
    stem = "distillation_smoke" if args.smoke else "distillation"
    data = {"teachers": {n: [dataclasses.asdict(r) for r in v] for n, v in teachers.items()},
            "students": {f"{n} | T={t:g}": [dataclasses.asdict(r) for r in v] for (n, t), v in students.items()},
            "best_temperature": best, ALONE: [dataclasses.asdict(r) for r in alone]}
    write_outputs(Path(args.out), stem, report, data)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
