"""Hypergradient backends: how the gradient of the meta loss is obtained.

A backend differentiates the meta loss, after one or more inner optimiser steps on the training
batch, with respect to *meta parameters* that enter those steps through the soft targets (label
parameters) and/or per-sample weights of the inner loss (:meth:`Backend.hypergradient`). What the
meta parameters are and what is done with their gradient is the target's business
(:mod:`.targets`); a backend knows neither.

- :class:`UnrollBackend` writes the meta loss as a differentiable function (``meta_loss``) and
  back-propagates it: ``unrolled`` (``higher``), ``functional`` (``torch.func``), ``truncated``,
  ``head-only``.
- ``one-step`` (a Jacobian-vector product) and ``finite-difference`` implement ``hypergradient`` themselves.

Every subclass's ``hypergradient`` and ``meta_loss`` run on kernels that have the derivatives a
hypergradient needs (:mod:`labelmeta.kernels`: the math attention kernel), however they are called.
"""
from __future__ import annotations

import abc
import math
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..kernels import on_differentiable_kernels
from ..losses import check_finite
from ..registry import Registry
from ..update_rules import rule_for
from .base import MetaProblem, inner_steps

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
    #: first and hands it over, so the two share one forward (in one process)
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

    def compute(self, problem: MetaProblem):
        """Shorthand for the strategy of this backend and the ``labels`` target: fills the label
        parameters' ``.grad`` and returns :class:`~.base.MetaStats` (as every strategy did before targets)."""
        from .strategy import Strategy  # the pair is built from backends and targets, not the other way
        from .targets import Labels

        return Strategy(self, Labels()).compute(problem)


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


def finite_value(loss: Tensor, what: str) -> float:
    """``loss.item()``, or :func:`~labelmeta.losses.check_finite`'s ``FloatingPointError`` naming ``what``
    if it is NaN or infinite: the value is read once (one device sync, where a check then ``item()`` were two)."""
    value = loss.item()
    if not math.isfinite(value):
        check_finite(loss, what)
    return value


class KStepBackend(UnrollBackend):
    """A meta loss through ``steps`` inner optimiser steps (the constructor the unrolls share).

    Args:
        steps: inner steps ``k`` (>= 1); default 1.
    """

    #: differentiate through the last ``through`` inner steps only (``None``: all of them)
    through: Optional[int] = None

    def __init__(self, *, steps: int = 1) -> None:
        self.steps = inner_steps(steps)

    def derivatives(self, model: nn.Module) -> FrozenSet[str]:
        differentiated = self.steps if self.through is None else self.through
        return frozenset({"double backward", "hessian"} if differentiated > 1 else {"double backward"})
