"""Differentiable optimiser steps with ``torch.optim``'s arithmetic, for the exact unrolls.

A hypergradient is exact only if the unrolled step is the step the real optimiser takes. Each rule
here reproduces one ``torch.optim`` class's update for every option it accepts (tested against the
real optimiser in float64 to 1e-12, from a fresh and from a warm state), as a function of tensors
that keeps the autograd graph:

- ``SGD``: learning rate, momentum, dampening, Nesterov, weight decay, maximize;
- ``Adam`` and ``AdamW``: betas, eps (added *after* the bias correction of ``sqrt(v)``, as torch
  does; ``higher``'s released Adam adds it before), AMSGrad, L2 or decoupled weight decay,
  maximize, bias correction from any step count, 0 (a fresh optimiser) included.

Both exact backends use these rules: ``functional`` calls :func:`rule_for` directly, and the
``unrolled`` backend gets them through ``higher``'s public :func:`higher.register_optim` (done when
this module is imported), so the two cannot drift apart. An optimiser option a rule does not model
is refused by :func:`rule_for`, naming the option, before any step is taken.
"""
from __future__ import annotations

import collections
import functools
import inspect
from typing import Any, Callable, Dict, List, Tuple

import higher
import torch
from torch import Tensor

State = Dict[str, Any]  #: momentum buffers and moments (tensors), Adam's step count
#: ``rule(param, grad, state, group) -> (new_param, new_state)``; the state is never changed in place
Rule = Callable[[Tensor, Tensor, State, dict], Tuple[Tensor, State]]

#: constructor options that select an implementation, not an arithmetic (they change round-off only)
IMPLEMENTATION_OPTIONS = frozenset({"foreach", "fused", "capturable", "differentiable"})


def sgd(p: Tensor, g: Tensor, state: State, group: dict) -> Tuple[Tensor, State]:
    """One ``torch.optim.SGD`` step (``_single_tensor_sgd``'s arithmetic)."""
    if group.get("maximize", False):
        g = -g
    if group["weight_decay"] != 0:
        g = g + group["weight_decay"] * p
    momentum = group["momentum"]
    if momentum != 0:
        buf = state.get("momentum_buffer")
        buf = g if buf is None else buf * momentum + (1 - group["dampening"]) * g
        state = {**state, "momentum_buffer": buf}
        g = g + momentum * buf if group["nesterov"] else buf
    return p - group["lr"] * g, state


def adam(p: Tensor, g: Tensor, state: State, group: dict, decoupled: bool = False) -> Tuple[Tensor, State]:
    """One ``torch.optim.Adam`` step (``AdamW``'s with ``decoupled=True``), ``_single_tensor_adam``'s arithmetic.

    ``p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``, with ``v`` replaced by its
    running maximum under AMSGrad.
    """
    beta1, beta2 = group["betas"]
    lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
    if group.get("maximize", False):
        g = -g
    step = float(state.get("step", 0)) + 1
    if weight_decay != 0:
        if decoupled or group.get("decoupled_weight_decay", False):
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
    exp_avg = state.get("exp_avg", torch.zeros_like(p))
    exp_avg_sq = state.get("exp_avg_sq", torch.zeros_like(p))
    exp_avg = exp_avg + (1 - beta1) * (g - exp_avg)  # torch's lerp
    exp_avg_sq = exp_avg_sq * beta2 + (1 - beta2) * g * g
    new_state: State = {"step": step, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
    second = exp_avg_sq
    if group["amsgrad"]:
        second = torch.maximum(state.get("max_exp_avg_sq", torch.zeros_like(p)), exp_avg_sq)
        new_state["max_exp_avg_sq"] = second
    bias_correction1 = 1 - beta1**step
    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
    denom = _safe_sqrt(second) / bias_correction2_sqrt + eps
    return p - (lr / bias_correction1) * (exp_avg / denom), new_state


def _safe_sqrt(x: Tensor) -> Tensor:
    """``sqrt(x)`` whose derivative at exactly 0 is 0 instead of ``inf * 0 = nan``.

    An entry of the second moment is exactly 0 only where every gradient so far was 0; there the
    step does not depend on the gradient to first order anyway.
    """
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, torch.ones_like(x)).sqrt(), torch.zeros_like(x))


