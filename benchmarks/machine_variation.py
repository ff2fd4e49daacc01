"""How far a stored figure moves with the machine: the same cells under two sets of torch's CPU kernels.

    python benchmarks/machine_variation.py            # 18 cells twice and a control: about 11 min on one core
    python benchmarks/machine_variation.py --smoke    # seconds; what the test suite runs

A stored cell is exact for the machine that ran it (``harness`` records it in every new cell): torch
picks its CPU kernels by the vector extensions it finds (``torch.backends.cpu.get_cpu_capability()``:
``DEFAULT``, ``AVX2``, ``AVX512``), and kernels of another width sum in another order, so a run's float
arithmetic, and through many steps its decisions (a weight clipped at zero, a label's argmax),
differ. ``ATEN_CPU_CAPABILITY=default`` lowers the kernels to the portable ones, which makes one
machine two as far as torch's kernels go (the BLAS library picks its own kernels and is not lowered).

This script runs three rows of ``noisy_labels.py`` with the rows' own (untuned) values: the default,
L2RW (``labels="one-hot", strategy="reweight"``) and generalised cross-entropy (``labels="one-hot",
strategy="none", loss="gce"``), on digits (the MLP, the benchmark's configuration) and on a small
MNIST-1D (4 000 samples, the 1-D CNN, 40 epochs), at 40 % symmetric noise, seeds 0-2, once in a
subprocess with ``ATEN_CPU_CAPABILITY=default`` and once with the machine's own capability (each
subprocess reports the capability it ran). Per cell: the change in last-epoch accuracy and in corrupted
labels corrected (points), the samples whose suggested label or flag (``labelmeta.label_issues``)
differs, and whether the two runs are bit-identical (every epoch's losses and figures, and every
sample's suggested label and score). Writes ``machine_variation.{md,json}``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import noisy_labels as nl
from common import describe_machine, run_arguments, smoke, write_outputs

#: the rows measured: the benchmark's names -> their Config overrides (``noisy_labels.METHODS``)
METHODS = {"default": nl.METHODS[nl.LEARNED], "L2RW": nl.METHODS[nl.L2RW], "GCE": nl.METHODS[nl.GCE]}
#: dataset -> its configuration: digits as the benchmark runs it, MNIST-1D on fewer samples
DATASETS = {"digits": nl.DATASETS["digits"], "mnist1d": nl.DATASETS["mnist1d"].replace(dataset_options=dict(num_samples=4000))}
NOISE = dict(noise="symmetric", noise_rate=0.4)
#: the kernel sets: name -> ATEN_CPU_CAPABILITY (``None``: unset, the machine's own); *control* runs the
#: machine's own kernels again, on the first seed's cells, to show that a run repeats itself bit for bit
KERNELS = {"default": "default", "native": None, "control": None}
#: a run's fields compared bit for bit (``seconds`` is a wall time)
EPOCH_FIELDS_IGNORED = ("seconds",)


def plan(seeds: List[int], small: bool) -> Dict[str, dict]:
    """Cell key ``"dataset | method | seed S"`` -> its Config as a dict."""
    cells = {}
    for dataset, base in DATASETS.items():
        base = base.replace(progress=False, **NOISE)
        base = smoke(base) if small else base
        for method, overrides in METHODS.items():
            for seed in seeds:
                cells[f"{dataset} | {method} | seed {seed}"] = dataclasses.asdict(base.replace(seed=seed, **overrides))
    return cells


def worker(plan_path: Path, out_path: Path) -> None:
    """Run every planned cell in this process; write what each measured and this process's machine."""
    import torch

    from common import machine_record
    from labelmeta import Config, fit
    from labelmeta.label_issues import read_label_issues

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    out = {"machine": machine_record(), "cells": {}}
    with tempfile.TemporaryDirectory() as folder:
        for key, config in json.loads(plan_path.read_text()).items():
            start = time.perf_counter()
            results = fit(Config.from_dict(config).replace(output=str(Path(folder) / "run.json")))
            issues = read_label_issues(Path(folder) / "run.json")
            out["cells"][key] = dict(
                last_accuracy=results.last_accuracy, corrected=results.corrected, seconds=time.perf_counter() - start,
                history=[{k: v for k, v in dataclasses.asdict(h).items() if k not in EPOCH_FIELDS_IGNORED}
                         for h in results.history],
                suggested=issues.suggested.tolist(), flagged=issues.flagged.tolist(), score=issues.score.tolist())
            print(f"done: {key} ({out['cells'][key]['seconds']:.0f} s)", flush=True)
    out_path.write_text(json.dumps(out))


