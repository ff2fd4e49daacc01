"""The implicit-function hypergradient: the "infinite depth" a depth study compares unrolls with."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, FrozenSet, List, Literal, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..options import check_count, check_natural, check_range
from .backend import BACKENDS, Backend
from .inner_loop import InnerLoop, find_head, head_loop
from .problem import MetaProblem

Vectors = List[Tensor]


def _dot(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def _axpy(alpha, x: Sequence[Tensor], y: Sequence[Tensor]) -> Vectors:
    """``alpha * x + y``, tensor by tensor."""
    return [alpha * a + b for a, b in zip(x, y)]


@dataclass
class Solve:
    """What the last inverse-Hessian-vector solve did: HVPs taken and ``|A v - g| / |g|`` at the end."""

    iterations: int
    residual: float


def conjugate_gradient(apply: Callable[[Vectors], Vectors], b: Vectors, iterations: int,
                       tolerance: float) -> Tuple[Vectors, int, Vectors]:
    """``x`` with ``A x ~ b`` by conjugate gradient from ``x = 0`` (``apply(v) = A v``, ``A`` symmetric).

    Stops after ``iterations`` products, once ``|r| <= tolerance * |b|``, or at a direction of
    non-positive curvature (an indefinite ``A``: a non-convex inner problem without enough damping),
    keeping the iterate reached (truncated CG). Returns ``(x, products taken, residual b - A x)``
    (the recurrence's, so no product is spent on it).
    """
    x = [torch.zeros_like(t) for t in b]
    r, p = list(b), list(b)
    rs = _dot(r, r)
    bound = tolerance * math.sqrt(float(rs))
    for i in range(iterations):
        if math.sqrt(float(rs)) <= bound:
            return x, i, r
        ap = apply(p)
        curvature = _dot(p, ap)
        if curvature <= 0:
            return x, i + 1, r
        alpha = rs / curvature
        x, r = _axpy(alpha, p, x), _axpy(-alpha, ap, r)
        new_rs = _dot(r, r)
        p = _axpy(new_rs / rs, p, r)
        rs = new_rs
    return x, iterations, r


def neumann(apply: Callable[[Vectors], Vectors], b: Vectors, iterations: int, step: float) -> Vectors:
    """``step * sum_{j=0..iterations} (I - step A)^j b``, the truncated Neumann series of ``A^-1 b``
    (it converges when ``0 < step < 2 / lambda_max(A)`` and ``A`` is positive definite)."""
    term, total = list(b), list(b)
    for _ in range(iterations):
        term = _axpy(-step, apply(term), term)
        total = [t + s for t, s in zip(total, term)]
    return [step * t for t in total]


@BACKENDS.register("implicit")
class Implicit(Backend):
    """The implicit-function hypergradient at a stationary point of the inner problem.

    The inner problem is the training loss on the batch plus each parameter group's weight decay as
    an L2 term, ``F(theta, lambda) = L(theta, lambda) + sum wd/2 |theta|^2`` (the fixed point of SGD,
    with or without momentum, and of Adam with L2 decay), its solution ``theta*(lambda)``. If
    ``grad_theta F(theta*, lambda) = 0``, the implicit function theorem gives

        dL_meta/dlambda = -d/dlambda <grad_theta F(theta*, lambda), v>,   (H + damping I) v = grad L_meta(theta*)

    with ``H`` the Hessian of ``F`` in ``theta``: no unrolled graph, memory independent of depth.
    ``theta*`` is approximated by ``steps`` ordinary (graph-free) optimiser steps on the batch from
    the current weights; ``v`` by conjugate gradient or by the Neumann series, each ``iterations``
    Hessian-vector products. The answer is exact when the inner problem is solved and ``v`` is,
    and approximate otherwise: far from a stationary point (a model in mid-training, a few steps)
    it is a different quantity from a k-step unroll's, which is why a depth study shows both. With
    ``solver="neumann"`` and ``step`` the SGD learning rate, at a stationary point of plain SGD it
    equals the ``iterations + 1``-step unroll's hypergradient.

    ``head_only=True`` solves for the classifier head alone on features the current model computes
    (detached; see ``head-only``): a linear head under cross-entropy and weight decay is a strictly
    convex problem, where the theorem's assumptions hold.

    Args:
        steps: graph-free optimiser steps toward the inner solution before the solve (>= 0); default 10.
        solver: ``"cg"`` (conjugate gradient) or ``"neumann"``; default ``"cg"``.
        iterations: Hessian-vector products of the solve (>= 1); default 20.
        tolerance: conjugate gradient stops once ``|residual| <= tolerance * |grad L_meta|``; default 1e-6.
        damping: ``damping * I`` added to the Hessian (>= 0; regularises a non-convex problem); default 0.
        step: the Neumann series' step ``alpha`` (> 0); default: the optimiser's learning rate.
        head_only: solve for the classifier head only; default ``False``.
        head: the head's submodule name (with ``head_only``); default: guessed as ``head-only`` does.

    After each hypergradient, :attr:`last_solve` says how many products the solve took and its residual.
    """

    def __init__(self, *, steps: int = 10, solver: Literal["cg", "neumann"] = "cg", iterations: int = 20,
                 tolerance: float = 1e-6, damping: float = 0.0, step: Optional[float] = None,
                 head_only: bool = False, head: Optional[str] = None) -> None:
        steps = check_natural("steps", steps)
        if solver not in ("cg", "neumann"):
            raise ValueError(f"solver must be 'cg' or 'neumann', got {solver!r}")
        iterations = check_count("iterations", iterations)
        tolerance, damping = check_range("tolerance", tolerance, 0.0), check_range("damping", damping, 0.0)
        step = None if step is None else check_range("step", step, 0.0, low_open=True)
        if head is not None and not head_only:
            raise ValueError(f"head={head!r} names the head of head_only=True; set head_only=True or drop it")
        self.steps, self.solver, self.iterations = steps, solver, iterations
        self.tolerance, self.damping, self.step = tolerance, damping, step
        self.head_only, self.head = bool(head_only), head
        self.last_solve: Optional[Solve] = None

    def check(self, optimizer: torch.optim.Optimizer) -> None:
        decoupled = any(group.get("decoupled_weight_decay", False) for group in optimizer.param_groups)
        if isinstance(optimizer, torch.optim.AdamW) or decoupled:
            raise ValueError("implicit differentiates the stationary point of the loss plus an L2 weight decay; "
                             "AdamW's decoupled decay has another fixed point: use SGD or Adam, or an unroll "
                             "('functional', 'one-step')")
        super().check(optimizer)

    def check_model(self, model: nn.Module) -> None:
        if self.head_only:
            find_head(model, self.head)  # a missing head is named before training

    def derivatives(self, model: nn.Module) -> FrozenSet[str]:
        # the Hessian of the head only, and a head is usually linear: the probe's run suffices
        return frozenset() if self.head_only else frozenset({"double backward", "hessian"})

    def hypergradient(self, problem: MetaProblem, inputs: Sequence[Tensor],
                      weights: Optional[Tensor] = None) -> Tuple[float, List[Optional[Tensor]]]:
        loop = head_loop(problem, self.head) if self.head_only else InnerLoop(problem)
        point = loop.advance(loop.start(), self.steps, weights)
        fast = [p.detach().requires_grad_() for p in point.fast]
        value, g = loop.meta_gradient(fast)  # the global meta loss's gradient
        with torch.enable_grad():
            # grad_theta L with a graph in theta (for H) and in the meta parameters (for the mixed product)
            inner = problem.inner_loss(loop.engine(fast, loop.x), problem.soft_targets(), weights)
            grads = torch.autograd.grad(inner, fast, create_graph=True, allow_unused=True)
            used = [i for i, d in enumerate(grads) if d is not None and d.requires_grad]
            decay = [group.get("weight_decay", 0.0) + self.damping for group in loop.engine.groups]

            def apply(v: Vectors) -> Vectors:  # (H + damping I) v, H of the training loss plus weight decay
                hv = torch.autograd.grad([grads[i] for i in used], [fast[i] for i in used],
                                         grad_outputs=[v[i] for i in used], retain_graph=True, allow_unused=True)
                hv = loop.mean(hv)  # the global loss's Hessian: the processes' average
                out = [d * t for d, t in zip(decay, v)]
                for i, h in zip(used, hv):
                    if h is not None:
                        out[i] = out[i] + h
                return out

            if self.solver == "cg":
                v, taken, residual = conjugate_gradient(apply, g, self.iterations, self.tolerance)
            else:  # the series keeps no residual: one more product measures it
                step = self.step if self.step is not None else float(loop.engine.groups[0]["lr"])
                v, taken = neumann(apply, g, self.iterations, step), self.iterations
                residual = _axpy(-1.0, apply(v), g)
            norm = math.sqrt(float(_dot(g, g)))
            self.last_solve = Solve(taken, math.sqrt(float(_dot(residual, residual))) / norm if norm else 0.0)
            if not used:
                return value, [None] * len(inputs)
            mixed = torch.autograd.grad([grads[i] for i in used], list(inputs),
                                        grad_outputs=[v[i].detach() for i in used], allow_unused=True)
        # the global inner gradient is the processes' average: this process's share of the mixed product
        return value, list(loop.share([None if d is None else -d for d in mixed]))
