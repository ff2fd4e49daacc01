"""Optimisers for label parameters.

Per-sample label rows are sparse: a row gets a gradient only in the steps whose batch holds that
sample. Optimisers with moments (momentum, Adam) keep moving rows that are not in the batch, so
the recommended optimiser here is moment-free.
"""
from __future__ import annotations

from typing import Iterable, Literal

import torch
from torch import Tensor

from .registry import Registry

LABEL_OPTIMIZERS: Registry[torch.optim.Optimizer] = Registry("label optimiser")


@LABEL_OPTIMIZERS.register("sgd")
def sgd(params: Iterable[Tensor], lr: float) -> torch.optim.Optimizer:
    """Plain SGD (no momentum, so rows absent from a batch stay where they are)."""
    return torch.optim.SGD(params, lr=lr)


@LABEL_OPTIMIZERS.register("adam")
def adam(params: Iterable[Tensor], lr: float) -> torch.optim.Optimizer:
    """``torch.optim.Adam``; its moments move per-sample rows that are not in the batch."""
    return torch.optim.Adam(params, lr=lr)


@LABEL_OPTIMIZERS.register("mirror")
class MirrorDescent(torch.optim.Optimizer):
    """Normalised mirror descent for tables of label logits (rows ``z``, labels ``softmax(z)``).

    The gradient a logit row receives is ``p * (g - <p, g>)``, where ``g`` is the gradient with
    respect to the probabilities ``p = softmax(z)``. The factor ``p`` makes the logit of a class
    the label currently gives little mass (the true class of a mislabelled sample) almost
    immovable. Dividing by ``p`` recovers ``g - <p, g>`` exactly, and stepping the logits with it
    is the exponentiated-gradient (mirror-descent) update on the probability simplex:
    ``p <- p * exp(-lr * g) / Z``. Each step is then rescaled so that the rows that received a
    gradient have unit root-mean-square norm (``normalize="batch"``: keeps the relative strength
    of rows) or each such row unit norm (``normalize="row"``), which makes ``lr`` a step length
    in logit space regardless of the tiny raw scale of hypergradients.

    Parameters that are not 2-D (e.g. temperatures), and those of a param group with
    ``"tables": False`` (a label network's: see
    :meth:`~labelmeta.labels.LabelParameterization.param_groups`), get the plain normalised
    gradient step.

    Args:
        params: label parameters.
        lr: step length.
        normalize: how steps are rescaled: ``"batch"`` (unit RMS over the rows in the batch), ``"row"``
            (each row unit norm) or ``"none"``; default ``"batch"``.
    """

    def __init__(self, params: Iterable[Tensor], lr: float, *,
                 normalize: Literal["batch", "row", "none"] = "batch") -> None:
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if normalize not in ("batch", "row", "none"):
            raise ValueError(f"normalize must be 'batch', 'row' or 'none', got {normalize!r}")
        super().__init__(params, dict(lr=lr, normalize=normalize))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.dim() == 2 and group.get("tables", True):
                    # only the rows in the batch have a gradient: work on those alone (O(B), not O(N))
                    active = p.grad.ne(0).any(dim=1).nonzero().squeeze(1)
                    if active.numel() == 0:
                        continue
                    g = p.grad[active] / torch.softmax(p[active], dim=1).clamp_min(1e-30)
                    rows = g.norm(dim=1, keepdim=True)
                else:
                    g = p.grad.reshape(-1, 1)
                    rows = g.abs()
                    active = (rows.squeeze(1) > 0).nonzero().squeeze(1)
                    if active.numel() == 0:
                        continue
                    g, rows = g[active], rows[active]
                if group["normalize"] != "none":
                    g = _unit_scale(g, rows, group["normalize"])
                p.view(-1, g.shape[1]).index_add_(0, active, g, alpha=-group["lr"])
        return None


def _unit_scale(g: Tensor, rows: Tensor, normalize: str) -> Tensor:
    """``g [rows, k]`` (every row nonzero) rescaled to unit row norms (``"row"``) or unit RMS row norm
    (``"batch"``); ``rows [rows, 1]``: its row norms.

    The hypergradients of saturated labels can be subnormal floats whose squares underflow: the
    norms came out 0 and the step NaN (per-class labels at label lr 2 on clean MNIST-1D, step 1520,
    float32). The step is scale-free, so then ``g`` is divided by its largest entry first (per
    row for ``"row"``); otherwise the arithmetic is the plain one, and runs stay bit for bit.
    """
    if normalize == "row":
        if bool((rows > 0).all()):
            return g / rows
        g = g / g.abs().amax(dim=1, keepdim=True)
        return g / g.norm(dim=1, keepdim=True)
    rms = rows.pow(2).mean().sqrt()
    if bool(rms > 0) and bool(torch.isfinite(rms)):
        return g / rms
    g = g / g.abs().amax()
    return g / g.norm(dim=1, keepdim=True).pow(2).mean().sqrt()


def make_label_optimizer(name: str, params: Iterable[Tensor], lr: float, **options) -> torch.optim.Optimizer:
    """Build the registered label optimiser ``name`` (see ``LABEL_OPTIMIZERS.names()``) with its declared ``options``."""
    return LABEL_OPTIMIZERS.build(name, params, lr, options=options)
