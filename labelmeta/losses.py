"""Losses on soft targets, computed in log space for numerical stability."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def soft_cross_entropy(logits: Tensor, soft_targets: Tensor) -> Tensor:
    """Mean over the batch of ``-sum_c p_c log softmax(logits)_c``.

    Args:
        logits: ``[B, C]`` model outputs.
        soft_targets: ``[B, C]`` target distributions (rows sum to one).

    With one-hot targets its gradient equals that of ``F.cross_entropy(logits, targets)`` bit for
    bit (tested); the value may differ in the last bit.
    """
    if logits.shape != soft_targets.shape or logits.dim() != 2:
        raise ValueError(
            f"logits {tuple(logits.shape)} and soft targets {tuple(soft_targets.shape)} "
            "must both be [B, C]"
        )
    # torch's probability-target cross-entropy: one fused log-softmax, and for one-hot targets
    # the same gradient as the class-index form
    return F.cross_entropy(logits, soft_targets)


def distillation_loss(
    student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, temperature: float = 4.0, alpha: float = 0.9
) -> Tensor:
    """Hinton et al. distillation: ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE``.

    Args:
        student_logits, teacher_logits: ``[B, C]``.
        targets: ``LongTensor[B]`` hard labels for the cross-entropy term.
        temperature: softening temperature ``T`` (> 0).
        alpha: weight of the distillation term in ``[0, 1]``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    kl = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.log_softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * temperature**2 * kl + (1 - alpha) * F.cross_entropy(student_logits, targets)


def check_finite(loss: Tensor, what: str) -> Tensor:
    """Raise ``FloatingPointError`` naming ``what`` if ``loss`` is NaN or infinite."""
    if not torch.isfinite(loss).all():
        raise FloatingPointError(f"non-finite {what}: {loss.detach().cpu().tolist()}")
    return loss
