"""The k-step unroll written with ``torch.func``, and the backends that unroll less of it.

:class:`Functional` is the second exact backend, a sibling of :class:`~.unrolled.Unrolled`: the
same update rules (:mod:`labelmeta.update_rules`, ``torch.optim``'s arithmetic) without
``higher``'s patched-module machinery. The cheaper strategies override only what differs:

- :class:`Truncated`: unroll ``k`` steps, differentiate through the last ``t`` only;
- :class:`HeadOnly`: features from the current model, only the classifier head unrolled.
"""
from __future__ import annotations

from typing import FrozenSet, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..options import check_natural
from ..profiling import phase
from .backend import BACKENDS, KStepBackend
from .base import MetaProblem
from .checkpointed import segmented_hypergradient
from .unroll import FunctionalUnroll


@BACKENDS.register("functional")
class Functional(KStepBackend):
    """Exact hypergradient through ``steps`` optimiser steps, unrolled with ``torch.func``.

    Same contract and the same numbers as :class:`~.unrolled.Unrolled` (the optimisers of
    :mod:`labelmeta.update_rules`: SGD, Adam, AdamW with all their arithmetic options), with less
    Python per step. BatchNorm buffers are cloned, so the unroll never changes running statistics.

    ``checkpoint=s`` keeps the graph of only one segment of ``s`` differentiated steps at a time
    (:mod:`.checkpointed`): the forward pass stores the fast weights, optimiser state and random
    state at segment starts, and the backward pass recomputes each segment's steps. Memory is about
    ``k / s`` stored states plus ``s`` steps' graph instead of ``k`` steps' graph (least near
    ``s ~ sqrt(k)``), for a second pass of every step; the gradient is the plain unroll's to round-off.

    Args:
        steps: inner steps ``k`` (>= 1); default 1.
        checkpoint: differentiated steps per recomputed segment (0: keep the whole graph); default 0.
    """

    #: the machinery that steps the functional copy (a subclass can instrument it)
    unroll_class = FunctionalUnroll

    def __init__(self, *, steps: int = 1, checkpoint: int = 0) -> None:
        super().__init__(steps=steps)
        self.checkpoint = check_natural("checkpoint", checkpoint)  # steps per recomputed segment; 0: off

    def unrolled(self, problem: MetaProblem) -> Tuple[nn.Module, Tensor, Tensor]:
        """``(module, x, x_meta)``: what is unrolled, on which training and meta inputs."""
        return problem.model, problem.batch[0], problem.meta_batch[0]

    def hypergradient(self, problem: MetaProblem, inputs: Sequence[Tensor],
                      weights: Optional[Tensor] = None) -> Tuple[float, List[Optional[Tensor]]]:
        if not self.checkpoint:
            return super().hypergradient(problem, inputs, weights)
        module, x, x_meta = self.unrolled(problem)
        graph_free = 0 if self.through is None else self.steps - self.through
        return segmented_hypergradient(problem, self.unroll_class(module, problem.optimizer), x, x_meta, inputs,
                                       weights, graph_free, self.steps - graph_free, self.checkpoint)

    def meta_loss(self, problem: MetaProblem, weights: Optional[Tensor] = None) -> Tensor:
        return self.unroll(problem, *self.unrolled(problem), weights)

    def unroll(self, problem: MetaProblem, module: nn.Module, x: Tensor, x_meta: Tensor,
               weights: Optional[Tensor] = None) -> Tensor:
        """Meta loss of ``module`` on ``x_meta`` after ``steps`` steps on ``x`` against the problem's labels."""
        with phase("unroll: functional copy"):
            unroll = self.unroll_class(module, problem.optimizer)
            fast, states = unroll.start()
        first_tracked = 0 if self.through is None else self.steps - self.through
        for step in range(self.steps):
            with phase("unroll: inner step"):
                fast, states = unroll.step(problem, fast, states, x, problem.soft_targets, weights,
                                           track=step >= first_tracked)
        with phase("unroll: meta forward"):
            return problem.meta_loss(unroll(fast, x_meta))


@BACKENDS.register("truncated")
class Truncated(Functional):
    """Unroll ``steps`` inner steps but back-propagate through the last ``through`` only.

    The first ``steps - through`` steps are ordinary (graph-free) optimiser steps, so memory
    grows with ``through``, not with ``steps``; ``through == steps`` is the exact unroll.

    Args:
        steps: inner steps ``k``; default 1.
        through: ``t``, the steps differentiated (``1 <= t <= k``); default 1.
        checkpoint: differentiated steps per recomputed segment (see :class:`Functional`); default 0.
    """

    def __init__(self, *, steps: int = 1, through: int = 1, checkpoint: int = 0) -> None:
        super().__init__(steps=steps, checkpoint=checkpoint)
        if int(through) != through or not 1 <= through <= self.steps:
            raise ValueError(f"through must be an integer in [1, steps={self.steps}], got {through}")
        self.through = int(through)


def find_head(model: nn.Module, name: Optional[str] = None) -> Tuple[str, nn.Module]:
    """The classifier head of ``model``: the submodule ``name``, else the first of ``head``,
    ``fc``, ``classifier`` that exists, else the last ``nn.Linear``."""
    modules = dict(model.named_modules())
    if name is not None:
        if name not in modules or not name:
            raise ValueError(f"model has no submodule {name!r}; its modules: {', '.join(n for n in modules if n)}")
        return name, modules[name]
    for candidate in ("head", "fc", "classifier"):
        if candidate in modules:
            return candidate, modules[candidate]
    linear = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
    if not linear:
        raise ValueError(f"cannot find a classifier head in {type(model).__name__}: name it with head=...")
    return linear[-1], modules[linear[-1]]


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
        checkpoint: differentiated steps per recomputed segment (see :class:`Functional`); default 0.
    """

    def __init__(self, *, steps: int = 1, head: Optional[str] = None, checkpoint: int = 0) -> None:
        super().__init__(steps=steps, checkpoint=checkpoint)
        self.head = head

    def derivatives(self, model: nn.Module) -> FrozenSet[str]:
        return frozenset()  # of the head only, and the head is usually linear: the probe's run suffices

    def unrolled(self, problem: MetaProblem) -> Tuple[nn.Module, Tensor, Tensor]:
        _, head = find_head(problem.model, self.head)
        features = head_inputs(problem.model, head, problem.batch[0], problem.meta_batch[0])
        return head, features[0], features[1]


@torch.no_grad()
def head_inputs(model: nn.Module, head: nn.Module, *inputs: Tensor) -> List[Tensor]:
    """What ``head`` receives when ``model`` runs on each of ``inputs`` (running statistics untouched)."""
    seen: List[Tensor] = []
    hook = head.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    params = dict(model.named_parameters())
    try:
        for x in inputs:
            buffers = {name: b.clone() for name, b in model.named_buffers()}
            functional_call(model, (params, buffers), (x,))
    finally:
        hook.remove()
    return seen
