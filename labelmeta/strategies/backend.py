"""Hypergradient backends: how the gradient of the meta loss is obtained.

A backend differentiates the meta loss, after one or more inner optimiser steps on the training
batch, with respect to *meta parameters* that enter those steps through the soft targets (label
parameters) and/or per-sample weights of the inner loss (:meth:`Backend.hypergradient`). What the
meta parameters are and what is done with their gradient is the target's business
(:mod:`.targets`); a backend knows neither.

- :class:`UnrollBackend` writes the meta loss as a differentiable function (``meta_loss``) and
  back-propagates it; :class:`KStepBackend` is the k-step unroll on an engine of :mod:`.inner_loop`
  (:mod:`.unrolls`: ``unrolled`` on ``higher``, ``functional``, ``truncated``, ``head-only`` on ``torch.func``).
- ``one-step`` (a Jacobian-vector product), ``finite-difference`` and ``implicit`` implement
  ``hypergradient`` themselves, on the same :class:`~.inner_loop.InnerLoop`.

Every subclass's ``hypergradient`` and ``meta_loss`` run on kernels that have the derivatives a
hypergradient needs (:mod:`labelmeta.kernels`: the math attention kernel), however they are called.
"""
from __future__ import annotations

import abc
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..kernels import on_differentiable_kernels
from ..options import check_natural
from ..profiling import phase
from ..registry import Registry
from ..update_rules import rule_for
from .inner_loop import InnerLoop, finite_value
from .problem import MetaProblem, inner_steps

#: the hypergradient backends by name
BACKENDS: Registry["Backend"] = Registry("hypergradient backend")


class Backend(abc.ABC):
    """Base class: the gradient of the meta loss with respect to meta parameters of the inner step.

    Options are keyword-only constructor arguments with a type and a default (see
    :mod:`labelmeta.options`).
    """

    #: whether it can run in several processes (see :mod:`labelmeta.distributed`)
    supports_distributed: bool = True
    #: whether it reads :attr:`MetaProblem.logits`: the learner then runs the model step's forward
    #: first and hands it over, so the two share one forward (under torchrun too: the DDP forward)
    shares_forward: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Every backend differentiates on kernels that have the derivatives it needs, however it is
        # called (by a Learner, or directly as in the tutorials): ``hypergradient`` and ``meta_loss``,
        # where a subclass defines them, run under labelmeta.kernels.differentiable_kernels.
        super().__init_subclass__(**kwargs)
        for name in ("hypergradient", "meta_loss"):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "__isabstractmethod__", False):
                setattr(cls, name, on_differentiable_kernels(method))

    def check(self, optimizer: torch.optim.Optimizer) -> None:
        """Raise ``ValueError`` if this backend cannot differentiate through ``optimizer``.

        The learner calls it when it is built, and every strategy before each step. The default accepts
        what :func:`labelmeta.update_rules.rule_for` reproduces exactly.
        """
        rule_for(optimizer)

    def check_model(self, model: nn.Module) -> None:
        """Raise ``ValueError`` if this backend's options cannot serve ``model`` (e.g. a product that
        would draw other dropout masks); the learner calls it when it is built. Accepts any model by default.

        Whether the model's operations have the derivatives the backend needs is another question,
        answered by running it: :meth:`labelmeta.learner.Learner.probe`.
        """

    def derivatives(self, model: nn.Module) -> FrozenSet[str]:
        """Which derivatives of ``model`` beyond the gradient the backend takes, so that the probe
        (:meth:`labelmeta.learner.Learner.probe`) checks them numerically before training:
        ``"double backward"`` (the inner gradient differentiated in the training loss's gradient:
        every second-order unroll), ``"hessian"`` (also in the weights: two or more differentiated
        steps), ``"forward mode"`` (a forward-mode product). Default: the first two.
        """
        return frozenset({"double backward", "hessian"})

    def variants(self, model: nn.Module) -> List["Backend"]:
        """Ways of computing this backend's gradient for ``model``, preferred first (``[self]`` by
        default): :meth:`labelmeta.learner.Learner.probe` keeps the first that can differentiate the model.
        A variant computes the same numbers, differently (``one-step``'s ``product="auto"``)."""
        return [self]

    def state_dict(self) -> Dict[str, Any]:
        """What the backend keeps from one step to the next, for checkpoints; none by default."""
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, got {sorted(state)}")

    @abc.abstractmethod
    def hypergradient(self, problem: MetaProblem, inputs: Sequence[Tensor],
                      weights: Optional[Tensor] = None) -> Tuple[float, List[Optional[Tensor]]]:
        """The meta loss and its gradient with respect to ``inputs`` (``None`` where it does not reach one).

        Args:
            problem: the meta step's model, optimiser, labels, batches and loss.
            inputs: the meta parameters: label parameters (which enter through
                ``problem.soft_targets()``), and/or tensors ``weights`` is computed from (or ``weights`` itself).
            weights: ``[B]`` per-sample weights of the inner loss, a differentiable function of
                ``inputs`` (``None``: the plain batch mean).
        """