def run_kernels(cells: Dict[str, dict], folder: Path, threads: int) -> Dict[str, dict]:
    """Every cell once per kernel set (the control: the first seed's), each set in a subprocess of its own:
    name -> the worker's output."""
    outputs = {}
    first_seed = next(iter(cells)).rsplit(" | ", 1)[1]
    for name, capability in KERNELS.items():
        plan_path = folder / f"{name}-plan.json"
        plan_path.write_text(json.dumps({k: c for k, c in cells.items() if name != "control" or k.endswith(first_seed)}))
        env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
        env.update(OMP_NUM_THREADS=str(threads), **({"ATEN_CPU_CAPABILITY": capability} if capability else {}))
        out_path = folder / f"{name}.json"
        subprocess.run([sys.executable, __file__, "--worker", str(plan_path), str(out_path)], env=env, check=True)
        outputs[name] = json.loads(out_path.read_text())
    return outputs


def _same(x, y) -> bool:
    """Equal, NaN included (a figure a method does not have is NaN in both runs)."""
    return json.dumps(x) == json.dumps(y)


def compare(a: dict, b: dict) -> dict:
    """One cell's two runs: the differences (``b`` minus ``a``; accuracy and corrected in points)."""
    n = len(a["suggested"])
    relabelled = sum(x != y for x, y in zip(a["suggested"], b["suggested"]))
    flags = sum(x != y for x, y in zip(a["flagged"], b["flagged"]))
    corrected = (b["corrected"] - a["corrected"]) * 100  # NaN for a method that learns no labels
    return dict(accuracy=(b["last_accuracy"] - a["last_accuracy"]) * 100,
                corrected=None if corrected != corrected else corrected,
                suggested_differ=relabelled / n * 100, flags_differ=flags / n * 100,
                identical=all(_same(a[k], b[k]) for k in ("last_accuracy", "corrected", "history", "suggested",
                                                            "flagged", "score")))


def summarise(cells: Dict[str, dict]) -> Dict[str, dict]:
    """Per dataset and method, over its seeds: the largest change of a cell's accuracy and corrected
    labels, the change of the mean over seeds (what a report's figure moves by), the largest share of
    samples relabelled or flagged differently, and how many cells are bit-identical."""
    groups: Dict[str, List[str]] = {}
    for key in cells:
        groups.setdefault(key.rsplit(" | ", 1)[0], []).append(key)
    out = {}
    for group, keys in groups.items():
        diffs = [cells[k]["difference"] for k in keys]
        corrected = [d["corrected"] for d in diffs if d["corrected"] is not None]
        out[group] = dict(cells=len(keys), identical=sum(d["identical"] for d in diffs),
                          max_accuracy=max(abs(d["accuracy"]) for d in diffs),
                          mean_accuracy=abs(sum(d["accuracy"] for d in diffs) / len(diffs)),
                          max_corrected=max(map(abs, corrected)) if corrected else None,
                          max_suggested_differ=max(d["suggested_differ"] for d in diffs),
                          max_flags_differ=max(d["flags_differ"] for d in diffs))
    return out


