"""An independent check of a label hypergradient: central differences after real ``torch.optim`` steps.

The oracle knows nothing of the unroll: it copies the model and its optimiser, moves the label
parameters a little, takes ``steps`` ordinary ``torch.optim`` steps against the moved labels, and
reads the meta loss. A strategy whose differentiable step is not the optimiser's own (an ``eps``
in the wrong place) fails it even where two backends sharing its formula agree. Use float64: the
differences are taken at a step of about 1e-4 in label-logit space and extrapolated (Richardson),
so the oracle's own error is far below the tolerances the tests ask for.

Dropout: pass ``seed``; the random state is set to it before every evaluation and before the
strategy runs, so the oracle's steps draw the same masks as the strategy's forwards, in the same order.
"""
from __future__ import annotations

import copy
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .labels import LabelParameterization
from .losses import TrainingLoss, soft_cross_entropy
from .strategies import MetaProblem, Strategy
from .strategies.base import trainable
from .typing import Batch


def meta_loss_after_steps(model: nn.Module, optimizer: torch.optim.Optimizer, labels: LabelParameterization,
                          batch: Batch, meta_batch: Batch, steps: int = 1, loss: TrainingLoss = soft_cross_entropy,
                          moved: Optional[Sequence[Tensor]] = None, seed: Optional[int] = None) -> float:
    """The meta loss after ``steps`` real steps of copies of ``model`` and ``optimizer`` against the
    labels with ``moved`` added to their trainable parameters (nothing the caller owns changes).

    The meta loss is the hard-label cross-entropy of the meta batch, with the model in training mode,
    as a strategy computes it.
    """
    twin, twin_opt, twin_labels = copy.deepcopy((model, optimizer, labels))  # one memo: the optimiser follows its copy
    with torch.no_grad():
        for p, d in zip(trainable(twin_labels), moved or []):
            p.add_(d)
        x, y, idx = batch
        targets = twin_labels(idx, y)
    if seed is not None:
        torch.manual_seed(seed)
    twin.train()
    for _ in range(steps):
        twin_opt.zero_grad()
        loss(twin(x), targets, None, y).backward()
        twin_opt.step()
    with torch.no_grad():
        return F.cross_entropy(twin(meta_batch[0]), meta_batch[1]).item()


def label_gradient(strategy: Strategy, model: nn.Module, optimizer: torch.optim.Optimizer,
                   labels: LabelParameterization, batch: Batch, meta_batch: Batch,
                   loss: TrainingLoss = soft_cross_entropy, seed: Optional[int] = None) -> List[Tensor]:
    """The gradient ``strategy`` gives the trainable label parameters of copies of ``labels``."""
    labels = copy.deepcopy(labels)
    if seed is not None:
        torch.manual_seed(seed)
    strategy.compute(MetaProblem(model, optimizer, labels, batch, meta_batch, loss))
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in trainable(labels)]


def relative_error(grads: Sequence[Tensor], model: nn.Module, optimizer: torch.optim.Optimizer,
                   labels: LabelParameterization, batch: Batch, meta_batch: Batch, steps: int = 1,
                   loss: TrainingLoss = soft_cross_entropy, directions: int = 1, seed: Optional[int] = None,
                   generator_seed: int = 7) -> float:
    """The largest error of ``grads`` along the gradient itself and ``directions`` random directions,
    relative to ``|grads| |direction|``: ``|<grads, v> - D_v| / (|grads| |v|)`` with ``D_v`` the
    extrapolated central difference of :func:`meta_loss_after_steps` along ``v``.

    ``ValueError`` if ``grads`` is identically zero (nothing would be tested).
    """
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()
    if norm == 0:
        raise ValueError("the label gradient is identically zero: there is nothing to check")
    g = torch.Generator().manual_seed(generator_seed)
    worst = 0.0
    for v in [list(grads)] + [[torch.randn(p.shape, generator=g, dtype=p.dtype) for p in grads]
                              for _ in range(directions)]:
        length = torch.sqrt(sum((d.double() ** 2).sum() for d in v)).item()

        def difference(h: float) -> float:
            def at(eps: float) -> float:
                return meta_loss_after_steps(model, optimizer, labels, batch, meta_batch, steps, loss,
                                             [eps * d for d in v], seed)
            return (at(h) - at(-h)) / (2 * h)

        h = 1e-4 / length  # a step of 1e-4 in label-logit space
        numeric = (4 * difference(h / 2) - difference(h)) / 3  # Richardson: error O(h^4)
        analytic = sum((a * d).sum() for a, d in zip(grads, v)).item()
        worst = max(worst, abs(numeric - analytic) / (norm * length))
    return worst
