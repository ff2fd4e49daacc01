"""Are learned labels better teachers? Students distilled from a one-hot and a learned-label teacher.

    python benchmarks/distillation.py            # 3 seeds, MNIST-1D (clean labels)
    python benchmarks/distillation.py --smoke    # seconds; what the test suite runs

Teachers: the 1-D CNN trained with one-hot labels, and with learned per-class labels (exact k=1
unroll, meta batches from a held-out clean split). Students: an MLP trained by
``labelmeta.distill`` on each teacher's tempered predictions (T = 4, alpha = 0.9), and the same MLP
with plain cross-entropy. Same data and seed for every row. Writes ``distillation.{md,json}``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from common import run_arguments, write_outputs
from labelmeta.compare import cell, mean_std
from labelmeta.distill import distill
from labelmeta.runner import Config, fit, splits_for

BASE = Config(noise="none", noise_rate=0.0, progress=False)
TEACHERS = {"one-hot teacher": dict(labels="one-hot", strategy="none"),
            "learned-label teacher (per-class)": dict(labels="per-class", label_lr=2.0)}
STUDENT = dict(model="mlp")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    base, seeds = BASE, args.seeds
    if args.smoke:
        base = base.replace(epochs=2, warmup_epochs=1, num_samples=1000, meta_per_class=5, meta_batch_size=50)
        seeds = seeds[:1]
    rows = {name: {"teacher": [], "student": []} for name in TEACHERS}
    rows["student alone (cross-entropy)"] = {"teacher": [], "student": []}
    for seed in seeds:
        config = base.replace(seed=seed)
        splits = splits_for(config)
        for name, teacher in TEACHERS.items():
            result = distill(config.replace(**teacher), config.replace(**STUDENT), splits)
            rows[name]["teacher"].append(result.teacher)
            rows[name]["student"].append(result.student)
        rows["student alone (cross-entropy)"]["student"].append(
            fit(config.replace(labels="one-hot", strategy="none", **STUDENT), splits))

    command = "python benchmarks/distillation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# Distillation from one-hot and learned-label teachers", "",
             f"Command: `{command.strip()}`; seeds {seeds}; CPU. MNIST-1D with clean labels; teacher "
             f"`{base.model}`, student `{STUDENT['model']}`; T = {base.distill_temperature}, alpha = "
             f"{base.distill_alpha}. Mean ± std over seeds.", "",
             "| teacher | teacher acc last (%) | student acc last (%) | student acc best (%) | student ECE (%) |",
             "|---|---|---|---|---|"]
    for name, r in rows.items():
        teacher = cell(mean_std([t.last_accuracy for t in r["teacher"]])) if r["teacher"] else "–"
        students = r["student"]
        lines.append(f"| {name} | {teacher} | {cell(mean_std([s.last_accuracy for s in students]))} | "
                     f"{cell(mean_std([s.best_accuracy for s in students]))} | {cell(mean_std([s.ece for s in students]))} |")
    report = "\n".join(lines) + "\n"
    stem = "distillation_smoke" if args.smoke else "distillation"
    write_outputs(Path(args.out), stem, report,
                  {name: {k: [dataclasses.asdict(x) for x in v] for k, v in r.items()} for name, r in rows.items()})
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
