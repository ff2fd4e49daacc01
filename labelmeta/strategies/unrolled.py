"""The exact k-step unroll with ``higher``."""
from __future__ import annotations

from typing import Optional

import higher
from torch import Tensor

from .backend import BACKENDS, KStepBackend
from .base import MetaProblem


@BACKENDS.register("unrolled")
class Unrolled(KStepBackend):
    """Exact hypergradient through ``steps`` differentiable optimiser steps (``higher``).

    A functional copy of the model starts from the current weights and a differentiable copy of
    the real optimiser (same learning rate, momentum buffers, Adam moments; the arithmetic of
    :mod:`labelmeta.update_rules`, registered with ``higher``) takes ``steps`` steps
    on the training batch with the inner loss, keeping the graph; the meta loss of the updated
    copy is then a differentiable function of the label parameters (and of per-sample weights).
    ``steps=1`` is the one-step look-ahead. Each inner step uses the same training batch.

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
