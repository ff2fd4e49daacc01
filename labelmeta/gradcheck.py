"""An independent check of a label hypergradient: central differences after real ``torch.optim`` steps.

The oracle knows nothing of the unroll: it copies the model and its optimiser, moves the label
parameters a little, takes ``steps`` ordinary ``torch.optim`` steps against the moved labels, and
reads the meta loss. A strategy whose differentiable step is not the optimiser's own (an ``eps``
in the wrong place) fails it even where two backends sharing its formula agree. Use float64: the
differences are taken at a step of about 1e-4 in label-logit space and extrapolated (Richardson),
so the oracle's own error is far below the tolerances the tests ask for.

Dropout: pass ``seed``; the random state is set to it before every evaluation and before the
strategy runs, so the oracle's steps draw the same masks as the strategy's forwards, in the same order.
"""
from __future__ import annotations

import copy
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .labels import LabelParameterization
from .losses import TrainingLoss, soft_cross_entropy
from .strategies import Backend, MetaProblem, Strategy, as_strategy, trainable
from .typing import Batch


def meta_loss_after_steps(model: nn.Module, optimizer: torch.optim.Optimizer, labels: LabelParameterization,
                          batch: Batch, meta_batch: Batch, steps: int = 1, loss: TrainingLoss = soft_cross_entropy,
                          moved: Optional[Sequence[Tensor]] = None, seed: Optional[int] = None,
                          weights: Optional[Tensor] = None) -> float:
    """The meta loss after ``steps`` real steps of copies of ``model`` and ``optimizer`` against the
    labels with ``moved`` added to their trainable parameters, each sample's loss weighted by
    ``weights [B]`` if given (nothing the caller owns changes).

    The meta loss is the hard-label cross-entropy of the meta batch, with the model in training mode,
    as a strategy computes it.
    """
    with torch.no_grad():
        twin_labels = copy.deepcopy(labels)
        for p, d in zip(trainable(twin_labels), moved or []):
            p.add_(d)
        targets = twin_labels(batch[2], batch[1])
    return meta_loss_after_real_steps(model, optimizer, batch, meta_batch, targets, weights, steps, loss, seed)


def meta_loss_after_real_steps(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, meta_batch: Batch,
                               targets: Tensor, weights: Optional[Tensor] = None, steps: int = 1,
                               loss: TrainingLoss = soft_cross_entropy, seed: Optional[int] = None) -> float:
    """The meta loss after ``steps`` real ``torch.optim`` steps of copies of ``model`` and ``optimizer``
    on ``loss(logits, targets, weights, annotations)``."""
    twin, twin_opt = copy.deepcopy((model, optimizer))  # one memo: the optimiser follows its copy
    x, y, _ = batch
    if seed is not None:
        torch.manual_seed(seed)
    twin.train()
    for _ in range(steps):
        twin_opt.zero_grad()
        loss(twin(x), targets.detach(), None if weights is None else weights.detach(), y).backward()
        twin_opt.step()
    with torch.no_grad():
        return F.cross_entropy(twin(meta_batch[0]), meta_batch[1]).item()