#: torch.optim class -> its differentiable step
RULES: Dict[type, Rule] = {
    torch.optim.SGD: sgd,
    torch.optim.Adam: adam,
    torch.optim.AdamW: functools.partial(adam, decoupled=True),
}
#: the constructor options each rule reproduces (the others must keep their defaults)
MODELLED: Dict[type, frozenset] = {
    torch.optim.SGD: frozenset({"lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize"}),
    torch.optim.Adam: frozenset({"lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "decoupled_weight_decay"}),
    torch.optim.AdamW: frozenset({"lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "decoupled_weight_decay"}),
}


def supported_optimizers() -> List[str]:
    """Names of the ``torch.optim`` classes the exact unrolls differentiate through."""
    return sorted(cls.__name__ for cls in RULES)


def rule_for(optimizer: torch.optim.Optimizer) -> Rule:
    """The differentiable step of ``optimizer``, or ``ValueError`` naming what cannot be reproduced.

    Refused: an optimiser class without a rule, and any constructor option (in any parameter
    group) that the rule does not model and that differs from its default. Keys that are not
    constructor options (``initial_lr`` from a learning-rate scheduler, a user's own tags) do not
    enter the arithmetic and are ignored.
    """
    kind = type(optimizer)
    rule = RULES.get(kind)
    if rule is None:
        raise ValueError(f"the exact unroll has no differentiable {kind.__name__} (one reproducing torch.optim's "
                         f"arithmetic); use one of: {', '.join(supported_optimizers())}")
    defaults = _constructor_defaults(kind)
    ignored = MODELLED[kind] | IMPLEMENTATION_OPTIONS
    for i, group in enumerate(optimizer.param_groups):
        for name, default in defaults.items():
            if name in ignored or name not in group:
                continue
            if group[name] != default:
                raise ValueError(f"{kind.__name__}({name}={group[name]!r}) in parameter group {i} is not reproduced "
                                 f"by the differentiable step; the unroll models {', '.join(sorted(MODELLED[kind]))}")
    return rule


@functools.lru_cache(maxsize=None)
def _constructor_defaults(kind: type) -> Dict[str, Any]:
    """The keyword defaults of ``kind``'s constructor (read once per class: rule_for runs every meta step)."""
    return {name: p.default for name, p in inspect.signature(kind.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


def sgd_gain(group: dict, state: State) -> float:
    """``d theta' / d grad`` of one SGD step: a scalar, since the step is affine in the gradient."""
    sign = -1.0 if group.get("maximize", False) else 1.0
    momentum = group["momentum"]
    if momentum == 0:
        return sign * group["lr"]
    buffer_gain = 1.0 if state.get("momentum_buffer") is None else 1 - group["dampening"]
    return sign * group["lr"] * (1 + momentum * buffer_gain if group["nesterov"] else buffer_gain)


class _HigherRule(higher.optim.DifferentiableOptimizer):
    """``higher``'s differentiable optimiser driven by one of the rules above.

    Built as ``higher``'s own is, without its copies: ``higher`` deep-copies the parameter groups (every
    parameter with them) and clones every state tensor, and finds each parameter by a linear search;
    a rule never writes a state tensor or a group in place, so the groups are copied without their
    parameters and the state dicts without their tensors (cast to ``device`` if one is given).
    """

    rule: Rule

    def __init__(self, other: torch.optim.Optimizer, reference_params, fmodel=None, device=None, override=None,
                 grad_callback=None, track_higher_grads: bool = True, **kwargs: Any) -> None:
        position = {id(p): i for i, p in reversed(list(enumerate(reference_params)))}  # the first, as higher's search
        self.param_groups = [{**group, "params": [None] * len(group["params"])} for group in other.param_groups]
        self.state = [collections.defaultdict(dict) for _ in self.param_groups]
        if override is not None:
            self._apply_override(override)
        self._grad_callback = grad_callback
        self._group_to_param_list = []
        for group_idx, group in enumerate(other.param_groups):
            indices = []
            for p_idx, p in enumerate(group["params"]):
                if p in other.state:
                    self.state[group_idx][p_idx] = {k: _cast(v, device) for k, v in other.state[p].items()}
                index = position.get(id(p))
                if index is None:
                    raise ValueError(f"Could not find parameter {p} in reference parameters.")
                indices.append(index)
            self._group_to_param_list.append(indices)
        self._fmodel = fmodel
        self._track_higher_grads = track_higher_grads

    def _update(self, grouped_grads, **kwargs) -> None:
        for group_idx, (group, grads) in enumerate(zip(self.param_groups, grouped_grads)):
            for p_idx, (p, g) in enumerate(zip(group["params"], grads)):
                if g is None:  # unused parameter: no step, as in torch.optim
                    continue
                state = self.state[group_idx][p_idx]
                group["params"][p_idx], self.state[group_idx][p_idx] = type(self).rule(p, g, state, group)


def _cast(value: Any, device: Any) -> Any:
    """A state entry for the differentiable step: as it is, or a tensor's copy on ``device``."""
    if device is not None and isinstance(value, Tensor):
        return value.detach().to(device, copy=True)
    return value


for _kind, _rule in RULES.items():
    # staticmethod: the rule is a plain function, not a method of the optimiser
    higher.register_optim(_kind, type(f"Exact{_kind.__name__}", (_HigherRule,), {"rule": staticmethod(_rule), "__module__": __name__}))
