"""A first-order approximation of the last inner step's hypergradient, by a central difference."""
from __future__ import annotations

from typing import FrozenSet, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..update_rules import sgd_gain
from .backend import BACKENDS, Backend
from .inner_loop import InnerLoop
from .problem import MetaProblem, inner_steps


@BACKENDS.register("finite-difference")
class FiniteDifference(Backend):
    """DARTS-style first-order approximation of the last step's hypergradient (SGD only).

    ``lambda`` are the meta parameters (label parameters, per-sample weights, a weight network's).
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
        steps: inner steps ``k``; the label gradient flows through the last one; default 1.
        scale: finite-difference radius: the model is moved by ``scale * |c|`` in parameter space
            (``c`` the SGD step's gain); default 0.01 (DARTS's).
    """

    def __init__(self, *, steps: int = 1, scale: float = 0.01) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.steps, self.scale = inner_steps(steps), scale

    def check(self, optimizer: torch.optim.Optimizer) -> None:
        if type(optimizer) is not torch.optim.SGD:
            raise ValueError(f"finite-difference needs SGD (its step is linear in the gradient), got "
                             f"{type(optimizer).__name__}; use 'unrolled', 'functional' or 'truncated'")
        super().check(optimizer)

    def derivatives(self, model: nn.Module) -> FrozenSet[str]:
        return frozenset()  # gradients and forward passes only: what plain training takes

    def hypergradient(self, problem: MetaProblem, inputs: Sequence[Tensor],
                      weights: Optional[Tensor] = None) -> Tuple[float, List[Optional[Tensor]]]:
        loop = InnerLoop(problem)
        start = loop.advance(loop.start(), self.steps - 1, weights)
        last_step = loop.random_state()  # the differenced forwards draw the last step's dropout masks
        after = loop.advance(start, 1, weights)
        value, v = loop.meta_gradient(after.fast)  # the global meta loss's gradient
        end = loop.random_state()
        norm = torch.sqrt(sum((g * g).sum() for g in v))
        if norm == 0:
            return value, [None] * len(inputs)
        eps = self.scale / norm
        # theta' depends on the meta parameters through c * grad L, c the SGD step's gain per parameter
        gains = [sgd_gain(group, state) for group, state in zip(loop.engine.groups, start.states)]

        def inner_grad(sign: float) -> List[Optional[Tensor]]:
            shifted = [p + sign * eps * c * g for p, g, c in zip(start.fast, v, gains)]
            loop.set_random_state(last_step)
            with torch.enable_grad():
                inner = problem.inner_loss(loop.engine(shifted, loop.x), problem.soft_targets(), weights)
                return list(torch.autograd.grad(inner, list(inputs), retain_graph=True, allow_unused=True))

        plus, minus = inner_grad(1.0), inner_grad(-1.0)
        loop.set_random_state(end)
        # the global inner gradient is the processes' average: this process's share of the difference
        return value, list(loop.share([None if a is None else -(a - b) / (2 * eps) for a, b in zip(plus, minus)]))
