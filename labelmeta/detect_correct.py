"""Detect, then correct: per-sample weights judge the annotations, labels learn only where they are rejected.

The annotations are detected and corrected by two mechanisms, each where it is strong
(``benchmarks/detect_correct.py`` measured the split against one mechanism doing both):

* **Detection** is the weight history of learning to reweight on the *annotations*: every sample is
  trained on its one-hot annotation, the strategy's per-sample weights say at each visit whether it
  helps the clean meta batch, and once the first ``detect_fraction`` of the run is over, a sample whose
  weight was zero at most of its annotated visits is *rejected*. One-hot annotations make this a far better
  detector than soft labels do (``weight_history.md``).
* **Correction** happens only on the rejected samples: their target becomes a learned label,
  ``softmax(log e_i + z_i)``, the model's running prediction ``e_i`` of the sample (a temporal ensemble
  over its visits) corrected by a per-sample row ``z_i`` that the label hypergradient learns. The
  strategy's weights then decide whether the learned label helps the meta batch, so a rejected sample
  re-enters training when its new label does. The samples the weights keep are never relabelled. (Measured:
  the correction is the running prediction's; with ``z`` frozen the figures do not move, ``detect_correct.md``.)

A rejected sample's *hard* label (what :meth:`hard_labels` reports, and the label-quality figures
count as corrected or broken) leaves its annotation only where the learned label is confident, its top
class at probability ``>= threshold``; below it the sample stays flagged for review with its annotation.
"""
from __future__ import annotations

import warnings
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .labels import LABELS, _RunningPredictions
from .options import check_range
from .typing import Indices, SoftTargets, Targets


@LABELS.register("detect-correct")
class DetectCorrect(_RunningPredictions):
    """Weights detect on the annotations; the rejected samples' labels learn (module docstring).

    Needs a strategy that learns per-sample weights *and* labels (the default ``one-step-reweight``):
    without weights no sample is ever rejected and the labels are the annotations.

    Args:
        threshold: probability the learned label's top class needs before a rejected sample's hard label
            leaves its annotation, in ``[0, 1)``; default 0.6.
        detect_fraction: the share of the run (in epochs) that only detects: no sample is rejected before it
            ends, so that the verdict rests on many visits, most of them after the model's early phase,
            in ``[0, 1)``; default 0.9.
        momentum: running-prediction momentum per visit of a sample, in ``[0, 1)``; default 0.7.
        weighting: how the model step weights the samples a meta step finds helpful: ``"binary"``, each the
            same (a filter: the weights detect, the model trains on what they keep), or ``"proportional"``, by
            how much it helps (the strategy's own weights), which concentrated whole steps on a few samples of
            large one-hot loss and diverged on a small table (tutorial 06); default ``"binary"``.
    """

    def __init__(self, targets: Targets, num_classes: int, *, threshold: float = 0.6, detect_fraction: float = 0.9,
                 momentum: float = 0.7, weighting: Literal["binary", "proportional"] = "binary") -> None:
        super().__init__(targets, num_classes)
        self.threshold = check_range("threshold", threshold, 0.0, 1.0)
        self.detect_fraction = check_range("detect_fraction", detect_fraction, 0.0, 1.0)
        if weighting not in ("binary", "proportional"):
            raise ValueError(f"weighting must be 'binary' or 'proportional', got {weighting!r}")
        self.weighting = weighting
        self.epochs: Optional[int] = None  # the run's, told by set_epochs (fit does; a loop of one's own must)
        self.register_buffer("observed", torch.zeros((), dtype=torch.long))  # samples observed: the epoch
        self._init_ensemble(momentum)
        self.logits = nn.Parameter(torch.zeros(self.num_samples, num_classes))
        # visits on the annotation with a weight, and those among them at weight zero
        self.register_buffer("visits", torch.zeros(self.num_samples))
        self.register_buffer("rejections", torch.zeros(self.num_samples))

    def rejected(self, indices: Optional[Indices] = None) -> Tensor:
        """``BoolTensor``: whether the samples (all, or ``indices``) are rejected: weight zero at most of their
        annotated visits, once the detection phase is over."""
        visits = self.visits if indices is None else self.visits[indices]
        rejections = self.rejections if indices is None else self.rejections[indices]
        return (visits > 0) & (2 * rejections > visits) & self._detected()  # kept() < 1/2

    def detected(self) -> bool:
        """Whether the detection phase is over (``detect_fraction`` of the run's epochs observed)."""
        return bool(self._detected())

    def _detected(self) -> Tensor:
        # a 0-d tensor, not a Python bool: every soft_targets call asks, and reading the count would wait for
        # the device at every step
        return self.observed >= self.detect_fraction * (self.epochs or 1) * self.num_samples

    def set_epochs(self, epochs: int) -> None:
        self.epochs = epochs

    @torch.no_grad()
    def observe(self, indices: Indices, logits: Tensor) -> None:
        super().observe(indices, logits)
        self.observed += indices.numel()

    def kept(self) -> Tensor:
        """``[N]``: the share of each sample's annotated visits at which its weight was positive (1 if none):
        the weights' verdict on the annotation, not on the learned label that replaced it."""
        return 1 - self.rejections / self.visits.clamp_min(1)

    def learned(self, indices: Indices) -> SoftTargets:
        """``[B, C]``: the learned labels of ``indices``, ``softmax(log e_i + z_i)``."""
        return F.softmax(self.log_ensemble(indices) + self.logits[indices], dim=1)

    def soft_targets(self, indices: Indices, targets: Targets) -> SoftTargets:
        annotated = F.one_hot(targets, self.num_classes).to(self.logits.dtype)
        rejected = self.rejected(indices)[:, None]
        return torch.where(rejected, self.learned(indices), annotated)

    @torch.no_grad()
    def observe_weights(self, indices: Indices, weights: Tensor) -> None:
        if self.epochs is None:
            warnings.warn("detect-correct labels were not told the run's length (labels.set_epochs(epochs); fit does): "
                          "their detection phase ends after the first epoch", stacklevel=2)
            self.epochs = 1
        annotated = ~self.rejected(indices)  # a learned label's weight says nothing about the annotation
        self.visits.index_add_(0, indices[annotated], torch.ones_like(weights[annotated], dtype=self.visits.dtype))
        self.rejections.index_add_(0, indices[annotated], (weights[annotated] == 0).to(self.rejections.dtype))

    def model_weights(self, indices: Indices, weights: Tensor) -> Optional[Tensor]:
        """``"binary"``: every sample the meta step found helpful the same weight; ``"proportional"``: ``None``."""
        return (weights > 0).to(weights.dtype) if self.weighting == "binary" else None

    @torch.no_grad()
    def plain_weights(self, indices: Indices) -> Optional[Tensor]:
        """The weights' verdict so far, for a model step without a meta step: 0 for a sample whose annotation
        the weights rejected at most of its visits (during detection too) unless its learned label has
        replaced the annotation and is confident (top class at ``>= threshold``), else 1."""
        visits, rejections = self.visits[indices], self.rejections[indices]
        doubted = (visits > 0) & (2 * rejections > visits)
        replaced = self.rejected(indices)
        confident = self.learned(indices).max(1).values >= self.threshold
        keep = ~doubted | (replaced & confident)
        return None if bool(keep.all()) else keep.to(self.logits.dtype)  # None: a plain batch mean

    @torch.no_grad()
    def hard_labels(self) -> Tensor:
        table = self.table()
        probability, top = table.max(1)
        return torch.where(self.rejected() & (probability >= self.threshold), top, self.targets)
