"""The GPU path in one call, on a CUDA machine, within 8 minutes: its tests, then its figures.

    python benchmarks/device_check.py             # on a machine with a CUDA device
    python benchmarks/device_check.py --dry-run   # the commands it would run; runs nothing

The parts, in order, each in its own process with its own time limit (the whole within ``--budget``
seconds, 455 by default; a part that would outlive the budget gets what is left):

1. **tests**: ``pytest -m cuda -q``, the tests that also run on CUDA when one is present (marked
   ``cuda``, parametrised by ``tests/helpers.py``'s ``devices()``): bf16 autocast, channels-last, the
   default's forward-mode and reverse-mode products on cuDNN's kernels, the probe's choice between them;
2. **overhead**: ``benchmarks/overhead.py --device cuda --models resnet18 wrn``, a step of every strategy
   against a plain step, with the peak memory (``torch.cuda.max_memory_allocated``), in float32 and,
   where ``overhead.py --help`` lists ``--amp``, again with bf16 autocast (else that run is skipped,
   said so);
3. **cifar epoch**: ``benchmarks/cifar_epoch.py --device cuda --compare-workers``, one epoch of the
   ``cifar10`` preset on synthetic CIFAR-10 files (and of ``cifar10n`` on a synthetic ``CIFAR-10_human.pt``):
   images/s against cross-entropy, bf16, loader
   workers on and off (it writes its table after each row, so a part stopped early keeps its rows).

The figures land in ``--out`` (``benchmarks/results``): ``overhead_cuda.*``, ``overhead_bf16_cuda.*``
(the bf16 run's), ``cifar_epoch_cuda.*``, and this
check's own ``device_check_cuda.{md,json,log}``: each part's command, status, seconds, files and last
lines of output, and every line the parts printed. Exit status: 0 when every part passed, 1 when one
failed or ran out of time, 2 without a CUDA device (nothing is run).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, TextIO

ROOT = Path(__file__).resolve().parents[1]
OVERHEAD = "benchmarks/overhead.py"
CIFAR_EPOCH = "benchmarks/cifar_epoch.py"
#: seconds of the whole check, and each part's own limit (445 s together; with the start, about 5 s, and
#: up to 10 s to stop a part that overruns, the check ends within 8 minutes)
BUDGET = 455
LIMITS = {"tests": 90, "overhead, float32": 90, "overhead, bf16": 90, "cifar epoch": 175}
#: the timed rounds overhead.py takes here (its defaults, 60 after 5, are for a quiet CPU and would not fit)
OVERHEAD_ROUNDS = ("--repeats", "10", "--warmup", "2")
#: lines of each part's output kept in the summary
TAIL = 25


@dataclass
class Part:
    """One step of the check: a command (``None``: skipped, ``note`` says why) and its time limit."""

    number: str
    name: str
    command: Optional[List[str]]
    limit: float
    note: str = ""
    status: str = "not run"
    seconds: float = 0.0
    files: List[str] = field(default_factory=list)
    tail: List[str] = field(default_factory=list)


def overhead_options() -> tuple[set, str]:
    """The long options ``overhead.py --help`` lists, and a note if the help could not be read."""
    try:
        shown = subprocess.run([sys.executable, OVERHEAD, "--help"], cwd=ROOT, capture_output=True, text=True,
                               timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return set(), f"overhead.py --help failed ({type(err).__name__})"
    if shown.returncode != 0:
        return set(), f"overhead.py --help failed (exit status {shown.returncode})"
    return {word.strip("[],") for word in shown.stdout.split() if word.startswith("--")}, ""


def plan(out: Path) -> List[Part]:
    """The parts, their commands and limits (``overhead.py``'s options read from its ``--help``)."""
    python = sys.executable
    options, problem = overhead_options()
    rounds = list(OVERHEAD_ROUNDS) if {"--repeats", "--warmup"} <= options else []
    overhead = [python, OVERHEAD, "--device", "cuda", "--models", "resnet18", "wrn", *rounds]
    parts = [Part("1", "tests", [python, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider"], LIMITS["tests"]),
             Part("2", "overhead, float32", overhead + ["--out", str(out)], LIMITS["overhead, float32"])]
    if "--amp" in options:  # it names its files overhead_bf16_cuda.*
        parts.append(Part("2", "overhead, bf16", overhead + ["--amp", "--out", str(out)], LIMITS["overhead, bf16"]))
    else:
        why = problem or "benchmarks/overhead.py has no --amp option (a --amp flag is needed there)"
        parts.append(Part("2", "overhead, bf16", None, 0, note=f"skipped: {why}"))
    parts.append(Part("3", "cifar epoch", [python, CIFAR_EPOCH, "--device", "cuda", "--compare-workers", "--out", str(out)],
                      LIMITS["cifar epoch"]))
    return parts


def run(part: Part, limit: float, log: TextIO) -> None:
    """Run ``part`` from the repository root for at most ``limit`` seconds, echoing and logging its output."""
    assert part.command is not None
    start = time.monotonic()
    log.write(f"\n===== {part.name}: {shlex.join(part.command)} (limit {limit:.0f} s)\n")
    log.flush()
    print(f"\n===== {part.name} (limit {limit:.0f} s): {shlex.join(part.command)}", flush=True)
    tail: collections.deque = collections.deque(maxlen=TAIL)
    # a session of its own: on a timeout the whole group goes (pytest, the loaders' worker processes)
    proc = subprocess.Popen(part.command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            encoding="utf-8", errors="replace", start_new_session=True)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            log.write(line)
            tail.append(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=limit)
        part.status = "passed" if code == 0 else f"failed (exit status {code})"
    except subprocess.TimeoutExpired:
        part.status = f"timed out after {limit:.0f} s"
    finally:  # also on Ctrl-C: nothing of the part outlives the check
        stop(proc)
    reader.join(timeout=10)
    log.flush()
    part.seconds, part.tail = time.monotonic() - start, list(tail)


def stop(proc: subprocess.Popen) -> None:
    """End ``proc``'s process group: SIGTERM, then SIGKILL for what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            continue


def files(out: Path) -> dict:
    """Every file in ``out`` and its modification time."""
    return {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}


def collect(part: Part, out: Path, before: dict) -> None:
    """The files ``part`` wrote: new or changed in ``out`` since ``before`` (:func:`files`)."""
    part.files = sorted(name for name, changed in files(out).items()
                        if before.get(name) != changed and not name.startswith("device_check_"))


def describe(parts: List[Part], budget: float, out: Path) -> str:
    lines = [f"device_check: three parts, within {budget:.0f} s, figures under {out}"]
    for part in parts:
        what = f" (limit {part.limit:.0f} s): {shlex.join(part.command)}" if part.command is not None else f": {part.note}"
        lines.append(f"{part.number}. {part.name}{what}")
    return "\n".join(lines)


def summary(parts: List[Part], device: str, total: float) -> str:
    passed = sum(p.status == "passed" for p in parts)
    ran = sum(p.command is not None for p in parts)
    lines = ["# Device check", "",
             f"`python benchmarks/device_check.py` on {device}: {passed} of {ran} runs passed in {total:.0f} s.", "",
             "| part | status | seconds | files |", "|---|---|---|---|"]
    for part in parts:
        status = part.note if part.command is None else part.status
        seconds = "–" if part.command is None else f"{part.seconds:.0f}"
        lines.append(f"| {part.number}. {part.name} | {status} | {seconds} | {', '.join(part.files) or '–'} |")
    for part in parts:
        if part.command is not None:
            lines += ["", f"## {part.number}. {part.name}", "", f"`{shlex.join(part.command)}`: {part.status}", "", "```",
                      *part.tail, "```"]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="print the parts and their commands, run nothing")
    parser.add_argument("--budget", type=float, default=BUDGET, help="seconds for the whole check")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="where the figures go")
    args = parser.parse_args(argv)
    start = time.monotonic()
    if hasattr(sys.stdout, "reconfigure"):  # the parts print ×, –: never fail on a terminal that cannot show them
        sys.stdout.reconfigure(errors="replace")
    out = Path(args.out).resolve()

    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        print("device_check: no CUDA device here (torch.cuda.is_available() is False): nothing was run. "
              "Run it on a machine with an NVIDIA GPU; the CPU's checks are `make test`.", file=sys.stderr)
        return 2
    parts = plan(out)
    if args.dry_run:
        print(describe(parts, args.budget, out))
        if not cuda:
            print("(no CUDA device here: a run without --dry-run would exit with status 2)")
        return 0

    device = f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    out.mkdir(parents=True, exist_ok=True)
    print(describe(parts, args.budget, out), flush=True)
    with open(out / "device_check_cuda.log", "w", encoding="utf-8") as log:
        for part in parts:
            if part.command is None:
                print(f"\n===== {part.name}: {part.note}", flush=True)
                continue
            left = args.budget - (time.monotonic() - start)
            if left < 10:
                part.status = "not run: no time left in the budget"
                continue
            before = files(out)
            run(part, min(part.limit, left), log)
            collect(part, out, before)
    total = time.monotonic() - start
    report = summary(parts, device, total)
    (out / "device_check_cuda.md").write_text(report, encoding="utf-8")
    (out / "device_check_cuda.json").write_text(json.dumps(
        {"device": device, "seconds": total, "parts": [
            {"name": p.name, "command": p.command, "limit": p.limit, "status": p.note if p.command is None else p.status,
             "seconds": p.seconds, "files": p.files, "tail": p.tail} for p in parts]}, indent=1))
    print("\n" + report.split("\n## ")[0])
    print(f"Written: {out / 'device_check_cuda.md'} (each part's last lines), device_check_cuda.json, "
          "device_check_cuda.log (everything the parts printed)")
    failed = [p.name for p in parts if p.command is not None and p.status != "passed"]
    if failed:
        print(f"device_check: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
