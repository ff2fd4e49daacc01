"""Where the time of one exact k=1 training step goes, by operator family and phase, per ``torch.profiler``.

    python benchmarks/profile_step.py            # one-step and torch.func on cnn1d-bn and the MLP, 1 CPU thread
    python benchmarks/profile_step.py --smoke    # seconds; what the test suite runs

Profiles full steps (``Learner.step``: meta step, label step, model step) of the methods of
``benchmarks/overhead.py`` named by ``--methods`` (the same strategies, labels and label
optimiser, from its ``METHODS``; the same models, batches and SGD from ``common.build``), batch =
meta batch = 128. Every operator's *self* time is assigned

- to an **operator family**: the autograd node that ran it, if any (``ConvolutionBackward0`` is
  a convolution's backward, ``ConvolutionBackwardBackward0`` its double backward, i.e. the
  backward of the inner step's backward), else its outermost ``aten`` operator (a forward, or
  a forward-mode product), and optimiser updates to ``optimiser steps``;
- to a **phase**: the innermost of the profiler ranges the library itself opens (the learner's
  ``labelmeta: ...`` ranges, ``one-step``'s ``one-step: ...`` ranges), and for a strategy with a
  differentiable meta loss (``functional``) its ``meta_loss`` call (the unroll's forward: inner
  step kept as a graph, then the meta forward) as its own range; what lies in a meta step
  outside it is the second-order backward.

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

from common import SHAPES, build, interleaved_times, machine, median, plain_step, run_arguments, write_outputs
from labelmeta import Learner, make_label_optimizer, make_labels
from overhead import METHODS

DEFAULT_METHODS = ["exact k=1 (one-step, forward-mode)", "exact k=1 (one-step, reverse-mode)", "exact k=1 (torch.func)"]
NODE = "autograd::engine::evaluate_function: "
OUTSIDE = "outside the ranges (label forward, checks, observe)"
META_LOSS = "meta loss forward (inner step kept as a graph, meta forward)"
SECOND_ORDER = "labelmeta: meta step"  # what a meta-loss strategy's meta step does outside its meta_loss

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
def labelled_meta_loss(strategy):
    """Wrap a meta-loss strategy's ``meta_loss`` in a profiler range (an instance attribute
    shadows the method for this object only; removed on exit). Other strategies label their own phases."""
    if not hasattr(strategy, "meta_loss"):
        yield
        return
    meta_loss = strategy.meta_loss

    def call(*args, **kwargs):
        with record_function(META_LOSS):
            return meta_loss(*args, **kwargs)

    strategy.meta_loss = call
    try:
        yield
    finally:
        del strategy.meta_loss


def step_of(method: str, model_name: str, batch_size: int):
    """``(learner, batch, meta batch, model_and_optimizer)`` for overhead.py's ``method`` on ``model_name``."""
    batch, meta, targets, classes, model_and_optimizer = build(model_name, "cpu", batch_size)
    strategy_factory, labels_name, _ = METHODS[method]
    model, optimizer = model_and_optimizer()
    labels = make_labels(labels_name, targets, classes)
    learner = Learner(model, optimizer, labels, strategy_factory(),
                      make_label_optimizer("mirror", labels.parameters(), 0.5))
    return learner, batch, meta, model_and_optimizer


