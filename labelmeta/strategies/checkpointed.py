"""A k-step unroll's exact hypergradient in memory that does not grow with k: checkpointed segments.

The forward pass steps the functional copy without a graph, keeping the fast weights, optimiser
state and random state at the start of every segment of ``segment`` steps. The backward pass walks
the segments from the last to the first: it recomputes one segment's steps with a graph from its
stored start (the same random numbers, so dropout draws the same masks) and takes one
vector-Jacobian product, which hands the adjoint of the segment's start to the segment before and
adds the segment's share to the meta parameters' gradient. Only one segment's graph is alive at a
time: memory is ``k / segment`` stored states plus ``segment`` steps' graph, instead of ``k`` steps'
graph. Each step runs twice (graph-free, then with a graph).

``torch.utils.checkpoint`` is not used: its non-reentrant form keeps every recomputed segment's
unused saved tensors until the whole backward ends (an unroll's double-backward graph has many), so
it saved no memory here, and its reentrant form refuses ``torch.autograd.grad``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..losses import check_finite
from .base import MetaProblem
from .unroll import FunctionalUnroll

#: optimiser state entries that carry a derivative from step to step (``step`` counts, it does not)
_CARRIED = ("momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")


def _rng_state(device: torch.device) -> Tuple[Tensor, Optional[Tensor]]:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_state(state: Tuple[Tensor, Optional[Tensor]], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _leaves(fast: List[Tensor], states: List[Dict[str, Tensor]]):
    """Detached copies of a segment's start that require grad: ``(fast, states, carried state tensors)``."""
    fast = [p.detach().requires_grad_() for p in fast]
    new_states, carried = [], []
    for state in states:
        copy = {}
        for key, value in state.items():
            if key in _CARRIED and value.is_floating_point():
                copy[key] = value.detach().requires_grad_()
                carried.append((len(new_states), key))
            else:
                copy[key] = value.detach() if isinstance(value, Tensor) else value
        new_states.append(copy)
    return fast, new_states, carried


def segmented_hypergradient(problem: MetaProblem, unroll: FunctionalUnroll, x: Tensor, x_meta: Tensor,
                            inputs: Sequence[Tensor], weights: Optional[Tensor], graph_free: int, tracked: int,
                            segment: int) -> Tuple[float, List[Optional[Tensor]]]:
    """The meta loss after ``graph_free`` ordinary steps then ``tracked`` differentiated ones, and its
    gradient with respect to ``inputs``, one recomputed segment of ``segment`` steps at a time."""
    device = x.device
    fixed = None if weights is None else weights.detach()
    fast, states = unroll.start()
    for _ in range(graph_free):
        fast, states = unroll.step(problem, fast, states, x, problem.soft_targets, fixed, track=False)
    starts = []  # (fast, states, random state, steps) of every segment
    for first in range(0, tracked, segment):
        count = min(segment, tracked - first)
        starts.append((fast, states, _rng_state(device), count))
        for _ in range(count):
            fast, states = unroll.step(problem, fast, states, x, problem.soft_targets, fixed, track=False)
    after = _rng_state(device)
    fast = [p.detach().requires_grad_() for p in fast]
    with torch.enable_grad():
        meta = check_finite(problem.meta_loss(unroll(fast, x_meta)), "meta loss")
        adjoint = [torch.zeros_like(p) if g is None else g
                   for p, g in zip(fast, torch.autograd.grad(meta, fast, allow_unused=True))]
    adjoint_states: Dict[Tuple[int, str], Tensor] = {}
    totals: List[Optional[Tensor]] = [None] * len(inputs)
    weight_grad: Optional[Tensor] = None
    for fast0, states0, rng, count in reversed(starts):
        fast0, states0, carried = _leaves(fast0, states0)
        w = None if weights is None else weights.detach().requires_grad_()
        _set_rng_state(rng, device)
        with torch.enable_grad():
            end, end_states = fast0, states0
            for _ in range(count):
                end, end_states = unroll.step(problem, end, end_states, x, problem.soft_targets, w, track=True)
            outputs = [(p, a) for p, a in zip(end, adjoint) if p.requires_grad]
            outputs += [(end_states[i][key], adjoint_states[(i, key)]) for (i, key) in adjoint_states
                        if end_states[i][key].requires_grad]
            wrt = [*fast0, *[states0[i][key] for i, key in carried], *([w] if w is not None else []), *inputs]
            grads = torch.autograd.grad([o for o, _ in outputs], wrt, grad_outputs=[a for _, a in outputs],
                                        allow_unused=True)
        n, m = len(fast0), len(carried)
        adjoint = [torch.zeros_like(p) if g is None else g for p, g in zip(fast0, grads[:n])]
        adjoint_states = {c: g for c, g in zip(carried, grads[n:n + m]) if g is not None}
        if w is not None and grads[n + m] is not None:
            weight_grad = grads[n + m] if weight_grad is None else weight_grad + grads[n + m]
        for j, g in enumerate(grads[n + m + (w is not None):]):
            if g is not None:
                totals[j] = g if totals[j] is None else totals[j] + g
    _set_rng_state(after, device)
    if weights is not None and weight_grad is not None and weights.requires_grad:
        # the weights as a function of the meta parameters (a leaf among them, or a network's output)
        through = torch.autograd.grad(weights, list(inputs), grad_outputs=weight_grad, allow_unused=True)
        totals = [t if g is None else (g if t is None else t + g) for t, g in zip(totals, through)]
    return meta.item(), totals
