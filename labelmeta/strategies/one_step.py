"""The exact one-step hypergradient by one Jacobian-vector product: no second-order graph through the inner step.

For one inner step ``theta' = U(theta, g)`` with ``g = grad_theta L(theta, t)``, the meta loss's
gradient with respect to the soft targets ``t`` is

    dL_meta/dt = d/dt < u, g(theta, t) >,    u = (dU/dg)^T grad L_meta(theta'),

with ``u`` held fixed. The training loss depends on ``theta`` only through the batch logits
``z = f(theta, x)``, so ``<u, g> = <J u, grad_z L(z, t)>`` with ``J = dz/dtheta``: the
model-sized work is one Jacobian-vector product ``dz = J u`` (a ``[B, C]`` tensor; forward-mode,
or reverse-mode through the inner backward's graph); what remains
is ``[B, C]`` algebra on the loss, then an ordinary backward through the label parameterisation.
Nothing here assumes the loss is linear in the targets: any loss of the logits, soft targets,
weights and class ids qualifies. ``dU/dg`` is the optimiser rule's own derivative
(:mod:`labelmeta.update_rules`): a number for SGD, whose step is affine in the gradient, and
for Adam and AdamW (diagonal) autograd through the rule, so every option the rules model is covered.

Against the double-backward unroll (``functional``), forward-mode saves the graph of the inner
backward (the double backward through BatchNorm is the costliest part of it) and, with ``steps=1``, the
unroll's own forward: the learner hands over the logits of the model step's forward
(:attr:`MetaProblem.logits`), whose graph the model step then back-propagates.
"""
from __future__ import annotations

import copy
import functools
import warnings
from typing import Any, Dict, FrozenSet, List, Literal, Optional, Sequence, Tuple

import torch
import torch.autograd.forward_ad as fwad
from torch import Tensor, nn

from ..profiling import phase
from ..update_rules import sgd, sgd_gain
from .backend import BACKENDS, Backend
from .functional_model import FunctionalModel
from .inner_loop import InnerLoop
from .problem import MetaProblem, inner_steps
from .refresh import KeptDirection


#: normalisation layers whose double backward is dearer than their forward-mode product
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
          nn.InstanceNorm3d)
#: random layers: a second forward would draw other masks than the first
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


