"""The ``torch.func`` machinery: a module run on "fast" weights, and optimiser steps of them.

:class:`FunctionalModel` is one of the two engines of :mod:`.inner_loop` (the other,
:mod:`.higher_model`, is ``higher``'s): it reads the parameters an optimiser updates, their groups
and state (never writing them), runs the module on a list of fast weights with cloned buffers (so
BatchNorm running statistics are not changed), and steps the fast weights with the optimiser's
differentiable rule from :mod:`labelmeta.update_rules`. It knows neither the loss nor the processes:
a step is handed both (:meth:`FunctionalModel.step`).

The module runs on the fast weights as ``torch.func.functional_call`` runs it (the same tensors in
the same places, tied weights included, the module's own afterwards), but with the places found once
per unroll instead of at every call: ``functional_call`` walks the module and checks every name at each
call, about 40 µs for a 3-layer MLP and 150 µs for the 1-D CNN (a fifth of its forward), and an unroll
runs the module two to three times a step.
"""
from __future__ import annotations

from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..update_rules import State, rule_for

#: optimiser state entries the rules read
_STATE_KEYS = ("momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step")
#: ``loss_of(logits) -> scalar``: the inner loss of a step, as the inner loop writes it
LossOf = Callable[[Tensor], Tensor]
#: ``average(grads) -> grads``: the inner gradients as the step takes them (averaged over processes)
Average = Callable[[Sequence[Optional[Tensor]]], Sequence[Optional[Tensor]]]


class Point(NamedTuple):
    """Where an inner loop is: the fast weights and, per fast weight, the optimiser's state."""

    fast: List[Tensor]
    states: List[State]


class FunctionalModel:
    """The parameters of ``module`` that ``optimizer`` updates, and steps on copies of them (``torch.func``).

    Attributes:
        params: the module's own parameters that the optimiser updates (read, never written).
        initial: the fast weights to start from (detached leaves that require grad).
        states: the optimiser's state per parameter (copied dicts of its tensors).
    """

    def __init__(self, module: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.module = module
        self.rule = rule_for(optimizer)
        owner = {id(p): group for group in optimizer.param_groups for p in group["params"]}
        state = optimizer.state
        self.names: List[str] = []
        self.params: List[Tensor] = []
        self.initial: List[Tensor] = []
        self.groups: List[dict] = []
        self.states: List[Dict[str, Tensor]] = []
        self.frozen: Dict[str, Tensor] = {}
        self.buffers: Dict[str, Tensor] = {}
        # Where the module holds each tensor, as (its module's dict, key, source): a parameter's source
        # is its index among the fast weights or, not trained, its detached value; a buffer's its name
        # in ``buffers``. One walk, in named_parameters' and named_buffers' order; a tensor registered
        # in several modules (tied weights) has a place in each and one source.
        self._params: List[Tuple[dict, str, Union[int, Tensor]]] = []
        self._buffers: List[Tuple[dict, str, str]] = []
        sources: Dict[int, Union[int, Tensor, str]] = {}
        for prefix, m in module.named_modules():
            for key, p in m._parameters.items():
                if p is None:
                    continue
                source = sources.get(id(p))
                if source is None:
                    name = f"{prefix}.{key}" if prefix else key
                    group = owner.get(id(p))
                    if group is None or not p.requires_grad:
                        source = self.frozen[name] = p.detach()  # not trained: a constant of the unroll
                    else:
                        source = len(self.params)
                        self.names.append(name)
                        self.params.append(p)
                        self.initial.append(p.detach().requires_grad_())
                        self.groups.append(group)
                        self.states.append({k: v for k, v in state.get(p, {}).items() if k in _STATE_KEYS})
                    sources[id(p)] = source
                self._params.append((m._parameters, key, source))
            for key, b in m._buffers.items():
                if b is None:
                    continue
                name = sources.get(id(b))
                if name is None:
                    name = sources[id(b)] = f"{prefix}.{key}" if prefix else key
                    self.buffers[name] = b.clone()
                self._buffers.append((m._buffers, key, name))
        # torch.func refuses jitted modules and DataParallel (with its message): they keep its path
        self._direct = not isinstance(module, (torch.jit.ScriptModule, nn.DataParallel))

    def start(self) -> Point:
        """Fresh fast weights and optimiser states, as the real ones are now."""
        return Point(list(self.initial), [dict(s) for s in self.states])

    def release(self) -> None:
        """Nothing to let go of (``higher``'s engine drops its history of fast weights here)."""

    def __call__(self, fast: List[Tensor], x: Tensor) -> Tensor:
        """The module's output on ``x`` with the weights ``fast`` (and the unroll's buffers)."""
        if not self._direct or torch.jit.is_tracing():
            params = {**self.frozen, **dict(zip(self.names, fast))}
            return functional_call(self.module, (params, self.buffers), (x,))
        saved = []
        try:
            for holder, key, source in self._params:
                saved.append((holder, key, holder[key]))
                holder[key] = fast[source] if isinstance(source, int) else source
            for holder, key, name in self._buffers:
                saved.append((holder, key, holder[key]))
                holder[key] = self.buffers[name]
            return self.module(x)
        finally:
            if len(saved) == len(self._params) + len(self._buffers):
                for holder, key, name in self._buffers:  # one the forward replaced (not updated in place) is kept
                    self.buffers[name] = holder[key]
            for holder, key, value in reversed(saved):
                holder[key] = value

    def step(self, point: Point, x: Tensor, loss_of: LossOf, track: bool, average: Average) -> Point:
        """One optimiser step of the fast weights on ``loss_of(self(fast, x))``, its gradients taken as
        ``average`` gives them.

        ``track=True``: differentiable (the graph is kept, through what ``loss_of`` reads);
        ``track=False``: an ordinary step, no graph recorded (``loss_of`` must then read detached values).
        """
        leaves = [p if track else p.detach().requires_grad_() for p in point.fast]
        with torch.enable_grad():
            value = loss_of(self(leaves, x))
            grads = average(torch.autograd.grad(value, leaves, create_graph=track, allow_unused=True))
        return self.update(leaves, grads, point.states, track)

    def update(self, fast: Sequence[Tensor], grads: Sequence[Optional[Tensor]], states: Sequence[State],
               track: bool) -> Point:
        """The optimiser's rule on each fast weight with its gradient (no step where it is ``None``, as in
        ``torch.optim``); ``track=False``: no graph is recorded for the update."""
        new_fast, new_states = [], []
        for p, g, state, group in zip(fast, grads, states, self.groups):
            if g is None:  # unused parameter: no step, as in torch.optim
                new_fast.append(p)
                new_states.append(state)
                continue
            if track:
                p, state = self.rule(p, g, state, group)
            else:
                with torch.no_grad():
                    p, state = self.rule(p.detach(), g, state, group)
                p = p.requires_grad_()
            new_fast.append(p)
            new_states.append(state)
        return Point(new_fast, new_states)
