"""Training losses on soft targets (computed in log space) and their registry.

Every training loss is called as ``loss(logits [B, C], soft_targets [B, C], weights=None,
targets=None)``: the batch mean, or with per-sample ``weights [B]`` the weighted sum; ``targets``
are the annotated class ids, for losses that also need them (distillation). That calling
convention is :class:`TrainingLoss`; any callable that follows it is accepted wherever a loss is
(a :class:`~labelmeta.learner.Learner`, a :class:`~labelmeta.strategies.MetaProblem`).

The registered losses are small classes under :class:`Loss`, registered with
``@LOSSES.register("name")`` as label parameterisations are: their options are their keyword-only
``__init__`` arguments (type and default written once, there), the base class checks the shapes
and implements ``__call__``, and they implement :meth:`Loss.compute`. Cross-entropy is the default;
generalised cross-entropy and bootstrapping are the noise-robust baselines.
"""
from __future__ import annotations

import abc
import inspect
from typing import Optional, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from .registry import Registry


@runtime_checkable
class TrainingLoss(Protocol):
    """What a training loss is: ``loss(logits [B, C], soft_targets [B, C], weights [B] or None,
    targets [B] or None) -> scalar``. A plain function qualifies (e.g. :func:`soft_cross_entropy`);
    the registered losses are :class:`Loss` subclasses."""

    def __call__(self, logits: Tensor, soft_targets: Tensor, weights: Optional[Tensor] = None,
                 targets: Optional[Tensor] = None) -> Tensor: ...


LOSSES: Registry[TrainingLoss] = Registry("training loss")


class Loss(abc.ABC):
    """Base class of the registered training losses.

    A subclass declares its options as keyword-only ``__init__`` arguments with a type and a
    default, keeps each as an attribute of the same name (:meth:`__repr__` reads them), and
    implements :meth:`compute`; ``__call__`` checks the shapes first.
    """

    def __call__(self, logits: Tensor, soft_targets: Tensor, weights: Optional[Tensor] = None,
                 targets: Optional[Tensor] = None) -> Tensor:
        """The loss of ``logits [B, C]`` against ``soft_targets [B, C]``: the batch mean, or with
        ``weights [B]`` the weighted sum; ``targets [B]`` are the annotated class ids."""
        _check_pair(logits, soft_targets, weights)
        return self.compute(logits, soft_targets, weights, targets)

    @abc.abstractmethod
    def compute(self, logits: Tensor, soft_targets: Tensor, weights: Optional[Tensor],
                targets: Optional[Tensor]) -> Tensor:
        """The hook: the loss for inputs whose shapes are checked."""

    def __repr__(self) -> str:
        options = [p.name for p in inspect.signature(type(self)).parameters.values()
                   if p.kind is inspect.Parameter.KEYWORD_ONLY]
        return f"{type(self).__name__}({', '.join(f'{name}={getattr(self, name)!r}' for name in options)})"


def _check_pair(logits: Tensor, soft_targets: Tensor, weights: Optional[Tensor]) -> None:
    if logits.shape != soft_targets.shape or logits.dim() != 2:
        raise ValueError(
            f"logits {tuple(logits.shape)} and soft targets {tuple(soft_targets.shape)} "
            "must both be [B, C]"
        )
    if weights is not None and weights.shape != logits.shape[:1]:
        raise ValueError(f"weights must be [B={logits.shape[0]}], got {tuple(weights.shape)}")


def _reduce(per_sample: Tensor, weights: Optional[Tensor]) -> Tensor:
    return per_sample.mean() if weights is None else (weights * per_sample).sum()


@LOSSES.register("ce")
class CrossEntropy(Loss):
    """Cross-entropy against the soft targets (:func:`soft_cross_entropy`), the default."""

    def compute(self, logits: Tensor, soft_targets: Tensor, weights: Optional[Tensor],
                targets: Optional[Tensor]) -> Tensor:
        # torch's probability-target cross-entropy: one fused log-softmax, and for one-hot targets
        # the same gradient as the class-index form
        if weights is None:
            return F.cross_entropy(logits, soft_targets)
        return (weights * F.cross_entropy(logits, soft_targets, reduction="none")).sum()


