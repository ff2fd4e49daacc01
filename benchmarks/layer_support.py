"""Which layers each exact backend differentiates: the module x backend table of the docs.

    python benchmarks/layer_support.py            # every layer, every backend, SGD, Adam, AdamW (20 s)
    python benchmarks/layer_support.py --smoke    # two layers: what the test suite runs

Each layer researchers use sits in a tiny classifier of its own (``LAYERS``), in float64, with the
default kernels (nothing is switched off by hand). Every exact backend (``BACKENDS``) computes
the label hypergradient of per-sample labels after a warm optimiser step, and it is compared with
central differences of the meta loss after real ``torch.optim`` steps
(:func:`labelmeta.gradcheck.relative_error`): a cell is the largest relative error along the
gradient and a random direction. The last column goes through the :class:`~labelmeta.Learner`
with ``one-step``'s ``product="auto"`` as a run does: the probe picks the product and whether
the model step's forward is shared, and the cell names what it picked. Dropout: the random state
is seeded before the strategy and before the oracle's steps, so both draw the same masks.
Writes ``layer_support.{md,json}`` under ``--out``.
"""
from __future__ import annotations

import argparse
import copy
import sys
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from common import machine, run_arguments, write_outputs
from labelmeta import Learner, make_labels
from labelmeta.gradcheck import relative_error, solve_head, strategy_relative_error
from labelmeta.strategies import BACKENDS, STRATEGIES, TARGETS, MetaProblem, OneStep, Strategy, find_head, make_strategy

N, C, L, B = 12, 4, 5, 6  # samples, classes, sequence length (features), batch size
#: the tolerance a cell must meet (float64; the oracle's own error is far below it)
TOLERANCE = {"sgd": 1e-7, "adam": 3e-7, "adamw": 3e-7}
SEED = 11  # the random state before the strategy and the oracle (dropout masks)


class Tokens(nn.Module):
    """A layer's output reduced to class logits: ``head(mean over the sequence of body(x))``."""

    def __init__(self, body: nn.Module, width: int, reduce: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.body, self.head, self.reduce = body, nn.Linear(width, C), reduce

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.reduce(self.body(x)))


class Sequence(nn.Module):
    """``[B, L]`` scalars as a sequence of ``[B, L, width]`` features, through ``layer``."""

    def __init__(self, layer: nn.Module, width: int, output: Callable[[object], Tensor] = lambda out: out) -> None:
        super().__init__()
        self.embed, self.layer, self.output = nn.Linear(1, width), layer, output

    def forward(self, x: Tensor) -> Tensor:
        return self.output(self.layer(self.embed(x.unsqueeze(-1))))