def profile_steps(method: str, model_name: str, batch_size: int, steps: int, warmup: int) -> Dict[str, Dict[str, float]]:
    """``family -> phase -> ms per step`` of operator self time over ``steps`` profiled steps."""
    learner, batch, meta, _ = step_of(method, model_name, batch_size)
    for _ in range(warmup):
        learner.step(batch, meta)
    with labelled_meta_loss(learner.strategy), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            learner.step(batch, meta)
    events = prof.events()
    ranges = [(e.time_range.start, e.time_range.end, e.name) for e in events
              if e.name.startswith(("labelmeta: ", "one-step: ")) or e.name == META_LOSS]
    assert sum(name == "labelmeta: meta step" for _, _, name in ranges) == steps, "every profiled step must hold a meta step"

    def phase_of(start: float) -> str:
        inside = [(a, name) for a, b, name in ranges if a <= start <= b]
        return max(inside)[1] if inside else OUTSIDE  # the innermost: the latest to begin

    table: Dict[str, Dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for e in events:
        if e.name.startswith(("labelmeta: ", "one-step: ")) or e.name == META_LOSS:
            continue  # our own ranges: their self time is the profiler's, not the step's
        table[family(e)][phase_of(e.time_range.start)] += e.self_cpu_time_total / 1e3 / steps
    return {name: dict(table[name]) for name, _, _ in FAMILIES}


def step_times(method: str, model_name: str, batch_size: int, repeats: int, warmup: int) -> Dict[str, float]:
    """Unprofiled median seconds of the profiled step and of a plain step, timed round-robin."""
    learner, batch, meta, model_and_optimizer = step_of(method, model_name, batch_size)
    plain_model, plain_optimizer = model_and_optimizer()
    times = interleaved_times({method: lambda: learner.step(batch, meta),
                               "plain step": plain_step(plain_model, plain_optimizer, batch)}, repeats, warmup, "cpu")
    return {name: median(t) for name, t in times.items()}


def report(method: str, model_name: str, table: Dict[str, Dict[str, float]], times: Dict[str, float]) -> List[str]:
    """The markdown section of one (method, model)."""
    phases = sorted({p for row in table.values() for p in row}, key=_phase_order)
    total = sum(sum(row.values()) for row in table.values())
    by_phase = {p: sum(row.get(p, 0.0) for row in table.values()) for p in phases}
    lines = [f"## {method} on {model_name}", "",
             "| operator family | " + " | ".join(_short(p) for p in phases) + " | total (ms) | share (%) |",
             "|---" * (len(phases) + 3) + "|"]
    for name, row in table.items():
        ms = sum(row.values())
        if ms == 0:
            continue
        lines.append(f"| {name} | " + " | ".join(f"{row.get(p, 0.0):.2f}" for p in phases) +
                     f" | {ms:.2f} | {100 * ms / total:.1f} |")
    lines.append("| **all operators** | " + " | ".join(f"{by_phase[p]:.2f}" for p in phases) + f" | {total:.2f} | 100.0 |")
    ratio = times[method] / times["plain step"]
    lines += ["", "Shares of the operators' time: " + "; ".join(f"{_short(p)} {100 * by_phase[p] / total:.1f} %"
                                                          for p in phases) + ".",
              f"Unprofiled median step: {times[method] * 1e3:.2f} ms ({ratio:.2f}× a plain step of "
              f"{times['plain step'] * 1e3:.2f} ms); operators' self time under the profiler: {total:.2f} ms.", ""]
    return lines


_ORDER = ["labelmeta: model forward (shared)", "one-step: inner gradient", META_LOSS, SECOND_ORDER,
          "one-step: meta loss and its gradient", "one-step: forward-mode product J u", "one-step: reverse-mode product J u",
          "one-step: label gradient", "labelmeta: label step", "labelmeta: model step", OUTSIDE]


def _phase_order(phase: str) -> int:
    return _ORDER.index(phase) if phase in _ORDER else len(_ORDER)


def _short(phase: str) -> str:
    """A column title: the range's name without its prefix (the meta step's remainder is its 2nd-order backward)."""
    if phase == SECOND_ORDER:
        return "meta step: rest (2nd-order backward, label grads)"
    if phase == META_LOSS:
        return "meta loss forward"
    return phase.split(": ", 1)[-1] if ": " in phase else phase.split(" (")[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=list(METHODS))
    parser.add_argument("--models", nargs="+", default=["cnn1d-bn", "mlp"], choices=[m for m in SHAPES if m != "wrn"])
    parser.add_argument("--batch-size", type=int, default=128, help="training and meta batch size")
    parser.add_argument("--steps", type=int, default=50, help="profiled steps (after --warmup steps)")
    parser.add_argument("--warmup", type=int, default=5)
    run_arguments(parser, seeds=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.smoke:
        args.batch_size, args.steps, args.warmup = 16, 2, 1
    command = "python benchmarks/profile_step.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# Where one exact k=1 step's time goes", "",
             f"Command: `{command.strip()}`; {machine('cpu')}. Full steps of `overhead.py`'s methods, batch "
             f"{args.batch_size} (meta batch the same size), {args.steps} steps profiled after {args.warmup} warm-up "
             "step(s). Operators' self time in ms per step, by family (rows) and phase (columns: the library's "
             "own profiler ranges); shares of the operators' total.", ""]
    data = {"machine": machine("cpu"), "batch_size": args.batch_size, "steps": args.steps, "results": {}}
    for model_name in args.models:
        for method in args.methods:
            table = profile_steps(method, model_name, args.batch_size, args.steps, args.warmup)
            times = step_times(method, model_name, args.batch_size, args.steps, args.warmup)
            lines += report(method, model_name, table, times)
            data["results"][f"{method} | {model_name}"] = {"families_by_phase": table, "step_seconds_unprofiled": times}
    text = "\n".join(lines)
    stem = "profile_step" + ("_smoke" if args.smoke else "")
    write_outputs(Path(args.out), stem, text, data)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