_CROSS_ENTROPY = CrossEntropy()


def soft_cross_entropy(logits: Tensor, soft_targets: Tensor, weights: Optional[Tensor] = None,
                       targets: Optional[Tensor] = None) -> Tensor:
    """Mean over the batch of ``-sum_c p_c log softmax(logits)_c`` (or the ``weights``-weighted sum).

    Args:
        logits: ``[B, C]`` model outputs.
        soft_targets: ``[B, C]`` target distributions (rows sum to one).
        weights: optional ``[B]`` per-sample weights; the loss is then ``sum_i w_i l_i``.
        targets: the annotated class ids ``[B]``; unused here (part of the training-loss protocol).

    The registered ``ce`` (:class:`CrossEntropy`) as a function. With one-hot targets and no
    weights its gradient equals that of ``F.cross_entropy(logits, targets)`` bit for bit (tested);
    the value may differ in the last bit.
    """
    return _CROSS_ENTROPY(logits, soft_targets, weights, targets)


@LOSSES.register("gce")
class GeneralizedCrossEntropy(Loss):
    """Generalised cross-entropy (Zhang & Sabuncu, 2018): ``sum_c p_c (1 - q_c^q) / q``, noise-robust.

    ``q -> 0`` recovers cross-entropy, ``q = 1`` is the (noise-robust) mean absolute error.

    Args:
        q: in ``(0, 1]``; ``q -> 0`` is cross-entropy, 1 the mean absolute error; the default is the paper's.
    """

    def __init__(self, *, q: float = 0.7) -> None:
        if not 0.0 < q <= 1.0:
            raise ValueError(f"q must lie in (0, 1], got {q}")
        self.q = q

    def compute(self, logits: Tensor, soft_targets: Tensor, weights: Optional[Tensor],
                targets: Optional[Tensor]) -> Tensor:
        powered = torch.exp(self.q * F.log_softmax(logits, dim=1))  # q_c^q, computed in log space
        return _reduce((soft_targets * (1 - powered)).sum(1) / self.q, weights)


class Bootstrapping(Loss):
    """Bootstrapping (Reed et al., 2015): cross-entropy against ``beta * target + (1 - beta) * z``.

    ``z`` is the model's own prediction: its softmax (:class:`SoftBootstrapping`; the gradient flows
    through it, as in the paper) or its one-hot arg-max (:class:`HardBootstrapping`, ``hard = True``).
    The two are registered with their own default ``beta``.
    """

    #: the model's one-hot arg-max instead of its softmax
    hard: bool = False

    def __init__(self, *, beta: float) -> None:
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {beta}")
        self.beta = beta

    def compute(self, logits: Tensor, soft_targets: Tensor, weights: Optional[Tensor],
                targets: Optional[Tensor]) -> Tensor:
        log_probs = F.log_softmax(logits, dim=1)
        if self.hard:
            own = F.one_hot(logits.argmax(1), logits.shape[1]).to(logits.dtype)
        else:
            own = log_probs.exp()
        mixed = self.beta * soft_targets + (1 - self.beta) * own
        return _reduce(-(mixed * log_probs).sum(1), weights)


@LOSSES.register("bootstrap-soft")
class SoftBootstrapping(Bootstrapping):
    """Soft bootstrapping (:class:`Bootstrapping`): the target mixed with the model's softmax.

    Args:
        beta: weight of the given target in ``[0, 1]``; the default is the paper's.
    """

    def __init__(self, *, beta: float = 0.95) -> None:
        super().__init__(beta=beta)


@LOSSES.register("bootstrap-hard")
class HardBootstrapping(Bootstrapping):
    """Hard bootstrapping (:class:`Bootstrapping`): the target mixed with the model's arg-max.

    Args:
        beta: weight of the given target in ``[0, 1]``; the default is the paper's.
    """

    hard = True

    def __init__(self, *, beta: float = 0.8) -> None:
        super().__init__(beta=beta)


