"""The inner loop, written once: what every backend does besides its own mathematics.

:class:`InnerLoop` runs a functional copy of the model (an *engine*: :class:`~.functional_model.FunctionalModel`,
``torch.func``, or :class:`~.higher_model.HigherModel`, ``higher``) on the problem's batches and owns

- advancing k ordinary optimiser steps on the training batch: graph-free (:meth:`InnerLoop.advance`),
  with a graph (``track=True``), or by recomputed segments (:meth:`InnerLoop.segmented_hypergradient`:
  a k-step unroll's exact gradient in memory that does not grow with k);
- the meta loss at the end point and its gradient (:meth:`InnerLoop.meta_gradient`), checked finite;
- every sum and mean across processes: the inner gradients averaged as each step takes them, the
  meta gradient made global, each process's share of a derivative of the averaged inner gradient
  (:meth:`InnerLoop.share`), per-sample weights normalised over the global batch (:func:`normalised`);
  the only module of the strategies that calls on the processes (:class:`~labelmeta.distributed.Processes`);
- the random state a step ran with, for backends that run a step's forward again (dropout masks);
- the classifier head and its inputs (:func:`find_head`, :func:`head_inputs`) for the backends that
  differentiate the head alone.

A backend then says only what it differentiates: an unroll back-propagates :meth:`InnerLoop.meta_loss`
through tracked steps; ``one-step`` pulls the meta gradient back through the last step by one product;
``finite-difference`` differences two inner gradients; ``implicit`` solves with Hessian-vector products.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Protocol, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..losses import check_finite
from .functional_model import Average, FunctionalModel, LossOf, Point
from .problem import MetaProblem

#: optimiser state entries that carry a derivative from step to step (``step`` counts, it does not)
_CARRIED = ("momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
RandomState = Tuple[Tensor, Optional[Tensor]]


class Engine(Protocol):
    """How the functional copy runs and steps (:class:`~.functional_model.FunctionalModel`,
    :class:`~.higher_model.HigherModel`)."""

    def start(self) -> Point: ...

    def __call__(self, fast: List[Tensor], x: Tensor) -> Tensor: ...

    def step(self, point: Point, x: Tensor, loss_of: LossOf, track: bool, average: Average) -> Point: ...

    def release(self) -> None: ...


class InnerLoop:
    """The inner steps of one meta step, on ``engine`` (default: ``torch.func`` over the model).

    Args:
        problem: the meta step.
        engine: the functional copy; default ``FunctionalModel(problem.model, problem.optimizer)``.
        inputs: ``(x, x_meta)`` the copy runs on (default: the batches' inputs; the head's features for
            a backend that differentiates the head alone).
    """

    def __init__(self, problem: MetaProblem, engine: Optional[Engine] = None,
                 inputs: Optional[Tuple[Tensor, Tensor]] = None) -> None:
        self.problem = problem
        self.engine: Engine = FunctionalModel(problem.model, problem.optimizer) if engine is None else engine
        self.x, self.x_meta = (problem.batch[0], problem.meta_batch[0]) if inputs is None else inputs

    # --- the steps -------------------------------------------------------------------------------

    def start(self) -> Point:
        """The fast weights and optimiser states as the real ones are now."""
        return self.engine.start()

    def advance(self, point: Point, steps: int, weights: Optional[Tensor] = None, track: bool = False) -> Point:
        """``steps`` optimiser steps on the inner loss, each process's inner gradient averaged with the others'.

        ``track=False``: ordinary steps, no graph (the soft targets and ``weights`` read detached);
        ``track=True``: differentiable in the fast weights, the label parameters and ``weights``.
        """
        for _ in range(steps):
            point = self.engine.step(point, self.x, self._inner_loss(weights, track), track, self.mean)
        return point

    def _inner_loss(self, weights: Optional[Tensor], track: bool) -> LossOf:
        problem = self.problem
        fixed = weights if track or weights is None else weights.detach()

        def loss_of(logits: Tensor) -> Tensor:
            targets = problem.soft_targets()
            return problem.inner_loss(logits, targets if track else targets.detach(), fixed)

        return loss_of

    # --- the end point ---------------------------------------------------------------------------

    def meta_loss(self, fast: List[Tensor]) -> Tensor:
        """The meta loss of the copy with the weights ``fast`` (this process's part of the global one)."""
        return self.problem.meta_loss(self.engine(fast, self.x_meta))

    def meta_gradient(self, fast: Sequence[Tensor], across_processes: bool = True) -> Tuple[float, List[Tensor]]:
        """The meta loss at ``fast`` (``FloatingPointError`` if it is not finite) and its gradient in the fast
        weights (zeros where it does not reach one): of the global meta loss (``across_processes``), or
        this process's part of it."""
        leaves = [p.detach().requires_grad_() for p in fast]
        with torch.enable_grad():
            meta = self.meta_loss(leaves)
            value = finite_value(meta, "meta loss")
            grads = torch.autograd.grad(meta, leaves, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(leaves, grads)]
        return value, (list(self.problem.processes.sum(grads, leaves)) if across_processes else grads)

    # --- across processes ------------------------------------------------------------------------

    def mean(self, grads: Sequence[Optional[Tensor]]) -> Sequence[Optional[Tensor]]:
        """Inner gradients (or Hessian-vector products) averaged over the processes, differentiably: the
        global batch's, of which each process computed its shard's."""
        return self.problem.processes.mean_differentiable(grads)

    def share(self, grads: Sequence[Optional[Tensor]]) -> Sequence[Optional[Tensor]]:
        """This process's part of a derivative of the averaged inner gradient: its own term divided by
        the number of processes (as they are in one)."""
        return self.problem.processes.share(grads)

    # --- random state ----------------------------------------------------------------------------

    def random_state(self) -> RandomState:
        """The global random state now (CPU, and the batch's GPU): a forward run again from it draws
        the same dropout masks."""
        device = self.x.device
        return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def set_random_state(self, state: RandomState) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], self.x.device)

    # --- recomputed segments ---------------------------------------------------------------------

    def segmented_hypergradient(self, inputs: Sequence[Tensor], weights: Optional[Tensor], graph_free: int,
                                tracked: int, segment: int) -> Tuple[float, List[Optional[Tensor]]]:
        """The meta loss after ``graph_free`` ordinary steps then ``tracked`` differentiated ones, and its
        gradient with respect to ``inputs``, one recomputed segment of ``segment`` steps at a time.

        The forward pass steps without a graph, keeping the fast weights, optimiser state and random state
        at the start of every segment; the backward pass walks the segments from the last to the first,
        recomputes one with a graph from its stored start (the same random numbers: dropout draws the same
        masks) and takes one vector-Jacobian product, which hands the adjoint of the segment's start to the
        segment before (momentum and Adam's moments carry adjoints too) and adds the segment's share to
        the meta parameters' gradient. Memory: ``tracked / segment`` stored states plus one segment's
        graph. The weights enter each segment as a detached leaf and are chained to ``inputs`` once at the end.
        """
        point = self.advance(self.start(), graph_free, weights)
        starts = []  # (point, random state, steps) of every segment
        for first in range(0, tracked, segment):
            count = min(segment, tracked - first)
            starts.append((point, self.random_state(), count))
            point = self.advance(point, count, weights)
        after = self.random_state()
        value, adjoint = self.meta_gradient(point.fast, across_processes=False)
        adjoint_states: Dict[Tuple[int, str], Tensor] = {}
        totals: List[Optional[Tensor]] = [None] * len(inputs)
        weight_grad: Optional[Tensor] = None
        for start, rng, count in reversed(starts):
            start, carried = _leaves(start)
            w = None if weights is None else weights.detach().requires_grad_()
            self.set_random_state(rng)
            with torch.enable_grad():
                end = self.advance(start, count, w, track=True)
                outputs = [(p, a) for p, a in zip(end.fast, adjoint) if p.requires_grad]
                outputs += [(end.states[i][key], adjoint_states[(i, key)]) for (i, key) in adjoint_states
                            if end.states[i][key].requires_grad]
                wrt = [*start.fast, *[start.states[i][key] for i, key in carried], *([w] if w is not None else []),
                       *inputs]
                grads = torch.autograd.grad([o for o, _ in outputs], wrt, grad_outputs=[a for _, a in outputs],
                                            allow_unused=True)
            n, m = len(start.fast), len(carried)
            adjoint = [torch.zeros_like(p) if g is None else g for p, g in zip(start.fast, grads[:n])]
            adjoint_states = {c: g for c, g in zip(carried, grads[n:n + m]) if g is not None}
            if w is not None and grads[n + m] is not None:
                weight_grad = grads[n + m] if weight_grad is None else weight_grad + grads[n + m]
            for j, g in enumerate(grads[n + m + (w is not None):]):
                if g is not None:
                    totals[j] = g if totals[j] is None else totals[j] + g
        self.set_random_state(after)
        if weights is not None and weight_grad is not None and weights.requires_grad:
            # the weights as a function of the meta parameters (a leaf among them, or a network's output)
            through = torch.autograd.grad(weights, list(inputs), grad_outputs=weight_grad, allow_unused=True)
            totals = [t if g is None else (g if t is None else t + g) for t, g in zip(totals, through)]
        return value, totals


