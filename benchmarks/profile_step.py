"""Where the time of one exact k=1 training step goes, by operator family, per ``torch.profiler``.

    python benchmarks/profile_step.py            # cnn1d-bn, batch = meta batch = 128, 1 CPU thread
    python benchmarks/profile_step.py --smoke    # seconds; what the test suite runs

Profiles the ``exact k=1 (torch.func)`` full step of ``benchmarks/overhead.py`` (the same
strategy, labels and label optimiser, taken from its ``METHODS``; the same model, batches and
SGD from ``common.build``) on the CPU. Every operator's *self* time is assigned

- to an **operator family**: the autograd node that ran it, if any (``ConvolutionBackward0`` is
  a convolution's backward, ``ConvolutionBackwardBackward0`` its double backward, i.e. the
  backward of the inner step's backward), else its outermost ``aten`` operator (a forward), and
  optimiser updates to ``optimiser steps``;
- to a **phase** of the step: the meta loss's forward (the inner step's forward and backward,
  kept as a graph, then the meta forward), the meta loss's backward to the labels (the
  second-order backward through the inner step), the label optimiser's step, and the real model
  step (forward, backward, SGD; with it, the little outside those ranges, e.g. the label
  optimiser's ``zero_grad``).

Shares are of the operators' total self time (Python between operators is not in it; the
unprofiled median step time is printed next to it). Writes ``profile_step[_smoke].{md,json}``.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from common import build, interleaved_times, machine, median, plain_step, run_arguments, write_outputs
from labelmeta import Learner, make_label_optimizer, make_labels
from overhead import METHODS

METHOD = "exact k=1 (torch.func)"
MODEL = "cnn1d-bn"
NODE = "autograd::engine::evaluate_function: "

#: (family, autograd-node substrings, forward-operator substrings), first match wins
FAMILIES: List[Tuple[str, Tuple[str, ...], Tuple[str, ...]]] = [
    ("batch norm: double backward", ("BatchNormBackwardBackward",), ()),
    ("batch norm: backward", ("BatchNormBackward",), ()),
    ("batch norm: forward", (), ("batch_norm",)),
    ("convolution: double backward", ("ConvolutionBackwardBackward",), ()),
    ("convolution: backward", ("ConvolutionBackward",), ()),
    ("convolution: forward", (), ("conv",)),
    ("linear (matmul): all passes", ("AddmmBackward", "MmBackward", "TBackward"), ("linear", "addmm", "aten::mm", "matmul")),
    ("optimiser steps (SGD, label step)", (), ()),
    ("other (activations, loss, element-wise, autograd bookkeeping)", (), ()),
]
OPTIMISER, OTHER = FAMILIES[-2][0], FAMILIES[-1][0]
PHASES = ("meta forward (inner step + meta loss)", "meta backward (second order, to the labels)",
          "label optimiser step", "model step (forward, backward, SGD)")
META_FORWARD, META_STEP = "labelmeta.profile: meta forward", "labelmeta.profile: meta step"


def family(event) -> str:
    """The family of an operator event, from the autograd node or the outermost operator above it."""
    outermost: Optional[str] = None
    node: Optional[str] = None
    e = event
    while e is not None:
        if node is None and e.name.startswith(NODE):
            node = e.name[len(NODE):]
        if e.name.startswith("Optimizer."):
            return OPTIMISER
        if e.name.startswith("aten::"):
            outermost = e.name
        e = e.cpu_parent
    for name, nodes, forwards in FAMILIES:
        if node is not None and any(s in node for s in nodes):
            return name
        if node is None and outermost is not None and any(s in outermost for s in forwards):
            return name
    return OTHER


@contextmanager
def labelled_phases(strategy):
    """Wrap the strategy's meta step and its meta-loss forward in profiler ranges (instance
    attributes shadow the methods for this object only; removed on exit)."""
    compute, meta_loss = strategy.compute, strategy.meta_loss

    def labelled(fn, label):
        def call(*args, **kwargs):
            with record_function(label):
                return fn(*args, **kwargs)
        return call

    strategy.compute, strategy.meta_loss = labelled(compute, META_STEP), labelled(meta_loss, META_FORWARD)
    try:
        yield
    finally:
        del strategy.compute, strategy.meta_loss


def phase_of(start: float, ranges: Dict[str, List[Tuple[float, float]]]) -> str:
    def inside(label):
        return any(a <= start <= b for a, b in ranges[label])

    if inside(META_FORWARD):
        return PHASES[0]
    if inside(META_STEP):
        return PHASES[1]
    if inside("label"):
        return PHASES[2]
    return PHASES[3]


def exact_step(batch_size: int):
    """``(learner, batch, meta batch, model_and_optimizer)``: overhead.py's ``METHOD`` on ``MODEL``."""
    batch, meta, targets, classes, model_and_optimizer = build(MODEL, "cpu", batch_size)
    strategy_factory, labels_name, _ = METHODS[METHOD]
    model, optimizer = model_and_optimizer()
    labels = make_labels(labels_name, targets, classes)
    learner = Learner(model, optimizer, labels, strategy_factory(),
                      make_label_optimizer("mirror", labels.parameters(), 0.5))
    return learner, batch, meta, model_and_optimizer


