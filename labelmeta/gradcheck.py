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
from typing import Callable, List, Optional, Sequence

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
                          moved: Optional[Sequence[Tensor]] = None, seed: Optional[int] = None,
                          weights: Optional[Tensor] = None) -> float:
    """The meta loss after ``steps`` real steps of copies of ``model`` and ``optimizer`` against the
    labels with ``moved`` added to their trainable parameters, each sample's loss weighted by
    ``weights [B]`` if given (nothing the caller owns changes).

    The meta loss is the hard-label cross-entropy of the meta batch, with the model in training mode,
    as a strategy computes it.
    """
    with torch.no_grad():
        twin_labels = copy.deepcopy(labels)
        for p, d in zip(trainable(twin_labels), moved or []):
            p.add_(d)
        targets = twin_labels(batch[2], batch[1])
    return meta_loss_after_real_steps(model, optimizer, batch, meta_batch, targets, weights, steps, loss, seed)


def meta_loss_after_real_steps(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, meta_batch: Batch,
                               targets: Tensor, weights: Optional[Tensor] = None, steps: int = 1,
                               loss: TrainingLoss = soft_cross_entropy, seed: Optional[int] = None) -> float:
    """The meta loss after ``steps`` real ``torch.optim`` steps of copies of ``model`` and ``optimizer``
    on ``loss(logits, targets, weights, annotations)``."""
    twin, twin_opt = copy.deepcopy((model, optimizer))  # one memo: the optimiser follows its copy
    x, y, _ = batch
    if seed is not None:
        torch.manual_seed(seed)
    twin.train()
    for _ in range(steps):
        twin_opt.zero_grad()
        loss(twin(x), targets.detach(), None if weights is None else weights.detach(), y).backward()
        twin_opt.step()
    with torch.no_grad():
        return F.cross_entropy(twin(meta_batch[0]), meta_batch[1]).item()


def strategy_relative_error(strategy: Strategy, model: nn.Module, optimizer: torch.optim.Optimizer,
                            labels: LabelParameterization, batch: Batch, meta_batch: Batch, steps: int = 1,
                            loss: TrainingLoss = soft_cross_entropy, generator_seed: int = 7) -> float:
    """The largest relative error of ``strategy``'s hypergradient, with respect to every meta parameter its
    target names (label parameters, per-sample weights, a network's parameters), along the gradient
    and a random direction, against central differences of the meta loss after real ``torch.optim``
    steps in which the moved meta parameters give the soft targets and the weights.

    ``ValueError`` if the gradient is identically zero (nothing would be tested). The meta parameters
    are moved in place and put back (label parameters, a network's: restored to round-off).
    """
    problem = MetaProblem(model, optimizer, labels, batch, meta_batch, loss)
    meta = strategy.target.parameters(problem)
    with torch.enable_grad():
        weights = meta.weights()
    _, grads = strategy.backend.hypergradient(problem, meta.inputs, weights)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(meta.inputs, grads)]

    def loss_at(v: Sequence[Tensor], eps: float) -> float:
        with torch.no_grad():
            for p, d in zip(meta.inputs, v):
                p.add_(eps * d)
            moved_targets, moved_weights = problem.soft_targets(), meta.weights()
            moved_weights = None if moved_weights is None else moved_weights.clone()  # (it may be an input itself)
            for p, d in zip(meta.inputs, v):
                p.sub_(eps * d)
        return meta_loss_after_real_steps(model, optimizer, batch, meta_batch, moved_targets, moved_weights, steps, loss)

    return _worst_error(grads, loss_at, 1, generator_seed)


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
    """The largest error of the label gradient ``grads`` along the gradient itself and ``directions``
    random directions, relative to ``|grads| |direction|``: ``|<grads, v> - D_v| / (|grads| |v|)`` with
    ``D_v`` the extrapolated central difference of :func:`meta_loss_after_steps` along ``v``.

    ``ValueError`` if ``grads`` is identically zero (nothing would be tested).
    """
    def loss_at(v: Sequence[Tensor], eps: float) -> float:
        return meta_loss_after_steps(model, optimizer, labels, batch, meta_batch, steps, loss, [eps * d for d in v], seed)

    return _worst_error(grads, loss_at, directions, generator_seed)


def _worst_error(grads: Sequence[Tensor], loss_at: Callable[[Sequence[Tensor], float], float], directions: int,
                 generator_seed: int) -> float:
    """The largest ``|<grads, v> - D_v| / (|grads| |v|)`` over ``v`` = the gradient and ``directions``
    random directions, ``D_v`` the Richardson-extrapolated central difference of ``loss_at(v, eps)``
    at a step of 1e-4 along ``v``."""
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()
    if norm == 0:
        raise ValueError("the hypergradient is identically zero: there is nothing to check")
    g = torch.Generator().manual_seed(generator_seed)
    worst = 0.0
    for v in [list(grads)] + [[torch.randn(p.shape, generator=g, dtype=p.dtype) for p in grads]
                              for _ in range(directions)]:
        length = torch.sqrt(sum((d.double() ** 2).sum() for d in v)).item()

        def difference(h: float) -> float:
            return (loss_at(v, h) - loss_at(v, -h)) / (2 * h)

        h = 1e-4 / length
        numeric = (4 * difference(h / 2) - difference(h)) / 3  # Richardson: error O(h^4)
        analytic = sum((a * d).sum() for a, d in zip(grads, v)).item()
        worst = max(worst, abs(numeric - analytic) / (norm * length))
    return worst