class UnrollBackend(Backend):
    """A meta loss differentiable in the meta parameters (an unroll), back-propagated."""

    @abc.abstractmethod
    def meta_loss(self, problem: MetaProblem, weights: Optional[Tensor] = None) -> Tensor:
        """The meta loss as a differentiable function of the label parameters (and of per-sample
        ``weights [B]`` on the inner loss, if given)."""

    def hypergradient(self, problem: MetaProblem, inputs: Sequence[Tensor],
                      weights: Optional[Tensor] = None) -> Tuple[float, List[Optional[Tensor]]]:
        value = self.meta_loss(problem, weights)
        return finite_value(value, "meta loss"), list(torch.autograd.grad(value, list(inputs), allow_unused=True))


class KStepBackend(UnrollBackend):
    """The meta loss through ``steps`` inner optimiser steps on the training batch: the exact unroll, on
    the engine :meth:`loop` gives (``torch.func`` by default), with the last ``through`` steps
    differentiated (all of them unless a subclass says otherwise).

    ``checkpoint=s`` keeps the graph of only one segment of ``s`` differentiated steps at a time
    (:meth:`~.inner_loop.InnerLoop.segmented_hypergradient`): memory is about ``k / s`` stored states
    plus ``s`` steps' graph instead of ``k`` steps' graph (least near ``s ~ sqrt(k)``), for a second pass
    of every step; the gradient is the plain unroll's to round-off.

    Args:
        steps: inner steps ``k`` (>= 1); default 1.
        checkpoint: differentiated steps per recomputed segment (0: keep the whole graph); default 0.
    """

    #: differentiate through the last ``through`` inner steps only (``None``: all of them)
    through: Optional[int] = None

    def __init__(self, *, steps: int = 1, checkpoint: int = 0) -> None:
        self.steps = inner_steps(steps)
        self.checkpoint = check_natural("checkpoint", checkpoint)  # steps per recomputed segment; 0: off

    def derivatives(self, model: nn.Module) -> FrozenSet[str]:
        differentiated = self.steps if self.through is None else self.through
        return frozenset({"double backward", "hessian"} if differentiated > 1 else {"double backward"})

    @property
    def graph_free(self) -> int:
        """The first inner steps, taken without a graph."""
        return 0 if self.through is None else self.steps - self.through

    def loop(self, problem: MetaProblem) -> InnerLoop:
        """The inner loop this backend unrolls (``torch.func`` over the model by default)."""
        return InnerLoop(problem)

    def hypergradient(self, problem: MetaProblem, inputs: Sequence[Tensor],
                      weights: Optional[Tensor] = None) -> Tuple[float, List[Optional[Tensor]]]:
        if not self.checkpoint:
            return super().hypergradient(problem, inputs, weights)
        loop = self.loop(problem)
        try:
            return loop.segmented_hypergradient(inputs, weights, self.graph_free, self.steps - self.graph_free,
                                                self.checkpoint)
        finally:
            loop.engine.release()

    def meta_loss(self, problem: MetaProblem, weights: Optional[Tensor] = None) -> Tensor:
        with phase("unroll: functional copy"):
            loop = self.loop(problem)
            point = loop.start()
        try:
            with phase("unroll: inner step"):
                point = loop.advance(point, self.graph_free, weights)
                point = loop.advance(point, self.steps - self.graph_free, weights, track=True)
            with phase("unroll: meta forward"):
                return loop.meta_loss(point.fast)
        finally:
            loop.engine.release()