def _leaves(point: Point) -> Tuple[Point, List[Tuple[int, str]]]:
    """Detached copies of a segment's start that require grad, and which state entries carry a derivative."""
    fast = [p.detach().requires_grad_(p.requires_grad) for p in point.fast]
    states, carried = [], []
    for state in point.states:
        copy = {}
        for key, value in state.items():
            if key in _CARRIED and isinstance(value, Tensor) and value.is_floating_point():
                copy[key] = value.detach().requires_grad_()
                carried.append((len(states), key))
            else:
                copy[key] = value.detach() if isinstance(value, Tensor) else value
        states.append(copy)
    return Point(fast, states), carried


def finite_value(loss: Tensor, what: str) -> float:
    """``loss.item()``, or :func:`~labelmeta.losses.check_finite`'s ``FloatingPointError`` naming ``what``
    if it is NaN or infinite: the value is read once (one device sync, where a check then ``item()`` were two)."""
    value = loss.item()
    if not math.isfinite(value):
        check_finite(loss, what)
    return value


# --- per-sample weights and a target's own network, across processes --------------------------------

def normalised(weights: Tensor, problem: Optional[MetaProblem] = None) -> Tensor:
    """``weights [B]`` scaled to sum to one, or as they are (all zero) when they sum to zero: a
    weighted batch then takes the step length of a plain batch mean, and a batch no sample helps is skipped.

    ``problem``: the step's, whose processes' weights are normalised together (differentiably), as
    the global batch's; ``None``: over ``weights`` alone.
    """
    total = weights.sum() if problem is None else problem.processes.total(weights.sum())
    return weights / total if total > 0 else weights


def summed_across_processes(problem: MetaProblem, grads: Sequence[Optional[Tensor]],
                            like: Sequence[Tensor]) -> Sequence[Optional[Tensor]]:
    """Each process's part of a gradient (a target's own network's) summed over the processes, as they are in one."""
    return problem.processes.sum(grads, like)


# --- the classifier head ----------------------------------------------------------------------------

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


def head_loop(problem: MetaProblem, head: Optional[str] = None) -> InnerLoop:
    """The inner loop of the classifier head alone, on the features the current model computes (detached)."""
    _, module = find_head(problem.model, head)
    features = head_inputs(problem.model, module, problem.batch[0], problem.meta_batch[0])
    return InnerLoop(problem, FunctionalModel(module, problem.optimizer), (features[0], features[1]))