def solve_head(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, targets: Tensor,
               weights: Optional[Tensor] = None, loss: TrainingLoss = soft_cross_entropy, head: str = "head",
               seed: Optional[int] = None, meta_batch: Optional[Batch] = None) -> Tuple[List[Tensor], Optional[float]]:
    """The minimiser of the inner problem of ``model``'s head: the training loss plus each parameter
    group's weight decay as an L2 term, on the features the rest of ``model`` computes (held fixed, as
    ``implicit``'s ``head_only`` holds them), solved by Newton's method from the head's current
    weights to round-off (float64); with the meta loss there if ``meta_batch`` is given. ``optimizer``
    must train the head alone; nothing the caller owns changes.

    ``seed``: the random state before the features of the batch and of the meta batch are computed
    (dropout in the rest of the model draws its masks there, in that order, as ``implicit`` does).
    Returns ``(the head's solved parameters in the optimiser's order, the meta loss or None)``.
    """
    twin = copy.deepcopy(model)
    module = dict(twin.named_modules())[head]
    seen: List[Tensor] = []
    hook = module.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    if seed is not None:
        torch.manual_seed(seed)
    twin.train()
    with torch.no_grad():
        for x in [batch[0]] + ([] if meta_batch is None else [meta_batch[0]]):
            twin(x)
    hook.remove()
    twins = dict(zip([id(p) for p in model.parameters()], twin.parameters()))
    groups = [(twins[id(p)], group.get("weight_decay", 0.0)) for group in optimizer.param_groups for p in group["params"]]
    if {id(p) for p, _ in groups} != {id(p) for p in module.parameters() if p.requires_grad}:
        raise ValueError(f"solve_head needs an optimiser of the head {head!r} alone")
    solved = [p for p, _ in groups]
    names = {id(p): n for n, p in module.named_parameters()}
    shapes = [p.shape for p in solved]
    w = None if weights is None else weights.detach()

    def objective(theta: Tensor) -> Tensor:
        params = dict(zip([names[id(p)] for p in solved], torch.split(theta, [p.numel() for p in solved])))
        params = {name: value.view(shape) for (name, value), shape in zip(params.items(), shapes)}
        value = loss(torch.func.functional_call(module, params, (seen[0],)), targets.detach(), w, batch[1])
        return value + sum(decay / 2 * (v * v).sum() for v, (_, decay) in zip(params.values(), groups) if decay)

    # Newton's method with backtracking: the problem is small and strictly convex where it is meant to be used
    # (a linear head under cross-entropy and weight decay), so it converges quadratically, to round-off
    theta = torch.cat([p.detach().reshape(-1) for p in solved])
    previous = float("inf")
    for _ in range(100):
        gradient = torch.func.grad(objective)(theta)
        size = gradient.abs().max().item()
        if size == 0 or (size < 1e-10 and size > previous / 2):  # round-off: the gradient stopped shrinking
            break
        direction = torch.linalg.solve(torch.func.jacrev(torch.func.grad(objective))(theta), gradient)
        step = 1.0
        if size > 1e-6:  # far from the minimum: halve the step until the objective decreases
            value = objective(theta)
            while step > 1e-10 and not objective(theta - step * direction) < value:
                step /= 2
        theta, previous = theta - step * direction, size
    with torch.no_grad():
        for p, v in zip(solved, torch.split(theta, [p.numel() for p in solved])):
            p.copy_(v.view(p.shape))
    with torch.no_grad():
        meta = None if meta_batch is None else F.cross_entropy(module(seen[1]), meta_batch[1]).item()
    return [p.detach() for p in solved], meta


def strategy_relative_error(strategy: Strategy, model: nn.Module, optimizer: torch.optim.Optimizer,
                            labels: LabelParameterization, batch: Batch, meta_batch: Batch, steps: int = 1,
                            loss: TrainingLoss = soft_cross_entropy, generator_seed: int = 7,
                            seed: Optional[int] = None, solved_head: Optional[str] = None, step: float = 1e-4) -> float:
    """The largest relative error of ``strategy``'s hypergradient, with respect to every meta parameter its
    target names (label parameters, per-sample weights, a network's parameters), along the gradient
    and a random direction, against central differences of the meta loss after real ``torch.optim``
    steps in which the moved meta parameters give the soft targets and the weights.

    ``seed``: the random state before the strategy and before each of the oracle's runs (dropout draws
    the same masks in both). ``solved_head``: the meta loss is the one at the inner problem's solution
    for that head (:func:`solve_head`: the quantity of ``implicit`` with ``head_only``),
    instead of after ``steps`` steps.

    ``ValueError`` if the gradient is identically zero (nothing would be tested). The meta parameters
    are moved in place and put back (label parameters, a network's: restored to round-off).
    """
    problem = MetaProblem(model, optimizer, labels, batch, meta_batch, loss)
    if seed is not None:  # a target may run the model (a weight network reads the losses): the same masks each time
        torch.manual_seed(seed)
    meta = strategy.target.parameters(problem)
    with torch.enable_grad():
        weights = meta.weights()
    if seed is not None:
        torch.manual_seed(seed)
    _, grads = strategy.backend.hypergradient(problem, meta.inputs, weights)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(meta.inputs, grads)]

    def loss_at(v: Sequence[Tensor], eps: float) -> float:
        with torch.no_grad():
            for p, d in zip(meta.inputs, v):
                p.add_(eps * d)
            moved_targets, moved_weights = problem.soft_targets(), meta.weights()
            moved_weights = None if moved_weights is None else moved_weights.clone()  # (it may be an input itself)
            for p, d in zip(meta.inputs, v):
                p.sub_(eps * d)
        if solved_head is not None:
            return solve_head(model, optimizer, batch, moved_targets, moved_weights, loss, solved_head, seed,
                              meta_batch)[1]
        return meta_loss_after_real_steps(model, optimizer, batch, meta_batch, moved_targets, moved_weights, steps, loss,
                                          seed)

    return _worst_error(grads, loss_at, 1, generator_seed, step)


