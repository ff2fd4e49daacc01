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
from labelmeta.gradcheck import label_gradient, relative_error
from labelmeta.strategies import Functional, OneStep, Strategy, Unrolled

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
#: what --smoke runs (and the test suite through it)
SMOKE_LAYERS = ("LayerNorm", "TransformerEncoderLayer")

#: backend -> strategy factory (the exact ones; each at k = 1, the unroll also at k = 2)
BACKENDS: Dict[str, Callable[[], Strategy]] = {
    "unrolled (higher) k=1": lambda: Unrolled(steps=1),
    "unrolled (higher) k=2": lambda: Unrolled(steps=2),
    "functional (torch.func) k=1": lambda: Functional(steps=1),
    "one-step, forward product": lambda: OneStep(product="forward"),
    "one-step, reverse product": lambda: OneStep(product="reverse"),
}
LEARNER = "Learner: one-step, auto"
OPTIMIZERS = {
    "sgd": lambda params: torch.optim.SGD(params, lr=0.3, momentum=0.9, weight_decay=0.01),
    "adam": lambda params: torch.optim.Adam(params, lr=0.05, weight_decay=0.01),
    "adamw": lambda params: torch.optim.AdamW(params, lr=0.05, weight_decay=0.1),
}


def setup(layer: str, optimizer: str):
    """Model (float64, after one warm optimiser step), optimiser, labels, batch and meta batch."""
    build, inputs = LAYERS[layer]
    inputs = inputs or (lambda g, n: torch.randn(n, L, generator=g, dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, C, (N,), generator=g)
    idx = torch.randperm(N, generator=g)[:B]
    batch = (inputs(g, B), targets[idx], idx)
    meta = (inputs(g, 8), torch.randint(0, C, (8,), generator=g), torch.arange(8))
    torch.manual_seed(0)
    model = build().double()
    opt = OPTIMIZERS[optimizer](model.parameters())
    torch.manual_seed(SEED)
    opt.zero_grad()
    nn.functional.cross_entropy(model(batch[0]), batch[1]).backward()
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
    chosen = f"{learner.strategy.product_for(model)}, {'shared' if learner.share_forward else 'own'} forward"
    return [p.grad.clone() for p in labels.parameters()], chosen


def cell(layer: str, backend: str, optimizer: str) -> dict:
    """One cell: ``{"error": relative error}`` or ``{"refused"/"failed": message}``, with what was chosen."""
    model, opt, labels, batch, meta = setup(layer, optimizer)
    note: Optional[str] = None
    try:
        if backend == LEARNER:
            grads, note = learner_gradient(model, opt, labels, batch, meta)
        else:
            strategy = BACKENDS[backend]()
            strategy.check_model(model)
            grads = label_gradient(strategy, model, opt, labels, batch, meta, seed=SEED)
    except ValueError as err:  # refused, with a reason
        return {"refused": str(err).splitlines()[0]}
    except (RuntimeError, NotImplementedError) as err:
        return {"failed": f"{type(err).__name__}: {str(err).splitlines()[0]}"}
    steps = 2 if backend.endswith("k=2") else 1
    return {"error": relative_error(grads, model, opt, labels, batch, meta, steps=steps, seed=SEED), "chosen": note}


def survey(layers, optimizers) -> Dict[str, Dict[str, Dict[str, dict]]]:
    """``{optimizer: {layer: {backend: cell}}}``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. nested tensors' prototype warning from the encoder layer
        return {o: {layer: {b: cell(layer, b, o) for b in [*BACKENDS, LEARNER]} for layer in layers}
                for o in optimizers}


def shown(c: dict, tolerance: float, reasons: List[str]) -> str:
    """A cell as the table shows it; a refusal's reason becomes a numbered note (added to ``reasons``)."""
    if "error" in c:
        mark = "✓" if c["error"] <= tolerance else "✗"
        return f"{mark} {c['error']:.0e}" + (f" ({c['chosen']})" if c.get("chosen") else "")
    if "refused" in c:
        if c["refused"] not in reasons:
            reasons.append(c["refused"])
        return f"refused [{reasons.index(c['refused']) + 1}]"
    return f"✗ {c['failed']}"


def report(results: Dict[str, Dict[str, Dict[str, dict]]], command: str) -> str:
    lines = ["# Layers x exact backends", "",
             f"Command: `{command}`. Machine: {machine('cpu')}. float64, default kernels, per-sample labels, one warm "
             "optimiser step; a cell is the largest relative error of the label hypergradient against central "
             "differences after real `torch.optim` steps (along the gradient and one random direction), ✓ where it "
             f"is within {TOLERANCE['sgd']:g} (SGD) or {TOLERANCE['adam']:g} (Adam, AdamW). The last column is a "
             "`Learner` step with `one-step`'s automatic choice: the product the probe kept and whether the model "
             "step's forward is shared. Measured on the CPU; on a GPU the same code selects the math attention "
             "kernel and switches cuDNN off for recurrent layers inside the meta step (not measured here: no GPU "
             "was lent).", ""]
    reasons: List[str] = []
    for optimizer, rows in results.items():
        lines += [f"## {optimizer}", "", "| layer | " + " | ".join([*BACKENDS, LEARNER]) + " |",
                  "|---" * (len(BACKENDS) + 2) + "|"]
        for layer, cells in rows.items():
            lines.append(f"| {layer} | "
                         + " | ".join(shown(c, TOLERANCE[optimizer], reasons) for c in cells.values()) + " |")
        lines.append("")
    if reasons:
        lines += ["Refused when the learner is built (`ValueError`):", ""]
        lines += [f"{i}. {reason}" for i, reason in enumerate(reasons, 1)] + [""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    run_arguments(parser, seeds=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    layers = SMOKE_LAYERS if args.smoke else tuple(LAYERS)
    optimizers = ("sgd",) if args.smoke else tuple(OPTIMIZERS)
    results = survey(layers, optimizers)
    command = "python benchmarks/layer_support.py" + (" --smoke" if args.smoke else "")
    text = report(results, command)
    write_outputs(Path(args.out), "layer_support_smoke" if args.smoke else "layer_support", text, results)
    print(text)
    failed = [(o, layer, b) for o, rows in results.items() for layer, cells in rows.items()
              for b, c in cells.items() if "error" in c and c["error"] > TOLERANCE[o] or "failed" in c]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