class SelfAttention(nn.Module):
    """``nn.MultiheadAttention`` as self-attention, without the attention weights (the fused-kernel path)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(width, 2, batch_first=True)

    def forward(self, h: Tensor) -> Tensor:
        return self.attention(h, h, h, need_weights=False)[0]


def _mean(h: Tensor) -> Tensor:
    return h.mean(1)


def _flat(h: Tensor) -> Tensor:
    return h.flatten(1)


#: layer -> (model factory, input factory): a tiny classifier around the layer
LAYERS: Dict[str, Tuple[Callable[[], nn.Module], Callable[[torch.Generator, int], Tensor]]] = {
    "Linear + Tanh": (lambda: nn.Sequential(nn.Linear(L, 7), nn.Tanh(), nn.Linear(7, C)), None),
    "Conv1d": (lambda: nn.Sequential(nn.Unflatten(1, (1, L)), nn.Conv1d(1, 3, 3), nn.Tanh(), nn.Flatten(),
                                     nn.Linear(9, C)), None),
    "Conv2d + BatchNorm2d": (lambda: nn.Sequential(nn.Unflatten(1, (1, 1, L)), nn.Conv2d(1, 3, (1, 3)),
                                                   nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(9, C)), None),
    "BatchNorm1d": (lambda: nn.Sequential(nn.Linear(L, 7), nn.BatchNorm1d(7), nn.Tanh(), nn.Linear(7, C)), None),
    "LayerNorm": (lambda: nn.Sequential(nn.Linear(L, 7), nn.LayerNorm(7), nn.Tanh(), nn.Linear(7, C)), None),
    "GroupNorm": (lambda: nn.Sequential(nn.Unflatten(1, (1, L)), nn.Conv1d(1, 4, 3), nn.GroupNorm(2, 4), nn.Tanh(),
                                        nn.Flatten(), nn.Linear(12, C)), None),
    "Embedding": (lambda: Tokens(nn.Embedding(10, 6), 6, _mean), lambda g, n: torch.randint(0, 10, (n, L), generator=g)),
    "GRU": (lambda: Tokens(Sequence(nn.GRU(6, 6, batch_first=True), 6, lambda out: out[0]), 6, _mean), None),
    "LSTM": (lambda: Tokens(Sequence(nn.LSTM(6, 6, batch_first=True), 6, lambda out: out[0]), 6, _mean), None),
    "MultiheadAttention": (lambda: Tokens(Sequence(SelfAttention(8), 8), 8, _mean), None),
    "TransformerEncoderLayer": (lambda: Tokens(Sequence(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0,
                                                                                    batch_first=True), 8), 8, _mean),
                                None),
    "TransformerEncoderLayer, dropout 0.1": (lambda: Tokens(Sequence(nn.TransformerEncoderLayer(
        8, 2, 16, dropout=0.1, batch_first=True), 8), 8, _mean), None),
    "Dropout": (lambda: nn.Sequential(nn.Linear(L, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, C)), None),
}
#: the layers tests/test_layers.py also runs with Adam and AdamW; --smoke runs the last (the test suite
#: runs the whole table with SGD through tests/test_layers.py, the smoke run checks the report)
SMOKE_LAYERS = ("LayerNorm", "TransformerEncoderLayer")

#: per backend, the options that make it exact on the table's problem (its oracle: ``steps`` real steps,
#: or the head's inner problem solved); every target is paired with every backend
PAIR_OPTIONS: Dict[str, dict] = {
    "finite-difference": dict(scale=1e-4),  # the central difference's error is second order in its radius
    "truncated": dict(steps=2, through=2),
    # at the inner solution (the cell solves the head's problem first), solved to round-off
    "implicit": dict(steps=0, head_only=True, iterations=200, tolerance=1e-14),
}
#: backends whose exactness needs the backbone frozen (the oracle trains the head alone)
HEAD_ONLY = ("head-only", "implicit")
#: strategy columns: every registered backend with every registered target, the presets by their names,
#: and the unroll at k = 2 and one-step's two products named apart
COLUMNS: Dict[str, Tuple[str, dict]] = {
    **{f"{b}:{t}": (f"{b}:{t}", PAIR_OPTIONS.get(b, {})) for b in BACKENDS.names() for t in TARGETS.names()},
    **{name: (name, {}) for name in STRATEGIES.names()
       if ":" not in name and name not in BACKENDS and STRATEGIES.build(name).learns},
    "unrolled:labels k=2": ("unrolled", dict(steps=2)),
    "one-step:labels forward product": ("one-step", dict(product="forward")),
    "one-step:labels reverse product": ("one-step", dict(product="reverse")),
}
LEARNER = "Learner: one-step, auto"
#: Adam's eps is 1e-3 here, not 1e-8: where an entry's second moment is near zero (a unit that was dead in
#: the warm step), Adam's step is |g|-shaped around g = 0 within about eps, and learning to reweight takes
#: its gradient at w = 0, where g = 0 exactly (AdamW: no L2 term in it). The derivative there exists and
#: the backends give it, but it is too curved for a central difference at any radius float64 resolves
#: (measured on the encoder layer: 11 % off at a radius of 1e-4, 1.6e-6 at 1e-9, shrinking with it).
OPTIMIZERS = {
    "sgd": lambda params: torch.optim.SGD(params, lr=0.3, momentum=0.9, weight_decay=0.01),
    "adam": lambda params: torch.optim.Adam(params, lr=0.05, eps=1e-3, weight_decay=0.01),
    "adamw": lambda params: torch.optim.AdamW(params, lr=0.05, eps=1e-3, weight_decay=0.1),
}


def setup(layer: str, optimizer: str, head_only: bool = False):
    """Model (float64, after one warm optimiser step), optimiser, labels, batch and meta batch.

    ``head_only``: the backbone is frozen and the optimiser trains the classifier head alone."""
    build, inputs = LAYERS[layer]
    inputs = inputs or (lambda g, n: torch.randn(n, L, generator=g, dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, C, (N,), generator=g)
    idx = torch.randperm(N, generator=g)[:B]
    batch = (inputs(g, B), targets[idx], idx)
    meta = (inputs(g, 8), torch.randint(0, C, (8,), generator=g), torch.arange(8))
    torch.manual_seed(0)
    model = build().double()
    if head_only:
        head = find_head(model)[1]
        kept = {id(p) for p in head.parameters()}
        for p in model.parameters():
            p.requires_grad_(id(p) in kept)
    opt = OPTIMIZERS[optimizer]([p for p in model.parameters() if p.requires_grad])
    # the warm step on 64 other samples, so that every unit has been active (a unit no sample activated keeps
    # a zero second moment in Adam, whose step is then |g|-shaped around g = 0: a kink a central difference
    # cannot check, where the backends give its symmetric derivative)
    warm = (inputs(g, 64), torch.randint(0, C, (64,), generator=g))
    torch.manual_seed(SEED)
    opt.zero_grad()
    nn.functional.cross_entropy(model(warm[0]), warm[1]).backward()
    opt.step()
    labels = make_labels("per-sample", targets, C, scale=2.0).double()
    with torch.no_grad():  # off the symmetric initialisation
        labels.logits.add_(0.3 * torch.randn(labels.logits.shape, generator=g, dtype=torch.float64))
    return model, opt, labels, batch, meta


def learner_gradient(model, opt, labels, batch, meta) -> Tuple[list, str]:
    """The label gradient of one ``Learner.step`` with ``one-step`` (auto) on copies, and what the probe chose."""
    model, opt, labels = copy.deepcopy((model, opt, labels))
    frozen = torch.optim.SGD(labels.parameters(), lr=0.0)  # the gradient is read, the labels stay
    learner = Learner(model, opt, labels, OneStep(), frozen)
    learner.probe(batch, meta)
    torch.manual_seed(SEED)
    learner.step(batch, meta)
    plan = learner.plan
    chosen = f"{plan.strategy.product_for(model)}, {'shared' if plan.share_forward else 'own'} forward"
    return [p.grad.clone() for p in labels.parameters()], chosen


def move_head_to_solution(strategy: Strategy, model, opt, labels, batch, meta) -> None:
    """Move ``model``'s head to the solution of the inner problem ``strategy``'s target defines (the point
    ``implicit`` differentiates at): by :func:`~labelmeta.gradcheck.meta_loss_at_solution`'s solver,
    repeated while the target's weights depend on the model (a weight network reads the losses)."""
    name, head = find_head(model)
    order = [p for group in opt.param_groups for p in group["params"]]
    for _ in range(50):
        problem = MetaProblem(model, opt, labels, batch, meta)
        torch.manual_seed(SEED)  # as strategy_relative_error: the masks of a weight network's forward
        with torch.enable_grad():
            weights = strategy.target.parameters(problem).weights()
        weights = None if weights is None else weights.detach()
        before = [p.detach().clone() for p in order]
        solved, _ = solve_head(model, opt, batch, problem.soft_targets().detach(), weights, head=name, seed=SEED)
        with torch.no_grad():
            for p, q in zip(order, solved):
                p.copy_(q)
        if weights is None or max((a - b).abs().max().item() for a, b in zip(before, solved)) <= 1e-15:
            return


