"""The k-step unroll backends: the exact unroll on ``higher`` (``unrolled``) and on ``torch.func``
(``functional``), and the ones that unroll less of it (``truncated``, ``head-only``).

Each is a :class:`~.backend.KStepBackend`: the inner loop of :mod:`.inner_loop` on an engine, its
last steps differentiated (all of them, or the last ``through``), the meta loss back-propagated, and
every one takes ``checkpoint=s`` (recomputed segments). They differ only in the engine and in what
is unrolled: the whole model, or its classifier head on features computed once.
"""
from __future__ import annotations

from typing import FrozenSet, Optional

from torch import nn

from .backend import BACKENDS, KStepBackend
from .higher_model import HigherModel, PatchedCopy
from .inner_loop import InnerLoop, head_loop
from .problem import MetaProblem


@BACKENDS.register("unrolled")
class Unrolled(KStepBackend):
    """Exact hypergradient through ``steps`` differentiable optimiser steps with ``higher``.

    A functional copy of the model (``higher.monkeypatch``) starts from the current weights and a
    differentiable copy of the real optimiser (same learning rate, momentum buffers, Adam moments; the
    arithmetic of :mod:`labelmeta.update_rules`, registered with ``higher``) takes ``steps`` steps on the
    training batch with the inner loss, keeping the graph; the meta loss of the updated copy is then a
    differentiable function of the label parameters (and of per-sample weights). ``steps=1`` is the
    one-step look-ahead. Each inner step uses the same training batch. The same numbers as
    ``functional`` (``tests/test_strategies.py``); the copy is kept between meta steps
    (:class:`~.higher_model.PatchedCopy`).

    BatchNorm: the copy normalises with batch statistics like the real model in train mode, but
    ``higher`` works on clones of the buffers, so running statistics are changed only by the real model
    step, never by the unroll.

    Args:
        steps: number of unrolled inner steps ``k`` (>= 1); default 1.
        checkpoint: differentiated steps per recomputed segment (0: keep the whole graph); default 0.
    """

    def __init__(self, *, steps: int = 1, checkpoint: int = 0) -> None:
        super().__init__(steps=steps, checkpoint=checkpoint)
        self.copy = PatchedCopy()

    def loop(self, problem: MetaProblem) -> InnerLoop:
        self.check(problem.optimizer)  # higher has rules of its own for optimisers update_rules refuses
        return InnerLoop(problem, HigherModel(self.copy.of(problem.model), problem.model, problem.optimizer))


@BACKENDS.register("functional")
class Functional(KStepBackend):
    """Exact hypergradient through ``steps`` optimiser steps, unrolled with ``torch.func``.

    Same contract and the same numbers as :class:`Unrolled` (the optimisers of
    :mod:`labelmeta.update_rules`: SGD, Adam, AdamW with all their arithmetic options), with less Python
    per step. BatchNorm buffers are cloned, so the unroll never changes running statistics.

    Args:
        steps: inner steps ``k`` (>= 1); default 1.
        checkpoint: differentiated steps per recomputed segment (0: keep the whole graph); default 0.
    """


@BACKENDS.register("truncated")
class Truncated(Functional):
    """Unroll ``steps`` inner steps but back-propagate through the last ``through`` only.

    The first ``steps - through`` steps are ordinary (graph-free) optimiser steps, so memory
    grows with ``through``, not with ``steps``; ``through == steps`` is the exact unroll.

    Args:
        steps: inner steps ``k``; default 1.
        through: ``t``, the steps differentiated (``1 <= t <= k``); default 1.
        checkpoint: differentiated steps per recomputed segment; default 0.
    """

    def __init__(self, *, steps: int = 1, through: int = 1, checkpoint: int = 0) -> None:
        super().__init__(steps=steps, checkpoint=checkpoint)
        if int(through) != through or not 1 <= through <= self.steps:
            raise ValueError(f"through must be an integer in [1, steps={self.steps}], got {through}")
        self.through = int(through)


@BACKENDS.register("head-only")
class HeadOnly(Functional):
    """Unroll only the classifier head, on features the current model computes (detached).

    The backbone runs once, without a graph, on the training and the meta batch (BatchNorm in
    train mode on cloned buffers, as in the full unroll); then ``steps`` differentiable steps of
    the head alone. Cost and memory are those of a linear model, whatever the backbone; the
    hypergradient is exact for the model with a frozen backbone.

    Args:
        steps: inner steps ``k`` of the head; default 1.
        head: name of the head submodule; default: guessed (``head``, ``fc``, ``classifier``, else the last linear layer).
        checkpoint: differentiated steps per recomputed segment; default 0.
    """

    def __init__(self, *, steps: int = 1, head: Optional[str] = None, checkpoint: int = 0) -> None:
        super().__init__(steps=steps, checkpoint=checkpoint)
        self.head = head

    def derivatives(self, model: nn.Module) -> FrozenSet[str]:
        return frozenset()  # of the head only, and the head is usually linear: the probe's run suffices

    def loop(self, problem: MetaProblem) -> InnerLoop:
        return head_loop(problem, self.head)
