"""Evaluation metrics."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import Tensor, nn


@torch.no_grad()
def accuracy(model: nn.Module, loader: Iterable, device: torch.device | str = "cpu") -> float:
    """Top-1 accuracy of ``model`` (in eval mode) over ``loader`` of ``(x, y, index)`` batches."""
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y, _ in loader:
        x, y = x.to(device), y.to(device)
        correct += (model(x).argmax(dim=1) == y).sum().item()
        total += y.numel()
    model.train(was_training)
    if total == 0:
        raise ValueError("cannot compute accuracy over an empty loader")
    return correct / total


@dataclass
class CorrectionStats:
    """How the learned hard labels relate to the annotations and the truth.

    Attributes:
        corrected: fraction of corrupted samples whose learned hard label is the true class
            (``nan`` when nothing is corrupted).
        clean_broken: fraction of clean samples whose learned hard label left the (true)
            annotation.
        label_accuracy: fraction of all samples whose learned hard label is the true class.
    """

    corrected: float
    clean_broken: float
    label_accuracy: float


def label_correction(hard_labels: Tensor, annotated: Tensor, true: Tensor) -> CorrectionStats:
    """Compare ``LongTensor[N]`` learned hard labels with the annotations and the truth."""
    if not (hard_labels.shape == annotated.shape == true.shape):
        raise ValueError(
            f"hard labels {tuple(hard_labels.shape)}, annotations {tuple(annotated.shape)} and true "
            f"targets {tuple(true.shape)} must have the same shape"
        )
    hard_labels, annotated, true = hard_labels.cpu(), annotated.cpu(), true.cpu()
    corrupted = annotated != true
    right = hard_labels == true

    def frac(mask: Tensor) -> float:
        return mask.float().mean().item() if mask.numel() else float("nan")

    return CorrectionStats(
        corrected=frac(right[corrupted]),
        clean_broken=frac(~right[~corrupted]),
        label_accuracy=frac(right),
    )


@dataclass
class DetectionStats:
    """How well a method's "this annotation is wrong" flags find the corrupted samples.

    Attributes:
        precision: fraction of flagged samples that are corrupted (``nan`` when none is flagged).
        recall: fraction of corrupted samples that are flagged (``nan`` when none is corrupted).
    """

    precision: float
    recall: float


def noise_detection(flagged: Tensor, annotated: Tensor, true: Tensor) -> DetectionStats:
    """Precision and recall of ``BoolTensor[N]`` flags against the truth (``annotated != true``)."""
    if not (flagged.shape == annotated.shape == true.shape):
        raise ValueError(
            f"flags {tuple(flagged.shape)}, annotations {tuple(annotated.shape)} and true targets "
            f"{tuple(true.shape)} must have the same shape"
        )
    flagged, corrupted = flagged.cpu().bool(), (annotated != true).cpu()
    hits = (flagged & corrupted).sum().item()
    n_flagged, n_corrupted = flagged.sum().item(), corrupted.sum().item()
    return DetectionStats(precision=hits / n_flagged if n_flagged else float("nan"),
                          recall=hits / n_corrupted if n_corrupted else float("nan"))
