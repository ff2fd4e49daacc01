"""The model's optimiser by name (``Config.optimizer``): ``factory(params, config)`` builds it from the
Config's ``lr``, ``momentum`` and ``weight_decay``; no options of its own (their settings are Config
fields, which the run's schedule and checks read too)."""
from __future__ import annotations

from typing import Any

import torch

from .config import Config
from .registry import Registry

#: the model's optimiser by name
MODEL_OPTIMIZERS: Registry[torch.optim.Optimizer] = Registry("model optimiser")


@MODEL_OPTIMIZERS.register("sgd")
def sgd(params: Any, config: Config) -> torch.optim.Optimizer:
    """SGD with momentum (``torch.optim.SGD``) from ``lr``, ``momentum`` and ``weight_decay``."""
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


@MODEL_OPTIMIZERS.register("adam")
def adam(params: Any, config: Config) -> torch.optim.Optimizer:
    """Adam (``torch.optim.Adam``) from ``lr`` and ``weight_decay`` (``momentum`` is not used)."""
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


@MODEL_OPTIMIZERS.register("adamw")
def adamw(params: Any, config: Config) -> torch.optim.Optimizer:
    """AdamW (``torch.optim.AdamW``) from ``lr`` and ``weight_decay`` (``momentum`` is not used)."""
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