def report(data: dict, command: str) -> str:
    machines = data["machines"]
    lines = ["# How far figures move between CPU kernels", "",
             f"Command: `{command}`; seeds {data['seeds']}; one torch thread. The same cells twice, each set in a "
             "subprocess: *default*: `ATEN_CPU_CAPABILITY=default`, "
             f"{describe_machine(machines['default'])}; *native*: {describe_machine(machines['native'])}. "
             "Rows of `noisy_labels.py` with their own (untuned) values, 40 % symmetric noise; digits as the "
             "benchmark runs it, MNIST-1D on 4 000 samples. Differences are native minus default: last-epoch "
             "test accuracy and corrupted labels corrected in points; *relabelled* / *flags*: the samples whose "
             "suggested label / flag (`labelmeta.label_issues`) differs (%); *identical*: every epoch's "
             "losses and figures, and every sample's suggested label and score, bit for bit.", "",
             "| dataset | method | cells identical | largest Δ accuracy | Δ of the mean accuracy | largest Δ corrected "
             "| largest share relabelled | largest share of flags |", "|---|---|---|---|---|---|---|---|"]
    for group, s in data["summary"].items():
        dataset, method = group.split(" | ")
        corrected = "–" if s["max_corrected"] is None else f"{s['max_corrected']:.2f}"
        lines.append(f"| {dataset} | {method} | {s['identical']} of {s['cells']} | {s['max_accuracy']:.2f} | "
                     f"{s['mean_accuracy']:.2f} | {corrected} | {s['max_suggested_differ']:.2f} | "
                     f"{s['max_flags_differ']:.2f} |")
    repeated = sum(c["identical"] for c in data["control"].values())
    lines += ["", f"Control: the native kernels run again on the first seed's cells: {repeated} of "
              f"{len(data['control'])} bit-identical to the first native run.", "", "Per cell:", "", "| cell | accuracy default / native (%) | Δ accuracy | Δ corrected | relabelled (%) "
              "| flags (%) | identical | seconds default / native |", "|---|---|---|---|---|---|---|---|"]
    for key, c in data["cells"].items():
        d, key = c["difference"], key.replace(" | ", ", ")
        corrected = "–" if d["corrected"] is None else f"{d['corrected']:+.2f}"
        lines.append(f"| {key} | {100 * c['default']['last_accuracy']:.2f} / {100 * c['native']['last_accuracy']:.2f} | "
                     f"{d['accuracy']:+.2f} | {corrected} | {d['suggested_differ']:.2f} | {d['flags_differ']:.2f} | "
                     f"{'yes' if d['identical'] else 'no'} | {c['default']['seconds']:.0f} / {c['native']['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run_arguments(parser)
    parser.add_argument("--worker", nargs=2, metavar=("PLAN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(Path(args.worker[0]), Path(args.worker[1]))
        return 0
    seeds = args.seeds[:1] if args.smoke else args.seeds
    cells = plan(seeds, args.smoke)
    if args.smoke:  # one dataset, two methods (the default, and GCE, which has no meta step)
        cells = {k: v for k, v in cells.items() if k.startswith("digits") and " | L2RW | " not in k}
    with tempfile.TemporaryDirectory() as folder:
        outputs = run_kernels(cells, Path(folder), args.threads)
    capabilities = {name: out["machine"]["capability"] for name, out in outputs.items()}
    if capabilities["default"] != "DEFAULT":
        raise RuntimeError(f"ATEN_CPU_CAPABILITY=default did not lower torch's kernels: {capabilities}")
    kept = ("last_accuracy", "corrected", "seconds")
    stored = {key: {name: {k: outputs[name]["cells"][key][k] for k in kept} for name in ("default", "native")}
              for key in cells}
    for key in cells:
        stored[key]["difference"] = compare(outputs["default"]["cells"][key], outputs["native"]["cells"][key])
    control = {key: compare(outputs["native"]["cells"][key], run) for key, run in outputs["control"]["cells"].items()}
    data = dict(seeds=seeds, machines={name: out["machine"] for name, out in outputs.items()}, cells=stored,
                summary=summarise(stored), control=control)
    if capabilities["native"] == "DEFAULT":
        print("this machine's own kernels are the portable ones: both runs used the same kernels", flush=True)
    command = "python benchmarks/machine_variation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report(data, command.strip())
    write_outputs(Path(args.out), "machine_variation_smoke" if args.smoke else "machine_variation", text, data)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
