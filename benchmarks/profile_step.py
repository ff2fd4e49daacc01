"""Where the time of one training step goes, by operator family and phase, per ``torch.profiler``.

    python benchmarks/profile_step.py            # one-step and torch.func on cnn1d-bn and the MLP, 1 CPU thread
    python benchmarks/profile_step.py --l2rw     # the L2RW rows and the default against the hand-written step
    python benchmarks/profile_step.py --smoke    # seconds; what the test suite runs

Profiles full steps (``Learner.step``: meta step, label step, model step) of the methods of
``benchmarks/overhead.py`` named by ``--methods`` (the same strategies, labels and label
optimiser, from its ``METHODS``; the same models, batches and SGD from ``common.build``), and of its
hand-written ``torch.func`` L2RW step (``reference: hand-written torch.func``), batch = meta batch = 128.
``--l2rw`` profiles labelmeta's L2RW rows (``reweight``, ``functional:weights``, ``one-step:weights``)
and the default against the hand-written step and writes ``profile_l2rw[_smoke].{md,json}``. Every
operator's *self* time is assigned

- to an **operator family**: the autograd node that ran it, if any (``ConvolutionBackward0`` is
  a convolution's backward, ``ConvolutionBackwardBackward0`` its double backward, i.e. the
  backward of the inner step's backward), else its outermost ``aten`` operator (a forward, or
  a forward-mode product), and optimiser updates to ``optimiser steps``;
- to a **phase**: the innermost of the profiler ranges the library itself opens (the learner's and
  the strategy's ``labelmeta: ...`` ranges, ``one-step``'s ``one-step: ...`` ranges, the unrolls'
  ``unroll: ...`` ranges: building the functional copy, each inner step, the meta forward; the
  hand-written step's ``hand-written: ...``), and for a strategy with a differentiable meta loss
  (``functional``, ``unrolled``) its ``meta_loss`` call as its own range (what its ``unroll:`` ranges
  leave of it: the glue between them); what lies in a meta step outside it is the second-order backward.

Shares are of the operators' total self time. A second table per step gives each phase's wall time
under the profiler (a range's duration less the ranges inside it; "outside the ranges" is the rest
of the step), the operators' self time in it, and the difference: Python between the operators
(checks, context managers, building the unroll), the autograd engine's own work and the profiler's
cost per event, which inflates phases of many small operators. The unprofiled median step times of
all the profiled methods on a model and of a plain step are timed together, round-robin. Writes
``profile_step[_smoke].{md,json}`` (``profile_l2rw...`` with ``--l2rw``).
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
from overhead import HANDWRITTEN, METHODS, handwritten_l2rw

DEFAULT_METHODS = ["exact k=1 (one-step, forward-mode)", "exact k=1 (one-step, reverse-mode)", "exact k=1 (torch.func)"]
#: ``--l2rw``: labelmeta's L2RW rows and the default, against the hand-written torch.func L2RW step
L2RW_METHODS = ["default: one-step-reweight", "reweight (unrolled:weights, higher)", "functional:weights (torch.func)",
                "one-step:weights", HANDWRITTEN]
NODE = "autograd::engine::evaluate_function: "
OUTSIDE = "outside the ranges (label forward, checks, observe)"
META_LOSS = "meta loss forward (inner step kept as a graph, meta forward)"
SECOND_ORDER = "labelmeta: meta step"  # what a meta-loss strategy's meta step does outside its meta_loss
STEP = "profile_step: step"  # around each profiled step: the step's wall time
#: the names of the profiler ranges that are phases
PREFIXES = ("labelmeta: ", "one-step: ", "unroll: ", "hand-written: ")
META_STEPS = ("labelmeta: meta step", "hand-written: meta step")

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
    """Wrap the ``meta_loss`` of a strategy's meta-loss backend in a profiler range (an instance attribute
    shadows the method for this object only; removed on exit). Other backends label their own phases.
    (The backend's, not the strategy's: the backend calls its own ``meta_loss``.)"""
    strategy = getattr(strategy, "backend", strategy)
    if strategy is None or not hasattr(strategy, "meta_loss"):
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
    """``(step, strategy)`` for overhead.py's ``method`` on ``model_name``: one full step with a meta
    batch, and the learner's strategy (``None`` for the hand-written step)."""
    batch, meta, targets, classes, model_and_optimizer = build(model_name, "cpu", batch_size)
    model, optimizer = model_and_optimizer()
    if method == HANDWRITTEN:
        return handwritten_l2rw(model, optimizer, batch, meta)[0], None
    spec = METHODS[method]
    labels = make_labels(spec.labels, targets, classes)
    learner = Learner(model, optimizer, labels, spec.strategy(),
                      make_label_optimizer("mirror", labels.parameters(), 0.5) if labels.learnable else None)
    return (lambda: learner.step(batch, meta)), learner


