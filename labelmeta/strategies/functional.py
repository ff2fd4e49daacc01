"""The k-step unroll written with ``torch.func.functional_call``, and the strategies built on it.

:class:`Functional` is a second, exact backend: the same unroll as :class:`~.unrolled.Unrolled`
(the same update rules, :mod:`labelmeta.update_rules`, which reproduce ``torch.optim``'s
arithmetic; ``higher`` gets them through its public ``register_optim``), without ``higher``'s
patched-module machinery. The cheaper strategies override only what differs:

- :class:`Truncated`: unroll ``k`` steps, differentiate through the last ``t`` only;
- :class:`HeadOnly`: features from the current model, only the classifier head unrolled;
- :class:`FiniteDifference`: the last step's mixed second derivative by a central difference
  (DARTS-style), no second-order graph at all.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from ..labels import LabelParameterization
from ..losses import TrainingLoss, check_finite, soft_cross_entropy
from ..typing import Batch
from ..update_rules import rule_for, sgd_gain
from .base import STRATEGIES, MetaStats
from .unrolled import Unrolled


class _Slots:
    """The parameters of ``module`` that ``optimizer`` updates, with their group and state."""

    def __init__(self, module: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.rule = rule_for(optimizer)
        owner = {id(p): group for group in optimizer.param_groups for p in group["params"]}
        self.names: List[str] = []
        self.initial: List[Tensor] = []
        self.groups: List[dict] = []
        self.states: List[Dict[str, Tensor]] = []
        self.frozen: Dict[str, Tensor] = {}
        for name, p in module.named_parameters():
            group = owner.get(id(p))
            if group is None or not p.requires_grad:
                self.frozen[name] = p.detach()  # not trained: a constant of the unroll
                continue
            self.names.append(name)
            self.initial.append(p.detach().requires_grad_())
            self.groups.append(group)
            # the real optimiser's state (momentum buffers, Adam moments) is read, never written
            self.states.append({k: v for k, v in optimizer.state.get(p, {}).items()
                                if k in ("momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step")})


def _call(module: nn.Module, slots: _Slots, fast: List[Tensor], buffers: Dict[str, Tensor], x: Tensor) -> Tensor:
    params = {**slots.frozen, **dict(zip(slots.names, fast))}
    return functional_call(module, (params, buffers), (x,))


@STRATEGIES.register("functional")
class Functional(Unrolled):
    """Exact hypergradient through ``steps`` optimiser steps, unrolled with ``torch.func``.

    Same contract and the same numbers as :class:`~.unrolled.Unrolled` (the optimisers of
    :mod:`labelmeta.update_rules`: SGD, Adam, AdamW with all their arithmetic options), with less
    Python per step. BatchNorm buffers are cloned, so the unroll never changes running statistics.

    Args:
        steps: inner steps ``k`` (>= 1); default 1.
        every: take a meta step every ``every`` training steps; default 1.
    """

    #: differentiate through the last ``through`` inner steps only (``None``: all of them)
    through: Optional[int] = None

    def meta_loss(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        labels: LabelParameterization,
        batch: Batch,
        meta_batch: Batch,
        loss: TrainingLoss = soft_cross_entropy,
        weights: Optional[Tensor] = None,
    ) -> Tensor:
        x, y, idx = batch
        return self.unroll(model, optimizer, x, y, lambda: labels(idx, y), meta_batch[0], meta_batch[1], loss, weights)

    def unroll(self, module: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor,
               targets: Callable[[], Tensor], x_meta: Tensor, y_meta: Tensor, loss: TrainingLoss = soft_cross_entropy,
               weights: Optional[Tensor] = None) -> Tensor:
        """Meta loss of ``module`` after ``steps`` steps on ``(x, y)`` against the soft ``targets()``."""
        slots = _Slots(module, optimizer)
        buffers = {name: b.clone() for name, b in module.named_buffers()}
        fast, states = list(slots.initial), [dict(s) for s in slots.states]
        first_tracked = 0 if self.through is None else self.steps - self.through
        for step in range(self.steps):
            fast, states = self._step(module, slots, fast, states, buffers, x, y, targets, loss, weights,
                                      track=step >= first_tracked)
        return F.cross_entropy(_call(module, slots, fast, buffers, x_meta), y_meta) * self.meta_scale

    def _step(self, module, slots, fast, states, buffers, x, y, targets, loss, weights, track: bool):
        """One differentiable optimiser step (``track=False``: a plain step, no graph kept)."""
        leaves = [p if track else p.detach().requires_grad_() for p in fast]
        with torch.enable_grad():
            goal = targets() if track else targets().detach()
            value = loss(_call(module, slots, leaves, buffers, x), goal,
                         weights if track or weights is None else weights.detach(), y)
            grads = torch.autograd.grad(value, leaves, create_graph=track, allow_unused=True)
            if self.sync is not None:  # every process takes the same, global inner step
                grads = self.sync.mean_differentiable(grads)
        new_fast, new_states = [], []
        for p, g, state, group in zip(leaves, grads, states, slots.groups):
            if g is None:  # unused parameter: no step, as in torch.optim
                new_fast.append(p)
                new_states.append(state)
                continue
            if track:
                p, state = slots.rule(p, g, state, group)
            else:  # an ordinary step: no graph is recorded for the update
                with torch.no_grad():
                    p, state = slots.rule(p.detach(), g, state, group)
                p = p.requires_grad_()
            new_fast.append(p)
            new_states.append(state)
        return new_fast, new_states


@STRATEGIES.register("truncated")
class Truncated(Functional):
    """Unroll ``steps`` inner steps but back-propagate through the last ``through`` only.

    The first ``steps - through`` steps are ordinary (graph-free) optimiser steps, so memory
    grows with ``through``, not with ``steps``; ``through == steps`` is the exact unroll.

    Args:
        steps: inner steps ``k``.
        through: ``t``, the steps differentiated (``1 <= t <= k``); default 1.
        every: meta step every ``every`` training steps.
    """

    def __init__(self, steps: int = 1, through: int = 1, every: int = 1) -> None:
        super().__init__(steps, every=every)
        if int(through) != through or not 1 <= through <= self.steps:
            raise ValueError(f"through must be an integer in [1, steps={self.steps}], got {through}")
        self.through = int(through)


def find_head(model: nn.Module, name: Optional[str] = None) -> Tuple[str, nn.Module]:
    """The classifier head of ``model``: the submodule ``name``, else the first of ``head``,
    ``fc``, ``classifier`` that exists, else the last ``nn.Linear``."""
    modules = dict(model.named_modules())
    if name is not None:
        if name not in modules or not name:
            raise ValueError(f"model has no submodule {name!r}; its modules: {', '.join(n for n in modules if n)}")
        return name, modules[name]
    for candidate in ("head", "fc", "classifier"):
        if candidate in modules:
            return candidate, modules[candidate]
    linear = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
    if not linear:
        raise ValueError(f"cannot find a classifier head in {type(model).__name__}: name it with head=...")
    return linear[-1], modules[linear[-1]]


@STRATEGIES.register("head-only")
class HeadOnly(Functional):
    """Unroll only the classifier head, on features the current model computes (detached).

    The backbone runs once, without a graph, on the training and the meta batch (BatchNorm in
    train mode on cloned buffers, as in the full unroll); then ``steps`` differentiable steps of
    the head alone. Cost and memory are those of a linear model, whatever the backbone; the
    hypergradient is exact for the model with a frozen backbone.

    Args:
        steps: inner steps ``k`` of the head.
        head: name of the head submodule; default :func:`find_head`'s guess.
        every: meta step every ``every`` training steps.
    """

    def __init__(self, steps: int = 1, head: Optional[str] = None, every: int = 1) -> None:
        super().__init__(steps, every=every)
        self.head = head

    def meta_loss(self, model, optimizer, labels, batch, meta_batch, loss=soft_cross_entropy, weights=None):
        x, y, idx = batch
        _, head = find_head(model, self.head)
        features = head_inputs(model, head, x, meta_batch[0])
        return self.unroll(head, optimizer, features[0], y, lambda: labels(idx, y), features[1], meta_batch[1],
                           loss, weights)


@torch.no_grad()
def head_inputs(model: nn.Module, head: nn.Module, *inputs: Tensor) -> List[Tensor]:
    """What ``head`` receives when ``model`` runs on each of ``inputs`` (running statistics untouched)."""
    seen: List[Tensor] = []
    hook = head.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    params = dict(model.named_parameters())
    try:
        for x in inputs:
            buffers = {name: b.clone() for name, b in model.named_buffers()}
            functional_call(model, (params, buffers), (x,))
    finally:
        hook.remove()
    return seen


@STRATEGIES.register("finite-difference")
class FiniteDifference(Functional):
    """DARTS-style first-order approximation of the last step's hypergradient (SGD only).

    For an SGD step ``theta' = theta - lr * u(grad L(theta, lambda))`` the hypergradient is
    ``-lr * d/dlambda <grad_theta L(theta, lambda), v>`` with ``v = grad L_meta(theta')``, and that
    mixed derivative is replaced by the central difference
    ``(grad_lambda L(theta + eps v) - grad_lambda L(theta - eps v)) / (2 eps)``, with
    ``eps = scale / |v|``. No second-order graph is built; the ``steps - 1`` earlier inner steps
    are graph-free. (``higher``'s ``track_higher_grads=False`` gives no label gradient at all,
    since the labels enter only through the inner loss.)

    Accuracy: the central difference's error is second order in the radius, about
    ``K * scale**2`` relative to the exact last-step gradient, where ``K`` (the third derivative of
    the inner loss along ``v`` over the label gradient) depends on the model and the labels and is
    large where the label gradient is small: halving ``scale`` quarters the error, until float
    round-off (about machine epsilon / ``scale``, relative) takes over, so in float32 keep
    ``scale >= 1e-3``. No fixed relative tolerance holds for every model at a given ``scale``;
    ``tests/test_strategies.py`` checks the second order.

    Args:
        steps: inner steps ``k``; the label gradient flows through the last one.
        scale: finite-difference radius: the model is moved by ``scale * |c|`` in parameter space
            (``c`` the SGD step's gain); default 0.01 (DARTS's).
        every: meta step every ``every`` training steps.
    """

    supports_distributed = False  # its difference quotient is not summed over processes yet

    def __init__(self, steps: int = 1, scale: float = 0.01, every: int = 1) -> None:
        super().__init__(steps, every=every)
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = scale

    def meta_loss(self, *args, **kwargs) -> Tensor:
        raise NotImplementedError("FiniteDifference approximates the gradient directly: use compute()")

    def check(self, optimizer: torch.optim.Optimizer) -> None:
        if type(optimizer) is not torch.optim.SGD:
            raise ValueError(f"finite-difference needs SGD (its step is linear in the gradient), got "
                             f"{type(optimizer).__name__}; use 'unrolled', 'functional' or 'truncated'")
        super().check(optimizer)

    def compute(self, model, optimizer, labels, batch, meta_batch, loss=soft_cross_entropy) -> MetaStats:
        self.check(optimizer)
        x, y, idx = batch
        slots = _Slots(model, optimizer)
        buffers = {name: b.clone() for name, b in model.named_buffers()}
        fast, states = list(slots.initial), [dict(s) for s in slots.states]
        targets = lambda: labels(idx, y)  # noqa: E731
        for _ in range(self.steps - 1):
            fast, states = self._step(model, slots, fast, states, buffers, x, y, targets, loss, None, track=False)
        after, _ = self._step(model, slots, fast, states, buffers, x, y, targets, loss, None, track=False)
        after = [p.requires_grad_() for p in after]
        meta = check_finite(F.cross_entropy(_call(model, slots, after, buffers, meta_batch[0]), meta_batch[1]),
                            "meta loss")
        v = torch.autograd.grad(meta, after, allow_unused=True)
        v = [torch.zeros_like(p) if g is None else g for p, g in zip(after, v)]
        norm = torch.sqrt(sum((g * g).sum() for g in v))
        params = [p for p in labels.parameters() if p.requires_grad]
        if norm == 0:
            return MetaStats(meta_loss=meta.item(), label_grad_norm=0.0)
        eps = self.scale / norm
        # theta' depends on the labels through c * grad L, c the SGD step's gain per parameter
        gains = [sgd_gain(group, state) for group, state in zip(slots.groups, states)]

        def label_grad(sign: float) -> List[Tensor]:
            shifted = [p + sign * eps * c * g for p, g, c in zip(fast, v, gains)]
            with torch.enable_grad():
                value = loss(_call(model, slots, shifted, buffers, x), labels(idx, y), None, y)
                return torch.autograd.grad(value, params, allow_unused=True)

        plus, minus = label_grad(1.0), label_grad(-1.0)
        norm_sq = 0.0
        for p, a, b in zip(params, plus, minus):
            if a is None:
                continue
            g = -(a - b) / (2 * eps)
            norm_sq += float(g.pow(2).sum())
            p.grad = g if p.grad is None else p.grad + g
        return MetaStats(meta_loss=meta.item(), label_grad_norm=norm_sq**0.5)
