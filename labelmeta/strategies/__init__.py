"""Strategies: a hypergradient backend (how the gradient of the meta loss is obtained) paired with a
meta target (what receives it and how the model step uses it).

- The inner loop (:mod:`.inner_loop`): ordinary optimiser steps of a functional copy of the model
  (graph-free, with a graph, or by recomputed segments), the meta loss and its gradient, every sum and
  mean across processes; on ``torch.func`` (:mod:`.functional_model`) or ``higher`` (:mod:`.higher_model`).
- Backends (:data:`BACKENDS`, :mod:`.backend`), each only its mathematics on that loop: ``unrolled``
  (``higher``), ``functional`` (``torch.func``), ``truncated``, ``head-only`` (:mod:`.unrolls`),
  ``one-step`` (a Jacobian-vector product), ``finite-difference``, ``implicit`` (the implicit function
  theorem: conjugate gradient or Neumann). A backend implements ``hypergradient(problem, inputs, weights)``,
  or an unroll's ``meta_loss(problem, weights)``.
- Targets (:data:`TARGETS`, :mod:`.targets`): ``labels``, ``weights`` (learning to reweight),
  ``labels+weights`` (the default's), ``weight-net`` (Meta-Weight-Net). A target implements
  ``parameters(problem)`` and ``update(problem, meta, meta_loss, grads)``.
- Strategies (:data:`STRATEGIES`, :mod:`.strategy`): ``"BACKEND:TARGET"`` for any pair, a backend's
  name for it with the ``labels`` target, the presets ``one-step-reweight`` (the default), ``reweight``
  and ``meta-weight-net`` (:mod:`.presets`), and ``none``. Get one with :func:`make_strategy`.

A new backend or target is one file with a ``@BACKENDS.register`` / ``@TARGETS.register`` class; it
runs with every counterpart, and ``tests/test_strategies.py`` checks every pair against finite
differences after real ``torch.optim`` steps.
"""
from .backend import BACKENDS, Backend, KStepBackend, UnrollBackend
from .finite_difference import FiniteDifference
from .functional_model import FunctionalModel, Point
from .higher_model import HigherModel
from .implicit import Implicit
from .inner_loop import InnerLoop, find_head, head_inputs
from .one_step import OneStep
from .presets import MetaReweight, MetaWeightNet, OneStepReweight
from .problem import MetaProblem, MetaStats, accumulate_label_grads, trainable
from .refresh import KeptDirection
from .strategy import DEFAULT_STRATEGY, STRATEGIES, Strategy, as_strategy, make_strategy
from .targets import TARGETS, Labels, LabelsAndWeights, MetaParameters, Target, WeightNet, Weights
from .unrolls import Functional, HeadOnly, Truncated, Unrolled
from ..update_rules import supported_optimizers

__all__ = ["BACKENDS", "Backend", "DEFAULT_STRATEGY", "FiniteDifference", "Functional", "FunctionalModel", "HeadOnly",
           "HigherModel", "Implicit", "InnerLoop", "KStepBackend", "KeptDirection", "Labels", "LabelsAndWeights",
           "MetaParameters", "MetaProblem", "MetaReweight", "MetaStats", "MetaWeightNet", "OneStep", "OneStepReweight",
           "Point", "STRATEGIES", "Strategy", "TARGETS", "Target", "Truncated", "UnrollBackend", "Unrolled",
           "WeightNet", "Weights", "accumulate_label_grads", "as_strategy", "find_head", "head_inputs",
           "make_strategy", "supported_optimizers", "trainable"]