def _is_range(name: str) -> bool:
    return name.startswith(PREFIXES) or name in (META_LOSS, STEP)


def profile_steps(method: str, model_name: str, batch_size: int, steps: int,
                  warmup: int) -> Tuple[Dict[str, Dict[str, float]], Dict[str, float]]:
    """``(family -> phase -> ms per step of operator self time, phase -> ms per step of wall time)``
    over ``steps`` profiled steps (a phase's wall time: its ranges' durations less the ranges inside them)."""
    step, learner = step_of(method, model_name, batch_size)
    for _ in range(warmup):
        step()
    with labelled_meta_loss(learner.strategy if learner is not None else None), \
            profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            with record_function(STEP):
                step()
    events = prof.events()
    ranges = sorted((e.time_range.start, e.time_range.end, e.name) for e in events if _is_range(e.name))
    assert sum(name in META_STEPS for _, _, name in ranges) == steps, "every profiled step must hold a meta step"

    def phase_of(start: float) -> str:
        inside = [(a, name) for a, b, name in ranges if a <= start <= b and name != STEP]
        return max(inside)[1] if inside else OUTSIDE  # the innermost: the latest to begin

    table: Dict[str, Dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for e in events:
        if _is_range(e.name):
            continue  # our own ranges: their self time is the profiler's, not the step's
        table[family(e)][phase_of(e.time_range.start)] += e.self_cpu_time_total / 1e3 / steps
    # wall time: each range's duration, less that of the ranges directly inside it (its children)
    wall: Dict[str, float] = defaultdict(float)
    open_: List[Tuple[float, float, str]] = []
    for a, b, name in ranges:
        while open_ and open_[-1][1] < a:
            open_.pop()
        phase = OUTSIDE if name == STEP else name
        wall[phase] += (b - a) / 1e3 / steps
        if open_:
            parent = open_[-1][2]
            wall[OUTSIDE if parent == STEP else parent] -= (b - a) / 1e3 / steps
        open_.append((a, b, name))
    return {name: dict(table[name]) for name, _, _ in FAMILIES}, dict(wall)


def step_times(methods: List[str], model_name: str, batch_size: int, repeats: int, warmup: int) -> Dict[str, float]:
    """Unprofiled median seconds of each method's step and of a plain step, timed together round-robin."""
    steps = {method: step_of(method, model_name, batch_size)[0] for method in methods}
    batch, _, _, _, model_and_optimizer = build(model_name, "cpu", batch_size)
    steps["plain step"] = plain_step(*model_and_optimizer(), batch)
    times = interleaved_times(steps, repeats, warmup, "cpu")
    return {name: median(t) for name, t in times.items()}


def report(method: str, model_name: str, table: Dict[str, Dict[str, float]], wall: Dict[str, float],
           times: Dict[str, float]) -> List[str]:
    """The markdown section of one (method, model)."""
    phases = sorted({p for row in table.values() for p in row} | set(wall), key=_phase_order)
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
                                                          for p in phases) + ".", "",
              "| phase | wall time (ms) | operators (ms) | rest: Python, autograd engine, profiler (ms) |",
              "|---|---|---|---|"]
    for p in phases:
        lines.append(f"| {_short(p)} | {wall.get(p, 0.0):.2f} | {by_phase[p]:.2f} | {wall.get(p, 0.0) - by_phase[p]:.2f} |")
    steps_wall = sum(wall.values())
    lines.append(f"| **step** | {steps_wall:.2f} | {total:.2f} | {steps_wall - total:.2f} |")
    versus = (f"; {times[method] / times[HANDWRITTEN]:.2f}× the hand-written step's {times[HANDWRITTEN] * 1e3:.2f} ms"
              if HANDWRITTEN in times and method != HANDWRITTEN else "")
    lines += ["", f"Unprofiled median step: {times[method] * 1e3:.2f} ms ({ratio:.2f}× a plain step of "
              f"{times['plain step'] * 1e3:.2f} ms{versus}); under the profiler: {steps_wall:.2f} ms, of which "
              f"operators' self time {total:.2f} ms.", ""]
    return lines


