"""Strategies: a hypergradient backend (how the gradient of the meta loss is obtained) paired with a
meta target (what receives it and how the model step uses it).

- Backends (:data:`BACKENDS`, :mod:`.backend`): ``unrolled`` (``higher``), ``functional``
  (``torch.func``), ``truncated``, ``head-only``, ``one-step`` (a Jacobian-vector product),
  ``finite-difference``, ``implicit`` (the implicit function theorem: conjugate gradient or Neumann). A backend implements ``hypergradient(problem, inputs, weights)``, or an
  unroll's ``meta_loss(problem, weights)``.
- Targets (:data:`TARGETS`, :mod:`.targets`): ``labels``, ``weights`` (learning to reweight),
  ``labels+weights`` (the default's), ``weight-net`` (Meta-Weight-Net). A target implements
  ``parameters(problem)`` and ``update(problem, meta, meta_loss, grads)``.
- Strategies (:data:`STRATEGIES`, :mod:`.strategy`): ``"BACKEND:TARGET"`` for any pair, a backend's
  name for it with the ``labels`` target, and the presets ``one-step-reweight`` (the default),
  ``reweight`` and ``meta-weight-net``. Get one with :func:`make_strategy`.

A new backend or target is one file with a ``@BACKENDS.register`` / ``@TARGETS.register`` class; it
runs with every counterpart, and ``tests/test_strategies.py`` checks every pair against finite
differences after real ``torch.optim`` steps.
"""
from .backend import BACKENDS, Backend, KStepBackend, UnrollBackend
from .base import MetaProblem, MetaStats, accumulate_label_grads, trainable
from .finite_difference import FiniteDifference
from .functional import Functional, HeadOnly, Truncated, find_head
from .implicit import Implicit
from .one_step import OneStep
from .strategy import (DEFAULT_STRATEGY, STRATEGIES, MetaReweight, MetaWeightNet, OneStepReweight, Strategy,
                       as_strategy, make_strategy)
from .targets import TARGETS, Labels, LabelsAndWeights, MetaParameters, Target, WeightNet, Weights
from .unrolled import Unrolled
from ..update_rules import supported_optimizers

__all__ = ["BACKENDS", "Backend", "DEFAULT_STRATEGY", "FiniteDifference", "Functional", "HeadOnly", "Implicit", "KStepBackend",
           "Labels", "LabelsAndWeights", "MetaParameters", "MetaProblem", "MetaReweight", "MetaStats", "MetaWeightNet",
           "OneStep", "OneStepReweight", "STRATEGIES", "Strategy", "TARGETS", "Target", "Truncated", "UnrollBackend",
           "Unrolled", "WeightNet", "Weights", "accumulate_label_grads", "as_strategy", "find_head", "make_strategy",
           "supported_optimizers", "trainable"]
