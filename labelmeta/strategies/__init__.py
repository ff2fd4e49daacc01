"""Strategies: how the gradient of the meta loss with respect to the label parameters is obtained.

A strategy fills ``.grad`` of the label parameters for one meta step and returns
:class:`MetaStats`. All strategies live in :data:`STRATEGIES`; get one with
:func:`make_strategy`. Add a strategy by subclassing :class:`Strategy` (or a family below) and
overriding only what differs; it must pass ``tests/test_gradients.py``.
"""
from .base import STRATEGIES, MetaStats, Strategy, make_strategy
from .unrolled import MetaReweight, Unrolled
from ..update_rules import supported_optimizers
from .functional import FiniteDifference, Functional, HeadOnly, Truncated, find_head

__all__ = ["STRATEGIES", "FiniteDifference", "Functional", "HeadOnly", "MetaReweight", "MetaStats", "Strategy",
           "Truncated", "Unrolled", "find_head", "make_strategy", "supported_optimizers"]