def profile_steps(batch_size: int, steps: int, warmup: int) -> Dict[str, Dict[str, float]]:
    """``family -> phase -> ms per step`` of operator self time over ``steps`` profiled steps."""
    learner, batch, meta, _ = exact_step(batch_size)
    for _ in range(warmup):
        learner.step(batch, meta)
    with labelled_phases(learner.strategy), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            learner.step(batch, meta)
    events = prof.events()
    ranges: Dict[str, List[Tuple[float, float]]] = defaultdict(list)
    label_step = f"Optimizer.step#{type(learner.label_optimizer).__name__}.step"
    for e in events:
        key = {META_FORWARD: META_FORWARD, META_STEP: META_STEP, label_step: "label"}.get(e.name)
        if key is not None:
            ranges[key].append((e.time_range.start, e.time_range.end))
    assert len(ranges[META_STEP]) == len(ranges[META_FORWARD]) == len(ranges["label"]) == steps, \
        "every profiled step must hold one meta step, one meta forward and one label step"
    table: Dict[str, Dict[str, float]] = {name: {p: 0.0 for p in PHASES} for name, _, _ in FAMILIES}
    for e in events:
        if e.name in (META_FORWARD, META_STEP):
            continue  # our own ranges: their self time is the profiler's, not the step's
        table[family(e)][phase_of(e.time_range.start, ranges)] += e.self_cpu_time_total / 1e3 / steps
    return table


def step_times(batch_size: int, repeats: int, warmup: int) -> Dict[str, float]:
    """Unprofiled median seconds of the profiled step and of a plain step, timed round-robin."""
    learner, batch, meta, model_and_optimizer = exact_step(batch_size)
    plain_model, plain_optimizer = model_and_optimizer()
    times = interleaved_times({METHOD: lambda: learner.step(batch, meta),
                               "plain step": plain_step(plain_model, plain_optimizer, batch)}, repeats, warmup, "cpu")
    return {name: median(t) for name, t in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128, help="training and meta batch size")
    parser.add_argument("--steps", type=int, default=50, help="profiled steps (after --warmup steps)")
    parser.add_argument("--warmup", type=int, default=5)
    run_arguments(parser, seeds=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.smoke:
        args.batch_size, args.steps, args.warmup = 16, 2, 1
    table = profile_steps(args.batch_size, args.steps, args.warmup)
    times = step_times(args.batch_size, args.steps, args.warmup)

    total = sum(sum(row.values()) for row in table.values())
    phase_ms = {p: sum(row[p] for row in table.values()) for p in PHASES}
    families = {name: dict(ms=sum(row.values()), share=sum(row.values()) / total, by_phase=row)
                for name, row in table.items()}
    second_order = phase_ms[PHASES[1]]
    bn_double = table[FAMILIES[0][0]][PHASES[1]]

    command = "python benchmarks/profile_step.py " + " ".join(argv if argv is not None else sys.argv[1:])
    short = ["meta fwd", "meta bwd (2nd order)", "label step", "model step"]
    lines = ["# Where one exact k=1 step's time goes", "",
             f"Command: `{command.strip()}`; {machine('cpu')}. The `{METHOD}` full step of `overhead.py` on "
             f"`{MODEL}`, batch {args.batch_size} (meta batch the same size), {args.steps} steps profiled after "
             f"{args.warmup} warm-up step(s). Operators' self time in ms per step, by family (rows) and phase "
             "(columns); shares of the operators' total.", "",
             "| operator family | " + " | ".join(short) + " | total (ms) | share (%) |",
             "|---" * (len(PHASES) + 3) + "|"]
    for name, f in families.items():
        lines.append(f"| {name} | " + " | ".join(f"{f['by_phase'][p]:.2f}" for p in PHASES) +
                     f" | {f['ms']:.2f} | {100 * f['share']:.1f} |")
    lines.append("| **all operators** | " + " | ".join(f"{phase_ms[p]:.2f}" for p in PHASES) + f" | {total:.2f} | 100.0 |")
    lines += ["", f"Phase shares: " + ", ".join(f"{p} {100 * phase_ms[p] / total:.1f} %" for p in PHASES) + ".",
              f"BatchNorm's double backward: {100 * bn_double / second_order:.1f} % of the second-order backward, "
              f"{100 * families[FAMILIES[0][0]]['share']:.1f} % of the whole step's operator time.",
              f"Unprofiled median step: {times[METHOD] * 1e3:.2f} ms ({times[METHOD] / times['plain step']:.2f}× a plain "
              f"step of {times['plain step'] * 1e3:.2f} ms); operators' self time under the profiler: {total:.2f} ms.", ""]
    report = "\n".join(lines)
    stem = "profile_step" + ("_smoke" if args.smoke else "")
    write_outputs(Path(args.out), stem, report, {
        "machine": machine("cpu"), "method": METHOD, "model": MODEL, "batch_size": args.batch_size,
        "steps": args.steps, "warmup": args.warmup, "op_ms_per_step": total, "phases_ms": phase_ms,
        "families": families, "bn_double_backward_share_of_second_order": bn_double / second_order,
        "step_seconds_unprofiled": times})
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
