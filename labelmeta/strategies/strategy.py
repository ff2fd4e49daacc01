"""A strategy is a hypergradient backend paired with a meta target; the registry of strategies by name.

``Strategy(backend, target)`` asks the target for the step's meta parameters, the backend for the
meta loss's gradient with respect to them, and the target for the update. Any target runs on any
backend that can differentiate what it needs. :data:`STRATEGIES` names them:

- ``"BACKEND:TARGET"``, e.g. ``"functional:weights"``: any pair, its options those of both;
- a backend's own name, e.g. ``"one-step"``: the backend with the ``labels`` target;
- presets, the names of the methods they are (Config files, command lines, checkpoints and stored
  results use them; :mod:`.presets`): ``one-step-reweight`` (one-step × labels+weights, the default),
  ``reweight`` (unrolled × weights: learning to reweight as published), ``meta-weight-net`` (one-step ×
  weight-net);
- ``none``: no meta step at all, the model trains on the labels as they are (:func:`no_meta_step`).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, FrozenSet, List, Optional

import torch
from torch import nn

from ..kernels import differentiable_kernels
from ..options import Schema
from ..profiling import phase
from ..registry import Registry
from .backend import BACKENDS, Backend
from .problem import MetaProblem, MetaStats
from .targets import TARGETS, Labels, MetaParameters, Target

#: the strategy a run uses unless told otherwise (``Config.strategy``, ``Learner``'s default)
DEFAULT_STRATEGY = "one-step-reweight"


class Strategy:
    """A backend and a target: fills the label parameters' ``.grad`` and/or returns per-sample weights.

    Args:
        backend: how the hypergradient is obtained (:data:`~.backend.BACKENDS`).
        target: what receives it (:data:`~.targets.TARGETS`); default: the label parameters (``Labels()``).
        name: how messages name it (default ``"BACKEND-CLASS:TARGET-CLASS"``).
    """

    def __init__(self, backend: Backend, target: Optional[Target] = None, name: Optional[str] = None) -> None:
        target = Labels() if target is None else target
        if not isinstance(backend, Backend) or not isinstance(target, Target):
            raise TypeError(f"Strategy(backend, target) takes a Backend and a Target, got "
                            f"{type(backend).__name__} and {type(target).__name__}")
        self.backend, self.target = backend, target
        self.name = name or f"{type(backend).__name__}:{type(target).__name__}"

    @property
    def learns_labels(self) -> bool:
        """Whether it gives the label parameters gradients."""
        return self.target.learns_labels

    @property
    def learns_weights(self) -> bool:
        """Whether it returns per-sample weights for the model step."""
        return self.target.learns_weights

    @property
    def learns(self) -> bool:
        """Whether it learns anything at all (``none`` does not)."""
        return self.learns_labels or self.learns_weights

    @property
    def supports_distributed(self) -> bool:
        """Whether both halves can run in several processes."""
        return self.backend.supports_distributed and self.target.supports_distributed

    @property
    def shares_forward(self) -> bool:
        """Whether the backend reads the model step's forward (:attr:`MetaProblem.logits`)."""
        return self.backend.shares_forward

    def check(self, optimizer: torch.optim.Optimizer) -> None:
        """``ValueError`` if the backend cannot differentiate through ``optimizer``."""
        self.backend.check(optimizer)

    def check_model(self, model: nn.Module) -> None:
        """``ValueError`` if the backend's options cannot serve ``model``."""
        self.backend.check_model(model)

    def derivatives(self, model: nn.Module) -> FrozenSet[str]:
        """The derivatives of ``model`` the backend takes (:meth:`Backend.derivatives`)."""
        return self.backend.derivatives(model)

    def variants(self, model: nn.Module) -> List["Strategy"]:
        """The same target on each of the backend's variants (:meth:`Backend.variants`)."""
        return [self if b is self.backend else Strategy(b, self.target, self.name) for b in self.backend.variants(model)]

    def compute(self, problem: MetaProblem) -> MetaStats:
        """One meta step: the target's meta parameters, the backend's gradient, the target's update.

        Checks the optimiser first (as the learner does when it is built) and differentiates on
        :func:`~labelmeta.kernels.differentiable_kernels`, however it is called.
        """
        self.backend.check(problem.optimizer)
        with differentiable_kernels(problem.model):
            with phase("labelmeta: meta parameters"):
                meta = self.target.parameters(problem)
                with torch.enable_grad():
                    weights = meta.weights()
            meta_loss, grads = self.backend.hypergradient(problem, meta.inputs, weights)
            with phase("labelmeta: target update"):
                return self.target.update(problem, meta, meta_loss, grads)

    def state_dict(self) -> Dict[str, Any]:
        """What the strategy keeps between steps, for checkpoints: the target's (its network, its
        optimiser), and under ``"backend"`` the backend's, if it keeps any (``one-step``'s kept direction)."""
        state = dict(self.target.state_dict())
        backend = self.backend.state_dict()
        if backend:
            state["backend"] = backend
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        state = dict(state)
        self.backend.load_state_dict(state.pop("backend", {}))
        self.target.load_state_dict(state)

    def __getattr__(self, name: str) -> Any:
        # the options of either half read as the strategy's (``learner.strategy.product``, ``.damping``)
        if name in ("backend", "target"):
            raise AttributeError(name)
        for half in (self.backend, self.target):
            if hasattr(half, name):
                return getattr(half, name)
        raise AttributeError(f"strategy {self.name!r} (and its backend and target) has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"Strategy({self.name!r}: {type(self.backend).__name__} x {type(self.target).__name__})"


class StrategyRegistry(Registry[Strategy]):
    """:class:`~labelmeta.registry.Registry` of strategies: the registered presets, and, composed when
    asked for, every registered backend by its name (with the ``labels`` target) and every
    ``"BACKEND:TARGET"`` pair of the registered backends and targets."""

    def get(self, name: str) -> Callable[..., Strategy]:
        pair = self._pair(name)
        return pair[0] if pair is not None else super().get(name)

    def schema(self, name: str) -> Schema:
        pair = self._pair(name)
        return pair[1] if pair is not None else super().schema(name)

    def names(self) -> List[str]:
        """Presets and backends, then every backend:target pair."""
        return (sorted(set(self._entries) | set(BACKENDS.names()))
                + [f"{b}:{t}" for b in BACKENDS.names() for t in TARGETS.names()])

    def __contains__(self, name: object) -> bool:
        return name in self._entries or self._pair(name) is not None

    def _pair(self, name: object):
        """``(factory, schema)`` of a backend name or a ``"BACKEND:TARGET"`` name; ``None`` for anything else."""
        if not isinstance(name, str) or name in self._entries:
            return None
        backend, sep, target = name.partition(":")
        target = target if sep else "labels"
        if backend not in BACKENDS or target not in TARGETS:
            return None
        b_schema, t_schema = BACKENDS.schema(backend), TARGETS.schema(target)

        def factory(**options: Any) -> Strategy:
            return Strategy(BACKENDS.build(backend, options={k: v for k, v in options.items() if k in b_schema.options}),
                            TARGETS.build(target, options={k: v for k, v in options.items() if k in t_schema.options}),
                            name)

        factory.__doc__ = (f"The {backend!r} hypergradient backend with the {target!r} meta target.\n\n"
                           f"{_first_paragraph(BACKENDS.get(backend))}\n\n{_first_paragraph(TARGETS.get(target))}")
        return factory, Schema.union(f"{self.kind} {name!r}", b_schema, t_schema)


def _first_paragraph(obj: Any) -> str:
    return (inspect.getdoc(obj) or "").split("\n\n")[0]


#: every strategy by name (see the module docstring)
STRATEGIES = StrategyRegistry("strategy")


def make_strategy(name: str, **options: Any) -> Strategy:
    """Build the strategy ``name`` (a preset, a backend, or ``"BACKEND:TARGET"``) with its declared ``options``."""
    return STRATEGIES.build(name, options=options)


def as_strategy(strategy: "Strategy | Backend | str | None") -> Strategy:
    """``strategy`` as a :class:`Strategy`: a backend gets the ``labels`` target, a name is built with its
    defaults, ``None`` is ``none`` (no meta step)."""
    if strategy is None:
        return make_strategy("none")
    if isinstance(strategy, str):
        return make_strategy(strategy)
    if isinstance(strategy, Backend):
        return Strategy(strategy, Labels(), BACKENDS.name_of(strategy) or type(strategy).__name__)
    if not isinstance(strategy, Strategy):
        raise TypeError(f"a strategy must be a Strategy, a Backend or a registered name, got {type(strategy).__name__}")
    return strategy


# --- none: a strategy that takes no meta step ------------------------------------------------------------

class _NoHypergradient(Backend):
    """``none``'s backend: takes no derivative, so it accepts any optimiser and any model."""

    def check(self, optimizer: torch.optim.Optimizer) -> None:
        pass  # the model step is an ordinary optimiser step: any optimiser

    def derivatives(self, model: nn.Module) -> FrozenSet[str]:
        return frozenset()

    def hypergradient(self, problem: MetaProblem, inputs, weights=None):
        return None, [None] * len(inputs)


class _NothingToLearn(Target):
    """``none``'s target: no meta parameters, no update."""

    def parameters(self, problem: MetaProblem) -> MetaParameters:
        return MetaParameters([])

    def update(self, problem: MetaProblem, meta: MetaParameters, meta_loss, grads) -> MetaStats:
        return MetaStats(meta_loss=None)


@STRATEGIES.register("none")
def no_meta_step() -> Strategy:
    """No meta step: the model trains on the labels as they are (ordinary training, plain cross-entropy with one-hot labels)."""
    return Strategy(_NoHypergradient(), _NothingToLearn(), "none")
