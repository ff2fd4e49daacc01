"""A dataset's label health from a run's label issues: which classes are noisy, and into what.

:func:`label_health` reads the per-sample :class:`~labelmeta.label_issues.LabelIssues` of a finished
run (``RUN.issues.csv``) into a class-level view, as cleanlab's health summary gives one:

* the **estimated noise matrix**: counts of samples by *annotated* class (rows) and the run's
  *suggested* class (columns); row-normalised, row ``a`` estimates where the samples annotated ``a``
  really belong;
* where the truth is known, the **true noise matrix** in the same layout: annotated class (rows) ×
  true class (columns), so that the two compare cell by cell. (Its transpose, each row normalised,
  is the transition matrix ``T[true, annotated]`` of :mod:`labelmeta.noise` and ``--noise-matrix``.)
* the **most confused pairs**: annotated ``a``, suggested ``b ≠ a``, by count;
* per annotated class, the **estimated noise rate** (the share whose suggested label differs from the
  annotation: ``1 −`` the row-normalised diagonal), the **flagged** share (the flags also count
  samples whose weight was zero at most visits, so they may exceed the estimated rate), the **true
  noise rate** (the share whose truth differs) and the **label quality** (the mean of
  ``1 − score``: how much of the class's annotations the run kept, on average).

Every figure of the truth is ``None`` where it is unknown (a user's own labels). A class with no
sample annotated with it has ``nan`` rates and an all-``nan`` normalised row.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .label_issues import LabelIssues
from .records import Results

__all__ = ["ConfusedPair", "LabelHealth", "label_health", "format_health", "classes_of_run"]


@dataclass(frozen=True)
class ConfusedPair:
    """Samples annotated ``annotated`` whose suggested label is ``suggested`` (``count``), and, where the
    truth is known, those annotated ``annotated`` whose truth is ``suggested`` (``true_count``)."""

    annotated: int
    suggested: int
    count: int
    true_count: Optional[int] = None


@dataclass
class LabelHealth:
    """Class-level label health (see the module's docstring); build it with :func:`label_health`.

    Attributes:
        estimated_counts: ``LongTensor[C, C]``, samples by annotated class (rows) and suggested class.
        flagged_counts: ``LongTensor[C]``, flagged samples by annotated class.
        quality: ``DoubleTensor[C]``, mean ``1 − score`` by annotated class (``nan``: no sample).
        class_names: a name per class.
        true_counts: ``LongTensor[C, C]``, samples by annotated class (rows) and true class; ``None``
            where the truth is unknown.
    """

    estimated_counts: Tensor
    flagged_counts: Tensor
    quality: Tensor
    class_names: Tuple[str, ...]
    true_counts: Optional[Tensor] = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def samples(self) -> Tensor:
        """``LongTensor[C]``: samples annotated with each class."""
        return self.estimated_counts.sum(1)

    @property
    def estimated_matrix(self) -> Tensor:
        """``[C, C]``: the estimated counts, each row normalised (``nan`` rows for empty classes)."""
        return _normalise_rows(self.estimated_counts)

    @property
    def true_matrix(self) -> Optional[Tensor]:
        """``[C, C]``: the true counts, each row normalised; ``None`` where the truth is unknown."""
        return None if self.true_counts is None else _normalise_rows(self.true_counts)

    @property
    def estimated_noise_rate(self) -> Tensor:
        """``[C]``: per annotated class, the share whose suggested label differs from the annotation."""
        return 1 - self.estimated_matrix.diagonal()

    @property
    def flagged_rate(self) -> Tensor:
        """``[C]``: per annotated class, the share flagged."""
        return _share(self.flagged_counts, self.samples)

    @property
    def true_noise_rate(self) -> Optional[Tensor]:
        """``[C]``: per annotated class, the share whose truth differs; ``None`` where unknown."""
        return None if self.true_matrix is None else 1 - self.true_matrix.diagonal()

    @property
    def overall_estimated_noise(self) -> float:
        """The share of all samples whose suggested label differs from the annotation."""
        return _overall_off_diagonal(self.estimated_counts)

    @property
    def overall_flagged(self) -> float:
        return float(self.flagged_counts.sum()) / max(int(self.samples.sum()), 1)

    @property
    def overall_true_noise(self) -> Optional[float]:
        """The share of all samples whose annotation is wrong; ``None`` where the truth is unknown."""
        return None if self.true_counts is None else _overall_off_diagonal(self.true_counts)

    @property
    def overall_quality(self) -> float:
        """The mean of ``1 − score`` over all samples (each class weighted by its samples)."""
        n = self.samples.double()
        kept = n > 0
        return float((self.quality[kept] * n[kept]).sum() / n.sum()) if bool(kept.any()) else math.nan

    def confused_pairs(self, top: Optional[int] = 10) -> List[ConfusedPair]:
        """The pairs (annotated ``a``, suggested ``b ≠ a``) with a positive count, the largest first (ties:
        by ``a``, then ``b``); the ``top`` first (``None``: all)."""
        counts = self.estimated_counts.clone()
        counts.fill_diagonal_(0)
        pairs = [(int(counts[a, b]), a, b) for a, b in torch.nonzero(counts).tolist()]
        pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
        return [ConfusedPair(a, b, n, None if self.true_counts is None else int(self.true_counts[a, b]))
                for n, a, b in pairs[:top]]


def label_health(issues: LabelIssues, num_classes: int, class_names: Optional[Sequence[str]] = None) -> LabelHealth:
    """The class-level view of ``issues`` over ``num_classes`` classes.

    Args:
        issues: a run's label issues (``issues.true`` ``None`` where the truth is unknown).
        num_classes: ``C``; every annotated, suggested and true label must lie in ``[0, C)``.
        class_names: ``C`` names (default: the class numbers).

    Raises:
        ValueError: a label outside ``[0, C)``, or not ``C`` class names.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    names = tuple(str(n) for n in class_names) if class_names is not None else tuple(str(c) for c in range(num_classes))
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    columns = [("annotated", issues.annotated), ("suggested", issues.suggested)]
    columns += [("true", issues.true)] if issues.true is not None else []
    for name, labels in columns:
        outside = labels[(labels < 0) | (labels >= num_classes)]
        if outside.numel():
            raise ValueError(f"{name} label {int(outside[0])} is outside the {num_classes} classes [0, {num_classes})")
    annotated = issues.annotated.long()
    samples = torch.bincount(annotated, minlength=num_classes)
    trust = torch.bincount(annotated, weights=1 - issues.score.double(), minlength=num_classes)
    return LabelHealth(
        estimated_counts=_joint(annotated, issues.suggested.long(), num_classes),
        flagged_counts=torch.bincount(annotated[issues.flagged.bool()], minlength=num_classes),
        quality=_share(trust, samples),
        class_names=names,
        true_counts=None if issues.true is None else _joint(annotated, issues.true.long(), num_classes))


def classes_of_run(run: Optional[Results], issues: LabelIssues) -> Tuple[int, Optional[Tuple[str, ...]]]:
    """The class count (and names) of the run that wrote ``issues``, for :func:`label_health`.

    Both as the run recorded them; for a run stored before ``Results`` recorded them, the learned label
    matrix's size where the run stored one, else the largest label in ``issues`` plus one (a last
    class that no sample is annotated with, suggested or truly belongs to is then not counted); no names.
    """
    if run is not None and run.num_classes is not None:
        return run.num_classes, None if run.class_names is None else tuple(run.class_names)
    if run is not None and run.label_matrix is not None:
        return len(run.label_matrix), None
    labels = [issues.annotated, issues.suggested] + ([issues.true] if issues.true is not None else [])
    return max(int(t.max()) for t in labels) + 1 if len(issues) else 1, None


def format_health(health: LabelHealth, top: int = 10, max_matrix_classes: int = 20) -> str:
    """The report ``labelmeta issues RUN.json --summary`` prints: the overall figures, a table per
    annotated class, the ``top`` most confused pairs, and the row-normalised noise matrices (for at
    most ``max_matrix_classes`` classes; wider ones are left to ``labelmeta plot``). Figures of the
    truth appear only where it is known."""
    known = health.true_counts is not None
    n = int(health.samples.sum())
    lines = [f"label health: {n} samples, {health.num_classes} classes",
             f"estimated noise {_pct(health.overall_estimated_noise)} (suggested label ≠ annotation), "
             f"flagged {_pct(health.overall_flagged)}"
             + (f", true noise {_pct(health.overall_true_noise)}" if known else "")
             + f"; label quality {health.overall_quality:.3f} (mean 1 − score)"]
    if health.overall_flagged > 2 * health.overall_estimated_noise + 0.01:
        # a weight-learning run flags samples it rejects without naming another class: say so, so that the
        # matrix below is not read as the whole estimate
        lines.append("most flagged samples keep their annotation as the suggested label (the run rejected them "
                     "without naming another class): the estimated matrix below counts only the relabelled ones")
    lines.append("")
    width = max(5, *(len(c) for c in health.class_names))
    lines.append(f"{'class':<{width}}  samples  est. noise  flagged" + ("  true noise" if known else "") + "  quality")
    true_rate = health.true_noise_rate
    for c, name in enumerate(health.class_names):
        row = (f"{name:<{width}}  {int(health.samples[c]):7d}  {_pct(health.estimated_noise_rate[c]):>10}  "
               f"{_pct(health.flagged_rate[c]):>7}")
        row += f"  {_pct(true_rate[c]):>10}" if true_rate is not None else ""
        lines.append(row + f"  {_num(health.quality[c]):>7}")
    pairs = health.confused_pairs(top)
    lines += ["", f"the {len(pairs)} most confused pairs (annotated -> suggested):" if pairs
              else "the most confused pairs (annotated -> suggested): none"]
    if pairs:
        named = max(width, len("annotated"))
        lines.append(f"{'annotated':<{named}}  {'suggested':<{named}}  count" + ("  true count" if known else ""))
        for p in pairs:
            row = f"{health.class_names[p.annotated]:<{named}}  {health.class_names[p.suggested]:<{named}}  {p.count:5d}"
            lines.append(row + (f"  {p.true_count:10d}" if p.true_count is not None else ""))
    if health.num_classes > max_matrix_classes:
        lines += ["", f"noise matrices: {health.num_classes} classes, too many to print (labelmeta plot draws them)"]
        return "\n".join(lines)
    matrices = [("estimated noise matrix (rows: annotated, columns: suggested; % of the row)", health.estimated_matrix)]
    if known:
        matrices.append(("true noise matrix (rows: annotated, columns: true; % of the row)", health.true_matrix))
    for title, matrix in matrices:
        lines += ["", title, " " * width + "".join(f"  {name[:5]:>5}" for name in health.class_names)]
        for c, name in enumerate(health.class_names):
            lines.append(f"{name:<{width}}" + "".join(f"  {_cell(v):>5}" for v in matrix[c].tolist()))
    return "\n".join(lines)


def _joint(rows: Tensor, columns: Tensor, num_classes: int) -> Tensor:
    return torch.bincount(rows * num_classes + columns, minlength=num_classes ** 2).view(num_classes, num_classes)


def _share(part: Tensor, whole: Tensor) -> Tensor:
    """``part / whole`` in float64, ``nan`` where ``whole`` is 0 (a class no sample is annotated with)."""
    whole = whole.double()
    return torch.where(whole > 0, part.double() / whole.clamp(min=1), torch.full_like(whole, math.nan))


def _normalise_rows(counts: Tensor) -> Tensor:
    return _share(counts, counts.sum(1, keepdim=True).expand_as(counts))


def _overall_off_diagonal(counts: Tensor) -> float:
    total = int(counts.sum())
    return (total - int(counts.diagonal().sum())) / total if total else math.nan


def _pct(value) -> str:
    value = float(value)
    return "–" if math.isnan(value) else f"{100 * value:.1f}%"


def _num(value) -> str:
    value = float(value)
    return "–" if math.isnan(value) else f"{value:.3f}"


def _cell(value: float) -> str:
    return "–" if math.isnan(value) else f"{100 * value:.1f}"
