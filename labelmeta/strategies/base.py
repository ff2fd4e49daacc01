"""The strategy base class and registry."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..labels import LabelParameterization
from ..losses import TrainingLoss, check_finite, soft_cross_entropy
from ..registry import Registry
from ..typing import Batch
from ..update_rules import rule_for

STRATEGIES: Registry["Strategy"] = Registry("strategy")


@dataclass
class MetaStats:
    """What one meta step measured.

    ``sample_weights`` is set by strategies that learn per-sample weights instead of labels
    (``[B]``, summing to one or all zero); the learner then weights the model step with it.
    """

    meta_loss: float
    label_grad_norm: float
    sample_weights: Optional[Tensor] = None


class Strategy:
    """Base class: produce gradients on the label parameters for one meta step.

    The losses are shared by every strategy: the inner loss trains the model on the training
    batch against the current soft labels (with the learner's training loss, cross-entropy by
    default, optionally weighted per sample), the meta loss is hard-label cross-entropy on the meta
    batch. Subclasses implement :meth:`meta_loss`, the scalar whose gradient with respect to the
    label parameters is wanted; :meth:`compute` back-propagates it.
    """

    #: whether the strategy produces per-sample weights (then labels need not be learnable)
    learns_weights: bool = False
    #: whether it can run in several processes (see :mod:`labelmeta.distributed`)
    supports_distributed: bool = True
    #: set by the learner in several processes: averages inner gradients over processes
    sync = None
    #: set by the learner in several processes: this process's share of the meta batch mean
    meta_scale: float = 1.0

    def __init__(self, every: int = 1) -> None:
        if int(every) != every or every < 1:
            raise ValueError(f"every must be a positive integer, got {every}")
        #: the learner takes a meta step every ``every`` training steps (amortisation)
        self.every = int(every)

    def check(self, optimizer: torch.optim.Optimizer) -> None:
        """Raise ``ValueError`` if this strategy cannot differentiate through ``optimizer``.

        The learner calls it when it is built, before any training. The default accepts what
        :func:`labelmeta.update_rules.rule_for` reproduces exactly.
        """
        rule_for(optimizer)

    def inner_loss(self, model: nn.Module, labels: LabelParameterization, batch: Batch,
                   loss: TrainingLoss = soft_cross_entropy, weights: Optional[Tensor] = None) -> Tensor:
        """``loss`` of ``model`` on ``batch`` against ``labels`` (weighted by ``weights`` if given)."""
        x, y, idx = batch
        return loss(model(x), labels(idx, y), weights, y)

    def outer_loss(self, model: nn.Module, meta_batch: Batch) -> Tensor:
        """Hard-label cross-entropy of ``model`` on ``meta_batch``."""
        x, y, _ = meta_batch
        return F.cross_entropy(model(x), y) * self.meta_scale

    def meta_loss(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        labels: LabelParameterization,
        batch: Batch,
        meta_batch: Batch,
        loss: TrainingLoss = soft_cross_entropy,
        weights: Optional[Tensor] = None,
    ) -> Tensor:
        """The meta loss as a differentiable function of the label parameters (and of ``weights``)."""
        raise NotImplementedError

    def compute(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        labels: LabelParameterization,
        batch: Batch,
        meta_batch: Batch,
        loss: TrainingLoss = soft_cross_entropy,
    ) -> MetaStats:
        """Accumulate ``d meta_loss / d label parameters`` into their ``.grad``."""
        params: List[Tensor] = [p for p in labels.parameters() if p.requires_grad]
        value = check_finite(self.meta_loss(model, optimizer, labels, batch, meta_batch, loss), "meta loss")
        grads = torch.autograd.grad(value, params, allow_unused=True)
        norm_sq = 0.0
        for p, g in zip(params, grads):
            if g is None:
                continue
            norm_sq += float(g.pow(2).sum())
            p.grad = g if p.grad is None else p.grad + g
        return MetaStats(meta_loss=value.item(), label_grad_norm=norm_sq**0.5)


def make_strategy(name: str, **kwargs) -> Strategy:
    """Build the registered strategy ``name`` (see ``STRATEGIES.names()``)."""
    return STRATEGIES.build(name, **kwargs)