def cell(layer: str, column: str, optimizer: str) -> dict:
    """One cell: ``{"error": relative error}`` or ``{"refused"/"failed": message}``, with what was chosen.

    A strategy column takes one meta step first (on the same model, whose kept state, as ``higher``'s
    patched copy, it then carries, as in a run), then its hypergradient is checked against central
    differences of the meta loss after real ``torch.optim`` steps, with respect to every meta parameter
    its target names (:func:`~labelmeta.gradcheck.strategy_relative_error`)."""
    name, options = COLUMNS.get(column, (None, {}))
    backend = None if name is None else name.split(":")[0]
    model, opt, labels, batch, meta = setup(layer, optimizer, head_only=backend in HEAD_ONLY)
    note: Optional[str] = None
    try:
        if column == LEARNER:
            grads, note = learner_gradient(model, opt, labels, batch, meta)
            return {"error": relative_error(grads, model, opt, labels, batch, meta, seed=SEED), "chosen": note}
        strategy = make_strategy(name, **options)
        if hasattr(strategy.target, "net"):  # a weight network of the table's precision
            strategy.target.net.double()
        strategy.check(opt)
        strategy.check_model(model)
        if backend == "implicit":
            move_head_to_solution(strategy, model, opt, labels, batch, meta)
        # the first meta step: what the backend keeps stays with it; the target (a weight network's Adam
        # step) and the label gradient are copies, so the checked step's meta parameters are the table's
        torch.manual_seed(SEED)
        Strategy(strategy.backend, copy.deepcopy(strategy.target)).compute(
            MetaProblem(model, opt, copy.deepcopy(labels), batch, meta))
        steps = getattr(strategy.backend, "steps", 1)
        error = strategy_relative_error(strategy, model, opt, labels, batch, meta, steps=steps, seed=SEED,
                                        solved_head=find_head(model)[0] if backend == "implicit" else None)
    except ValueError as err:  # refused, with a reason
        return {"refused": str(err).splitlines()[0]}
    except (RuntimeError, NotImplementedError) as err:
        return {"failed": f"{type(err).__name__}: {str(err).splitlines()[0]}"}
    return {"error": error}