_ORDER = ["labelmeta: model forward (shared)", "labelmeta: meta parameters", "unroll: functional copy",
          "unroll: inner step", "unroll: meta forward", "one-step: inner gradient", META_LOSS, SECOND_ORDER,
          "one-step: meta loss and its gradient", "one-step: forward-mode product J u", "one-step: reverse-mode product J u",
          "one-step: label gradient", "labelmeta: target update", "labelmeta: label step", "hand-written: inner forward",
          "hand-written: inner gradient", "hand-written: SGD step", "hand-written: meta forward",
          "hand-written: gradient to the weights", "hand-written: weights", "hand-written: meta step",
          "labelmeta: model step", "hand-written: model step", OUTSIDE]


def _phase_order(phase: str) -> int:
    return _ORDER.index(phase) if phase in _ORDER else len(_ORDER)


def _short(phase: str) -> str:
    """A column title: the range's name without its prefix (the meta step's remainder is its 2nd-order backward)."""
    if phase == SECOND_ORDER:
        return "meta step: rest (2nd-order backward, label grads)"
    if phase == "hand-written: meta step":
        return "meta step: rest"
    if phase == META_LOSS:
        return "meta loss forward"
    return phase.split(": ", 1)[-1] if ": " in phase else phase.split(" (")[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=None, choices=list(METHODS) + [HANDWRITTEN],
                        help=f"default: {', '.join(DEFAULT_METHODS)} (with --l2rw: {', '.join(L2RW_METHODS)})")
    parser.add_argument("--l2rw", action="store_true",
                        help="labelmeta's L2RW rows and the default against the hand-written step (profile_l2rw.*)")
    parser.add_argument("--models", nargs="+", default=["cnn1d-bn", "mlp"], choices=[m for m in SHAPES if m != "wrn"])
    parser.add_argument("--batch-size", type=int, default=128, help="training and meta batch size")
    parser.add_argument("--steps", type=int, default=50, help="profiled steps (after --warmup steps)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=None, help="unprofiled timing rounds (default: --steps)")
    run_arguments(parser, seeds=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = args.methods or (L2RW_METHODS if args.l2rw else DEFAULT_METHODS)
    if args.smoke:
        args.batch_size, args.steps, args.warmup, args.repeats = 16, 2, 1, 2
    repeats = args.repeats or args.steps
    command = "python benchmarks/profile_step.py " + " ".join(argv if argv is not None else sys.argv[1:])
    title = ("# Where labelmeta's L2RW steps and the default lose time against a hand-written torch.func step"
             if args.l2rw else "# Where one exact k=1 step's time goes")
    lines = [title, "",
             f"Command: `{command.strip()}`; {machine('cpu')}. Full steps of `overhead.py`'s methods, batch "
             f"{args.batch_size} (meta batch the same size), {args.steps} steps profiled after {args.warmup} warm-up "
             "step(s). Operators' self time in ms per step, by family (rows) and phase (columns: the library's "
             "own profiler ranges); shares of the operators' total. Then each phase's wall time under the profiler "
             f"against its operators' time; unprofiled medians of {repeats} round-robin rounds.", ""]
    data = {"machine": machine("cpu"), "batch_size": args.batch_size, "steps": args.steps, "results": {}}
    for model_name in args.models:
        times = step_times(methods, model_name, args.batch_size, repeats, args.warmup)
        if HANDWRITTEN in times:
            lines += [f"## Summary on {model_name}", "",
                      "| step | unprofiled median (ms) | × plain step | × hand-written |", "|---|---|---|---|"]
            for method in methods:
                lines.append(f"| {method} | {times[method] * 1e3:.2f} | {times[method] / times['plain step']:.2f} | "
                             f"{times[method] / times[HANDWRITTEN]:.2f} |")
            lines += ["", f"Plain step: {times['plain step'] * 1e3:.2f} ms.", ""]
        for method in methods:
            table, wall = profile_steps(method, model_name, args.batch_size, args.steps, args.warmup)
            lines += report(method, model_name, table, wall, times)
            data["results"][f"{method} | {model_name}"] = {
                "families_by_phase": table, "wall_by_phase": wall,
                "step_seconds_unprofiled": {name: times[name] for name in (method, "plain step", HANDWRITTEN) if name in times}}
    text = "\n".join(lines)
    stem = ("profile_l2rw" if args.l2rw else "profile_step") + ("_smoke" if args.smoke else "")
    write_outputs(Path(args.out), stem, text, data)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
