"""Training losses on soft targets (computed in log space) and their registry.

Every training loss is called as ``loss(logits [B, C], soft_targets [B, C], weights=None,
targets=None)``: the batch mean, or with per-sample ``weights [B]`` the weighted sum; ``targets``
are the annotated class ids, for losses that also need them (distillation). Cross-entropy is the default;
generalised cross-entropy and bootstrapping are the noise-robust baselines.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .registry import Registry


def soft_cross_entropy(logits: Tensor, soft_targets: Tensor, weights: Optional[Tensor] = None,
                       targets: Optional[Tensor] = None) -> Tensor:
    """Mean over the batch of ``-sum_c p_c log softmax(logits)_c`` (or the ``weights``-weighted sum).

    Args:
        logits: ``[B, C]`` model outputs.
        soft_targets: ``[B, C]`` target distributions (rows sum to one).
        weights: optional ``[B]`` per-sample weights; the loss is then ``sum_i w_i l_i``.
        targets: the annotated class ids ``[B]``; unused here (part of the training-loss protocol).

    With one-hot targets and no weights its gradient equals that of
    ``F.cross_entropy(logits, targets)`` bit for bit (tested); the value may differ in the last bit.
    """
    _check_pair(logits, soft_targets, weights)
    # torch's probability-target cross-entropy: one fused log-softmax, and for one-hot targets
    # the same gradient as the class-index form
    if weights is None:
        return F.cross_entropy(logits, soft_targets)
    return (weights * F.cross_entropy(logits, soft_targets, reduction="none")).sum()


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


#: ``loss(logits [B, C], soft_targets [B, C], weights [B] or None, targets [B] or None) -> scalar``
TrainingLoss = Callable[..., Tensor]

LOSSES: Registry[TrainingLoss] = Registry("training loss")


@LOSSES.register("ce")
def cross_entropy() -> TrainingLoss:
    """Cross-entropy against the soft targets (:func:`soft_cross_entropy`), the default."""
    return soft_cross_entropy


class GeneralizedCrossEntropy:
    """Generalised cross-entropy (Zhang & Sabuncu, 2018): ``sum_c p_c (1 - q_c^q) / q``.

    ``q -> 0`` recovers cross-entropy, ``q = 1`` is the (noise-robust) mean absolute error.

    Args:
        q: in ``(0, 1]``; default 0.7 (the paper's).
    """

    def __init__(self, q: float = 0.7) -> None:
        if not 0.0 < q <= 1.0:
            raise ValueError(f"q must lie in (0, 1], got {q}")
        self.q = q

    def __call__(self, logits: Tensor, soft_targets: Tensor, weights: Optional[Tensor] = None,
                 targets: Optional[Tensor] = None) -> Tensor:
        _check_pair(logits, soft_targets, weights)
        powered = torch.exp(self.q * F.log_softmax(logits, dim=1))  # q_c^q, computed in log space
        return _reduce((soft_targets * (1 - powered)).sum(1) / self.q, weights)

    def __repr__(self) -> str:
        return f"GeneralizedCrossEntropy(q={self.q})"


class Bootstrapping:
    """Bootstrapping (Reed et al., 2015): cross-entropy against ``beta * target + (1 - beta) * z``.

    ``z`` is the model's own prediction: its softmax (``hard=False``; the gradient flows through
    it, as in the paper) or its one-hot arg-max (``hard=True``).

    Args:
        beta: weight of the given target in ``[0, 1]``.
        hard: hard or soft bootstrapping.
    """

    def __init__(self, beta: float, hard: bool) -> None:
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {beta}")
        self.beta, self.hard = beta, hard

    def __call__(self, logits: Tensor, soft_targets: Tensor, weights: Optional[Tensor] = None,
                 targets: Optional[Tensor] = None) -> Tensor:
        _check_pair(logits, soft_targets, weights)
        log_probs = F.log_softmax(logits, dim=1)
        if self.hard:
            own = F.one_hot(logits.argmax(1), logits.shape[1]).to(logits.dtype)
        else:
            own = log_probs.exp()
        targets = self.beta * soft_targets + (1 - self.beta) * own
        return _reduce(-(targets * log_probs).sum(1), weights)

    def __repr__(self) -> str:
        return f"Bootstrapping(beta={self.beta}, hard={self.hard})"


@LOSSES.register("gce")
def generalized_cross_entropy(*, q: float = 0.7) -> TrainingLoss:
    """Generalised cross-entropy (:class:`GeneralizedCrossEntropy`), noise-robust.

    Args:
        q: in ``(0, 1]``; ``q -> 0`` is cross-entropy, 1 the mean absolute error; default 0.7.
    """
    return GeneralizedCrossEntropy(q)


@LOSSES.register("bootstrap-soft")
def bootstrap_soft(*, beta: float = 0.95) -> TrainingLoss:
    """Soft bootstrapping (:class:`Bootstrapping`): the target mixed with the model's softmax.

    Args:
        beta: weight of the given target in ``[0, 1]``; default 0.95 (the paper's).
    """
    return Bootstrapping(beta, hard=False)


@LOSSES.register("bootstrap-hard")
def bootstrap_hard(*, beta: float = 0.8) -> TrainingLoss:
    """Hard bootstrapping (:class:`Bootstrapping`): the target mixed with the model's arg-max.

    Args:
        beta: weight of the given target in ``[0, 1]``; default 0.8 (the paper's).
    """
    return Bootstrapping(beta, hard=True)


def make_loss(name: str, **options) -> TrainingLoss:
    """Build the registered training loss ``name`` (see ``LOSSES.names()``) with its declared ``options``."""
    return LOSSES.build(name, options=options)


class Distillation:
    """Hinton et al. (2015): ``alpha * T^2 * KL(p_T || softmax(s / T)) + (1 - alpha) * CE(s, y)``.

    The soft targets are the teacher's distribution at temperature ``T`` (see
    :class:`~labelmeta.distill.TeacherLabels`); ``y`` are the annotated targets.

    Args:
        temperature: ``T`` (> 0); default 4.
        alpha: weight of the distillation term in ``[0, 1]``; default 0.9.
    """

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        self.temperature, self.alpha = temperature, alpha

    def __call__(self, logits: Tensor, soft_targets: Tensor, weights: Optional[Tensor] = None,
                 targets: Optional[Tensor] = None) -> Tensor:
        _check_pair(logits, soft_targets, weights)
        if targets is None and self.alpha < 1:
            raise ValueError("distillation needs the annotated targets for its cross-entropy term")
        t = self.temperature
        kl = F.kl_div(F.log_softmax(logits / t, dim=1), soft_targets, reduction="none").sum(1)
        per_sample = self.alpha * t**2 * kl
        if self.alpha < 1:
            per_sample = per_sample + (1 - self.alpha) * F.cross_entropy(logits, targets, reduction="none")
        return _reduce(per_sample, weights)

    def __repr__(self) -> str:
        return f"Distillation(temperature={self.temperature}, alpha={self.alpha})"


@LOSSES.register("distillation")
def distillation(*, temperature: float = 4.0, alpha: float = 0.9) -> TrainingLoss:
    """Distillation (:class:`Distillation`); the soft targets must be a teacher's tempered distribution.

    Args:
        temperature: ``T`` (> 0); default 4.
        alpha: weight of the KL term in ``[0, 1]``; default 0.9.
    """
    return Distillation(temperature, alpha)


def distillation_loss(
    student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, temperature: float = 4.0, alpha: float = 0.9
) -> Tensor:
    """:class:`Distillation` from the teacher's logits: ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE``."""
    loss = Distillation(temperature, alpha)
    return loss(student_logits, F.softmax(teacher_logits / temperature, dim=1), targets=targets)


def check_finite(loss: Tensor, what: str) -> Tensor:
    """Raise ``FloatingPointError`` naming ``what`` if ``loss`` is NaN or infinite."""
    if not torch.isfinite(loss).all():
        raise FloatingPointError(f"non-finite {what}: {loss.detach().cpu().tolist()}")
    return loss