def label_gradient(strategy: Union[Strategy, Backend], model: nn.Module, optimizer: torch.optim.Optimizer,
                   labels: LabelParameterization, batch: Batch, meta_batch: Batch,
                   loss: TrainingLoss = soft_cross_entropy, seed: Optional[int] = None) -> List[Tensor]:
    """The gradient ``strategy`` gives the trainable label parameters of copies of ``labels``."""
    labels = copy.deepcopy(labels)
    if seed is not None:
        torch.manual_seed(seed)
    as_strategy(strategy).compute(MetaProblem(model, optimizer, labels, batch, meta_batch, loss))
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in trainable(labels)]


def relative_error(grads: Sequence[Tensor], model: nn.Module, optimizer: torch.optim.Optimizer,
                   labels: LabelParameterization, batch: Batch, meta_batch: Batch, steps: int = 1,
                   loss: TrainingLoss = soft_cross_entropy, directions: int = 1, seed: Optional[int] = None,
                   generator_seed: int = 7) -> float:
    """The largest error of the label gradient ``grads`` along the gradient itself and ``directions``
    random directions, relative to ``|grads| |direction|``: ``|<grads, v> - D_v| / (|grads| |v|)`` with
    ``D_v`` the extrapolated central difference of :func:`meta_loss_after_steps` along ``v``.

    ``ValueError`` if ``grads`` is identically zero (nothing would be tested).
    """
    def loss_at(v: Sequence[Tensor], eps: float) -> float:
        return meta_loss_after_steps(model, optimizer, labels, batch, meta_batch, steps, loss, [eps * d for d in v], seed)

    return _worst_error(grads, loss_at, directions, generator_seed)


def _worst_error(grads: Sequence[Tensor], loss_at: Callable[[Sequence[Tensor], float], float], directions: int,
                 generator_seed: int, step: float = 1e-4) -> float:
    """The largest ``|<grads, v> - D_v| / (|grads| |v|)`` over ``v`` = the gradient and ``directions``
    random directions, ``D_v`` the Richardson-extrapolated central difference of ``loss_at(v, eps)``
    at a distance ``step`` along ``v``, or, where that is off by more than 1e-9, at ``step / 10`` and
    ``step / 100``, whichever agrees best.

    Several radii because the oracle's own error has two sources: round-off, which grows as the radius
    shrinks (float64: about 1e-10 of the derivative at 1e-4, 1e-8 at 1e-6), and the function's
    higher derivatives or a kink crossed (a ReLU of a weight network whose input sits within the
    radius of its kink; Adam's step near an entry with a near-zero second moment), which shrink with
    it. A wrong hypergradient is off at every radius."""
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()
    if norm == 0:
        raise ValueError("the hypergradient is identically zero: there is nothing to check")
    g = torch.Generator().manual_seed(generator_seed)
    worst = 0.0
    for v in [list(grads)] + [[torch.randn(p.shape, generator=g, dtype=p.dtype) for p in grads]
                              for _ in range(directions)]:
        length = torch.sqrt(sum((d.double() ** 2).sum() for d in v)).item()
        analytic = sum((a * d).sum() for a, d in zip(grads, v)).item()

        def error(h: float) -> float:
            def difference(r: float) -> float:
                return (loss_at(v, r) - loss_at(v, -r)) / (2 * r)

            numeric = (4 * difference(h / 2) - difference(h)) / 3  # Richardson: error O(h^4)
            return abs(numeric - analytic) / (norm * length)

        off, radius = error(step / length), step
        while off > 1e-9 and radius > step / 100:  # a radius ten times smaller, twice at most
            radius /= 10
            off = min(off, error(radius / length))
        worst = max(worst, off)
    return worst