@LOSSES.register("distillation")
class Distillation(Loss):
    """Distillation (Hinton et al., 2015): ``alpha * T^2 * KL(p_T || softmax(s / T)) + (1 - alpha) * CE(s, y)``.

    The soft targets must be the teacher's distribution at temperature ``T`` (see
    :class:`~labelmeta.distill.TeacherLabels`); ``y`` are the annotated targets.

    Args:
        temperature: ``T`` (> 0).
        alpha: weight of the KL term in ``[0, 1]``.
    """

    def __init__(self, *, temperature: float = 4.0, alpha: float = 0.9) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        self.temperature, self.alpha = temperature, alpha

    def compute(self, logits: Tensor, soft_targets: Tensor, weights: Optional[Tensor],
                targets: Optional[Tensor]) -> Tensor:
        if targets is None and self.alpha < 1:
            raise ValueError("distillation needs the annotated targets for its cross-entropy term")
        t = self.temperature
        kl = F.kl_div(F.log_softmax(logits / t, dim=1), soft_targets, reduction="none").sum(1)
        per_sample = self.alpha * t**2 * kl
        if self.alpha < 1:
            per_sample = per_sample + (1 - self.alpha) * F.cross_entropy(logits, targets, reduction="none")
        return _reduce(per_sample, weights)


@LOSSES.register("elr")
class EarlyLearningRegularization(Loss):
    """Early-learning regularisation, ELR (Liu et al., 2020): ``CE(s, y) + lam * log(1 - <p, t>)``.

    ``p`` is the model's softmax (clamped to ``[1e-4, 1 - 1e-4]``, as the paper's code does) and ``t``
    each sample's temporal ensemble of the model's own predictions: the soft targets must be those of
    the ``temporal-ensemble`` labels (:attr:`expects_labels`; the configuration check refuses other labels,
    whose targets this term would push the model *away* from). Minimising ``log(1 - <p, t>)`` keeps
    the prediction near what the model predicted early in training, before it memorised the noise.
    ``y`` are the annotated class ids. The ensemble is updated after each model step, so ``t`` holds
    the sample's earlier visits; the paper also mixes in the current prediction (weight ``1 - beta``).

    Args:
        lam: weight of the regulariser (>= 0); default 3 (the paper's for CIFAR-10).
    """

    #: the label parameterisation whose soft targets this loss reads (checked before training)
    expects_labels = "temporal-ensemble"

    def __init__(self, *, lam: float = 3.0) -> None:
        if not lam >= 0 or lam == float("inf"):
            raise ValueError(f"lam must be finite and >= 0, got {lam}")
        self.lam = lam

    def compute(self, logits: Tensor, soft_targets: Tensor, weights: Optional[Tensor],
                targets: Optional[Tensor]) -> Tensor:
        if targets is None:
            raise ValueError("elr needs the annotated targets for its cross-entropy term")
        probs = F.softmax(logits, dim=1).clamp(1e-4, 1 - 1e-4)
        regulariser = torch.log(1 - (soft_targets.detach() * probs).sum(1))
        return _reduce(F.cross_entropy(logits, targets, reduction="none") + self.lam * regulariser, weights)


def make_loss(name: str, **options) -> TrainingLoss:
    """Build the registered training loss ``name`` (see ``LOSSES.names()``) with its declared ``options``."""
    return LOSSES.build(name, options=options)


_DISTILLATION = LOSSES.schema("distillation").options  # the defaults, as Distillation declares them


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor,
                      temperature: float = _DISTILLATION["temperature"].default,
                      alpha: float = _DISTILLATION["alpha"].default) -> Tensor:
    """:class:`Distillation` from the teacher's logits: ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE``."""
    loss = Distillation(temperature=temperature, alpha=alpha)
    return loss(student_logits, F.softmax(teacher_logits / temperature, dim=1), targets=targets)


def check_finite(loss: Tensor, what: str) -> Tensor:
    """Raise ``FloatingPointError`` naming ``what`` if ``loss`` is NaN or infinite."""
    if not torch.isfinite(loss).all():
        raise FloatingPointError(f"non-finite {what}: {loss.detach().cpu().tolist()}")
    return loss
