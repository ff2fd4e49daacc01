"""Evaluation metrics."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Tuple

import torch
from torch import Tensor, nn

from .distributed import ONE_PROCESS, Processes


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable, device: torch.device | str = "cpu",
            processes: Processes = ONE_PROCESS) -> Tuple[Tensor, Tensor]:
    """``(logits [N, C], targets [N])`` of ``model`` in eval mode over ``loader`` of ``(x, y, index)`` batches.

    ``processes``: each read its part of the samples (a loader's ``part``); every process gets them all,
    in rank order."""
    was_training = model.training
    model.eval()
    logits, targets = [], []
    try:
        for x, y, _ in loader:
            logits.append(model(x.to(device)).float().cpu())
            targets.append(y.cpu())
    finally:
        model.train(was_training)
    if not targets:
        raise ValueError("cannot evaluate over an empty loader")
    return processes.gather(torch.cat(logits)), processes.gather(torch.cat(targets))


def accuracy(model: nn.Module, loader: Iterable, device: torch.device | str = "cpu") -> float:
    """Top-1 accuracy of ``model`` (in eval mode) over ``loader`` of ``(x, y, index)`` batches."""
    logits, targets = predict(model, loader, device)
    return (logits.argmax(1) == targets).sum().item() / len(targets)


def expected_calibration_error(probs: Tensor, targets: Tensor, bins: int = 15) -> float:
    """ECE: the confidence-weighted gap ``sum_b |B_b|/N * |acc(B_b) - conf(B_b)|`` over ``bins``
    equal-width bins of the top-class confidence (Guo et al., 2017)."""
    if probs.dim() != 2 or probs.shape[0] != targets.shape[0]:
        raise ValueError(f"probs must be [N, C] and targets [N], got {tuple(probs.shape)} and {tuple(targets.shape)}")
    confidence, predicted = probs.max(1)
    correct = (predicted == targets).float()
    edges = torch.linspace(0, 1, bins + 1)
    which = torch.bucketize(confidence, edges[1:-1], right=True)  # bin b holds (edges[b], edges[b+1]]
    ece = torch.zeros(())
    for b in range(bins):
        members = which == b
        if members.any():
            ece += members.float().mean() * (correct[members].mean() - confidence[members].mean()).abs()
    return ece.item()


def evaluate(model: nn.Module, loader: Iterable, device: torch.device | str = "cpu",
             processes: Processes = ONE_PROCESS) -> Dict[str, float]:
    """Test accuracy and expected calibration error in one pass (of ``processes``, each over its part)."""
    logits, targets = predict(model, loader, device, processes)
    return {"accuracy": (logits.argmax(1) == targets).sum().item() / len(targets),
            "ece": expected_calibration_error(torch.softmax(logits, 1), targets)}


@dataclass
class CorrectionStats:
    """How the learned hard labels relate to the annotations and the truth.

    Attributes:
        corrected: fraction of corrupted samples whose learned hard label is the true class
            (``nan`` when nothing is corrupted).
        clean_broken: fraction of clean samples whose learned hard label left the (true)
            annotation.
    """

    corrected: float
    clean_broken: float


def label_correction(hard_labels: Tensor, annotated: Tensor, true: Tensor) -> CorrectionStats:
    """Compare ``LongTensor[N]`` learned hard labels with the annotations and the truth."""
    _same_shape(("hard labels", hard_labels), ("annotations", annotated), ("true targets", true))
    hard_labels, annotated, true = hard_labels.cpu(), annotated.cpu(), true.cpu()
    corrupted = annotated != true
    right = hard_labels == true

    def frac(mask: Tensor) -> float:
        return mask.float().mean().item() if mask.numel() else float("nan")

    return CorrectionStats(
        corrected=frac(right[corrupted]),
        clean_broken=frac(~right[~corrupted]),
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
    _same_shape(("flags", flagged), ("annotations", annotated), ("true targets", true))
    flagged, corrupted = flagged.cpu().bool(), (annotated != true).cpu()
    hits = (flagged & corrupted).sum().item()
    n_flagged, n_corrupted = flagged.sum().item(), corrupted.sum().item()
    return DetectionStats(precision=hits / n_flagged if n_flagged else float("nan"),
                          recall=hits / n_corrupted if n_corrupted else float("nan"))


def _same_shape(*named: Tuple[str, Tensor]) -> None:
    """``ValueError`` naming every shape unless the tensors all have the same one."""
    if len({tuple(t.shape) for _, t in named}) > 1:
        shapes = [f"{name} {tuple(t.shape)}" for name, t in named]
        raise ValueError(f"{', '.join(shapes[:-1])} and {shapes[-1]} must have the same shape")


def annotation_flags(hard_labels: Tensor, annotated: Tensor, kept: Optional[Tensor] = None) -> Tensor:
    """``BoolTensor[N]``: the samples a method says are mislabelled: its label left the annotation, or
    (a method that learns weights; ``kept [N]``, the share of each sample's visits at which its weight
    was positive) it gave the sample zero weight at most of its visits."""
    flagged = hard_labels.cpu() != annotated.cpu()
    if kept is not None:
        flagged |= kept.cpu() < 0.5
    return flagged


def label_quality(labels, annotations, kept: Optional[Tensor] = None) -> Dict[str, float]:
    """What a method says about the annotations, as :class:`~labelmeta.records.EpochRecord` fields.

    Learned labels (``labels.learnable``) give their corrections (:func:`label_correction`); a method
    that learns labels or weights (``kept [N]``, each sample's share of visits with a positive weight) gets
    the precision and recall (:func:`noise_detection`) of its flags (:func:`annotation_flags`); other
    methods get nothing (their flags need the model's predictions on the training set:
    :mod:`labelmeta.label_issues`, at the end of a run), and so does every run whose truth is unknown.

    Args:
        labels: the run's :class:`~labelmeta.labels.LabelParameterization`.
        annotations: the training set's :class:`~labelmeta.noise.NoisyLabels` (annotated and true); its trusted
            samples (the clean set added to training) are left out of every figure.
        kept: per-sample shares of visits with a positive weight, for a method that learns weights; else ``None``.
    """
    noisy, true = annotations.noisy, annotations.true
    out: Dict[str, float] = {}
    if true is None:  # a user's own labels: nothing to measure against
        return out
    judged = annotations.judged  # the clean samples added to training are not the method's to judge
    noisy, true = noisy[judged], true[judged]
    if labels.learnable:
        hard = labels.hard_labels().cpu()[judged]
        quality = label_correction(hard, noisy, true)
        out.update(corrected=quality.corrected, clean_broken=quality.clean_broken)
    elif kept is not None:
        hard = noisy
    else:
        return out
    detection = noise_detection(annotation_flags(hard, noisy, None if kept is None else kept.cpu()[judged]), noisy, true)
    out.update(detect_precision=detection.precision, detect_recall=detection.recall)
    return out
