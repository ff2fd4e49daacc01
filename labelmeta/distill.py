"""Knowledge distillation on the same runner: a teacher's tempered predictions become a student's labels.

:func:`distill` trains a teacher with :func:`~labelmeta.runner.fit` (one-hot or learned labels,
as its config says), records its logits on every training sample, and trains a student with
:class:`TeacherLabels` and the ``distillation`` loss (``alpha T^2 KL + (1 - alpha) CE``).
The teacher is evaluated once, on the training inputs without augmentation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from .build import splits_for
from .config import Config
from .data import Splits, loader
from .labels import LabelParameterization
from .losses import LOSSES
from .records import Results
from .runner import fit, fit_learner
from .typing import Indices, SoftTargets, Targets


class TeacherLabels(LabelParameterization):
    """Fixed soft targets: a teacher's distribution at temperature ``T`` for every training sample.

    Args:
        targets: the annotations ``[N]`` (kept for the cross-entropy term and the label metrics).
        num_classes: ``C``.
        teacher_logits: ``[N, C]`` the teacher's logits on the training samples, in index order.
        temperature: ``T`` (> 0), the distillation temperature; default 4.
    """

    learnable = False

    def __init__(self, targets: Targets, num_classes: int, teacher_logits: Tensor, temperature: float = 4.0) -> None:
        super().__init__(targets, num_classes)
        if teacher_logits.shape != (self.num_samples, num_classes):
            raise ValueError(f"teacher logits must be [N={self.num_samples}, C={num_classes}], "
                             f"got {tuple(teacher_logits.shape)}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.register_buffer("probs", F.softmax(teacher_logits.detach().to(torch.get_default_dtype()) / temperature, 1))

    def soft_targets(self, indices: Indices, targets: Targets) -> SoftTargets:
        return self.probs[indices]


@torch.no_grad()
def logits_by_index(model: nn.Module, dataset: Dataset, num_samples: int, device: torch.device | str = "cpu") -> Tensor:
    """``[N, C]`` logits of ``model`` (eval mode) on every sample of an ``(x, y, index)`` dataset, by index."""
    was_training = model.training
    model.eval()
    out: Optional[Tensor] = None
    try:
        for x, _, idx in loader(dataset, 1000, shuffle=False):
            logits = model(x.to(device)).float().cpu()
            if out is None:
                out = torch.full((num_samples, logits.shape[1]), float("nan"))
            out[idx] = logits
    finally:
        model.train(was_training)
    if out is None or torch.isnan(out).any():
        raise ValueError("the dataset did not yield every index in [0, N)")
    return out


@dataclass
class DistillResults:
    """The teacher's and the student's :class:`~labelmeta.records.Results`."""

    teacher: Results
    student: Results


def distill(teacher: Config, student: Config, splits: Optional[Splits] = None) -> DistillResults:
    """Train ``teacher``, then a ``student`` on its tempered predictions, on the same data.

    Args:
        teacher: the teacher's run (its labels may be learned).
        student: the student's run; its ``labels``, ``loss`` and ``strategy`` are replaced by
            the teacher's labels, the ``distillation`` loss (its ``loss_options`` are that loss's:
            ``temperature``, ``alpha``) and no meta-learning.
        splits: shared data; default built from ``teacher``.
    """
    splits = splits if splits is not None else splits_for(teacher)
    learner, teacher_results = fit_learner(teacher, splits)
    logits = logits_by_index(learner.model, splits.train, len(splits.labels.noisy), teacher.device)
    return DistillResults(teacher_results, fit_student(logits, student, splits))


def fit_student(teacher_logits: Tensor, student: Config, splits: Splits) -> Results:
    """Train ``student`` on ``teacher_logits`` (``[N, C]``, by training index) with the distillation loss
    its ``loss_options`` configure: the second half of :func:`distill`, for several students of one teacher."""
    student = student.replace(loss="distillation", strategy="none", strategy_options={}, labels="one-hot",
                              label_options={})
    temperature = LOSSES.schema("distillation").resolve(student.loss_options)["temperature"]
    labels = TeacherLabels(splits.labels.noisy, splits.num_classes, teacher_logits, temperature)
    return fit(student, splits, labels)