@BACKENDS.register("one-step")
class OneStep(Backend):
    """Exact hypergradient of the last inner step by one Jacobian-vector product (the default's backend).

    With ``steps=1`` it is the exact one-step look-ahead: the same gradient as ``unrolled`` and
    ``functional`` with ``steps=1`` (``tests/test_gradients.py``), at a lower cost; the model
    step's forward is shared with it. With ``steps=k > 1``, the first ``k - 1`` inner steps are
    ordinary (graph-free) steps and the last one is differentiated: the gradient of
    ``truncated`` with ``through=1``.

    Args:
        steps: inner steps ``k`` (>= 1); the label gradient flows through the last one; default 1.
        product: how ``J u`` is computed: ``"forward"`` (forward-mode, one extra forward of the
            batch carrying tangents), ``"reverse"`` (back through the inner backward's graph,
            kept for it) or ``"auto"`` (forward-mode for models with batch or instance
            normalisation, reverse-mode for the rest and for models with dropout); the same
            numbers, different costs (``benchmarks/overhead.py`` measures both); default ``"auto"``.
        refresh: recompute the meta loss's gradient every ``refresh`` meta steps (>= 1) and reuse it
            in between: the direction ``u`` above is the meta batch's verdict on where the weights
            should go, and it moves slowly; a reused one spares the meta batch's forward and backward
            and the inner gradient (the weights and labels of every batch still get their own
            product ``J u`` at the current weights). 1 (the default): exact at every step; above 1 an
            approximation, and a poor one with learned weights (``benchmarks/default_recipe.py``, noisy
            MNIST-1D: 88 % of the gain at r = 2 on symmetric noise, 12 % at r = 4, divergence at r = 8).
            The direction kept (:class:`~.refresh.KeptDirection`) is part of the strategy's checkpointed
            state. A reused step reports the meta loss its direction was computed with.
    """

    def __init__(self, *, steps: int = 1, product: Literal["auto", "forward", "reverse"] = "auto",
                 refresh: int = 1) -> None:
        if product not in ("auto", "forward", "reverse"):
            raise ValueError(f"product must be 'auto', 'forward' or 'reverse', got {product!r}")
        self.steps, self.product = inner_steps(steps), product
        self.kept = KeptDirection(refresh)  # shared with the variants: they compute the same directions

    @property
    def refresh(self) -> int:
        """Meta steps a direction serves (the ``refresh`` option)."""
        return self.kept.refresh

    def product_for(self, model: nn.Module, in_training: bool = False) -> str:
        """``"forward"`` or ``"reverse"``: the ``product`` option, or under ``"auto"`` forward-mode for
        models with batch normalisation (whose double backward costs more than its forward-mode
        product) and reverse-mode for the rest (``benchmarks/overhead.py`` measures both).

        A model with active dropout layers always gets reverse-mode: forward-mode runs the model
        again and would draw other masks than the inner step's, so its ``J`` would belong to another
        network (``ValueError`` if ``"forward"`` is asked for). Dropout written as a function call
        (``F.dropout``) cannot be seen here; the learner's probe finds it (two training-mode passes
        differ: :data:`labelmeta.probe.RANDOM_FORWARD`) and keeps the reverse-mode product under
        ``"auto"``, or refuses ``"forward"``.
        """
        if self.product == "reverse":  # what a model with dropout gets too
            return "reverse"
        random, norms = _layers(model, in_training)
        if random:
            if self.product == "forward":
                raise ValueError(f"one-step's forward-mode product runs the model again, which would draw other dropout "
                                 f"masks (in {random[0]!r}) than the inner step's: use product='reverse' or 'auto'")
            return "reverse"
        if self.product != "auto":
            return self.product
        return "forward" if norms else "reverse"

    def check_model(self, model: nn.Module) -> None:
        self.product_for(model, in_training=True)  # refuses the forward-mode product for a model with dropout

    def derivatives(self, model: nn.Module) -> FrozenSet[str]:
        # the differentiated step is the last one; the ones before it take gradients only
        return frozenset({"forward mode" if self.product_for(model) == "forward" else "double backward"})

    def variants(self, model: nn.Module) -> List[Backend]:
        """Under ``product="auto"``, the product :meth:`product_for` picks, then the other one (unless
        the model has dropout): both give the same gradient, and a model may have the derivatives of one only."""
        chosen = self.product_for(model)
        if self.product != "auto" or (chosen == "reverse" and _random_layers(model)):
            return [self]
        other = copy.copy(self)
        other.product = "forward" if chosen == "reverse" else "reverse"
        return [self, other]

    @property
    def shares_forward(self) -> bool:  # type: ignore[override]
        # the differentiated step starts from the current weights only when it is the first one
        return self.steps == 1

    def hypergradient(self, problem: MetaProblem, inputs: Sequence[Tensor],
                      weights: Optional[Tensor] = None) -> tuple[float, List[Optional[Tensor]]]:
        """The meta loss and its gradient with respect to ``inputs`` (label parameters, and/or
        per-sample ``weights [B]`` of the inner loss when given), through the last inner step."""
        x = problem.batch[0]
        with phase("unroll: functional copy"):
            loop = InnerLoop(problem)
            engine = loop.engine
            point = loop.advance(loop.start(), self.steps - 1, weights)
        product = self.product_for(problem.model)
        reverse = product == "reverse"
        if self.kept.reusable():  # the kept direction, at the current weights
            direction, value = self.kept.reuse()
            return value, self._reused(problem, engine, point.fast, direction, inputs, weights, product)
        with phase("one-step: inner gradient"), torch.enable_grad():
            if self.steps == 1 and problem.logits is not None:
                logits, wrt, retain = problem.logits, engine.params, True  # the model step's own forward
            else:
                wrt = [p.detach().requires_grad_() for p in point.fast]
                logits, retain = engine(wrt, x), False
            # the loss's gradient in the logits, as a function of the targets (and weights)
            z = logits.detach().requires_grad_()
            (grad_z,) = torch.autograd.grad(problem.inner_loss(z, problem.soft_targets(), weights), z,
                                            create_graph=True)
            cotangent = grad_z.detach().requires_grad_(reverse)
            local = torch.autograd.grad(logits, wrt, cotangent, retain_graph=retain, create_graph=reverse,
                                        allow_unused=True)
            inner = loop.mean([None if g is None else g.detach() for g in local])  # the global inner step
        with phase("one-step: meta loss and its gradient"):
            after, gains = self._step(engine, point.fast, inner, point.states)
            value, v = loop.meta_gradient(after)
            direction = list(loop.share(self._pull_back(gains, point.fast, v)))
            self.kept.keep(direction, value)
        with phase(f"one-step: {product}-mode product J u"):
            tangent = (_reverse_product(local, cotangent, direction) if reverse
                       else self._jvp(engine, point.fast, direction, x)[1])
        return value, _label_gradient(grad_z, tangent, inputs)

    def _reused(self, problem: MetaProblem, engine: FunctionalModel, fast: List[Tensor], direction: List[Tensor],
                inputs: Sequence[Tensor], weights: Optional[Tensor], product: str) -> List[Optional[Tensor]]:
        """The gradient ``d/dlambda <u, g(theta, lambda)>`` for a kept direction ``u``: the product ``J u``
        at the current weights, without the inner step or the meta batch."""
        x = problem.batch[0]
        shared = self.steps == 1 and problem.logits is not None  # the model step's own forward
        reverse = product == "reverse"
        with phase(f"one-step: {product}-mode product J u"), torch.enable_grad():
            if reverse:
                wrt = engine.params if shared else [p.detach().requires_grad_() for p in fast]
                logits = problem.logits if shared else engine(wrt, x)
            else:  # the forward-mode pass gives the logits with their tangent
                logits, tangent = self._jvp(engine, fast, direction, x)
                logits = problem.logits if shared else logits
            z = logits.detach().requires_grad_()
            (grad_z,) = torch.autograd.grad(problem.inner_loss(z, problem.soft_targets(), weights), z,
                                            create_graph=True)
            if reverse:  # through a backward of the logits kept for it
                cotangent = grad_z.detach().requires_grad_()
                local = torch.autograd.grad(logits, wrt, cotangent, retain_graph=shared, create_graph=True,
                                            allow_unused=True)
                tangent = _reverse_product(local, cotangent, direction)
        return _label_gradient(grad_z, tangent, inputs)

    def state_dict(self) -> Dict[str, Any]:
        """The kept direction (with ``refresh > 1``): a resumed run reuses it as the uninterrupted one does."""
        return self.kept.state_dict()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.kept.load_state_dict(state)

    @staticmethod
    def _step(engine: FunctionalModel, fast: List[Tensor], inner: Sequence[Optional[Tensor]],
              states: List[dict]) -> tuple[List[Tensor], List[object]]:
        """The inner step's weights (leaves, for the meta gradient) and, per parameter, what
        :meth:`_pull_back` needs to apply ``dU/dg``: SGD's step is affine in the gradient, so a
        number (its gain, :func:`~labelmeta.update_rules.sgd_gain`); for Adam and AdamW the pair
        ``(new weight, gradient leaf)`` to differentiate; ``None`` where no step was taken."""
        affine = engine.rule is sgd
        after: List[Tensor] = []
        gains: List[object] = []
        for p, g, state, group in zip(fast, inner, states, engine.groups):
            if g is None:  # unused parameter: no step, as in torch.optim
                after.append(p.detach().requires_grad_())
                gains.append(None)
                continue
            if affine:
                with torch.no_grad():
                    new, _ = sgd(p.detach(), g, state, group)
                gains.append(-sgd_gain(group, state))
            else:
                leaf = g.detach().requires_grad_()
                with torch.enable_grad():
                    new, _ = engine.rule(p.detach(), leaf, state, group)
                gains.append((new, leaf))
            after.append(new.detach().requires_grad_())
        return after, gains

    @staticmethod
    def _pull_back(gains: List[object], fast: List[Tensor], v: Sequence[Optional[Tensor]]) -> List[Tensor]:
        """``u = (dU/dg)^T v`` per parameter (zero where the parameter took no step or has no meta gradient)."""
        pairs = [(gain, g) for gain, g in zip(gains, v) if isinstance(gain, tuple) and g is not None]
        pulled = iter(torch.autograd.grad([gain[0] for gain, _ in pairs], [gain[1] for gain, _ in pairs],
                                          [g for _, g in pairs]) if pairs else ())
        out = []
        for gain, g, p in zip(gains, v, fast):
            if gain is None or g is None:
                out.append(torch.zeros_like(p))
            else:
                out.append(next(pulled) if isinstance(gain, tuple) else g * gain)
        return out

    @staticmethod
    @torch.no_grad()
    def _jvp(engine: FunctionalModel, fast: List[Tensor], direction: List[Tensor],
             x: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """The batch logits and ``J u``, their change when the weights move along ``direction``
        (forward mode: one pass carrying the tangent beside the values)."""
        _load_forward_mode()
        with fwad.dual_level():
            duals = [fwad.make_dual(p.detach(), d) for p, d in zip(fast, direction)]
            out = fwad.unpack_dual(engine(duals, x))
            return out.primal, out.tangent


def _reverse_product(local: Sequence[Optional[Tensor]], cotangent: Tensor,
                     direction: Sequence[Tensor]) -> Optional[Tensor]:
    """``J u = d<J^T c, u>/dc``: ``local`` is ``J^T c`` with its graph in the cotangent ``c`` (``None``
    where a parameter does not reach the logits; ``None`` returned if none does)."""
    used = [(g, d) for g, d in zip(local, direction) if g is not None]
    return torch.autograd.grad([g for g, _ in used], cotangent, [d for _, d in used])[0] if used else None


def _label_gradient(grad_z: Tensor, tangent: Optional[Tensor], inputs: Sequence[Tensor]) -> List[Optional[Tensor]]:
    """``d/dlambda <grad_z L(z, lambda), J u>`` for the meta parameters ``inputs`` (no tangent: no
    trained parameter reaches the logits, a zero one)."""
    if tangent is None:
        tangent = torch.zeros_like(grad_z)
    with phase("one-step: label gradient"), torch.enable_grad():
        return list(torch.autograd.grad((grad_z * tangent).sum(), inputs, allow_unused=True))


def _random_layers(model: nn.Module, in_training: bool = False) -> List[str]:
    """The names of ``model``'s active dropout layers (``in_training``: those that will be active
    once the learner puts the model in training mode)."""
    return [name for name, m in model.named_modules()
            if isinstance(m, _DROPOUT) and (m.training or in_training) and m.p > 0]


def _layers(model: nn.Module, in_training: bool = False) -> tuple[List[str], bool]:
    """``(_random_layers(model, in_training), whether model has a normalisation layer)`` in one walk of
    its modules (:meth:`OneStep.product_for` runs every meta step), names read only where there is dropout."""
    random, norms = False, False
    for m in model.modules():
        if isinstance(m, _DROPOUT):
            random = random or ((m.training or in_training) and m.p > 0)
        elif isinstance(m, _NORMS):
            norms = True
    return (_random_layers(model, in_training) if random else []), norms


@functools.lru_cache(maxsize=None)
def _load_forward_mode() -> None:
    """Make torch load its forward-mode formulas now, once, quietly: on the first dual tensor it
    compiles some with the deprecated ``torch.jit.script``, whose FutureWarning is about torch's
    internals, not the user's code (0.1 s, so not at import)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.script` is deprecated", FutureWarning)
        with fwad.dual_level():
            fwad.make_dual(torch.zeros(()), torch.zeros(()))