def tolerance(column: str, optimizer: str) -> float:
    """What a cell must meet: the oracle's own error is far below it (float64); a central difference
    of radius 1e-4 is good to its second order."""
    return 1e-5 if column.startswith("finite-difference") else TOLERANCE[optimizer]


def survey(layers, optimizers, columns=None) -> Dict[str, Dict[str, Dict[str, dict]]]:
    """``{optimizer: {layer: {column: cell}}}`` (every column, or those named)."""
    columns = list(columns or [*COLUMNS, LEARNER])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. nested tensors' prototype warning from the encoder layer
        return {o: {layer: {c: cell(layer, c, o) for c in columns} for layer in layers} for o in optimizers}


def shown(c: dict, limit: float, reasons: List[str]) -> str:
    """A cell as the table shows it; a refusal's reason becomes a numbered note (added to ``reasons``)."""
    if "error" in c:
        mark = "✓" if c["error"] <= limit else "✗"
        return f"{mark} {c['error']:.0e}" + (f" ({c['chosen']})" if c.get("chosen") else "")
    if "refused" in c:
        if c["refused"] not in reasons:
            reasons.append(c["refused"])
        return f"refused [{reasons.index(c['refused']) + 1}]"
    return f"✗ {c['failed']}"


def failures(results: Dict[str, Dict[str, Dict[str, dict]]]) -> List[Tuple[str, str, str]]:
    """``(optimizer, layer, column)`` of every cell off its tolerance or failed (a refusal is not a failure)."""
    return [(o, layer, c) for o, rows in results.items() for layer, cells in rows.items() for c, v in cells.items()
            if "failed" in v or ("error" in v and v["error"] > tolerance(c, o))]


def report(results: Dict[str, Dict[str, Dict[str, dict]]], command: str) -> str:
    lines = ["# Layers x strategies", "",
             f"Command: `{command}`. Machine: {machine('cpu')}. float64, default kernels, per-sample labels, one warm "
             "optimiser step. Every registered backend with every registered target, the presets by their names, "
             "the unroll at k = 2 and one-step's two products: each takes one meta step on the model first (so "
             "that what a backend keeps between steps, as `higher`'s patched copy, is in play), then a cell is the "
             "largest relative error of its hypergradient, with respect to every meta parameter its target names "
             "(label parameters, per-sample weights, a weight network's), against central differences of the "
             "meta loss after real `torch.optim` steps (along the gradient and one random direction), ✓ within "
             f"{TOLERANCE['sgd']:g} (SGD), {TOLERANCE['adam']:g} (Adam, AdamW), 1e-5 for `finite-difference` (radius "
             "1e-4; its error is second order in it). `head-only` and `implicit` run with the backbone frozen (what "
             "they are exact for); `implicit` (`head_only`) at the head's inner solution, against central "
             "differences of the meta loss at the inner problem re-solved by Newton's method (to round-off). `truncated` with "
             "k = 2 through 2. The last column is a `Learner` step with `one-step`'s automatic choice: the product "
             "the probe kept and whether the model step's forward is shared. Measured on the CPU (no GPU was lent).",
             ""]
    reasons: List[str] = []
    for optimizer, rows in results.items():
        layers = list(rows)
        lines += [f"## {optimizer}", "", "| strategy | " + " | ".join(layers) + " |", "|---" * (len(layers) + 1) + "|"]
        for column in next(iter(rows.values())):
            lines.append(f"| {column} | " + " | ".join(shown(rows[layer][column], tolerance(column, optimizer), reasons)
                                                    for layer in layers) + " |")
        lines.append("")
    if reasons:
        lines += ["Refused before any step (`ValueError`):", ""]
        lines += [f"{i}. {reason}" for i, reason in enumerate(reasons, 1)] + [""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    run_arguments(parser, seeds=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    layers = SMOKE_LAYERS[-1:] if args.smoke else tuple(LAYERS)
    optimizers = ("sgd",) if args.smoke else tuple(OPTIMIZERS)
    results = survey(layers, optimizers)
    command = "python benchmarks/layer_support.py" + (" --smoke" if args.smoke else "")
    text = report(results, command)
    write_outputs(Path(args.out), "layer_support_smoke" if args.smoke else "layer_support", text, results)
    print(text)
    return 1 if failures(results) else 0


if __name__ == "__main__":
    sys.exit(main())
