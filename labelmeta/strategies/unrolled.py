"""Exact k-step unroll with ``higher``."""
from __future__ import annotations

from typing import List

import higher
import torch
from torch import Tensor, nn

from ..labels import LabelParameterization
from ..typing import Batch
from .base import STRATEGIES, Strategy


def supported_optimizers() -> List[str]:
    """Names of the ``torch.optim`` classes ``higher`` can differentiate through."""
    return sorted(cls.__name__ for cls in higher.optim._opt_mapping)


def check_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Raise ``ValueError`` if ``higher`` has no differentiable version of ``optimizer``."""
    if type(optimizer) not in higher.optim._opt_mapping:
        raise ValueError(
            f"higher cannot differentiate through {type(optimizer).__name__}; "
            f"use one of: {', '.join(supported_optimizers())} "
            "(for AdamW, use Adam with weight_decay or SGD)"
        )


@STRATEGIES.register("unrolled")
class Unrolled(Strategy):
    """Exact hypergradient through ``steps`` differentiable optimiser steps (``higher``).

    A functional copy of the model starts from the current weights and a differentiable copy of
    the real optimiser (same learning rate, momentum buffers, Adam moments) takes ``steps`` steps
    on the training batch with the inner loss, keeping the graph; the meta loss of the updated
    copy is then a differentiable function of the label parameters. ``steps=1`` is the one-step
    look-ahead. Each inner step uses the same training batch.

    BatchNorm: the copy normalises with batch statistics like the real model in train mode, but
    ``higher`` works on clones of the buffers, so running statistics are changed only by the
    real model step, never by the unroll.

    Args:
        steps: number of unrolled inner steps ``k`` (>= 1); default 1.
    """

    def __init__(self, steps: int = 1) -> None:
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
    ) -> Tensor:
        check_optimizer(optimizer)
        with higher.innerloop_ctx(model, optimizer, copy_initial_weights=True) as (fmodel, diffopt):
            for _ in range(self.steps):
                diffopt.step(self.inner_loss(fmodel, labels, batch))
            return self.outer_loss(fmodel, meta_batch)
