"""What a strategy receives (:class:`MetaProblem`), what it returns (:class:`MetaStats`), its two families.

A strategy turns one meta problem into gradients on the label parameters. Two families:

- :class:`MetaLossStrategy` writes the meta loss as a differentiable function of the label
  parameters (an unroll); its ``compute`` back-propagates it. ``unrolled`` and ``functional`` are
  exact; ``truncated`` and ``head-only`` are exact for a reduced problem (fewer differentiated
  steps, a frozen backbone).
- :class:`ApproximateStrategy` estimates the label gradient itself, in its own ``compute``
  (``finite-difference``).

Either way the gradients go into ``.grad`` through :func:`accumulate_label_grads`.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..kernels import on_differentiable_kernels
from ..labels import LabelParameterization
from ..losses import LOSSES, TrainingLoss, check_finite, make_loss, soft_cross_entropy
from ..registry import Registry
from ..typing import Batch
from ..update_rules import rule_for

if TYPE_CHECKING:  # annotations only: strategies never import the process-group module
    from ..distributed import Distributed

STRATEGIES: Registry["Strategy"] = Registry("strategy")


@dataclass
class MetaProblem:
    """Everything one meta step is about, handed to :meth:`Strategy.compute` as one argument.

    Attributes:
        model: the model as it is before this step's real update (read, never changed).
        optimizer: its optimiser; the unroll copies its hyper-parameters and state.
        labels: the label parameterisation whose parameters get the gradient.
        batch: the training batch ``(x, y, indices)`` the inner steps train on.
        meta_batch: the batch the meta loss scores with its hard labels.
        loss: the training loss (the same the real step uses): a callable
            ``loss(logits, soft_targets, weights, targets)`` or a :data:`~labelmeta.losses.LOSSES` name.
        inner_scale: factor on the inner loss: this process's share of the global training batch
            (1 in one process; see :mod:`labelmeta.distributed`).
        meta_scale: factor on the meta loss: this process's share of the global meta batch mean.
        group: the process group whose processes take the same, global inner step (``None``: one process).
        logits: the real model's outputs on the training batch, from the forward the model step
            will back-propagate (set by the learner for a strategy that :attr:`~Strategy.shares_forward`;
            differentiate it with ``retain_graph=True``); ``None`` otherwise.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    labels: LabelParameterization
    batch: Batch
    meta_batch: Batch
    loss: Union[TrainingLoss, str] = soft_cross_entropy
    inner_scale: float = 1.0
    meta_scale: float = 1.0
    group: Optional["Distributed"] = None
    logits: Optional[Tensor] = None

    def __post_init__(self) -> None:
        if isinstance(self.loss, str):
            self.loss = make_loss(self.loss)  # an unknown name lists the registered ones
        elif not callable(self.loss):
            raise TypeError(f"MetaProblem.loss must be a training loss name ({', '.join(LOSSES.names())}) or a "
                            f"callable loss(logits, soft_targets, weights, targets), got {self.loss!r}")

    def inner_loss(self, logits: Tensor, soft_targets: Tensor, weights: Optional[Tensor] = None) -> Tensor:
        """The training loss of ``logits`` on the training batch against ``soft_targets``, scaled."""
        value = self.loss(logits, soft_targets, weights, self.batch[1])
        return value if self.inner_scale == 1.0 else value * self.inner_scale

    def meta_loss(self, logits: Tensor) -> Tensor:
        """Hard-label cross-entropy of ``logits`` on the meta batch, scaled."""
        value = F.cross_entropy(logits, self.meta_batch[1])
        return value if self.meta_scale == 1.0 else value * self.meta_scale

    def soft_targets(self) -> Tensor:
        """The labels' soft targets for the training batch (differentiable in the label parameters)."""
        _, y, idx = self.batch
        return self.labels(idx, y)

    def average(self, grads: Sequence[Optional[Tensor]]) -> Sequence[Optional[Tensor]]:
        """Inner gradients averaged over the processes (differentiably), or as they are in one."""
        return grads if self.group is None else self.group.mean_differentiable(grads)


@dataclass
class MetaStats:
    """What one meta step measured.

    ``sample_weights`` is set by strategies that learn per-sample weights instead of labels
    (``[B]``, summing to one or all zero); the learner then weights the model step with it.
    """

    meta_loss: float
    sample_weights: Optional[Tensor] = None


def _checking(compute):
    """``compute`` that first checks the problem's optimiser with the strategy's :meth:`Strategy.check`."""
    def checked(self: "Strategy", problem: MetaProblem, *args: Any, **kwargs: Any) -> MetaStats:
        self.check(problem.optimizer)
        return compute(self, problem, *args, **kwargs)

    checked.__doc__, checked.__name__, checked.__qualname__ = compute.__doc__, compute.__name__, compute.__qualname__
    return checked


def normalised(weights: Tensor) -> Tensor:
    """``weights [B]`` scaled to sum to one, or as they are (all zero) when they sum to zero: a
    weighted batch then takes the step length of a plain batch mean, and a batch no sample helps is skipped."""
    total = weights.sum()
    return weights / total if total > 0 else weights


def accumulate_label_grads(labels: LabelParameterization, grads: Sequence[Optional[Tensor]]) -> None:
    """Add ``grads`` (one per trainable label parameter, ``None`` for none) into their ``.grad``."""
    for p, g in zip(trainable(labels), grads):
        if g is not None:
            p.grad = g if p.grad is None else p.grad + g


def trainable(labels: LabelParameterization) -> List[Tensor]:
    """The label parameters a meta step gives gradients to."""
    return [p for p in labels.parameters() if p.requires_grad]


