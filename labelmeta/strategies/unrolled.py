"""Exact k-step unroll with ``higher``."""
from __future__ import annotations

from typing import Optional

import higher
import torch
from torch import Tensor, nn

from ..labels import LabelParameterization
from ..typing import Batch
from ..losses import TrainingLoss, check_finite, soft_cross_entropy
from .base import STRATEGIES, MetaStats, Strategy


@STRATEGIES.register("unrolled")
class Unrolled(Strategy):
    """Exact hypergradient through ``steps`` differentiable optimiser steps (``higher``).

    A functional copy of the model starts from the current weights and a differentiable copy of
    the real optimiser (same learning rate, momentum buffers, Adam moments; the arithmetic of
    :mod:`labelmeta.update_rules`, registered with ``higher``) takes ``steps`` steps
    on the training batch with the inner loss, keeping the graph; the meta loss of the updated
    copy is then a differentiable function of the label parameters. ``steps=1`` is the one-step
    look-ahead. Each inner step uses the same training batch.

    BatchNorm: the copy normalises with batch statistics like the real model in train mode, but
    ``higher`` works on clones of the buffers, so running statistics are changed only by the
    real model step, never by the unroll.

    Args:
        steps: number of unrolled inner steps ``k`` (>= 1); default 1.
        every: take a meta step every ``every`` training steps (amortisation); default 1.
    """

    def __init__(self, steps: int = 1, every: int = 1) -> None:
        super().__init__(every)
        if int(steps) != steps or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps}")
        self.steps = int(steps)

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
        self.check(optimizer)
        callback = self.sync.mean_differentiable if self.sync is not None else None
        with higher.innerloop_ctx(model, optimizer, copy_initial_weights=True) as (fmodel, diffopt):
            for _ in range(self.steps):
                diffopt.step(self.inner_loss(fmodel, labels, batch, loss, weights), grad_callback=callback)
            return self.outer_loss(fmodel, meta_batch)


@STRATEGIES.register("reweight")
class MetaReweight(Unrolled):
    """Learning to reweight (Ren et al., 2018) through the same ``higher`` unroll as the labels.

    Every training sample enters the inner loss with a weight ``eps_i = 0``; the gradient of the
    meta loss with respect to ``eps`` says which samples would help the meta batch. The model
    step then uses ``w = max(-grad, 0) / sum(max(-grad, 0))`` (all zero when no sample helps:
    the step is skipped). The labels are used as they are (usually ``one-hot``), so "reweight the
    example" and "rewrite its label" are compared on equal terms.

    Args:
        steps: inner steps ``k`` of the unroll; default 1 (the paper's).
    """

    learns_weights = True
    supports_distributed = False  # its weights are normalised over the local batch

    def compute(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        labels: LabelParameterization,
        batch: Batch,
        meta_batch: Batch,
        loss: TrainingLoss = soft_cross_entropy,
    ) -> MetaStats:
        x = batch[0]
        eps = torch.zeros(len(x), dtype=x.dtype if x.is_floating_point() else torch.get_default_dtype(),
                          device=x.device, requires_grad=True)
        value = check_finite(self.meta_loss(model, optimizer, labels, batch, meta_batch, loss, eps), "meta loss")
        (grad,) = torch.autograd.grad(value, eps)
        weights = (-grad).clamp_min(0)
        total = weights.sum()
        weights = weights / total if total > 0 else weights
        return MetaStats(meta_loss=value.item(), label_grad_norm=float(grad.norm()), sample_weights=weights.detach())
