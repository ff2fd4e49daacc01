"""Strategies: how the gradient of the meta loss with respect to the label parameters is obtained.

A strategy receives one :class:`MetaProblem` (model, optimiser, labels, batches, training loss,
scales, process group), fills ``.grad`` of the label parameters and returns :class:`MetaStats`.
Two families (:mod:`.base`): :class:`MetaLossStrategy` (a differentiable meta loss, back-propagated)
and :class:`ApproximateStrategy` (its own ``compute``). The exact backends are siblings:
:class:`Unrolled` (``higher``) and :class:`Functional` (``torch.func``). All strategies live in
:data:`STRATEGIES`; get one with :func:`make_strategy`. A new strategy is one file with a
``@STRATEGIES.register("name")`` class; it must pass ``tests/test_gradients.py`` (exact) or be
compared with the gradient it approximates in ``tests/test_strategies.py``.
"""
from .base import (STRATEGIES, ApproximateStrategy, KStepStrategy, MetaLossStrategy, MetaProblem, MetaStats, Strategy,
                   accumulate_label_grads, make_strategy)
from .finite_difference import FiniteDifference
from .functional import Functional, HeadOnly, Truncated, find_head
from .meta_weight_net import MetaWeightNet
from .one_step import OneStep, OneStepReweight
from .unrolled import MetaReweight, Unrolled
from ..update_rules import supported_optimizers

__all__ = ["STRATEGIES", "ApproximateStrategy", "FiniteDifference", "Functional", "HeadOnly", "KStepStrategy",
           "MetaLossStrategy", "MetaProblem", "MetaReweight", "MetaStats", "MetaWeightNet", "OneStep", "OneStepReweight",
           "Strategy", "Truncated", "Unrolled",
           "accumulate_label_grads", "find_head", "make_strategy", "supported_optimizers"]
