"""The strategy base class and registry."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..labels import LabelParameterization
from ..losses import soft_cross_entropy
from ..registry import Registry
from ..typing import Batch

STRATEGIES: Registry["Strategy"] = Registry("strategy")


@dataclass
class MetaStats:
    """What one meta step measured."""

    meta_loss: float
    label_grad_norm: float


class Strategy:
    """Base class: produce gradients on the label parameters for one meta step.

    The losses are shared by every strategy: the inner loss trains the model on the training
    batch against the current soft labels, the meta loss is hard-label cross-entropy on the meta
    batch. Subclasses implement :meth:`meta_loss`, the scalar whose gradient with respect to the
    label parameters is wanted; :meth:`compute` back-propagates it.
    """

    def inner_loss(self, model: nn.Module, labels: LabelParameterization, batch: Batch) -> Tensor:
        """Soft cross-entropy of ``model`` on ``batch`` against ``labels``."""
        x, y, idx = batch
        return soft_cross_entropy(model(x), labels(idx, y))

    def outer_loss(self, model: nn.Module, meta_batch: Batch) -> Tensor:
        """Hard-label cross-entropy of ``model`` on ``meta_batch``."""
        x, y, _ = meta_batch
        return F.cross_entropy(model(x), y)

    def meta_loss(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        labels: LabelParameterization,
        batch: Batch,
        meta_batch: Batch,
    ) -> Tensor:
        """The meta loss as a differentiable function of the label parameters."""
        raise NotImplementedError

    def compute(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        labels: LabelParameterization,
        batch: Batch,
        meta_batch: Batch,
    ) -> MetaStats:
        """Accumulate ``d meta_loss / d label parameters`` into their ``.grad``."""
        params: List[Tensor] = [p for p in labels.parameters() if p.requires_grad]
        loss = self.meta_loss(model, optimizer, labels, batch, meta_batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite meta loss {loss.item()}")
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        norm_sq = 0.0
        for p, g in zip(params, grads):
            if g is None:
                continue
            norm_sq += float(g.pow(2).sum())
            p.grad = g if p.grad is None else p.grad + g
        return MetaStats(meta_loss=loss.item(), label_grad_norm=norm_sq**0.5)


def make_strategy(name: str, **kwargs) -> Strategy:
    """Build the registered strategy ``name`` (see ``STRATEGIES.names()``)."""
    return STRATEGIES.build(name, **kwargs)
