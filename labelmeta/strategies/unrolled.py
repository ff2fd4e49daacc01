"""The exact k-step unroll with ``higher``, and learning to reweight on top of it."""
from __future__ import annotations

from typing import Optional

import higher
import torch
from torch import Tensor

from ..losses import check_finite
from .base import STRATEGIES, KStepStrategy, MetaProblem, MetaStats, normalised


@STRATEGIES.register("unrolled")
class Unrolled(KStepStrategy):
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
    """

    def meta_loss(self, problem: MetaProblem, weights: Optional[Tensor] = None) -> Tensor:
        self.check(problem.optimizer)  # higher has rules of its own for optimisers update_rules refuses
        x = problem.batch[0]
        callback = problem.average if problem.group is not None else None
        with higher.innerloop_ctx(problem.model, problem.optimizer, copy_initial_weights=True) as (fmodel, diffopt):
            for _ in range(self.steps):
                diffopt.step(problem.inner_loss(fmodel(x), problem.soft_targets(), weights), grad_callback=callback)
            return problem.meta_loss(fmodel(problem.meta_batch[0]))


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
    learns_labels = False
    supports_distributed = False  # its weights are normalised over the local batch

    def compute(self, problem: MetaProblem) -> MetaStats:
        x = problem.batch[0]
        eps = torch.zeros(len(x), dtype=x.dtype if x.is_floating_point() else torch.get_default_dtype(),
                          device=x.device, requires_grad=True)
        value = check_finite(self.meta_loss(problem, eps), "meta loss")
        (grad,) = torch.autograd.grad(value, eps)
        return MetaStats(meta_loss=value.item(), sample_weights=normalised((-grad).clamp_min(0)).detach())