class Strategy(abc.ABC):
    """Base class: fill the label parameters' ``.grad`` for one :class:`MetaProblem`.

    Options are keyword-only constructor arguments with a type and a default (see
    :mod:`labelmeta.options`); the learner tells a strategy nothing else, everything a step needs
    arrives in the problem. ``compute`` (and ``meta_loss``) of every subclass run on kernels
    that have the derivatives a hypergradient needs (:mod:`labelmeta.kernels`), and ``compute``
    checks the optimiser first, however the strategy is called. When meta steps happen (warm-up, every ``m`` steps) is the run's
    schedule, not the strategy's (:class:`labelmeta.schedule.MetaSchedule`).
    """

    #: whether the strategy produces per-sample weights (then labels need not be learnable)
    learns_weights: bool = False
    #: whether it gives the label parameters gradients (a pure reweighting strategy does not)
    learns_labels: bool = True
    #: whether it can run in several processes (see :mod:`labelmeta.distributed`)
    supports_distributed: bool = True
    #: whether it reads :attr:`MetaProblem.logits`: the learner then runs the model step's forward
    #: first and hands it over, so the two share one forward (in one process)
    shares_forward: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Every strategy differentiates on kernels that have the derivatives it needs, however it is
        # called (by a Learner, or directly as in the tutorials): ``compute`` and ``meta_loss``, where
        # a subclass defines them, run under labelmeta.kernels.differentiable_kernels (the math
        # attention kernel), and ``compute`` first checks the optimiser, as the Learner does once.
        super().__init_subclass__(**kwargs)
        for name in ("compute", "meta_loss"):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "__isabstractmethod__", False):
                setattr(cls, name, on_differentiable_kernels(_checking(method) if name == "compute" else method))

    def check(self, optimizer: torch.optim.Optimizer) -> None:
        """Raise ``ValueError`` if this strategy cannot differentiate through ``optimizer``.

        The learner calls it when it is built, before any training. The default accepts what
        :func:`labelmeta.update_rules.rule_for` reproduces exactly.
        """
        rule_for(optimizer)

    def check_model(self, model: nn.Module) -> None:
        """Raise ``ValueError`` if this strategy's options cannot serve ``model`` (e.g. a product
        that would draw other dropout masks); the learner calls it when it is built. Accepts any model by default.

        Whether the model's operations have the derivatives the strategy needs is another question,
        answered by running it: :meth:`labelmeta.learner.Learner.probe`.
        """

    def derivatives(self, model: nn.Module) -> FrozenSet[str]:
        """Which derivatives of ``model`` beyond the gradient the strategy takes, so that the probe
        (:meth:`labelmeta.learner.Learner.probe`) checks them numerically before training:
        ``"double backward"`` (the inner gradient differentiated in the training loss's gradient:
        every second-order unroll), ``"hessian"`` (also in the weights: two or more differentiated
        steps), ``"forward mode"`` (a forward-mode product). Default: the first two.
        """
        return frozenset({"double backward", "hessian"})

    def variants(self, model: nn.Module) -> List["Strategy"]:
        """Ways of computing this strategy's gradient for ``model``, preferred first (``[self]`` by
        default): :meth:`labelmeta.learner.Learner.probe` keeps the first that can differentiate the model.
        A variant computes the same numbers, differently (``one-step``'s ``product="auto"``)."""
        return [self]

    @abc.abstractmethod
    def compute(self, problem: MetaProblem) -> MetaStats:
        """Accumulate the label gradient of ``problem`` into the label parameters' ``.grad``."""

    def state_dict(self) -> Dict[str, Any]:
        """What the strategy learns itself (a network, its optimiser), for checkpoints; none by default."""
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, got {sorted(state)}")


class MetaLossStrategy(Strategy):
    """The exact family: a meta loss differentiable in the label parameters, back-propagated."""

    @abc.abstractmethod
    def meta_loss(self, problem: MetaProblem, weights: Optional[Tensor] = None) -> Tensor:
        """The meta loss as a differentiable function of the label parameters (and of per-sample
        ``weights [B]`` on the inner loss, if given)."""

    def compute(self, problem: MetaProblem) -> MetaStats:
        value = check_finite(self.meta_loss(problem), "meta loss")
        grads = torch.autograd.grad(value, trainable(problem.labels), allow_unused=True)
        accumulate_label_grads(problem.labels, grads)
        return MetaStats(meta_loss=value.item())


class ApproximateStrategy(Strategy):
    """The approximate family: estimates the label gradient in its own :meth:`compute`
    (and states its accuracy; ``tests/test_strategies.py`` checks it against the exact gradient)."""


class KStepStrategy(MetaLossStrategy):
    """A meta loss through ``steps`` inner optimiser steps (the constructor the unrolls share).

    Args:
        steps: inner steps ``k`` (>= 1); default 1.
    """

    def __init__(self, *, steps: int = 1) -> None:
        self.steps = inner_steps(steps)

    #: differentiate through the last ``through`` inner steps only (``None``: all of them)
    through: Optional[int] = None

    def derivatives(self, model: nn.Module) -> FrozenSet[str]:
        differentiated = self.steps if self.through is None else self.through
        return frozenset({"double backward", "hessian"} if differentiated > 1 else {"double backward"})


def inner_steps(steps: int) -> int:
    """``steps`` as an ``int`` (the ``steps`` option every unrolling strategy declares), or ``ValueError``."""
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    return int(steps)


def make_strategy(name: str, **options) -> Strategy:
    """Build the registered strategy ``name`` (see ``STRATEGIES.names()``) with its declared ``options``."""
    return STRATEGIES.build(name, options=options)
