"""Before training: can the strategy differentiate this model? If not, which module, and what works.

A hypergradient takes derivatives of the model that ordinary training never asks for: the exact
unrolls differentiate the inner backward (a double backward, and a Hessian for two or more
differentiated steps), ``one-step``'s forward product needs forward-mode formulas. Some operations
lack them and raise (a fused kernel); worse, some give wrong ones silently: a
``torch.autograd.Function`` whose backward is not itself differentiable (``once_differentiable``,
or a backward through numpy) drops its part of the second derivative without an error, and the
label gradient is simply wrong (26 % off in ``tests/test_layers.py``'s model). So the probe does two things:

- :func:`attempt`: one meta step on copies of the model, its optimiser, the labels and the
  strategy, on a few samples (an operation without the derivative raises here);
- :func:`derivative_errors`: the derivatives the strategy declares
  (:meth:`~labelmeta.strategies.Strategy.derivatives`), on a float64 copy of the model, against
  central differences of first-order quantities (forward passes and plain gradients), which an
  operation cannot get wrong without also training wrongly.

:func:`explain` turns a failure into one message naming the batch that does not fit the model, or
the innermost module whose derivative is missing or wrong and the strategies that work.
:meth:`labelmeta.learner.Learner.probe` uses all three; nothing the run owns changes (random state included).
The copies carry the model's hooks: a forward hook with side effects sees the probe's forwards too.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable, ContextManager, Dict, FrozenSet, List, Optional, Sequence, Tuple

import torch
import torch.autograd.forward_ad as fwad
from torch import Tensor, nn
from torch.func import functional_call

from .accel import autocast
from .kernels import differentiable_kernels
from .labels import LabelParameterization
from .losses import TrainingLoss
from .strategies import BACKENDS, STRATEGIES, TARGETS, MetaProblem, Strategy
from .typing import Batch

#: samples of each batch the probe runs on (two or more: batch normalisation needs two per channel)
PROBE_SAMPLES = 4
#: what a missing derivative raises (autograd's "not implemented", forward AD's NotImplementedError)
DERIVATIVE_ERRORS = (RuntimeError, NotImplementedError)
#: relative error above which a derivative is wrong: float64 central differences are good to about
#: 1e-9 here, a dropped term is off by percents
TOLERANCE = 1e-4
#: the step of the central differences, along a unit direction in parameter space (float64)
STEP = 1e-5
#: why a forward-mode product cannot serve a model whose training-mode forward is random
RANDOM_FORWARD = ("its forward pass is random in training mode (two passes on the same batch differ: dropout "
                  "written as a function call, F.dropout?), and the forward-mode product runs it again, drawing "
                  "other masks than the inner step's, so its J u would belong to another network: use "
                  "product='reverse' or 'auto'")


def few(batch: Batch, n: int = PROBE_SAMPLES) -> Batch:
    """The first ``n`` samples of ``batch`` (what the probe runs on)."""
    return tuple(t[:n] for t in batch)  # type: ignore[return-value]


def attempt(model: nn.Module, optimizer: torch.optim.Optimizer, labels: LabelParameterization, strategy: Strategy,
            loss: TrainingLoss, batch: Batch, meta_batch: Batch, share_forward: bool,
            amp: bool = False) -> Optional[str]:
    """Why ``strategy`` cannot differentiate ``model`` on these batches, or ``None`` if it can.

    Runs one meta step on copies of everything (``share_forward``: handing it the model step's
    forward on the default kernels, as the learner does for a strategy that
    :attr:`~labelmeta.strategies.Strategy.shares_forward`), then checks the derivatives the strategy
    declares with :func:`derivative_errors`. The copies are made in one ``deepcopy`` (the optimiser
    keeps pointing at the copied model's parameters); the global random state is restored.
    """
    model, optimizer, labels, strategy = copy.deepcopy((model, optimizer, labels, strategy))
    with _own_random_state(model):
        try:
            model.train()
            with autocast(batch[0].device, amp):
                logits = model(batch[0]) if share_forward else None  # on the default kernels, as in the learner
                strategy.compute(MetaProblem(model, optimizer, labels, batch, meta_batch, loss, logits=logits))
        except DERIVATIVE_ERRORS as err:
            return f"{type(err).__name__}: {_first_line(err)}"
        except FloatingPointError:  # a non-finite loss on a few samples says nothing about derivatives
            pass
        needs = strategy.derivatives(model)
        if "forward mode" in needs and _random_forward(model, batch[0], amp):
            return RANDOM_FORWARD  # nn.Dropout is refused when the learner is built; F.dropout only shows here
    exact = _double(model) if needs else None
    if exact is None:
        return None
    x = batch[0].double() if batch[0].is_floating_point() else batch[0]
    return "; ".join(derivative_errors(_model_function(exact, x), _trainable(exact), needs).values()) or None


def explain(reason: str, model: nn.Module, optimizer: torch.optim.Optimizer, labels: LabelParameterization,
            strategy: Strategy, loss: TrainingLoss, batch: Batch, meta_batch: Batch, amp: bool = False) -> ValueError:
    """The failure ``reason`` of a meta step that no variant of ``strategy`` could take, as one message:
    the batch that does not fit the model, else, for each variant the probe tried (``one-step`` under
    ``product="auto"``: the forward-mode and the reverse-mode product), the innermost module whose
    derivative is missing or wrong, and the strategies that can differentiate the model."""
    for what, data in (("meta_batch", meta_batch), ("batch", batch)):
        wrong = misfit(model, data, what)
        if wrong is not None:
            return wrong
    if reason == RANDOM_FORWARD:  # the model as a whole, not a module's derivative
        return ValueError(f"the {strategy.name!r} strategy cannot differentiate this model: {reason}")
    found: Dict[Tuple[str, str], List[str]] = {}  # (module, class) -> what is wrong with it, variant by variant
    for variant in strategy.variants(model):
        culprit = _innermost(model, batch[0], variant.derivatives(model))
        if culprit is not None:
            problems = found.setdefault(culprit[:2], [])
            problems.extend(p for p in culprit[2] if p not in problems)
    where = ("; ".join(f"module {name!r} ({kind}): {'; '.join(problems)}" for (name, kind), problems in found.items())
             if found else f"no single module alone, their composition: {reason}")
    works = [other for other in _alternatives(strategy)
             if attempt(model, optimizer, labels, STRATEGIES.build(other), loss, batch, meta_batch, False, amp) is None]
    advice = (f"strategies that can: {', '.join(repr(w) for w in works)}" if works
              else "no registered strategy can; give that module's operation the derivative")
    return ValueError(f"the {strategy.name!r} strategy cannot differentiate this model: {where}; {advice}")


@torch.no_grad()
def _random_forward(model: nn.Module, x: Tensor, amp: bool) -> bool:
    """Whether two training-mode passes of ``model`` over ``x`` differ (random numbers drawn inside it)."""
    with autocast(x.device, amp):
        first, second = _flat(model(x)), _flat(model(x))
    return first is not None and not torch.equal(first, second)


def misfit(model: nn.Module, batch: Batch, what: str) -> Optional[ValueError]:
    """A ``ValueError`` naming ``what`` (``"batch"``, ``"meta_batch"``) if ``model`` cannot run on its inputs, else ``None``."""
    try:
        with torch.no_grad():
            _model_function(model, batch[0])(*_trainable(model))
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        shape = "[" + ", ".join(str(d) for d in batch[0].shape[1:]) + "]"
        return ValueError(f"the {what}'s inputs (samples of shape {shape}) do not fit the model: {_first_line(err)}")
    return None


# ---------------------------------------------------------------------------------------------
# Derivatives against central differences

def derivative_errors(function: Callable[..., Any], variables: Sequence[Tensor],
                      needs: FrozenSet[str]) -> Dict[str, str]:
    """What is wrong with the derivatives ``needs`` names of ``function(*variables)``, by name (empty: nothing).

    ``function`` returns a tensor or a tuple of tensors (its floating-point ones are the output
    ``f``) and must be deterministic (seed any randomness inside it). With ``u`` a random unit
    direction of the variables and ``c`` a random cotangent of ``f``:

    - ``"double backward"``: ``d/dc <J^T c, u> = J u``;
    - ``"hessian"``: ``d/dvariables <J^T c, u>``, against the difference of ``J^T c`` along ``u``;
    - ``"forward mode"``: the forward-mode ``J u``;

    each against central differences along ``u`` (``J u`` from ``f``). An error is reported only
    when differences at two steps agree with each other and not with the derivative (a kink of ReLU
    or max-pooling is not reported), or when the derivative raises. Runs in the variables' dtype: float64.
    """
    wanted = [n for n in ("double backward", "hessian", "forward mode") if n in needs]
    if not wanted or not variables:
        return {}
    g = torch.Generator().manual_seed(0)
    u = [torch.randn(v.shape, generator=g, dtype=v.dtype).to(v.device) for v in variables]
    length = math.sqrt(sum(float((d * d).sum()) for d in u))
    u = [d / length for d in u]
    leaves = [v.detach().requires_grad_() for v in variables]
    with torch.enable_grad():
        out = _flat(function(*leaves))
    if out is None:
        return {}
    c = torch.randn(out.shape, generator=g, dtype=out.dtype).to(out.device)
    wrong: Dict[str, str] = {}
    for name in wanted:
        try:
            analytic = _ANALYTIC[name](function, leaves, u, c)
        except DERIVATIVE_ERRORS as err:
            wrong[name] = f"its {name} is missing ({type(err).__name__}: {_first_line(err)})"
            continue
        numeric = [_NUMERIC[name](function, variables, u, c, step) for step in (STEP, STEP / 2)]
        scale = max(_norm(numeric[0]), _norm(analytic), 1e-12)
        if _norm(_minus(numeric[0], numeric[1])) > TOLERANCE * scale:
            continue  # the differences disagree with each other: not smooth here, nothing to conclude
        error = _norm(_minus(analytic, numeric[1])) / scale
        if error > TOLERANCE:
            wrong[name] = f"its {name} is wrong (off by {error:.0%} against central differences)"
    return wrong


def _flat(out: Any) -> Optional[Tensor]:
    floats = _floats(out)
    return torch.cat([t.reshape(-1) for t in floats]) if floats else None


def _floats(values: Any) -> List[Tensor]:
    """The floating-point tensors in a module's inputs or outputs (tensors, tuples, lists)."""
    if isinstance(values, Tensor):
        return [values] if values.is_floating_point() else []
    if isinstance(values, (tuple, list)):
        return [t for v in values for t in _floats(v)]
    return []


def _transposed(function, variables: Sequence[Tensor], c: Tensor, create_graph: bool = False) -> List[Tensor]:
    """``J^T c`` (zeros where a variable does not reach the output)."""
    leaves = [v if v.requires_grad else v.detach().requires_grad_() for v in variables]
    with torch.enable_grad():
        out = _flat(function(*leaves))
        grads = torch.autograd.grad(out, leaves, c, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(v) if gr is None else gr for v, gr in zip(leaves, grads)]


def _analytic_double_backward(function, leaves, u, c) -> List[Tensor]:
    cotangent = c.clone().requires_grad_()
    grads = _transposed(function, leaves, cotangent, create_graph=True)
    inner = sum((gr * d).sum() for gr, d in zip(grads, u))
    if not inner.requires_grad:
        return [torch.zeros_like(c)]
    (ju,) = torch.autograd.grad(inner, cotangent, allow_unused=True)
    return [torch.zeros_like(c) if ju is None else ju]


def _analytic_hessian(function, leaves, u, c) -> List[Tensor]:
    grads = _transposed(function, leaves, c, create_graph=True)
    inner = sum((gr * d).sum() for gr, d in zip(grads, u))
    if not inner.requires_grad:
        return [torch.zeros_like(v) for v in leaves]
    second = torch.autograd.grad(inner, leaves, allow_unused=True)
    return [torch.zeros_like(v) if s is None else s for v, s in zip(leaves, second)]


def _analytic_forward_mode(function, leaves, u, c) -> List[Tensor]:
    with torch.no_grad(), fwad.dual_level():
        out = _flat(function(*[fwad.make_dual(v.detach(), d) for v, d in zip(leaves, u)]))
        tangent = fwad.unpack_dual(out).tangent
    return [torch.zeros_like(out) if tangent is None else tangent]


def _moved(variables: Sequence[Tensor], u: Sequence[Tensor], step: float) -> List[Tensor]:
    return [v.detach() + step * d for v, d in zip(variables, u)]


def _numeric_ju(function, variables, u, c, step) -> List[Tensor]:
    with torch.no_grad():
        return [(_flat(function(*_moved(variables, u, step))) - _flat(function(*_moved(variables, u, -step))))
                / (2 * step)]


def _numeric_hessian(function, variables, u, c, step) -> List[Tensor]:
    plus = _transposed(function, _moved(variables, u, step), c)
    minus = _transposed(function, _moved(variables, u, -step), c)
    return [(a - b) / (2 * step) for a, b in zip(plus, minus)]


_ANALYTIC = {"double backward": _analytic_double_backward, "hessian": _analytic_hessian,
             "forward mode": _analytic_forward_mode}
_NUMERIC = {"double backward": _numeric_ju, "hessian": _numeric_hessian, "forward mode": _numeric_ju}


def _norm(tensors: Sequence[Tensor]) -> float:
    return math.sqrt(sum(float((t.double() ** 2).sum()) for t in tensors))


def _minus(a: Sequence[Tensor], b: Sequence[Tensor]) -> List[Tensor]:
    return [x - y for x, y in zip(a, b)]


# ---------------------------------------------------------------------------------------------
# The model, its modules, float64 copies

def _trainable(model: nn.Module) -> List[Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def _model_function(model: nn.Module, x: Tensor) -> Callable[..., Tensor]:
    """``model``'s output on ``x`` as a function of its trainable parameters (:func:`_module_function`
    with the input held fixed)."""
    return _module_function(model, (x,), {}, vary_inputs=False)[0]


def _innermost(model: nn.Module, x: Tensor, needs: FrozenSet[str]) -> Optional[Tuple[str, str, List[str]]]:
    """``(name, class, what is wrong)`` of the innermost module of ``model`` whose derivatives
    ``needs`` names are missing or wrong on the inputs it receives from ``x`` (float64); ``None`` if each module's are right."""
    model = _double(model)
    if model is None:
        return None
    x = x.double() if x.is_floating_point() else x
    model.train()
    calls: List[Tuple[str, nn.Module, tuple, dict]] = []
    hooks = [m.register_forward_hook(lambda mod, args, kwargs, out, name=name: calls.append((name, mod, args, kwargs)),
                                     with_kwargs=True)
             for name, m in model.named_modules()]
    try:
        misfit(model, (x,), "batch")
    finally:
        for h in hooks:
            h.remove()
    for name, module, args, kwargs in calls:  # completion order: a module's children come before it
        wrong = derivative_errors(*_module_function(module, args, kwargs), needs or frozenset({"double backward"}))
        if wrong:
            return name or "the model itself", type(module).__name__, list(wrong.values())
    return None


def _module_function(module: nn.Module, args: tuple, kwargs: dict,
                     vary_inputs: bool = True) -> Tuple[Callable[..., Any], List[Tensor]]:
    """``module``'s output on ``args`` as a function of its trainable parameters and (``vary_inputs``)
    floating-point inputs, with the variables' current values: training mode, cloned buffers (running
    statistics untouched), the same random numbers at every call (dropout masks), on the kernels a
    strategy differentiates with."""
    names = [n for n, p in module.named_parameters() if p.requires_grad]
    fixed = {n: p for n, p in module.named_parameters() if not p.requires_grad}
    slots = [i for i, a in enumerate(args) if vary_inputs and isinstance(a, Tensor) and a.is_floating_point()]
    buffers = dict(module.named_buffers())

    def function(*values: Tensor) -> Any:
        params, inputs = values[:len(names)], values[len(names):]
        call = list(args)
        for i, value in zip(slots, inputs):
            call[i] = value
        with _own_random_state(module), differentiable_kernels(module):
            torch.manual_seed(0)
            return functional_call(module, ({**fixed, **dict(zip(names, params))},
                                            {n: b.clone() for n, b in buffers.items()}), tuple(call), kwargs)

    variables = [dict(module.named_parameters())[n].detach() for n in names] + [args[i].detach() for i in slots]
    return function, variables


def _double(model: nn.Module) -> Optional[nn.Module]:
    """A float64 copy of ``model``, or ``None`` where it cannot have one."""
    try:
        return copy.deepcopy(model).double()
    except (RuntimeError, TypeError):
        return None


def _own_random_state(module: nn.Module) -> ContextManager:
    """A block after which the global random state (CPU, and the GPUs ``module`` is on) is as it was."""
    return torch.random.fork_rng(devices=sorted({p.device.index or 0 for p in module.parameters() if p.is_cuda}))


def _alternatives(strategy: Strategy) -> List[str]:
    """The strategies with ``strategy``'s target on each of the other registered backends."""
    target = TARGETS.name_of(strategy.target)
    if target is None:  # a target nobody registered: no name to build it by
        return []
    others = [b for b in BACKENDS.names() if b != BACKENDS.name_of(strategy.backend)]
    return [b if target == "labels" else f"{b}:{target}" for b in others]


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


__all__ = ["PROBE_SAMPLES", "attempt", "derivative_errors", "explain", "few", "misfit"]
