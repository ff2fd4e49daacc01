"""Label issues: which annotations a trained run distrusts, ranked, with the label it suggests.

Every run reports through one rule (:func:`find_label_issues`), whatever it learned:

* ``q_i``, the run's label distribution for sample ``i``: its learned soft label when the labels are
  learnable, otherwise the model's predicted probabilities;
* ``ω_i``, for a method that learns weights, the share of the sample's visits at which its weight
  was positive (on its annotation, for labels that count that themselves: ``detect-correct``): the
  meta-gradient's verdict over training rather than at one step, where a weight of zero is often a
  clean sample that does not help this meta batch (``benchmarks/weight_history.py`` measured the two:
  the history ranks far better);
* ``p_i``, the model's predicted probabilities for the sample at the end of training, where they differ
  from ``q_i`` (a run that learns labels);
* the suspicion score ``1 − mean(q_i[annotated_i], p_i[annotated_i], ω_i)``, over the trusts the run has:
  how much of the annotation it withdrew. Averaging continuous trusts breaks the ties a weight
  history alone leaves (many samples rejected at every visit); for cross-entropy it is cleanlab's
  *self-confidence* ranking;
* the suggested label ``argmax q_i`` (the corrected label, for a run that learns labels) and its probability;
* the flag: the suggested label differs from the annotation, or the sample's weight was zero at most
  of its visits (``ω_i < 1/2``).

Where the truth is known (synthetic noise), :meth:`LabelIssues.stats` gives the flags' precision,
recall and F1, the average precision of the ranking (the area under the precision–recall curve,
as scikit-learn's ``average_precision_score`` computes it) and its false-negative rate at a budget
equal to the noise rate (a reviewer who checks as many samples as there are wrong labels, most
suspect first: the share of wrong labels never shown). A run with ``output=RUN.json`` writes
its issues to ``RUN.issues.csv`` (:func:`issues_path`), most suspect first.
"""
from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from .metrics import annotation_flags

#: the CSV's columns, in order (``true`` is empty where the truth is unknown; the names where the dataset has
#: none). ``index`` is the sample's place in the training set's label table; ``source_index`` its place in the
#: dataset it came from (the row of a user's table, the image of CIFAR-10's training set), to find it there;
#: ``evidence`` the source indices of the clean samples that argue most against the annotation
#: (:mod:`labelmeta.evidence`; space-separated, most opposed first, empty where not computed)
COLUMNS = ("rank", "index", "annotated", "suggested", "suggested_probability", "score", "flagged", "true",
           "source_index", "annotated_name", "suggested_name", "evidence")
#: the columns of the CSVs written before ``source_index`` and the names, and before the evidence (read still)
COLUMNS_BEFORE_ISSUE_37 = COLUMNS[:8]
COLUMNS_BEFORE_ISSUE_38 = COLUMNS[:11]


@dataclass
class IssueStats:
    """How the flags and the ranking find the corrupted annotations (``nan`` where undefined:
    precision with nothing flagged, anything with nothing corrupted)."""

    precision: float
    recall: float
    f1: float
    average_precision: float  #: area under the ranking's precision–recall curve (step-wise, as scikit-learn's)
    flagged: int
    corrupted: int
    #: the share of the corrupted samples outside the ranking's top ``corrupted`` (the budget: the noise rate)
    false_negative_rate_at_budget: float = math.nan


@dataclass
class LabelIssues:
    """Per training sample (``[N]`` tensors, indexed like the label table).

    Attributes:
        score: suspicion in ``[0, 1]``; higher is more suspect.
        suggested: the run's label for the sample.
        suggested_probability: its probability.
        annotated: the annotation training saw.
        flagged: whether the run says the annotation is wrong.
        true: the truth, where known (synthetic noise); else ``None``.
        source_index: each sample's place in the dataset it came from (``Splits.source_index``); ``None``:
            its index.
        evidence: ``LongTensor[N, k]``, the source indices of the clean samples whose meta-gradient argues most
            against each annotation (:mod:`labelmeta.evidence`), ``-1`` where there is none; ``None``: not computed.
    """

    score: Tensor
    suggested: Tensor
    suggested_probability: Tensor
    annotated: Tensor
    flagged: Tensor
    true: Optional[Tensor] = None
    source_index: Optional[Tensor] = None
    evidence: Optional[Tensor] = None

    def __post_init__(self) -> None:
        n = self.score.shape
        named = [("suggested", self.suggested), ("suggested_probability", self.suggested_probability),
                 ("annotated", self.annotated), ("flagged", self.flagged)]
        named += [("true", self.true)] if self.true is not None else []
        named += [("source_index", self.source_index)] if self.source_index is not None else []
        for name, tensor in named:
            if tensor.shape != n:
                raise ValueError(f"{name} has shape {tuple(tensor.shape)}, the scores {tuple(n)}")
        if self.evidence is not None and (self.evidence.dim() != 2 or self.evidence.shape[0] != n[0]):
            raise ValueError(f"evidence has shape {tuple(self.evidence.shape)}, expected [{n[0]}, k]")

    def __len__(self) -> int:
        return self.score.numel()

    def subset(self, keep: Tensor) -> "LabelIssues":
        """The issues of the samples where ``keep`` (``BoolTensor[N]``) holds, in their order (e.g. to leave the
        trusted samples out of :meth:`stats`)."""
        if keep.dtype != torch.bool or keep.shape != self.score.shape:
            raise ValueError(f"keep must be a BoolTensor{list(self.score.shape)}, got {keep.dtype} {tuple(keep.shape)}")
        return dataclasses.replace(self, **{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[keep]
                                            for f in dataclasses.fields(self)})

    def ranking(self) -> Tensor:
        """Sample indices, most suspect first (ties in index order)."""
        return torch.sort(self.score.double(), descending=True, stable=True).indices

    def _corrupted(self) -> Tensor:
        if self.true is None:
            raise ValueError("the truth of these labels is unknown: no precision or recall can be computed")
        return self.annotated != self.true

    def precision_recall(self) -> Tuple[Tensor, Tensor, Tensor]:
        """``(precision, recall, thresholds)``: flagging every sample whose score is ``>= thresholds[j]``
        gives ``precision[j]`` and ``recall[j]``, thresholds decreasing (one per distinct score)."""
        corrupted = self._corrupted()
        order = self.ranking()
        score, hits = self.score.double()[order], corrupted[order].double()
        # the last position of each run of equal scores: a threshold flags all of a tie or none of it
        last = torch.cat([torch.nonzero(score[1:] != score[:-1]).flatten(), torch.tensor([len(score) - 1])])
        true_positives = hits.cumsum(0)[last]
        flagged = (last + 1).double()
        total = hits.sum()
        recall = true_positives / total if total > 0 else torch.full_like(true_positives, math.nan)
        return true_positives / flagged, recall, score[last]

    def stats(self) -> IssueStats:
        """Precision, recall and F1 of the flags; average precision of the ranking."""
        corrupted = self._corrupted()
        n_flagged, n_corrupted = int(self.flagged.sum()), int(corrupted.sum())
        hits = int((self.flagged & corrupted).sum())
        precision = hits / n_flagged if n_flagged else math.nan
        recall = hits / n_corrupted if n_corrupted else math.nan
        f1 = 2 * hits / (n_flagged + n_corrupted) if n_corrupted else math.nan
        if n_corrupted:
            p, r, _ = self.precision_recall()
            ap = float((torch.diff(r, prepend=torch.zeros(1, dtype=r.dtype)) * p).sum())
            missed = 1 - int(corrupted[self.ranking()[:n_corrupted]].sum()) / n_corrupted
        else:
            ap = missed = math.nan
        return IssueStats(precision, recall, f1, ap, n_flagged, n_corrupted, missed)

    def to_csv(self, path: str | Path, class_names: Optional[Sequence[str]] = None) -> None:
        """Write one row per sample, most suspect first (columns :data:`COLUMNS`; the class names where
        ``class_names`` gives them)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        name = (lambda c: class_names[c]) if class_names else (lambda c: "")  # noqa: E731
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for rank, i in enumerate(self.ranking().tolist(), start=1):
                annotated, suggested = int(self.annotated[i]), int(self.suggested[i])
                writer.writerow([rank, i, annotated, suggested,
                                 f"{float(self.suggested_probability[i]):.6g}", f"{float(self.score[i]):.8g}",
                                 int(self.flagged[i]), "" if self.true is None else int(self.true[i]),
                                 i if self.source_index is None else int(self.source_index[i]),
                                 name(annotated), name(suggested), self.evidence_text(i)])

    def evidence_text(self, i: int) -> str:
        """Sample ``i``'s evidence as the CSV writes it: space-separated source indices (empty if none)."""
        if self.evidence is None:
            return ""
        return " ".join(str(j) for j in self.evidence[i].tolist() if j >= 0)

    @classmethod
    def from_csv(cls, path: str | Path) -> "LabelIssues":
        """Read what :meth:`to_csv` wrote; ``ValueError`` naming the file if it is not such a file."""
        path = Path(path)
        try:
            with open(path, newline="") as f:
                rows = list(csv.reader(f))
        except FileNotFoundError:
            raise ValueError(f"{str(path)!r} does not exist") from None
        if not rows or tuple(rows[0]) not in (COLUMNS, COLUMNS_BEFORE_ISSUE_38, COLUMNS_BEFORE_ISSUE_37):
            raise ValueError(f"{str(path)!r} is not a label-issues CSV (expected the columns {', '.join(COLUMNS)})")
        body = rows[1:]
        try:
            index = torch.tensor([int(r[1]) for r in body], dtype=torch.long)
            if sorted(index.tolist()) != list(range(len(body))):
                raise ValueError("the indices are not 0..N-1, each once")
            order = torch.argsort(index)
            column = lambda j, kind: torch.tensor([kind(r[j]) for r in body])[order]  # noqa: E731
            truth = [r[7] for r in body]
            true = None if all(t == "" for t in truth) else torch.tensor([int(t) for t in truth])[order]
            source = column(8, int) if len(rows[0]) > 8 else None
            evidence = _read_evidence([r[11] for r in body], order) if len(rows[0]) > 11 else None
            return cls(score=column(5, float), suggested=column(3, int), suggested_probability=column(4, float),
                       annotated=column(2, int), flagged=column(6, int).bool(), true=true, source_index=source,
                       evidence=evidence)
        except (ValueError, IndexError) as err:
            raise ValueError(f"{str(path)!r} has a malformed row ({err})") from None


def _read_evidence(cells: Sequence[str], order: Tensor) -> Optional[Tensor]:
    """The evidence column's cells (space-separated indices) as ``[N, k]``, ``-1``-padded, in ``order``;
    ``None`` if every cell is empty (not computed)."""
    rows = [[int(j) for j in cell.split()] for cell in cells]
    k = max((len(r) for r in rows), default=0)
    if k == 0:
        return None
    return torch.tensor([r + [-1] * (k - len(r)) for r in rows], dtype=torch.long)[order]


def find_label_issues(annotated: Tensor, distribution: Tensor, kept: Optional[Tensor] = None,
                      true: Optional[Tensor] = None, source_index: Optional[Tensor] = None,
                      probabilities: Optional[Tensor] = None) -> LabelIssues:
    """The rule of this module's docstring.

    Args:
        annotated: ``LongTensor[N]``, the annotations.
        distribution: ``[N, C]`` rows summing to one: the learned soft labels, or the model's
            probabilities for a method without learned labels.
        kept: ``[N]`` in ``[0, 1]``, for a method that learns weights: the share of each sample's
            visits at which its weight was positive.
        true: ``LongTensor[N]``, the truth where known.
        source_index: ``LongTensor[N]``, each sample's place in the dataset it came from.
        probabilities: ``[N, C]``, the model's predicted probabilities, for a run whose ``distribution`` is
            its learned labels (a second trust in the annotation, and the ties' breaker).
    """
    if distribution.dim() != 2 or distribution.shape[0] != annotated.numel():
        raise ValueError(f"distribution must be [N={annotated.numel()}, C], got {tuple(distribution.shape)}")
    distribution, annotated = distribution.detach().double().cpu(), annotated.cpu().long()
    probability, suggested = distribution.max(1)
    trusts = [distribution.gather(1, annotated[:, None]).squeeze(1)]
    if probabilities is not None:
        if probabilities.shape != distribution.shape:
            raise ValueError(f"probabilities must be {tuple(distribution.shape)} like the distribution, "
                             f"got {tuple(probabilities.shape)}")
        trusts.append(probabilities.detach().double().cpu().gather(1, annotated[:, None]).squeeze(1))
    if kept is not None:
        kept = kept.detach().double().cpu()
        if kept.shape != annotated.shape or not bool(((kept >= 0) & (kept <= 1)).all()):
            raise ValueError(f"kept must be [N={annotated.numel()}] shares in [0, 1], got shape {tuple(kept.shape)}"
                             + (f" and values in [{float(kept.min()):g}, {float(kept.max()):g}]" if kept.numel() else ""))
        trusts.append(kept)
    trust = torch.stack(trusts).mean(0)
    return LabelIssues(score=(1 - trust).clamp(0, 1), suggested=suggested, suggested_probability=probability,
                       annotated=annotated, flagged=annotation_flags(suggested, annotated, kept),
                       true=None if true is None else true.cpu().long(),
                       source_index=None if source_index is None else source_index.cpu().long())


def issues_path(results_path: str | Path) -> Path:
    """Where a run whose results go to ``results_path`` writes its label issues: ``RUN.json`` -> ``RUN.issues.csv``."""
    path = Path(results_path)
    return path.with_name(path.stem + ".issues.csv")


def read_label_issues(results_path: str | Path) -> LabelIssues:
    """The label issues a run wrote beside its results (``RUN.json`` -> ``RUN.issues.csv``)."""
    path = issues_path(results_path)
    if not path.exists():
        raise ValueError(f"{str(path)!r} does not exist: label issues are written by runs with an output file "
                         f"(labelmeta train --output {Path(results_path).name})")
    return LabelIssues.from_csv(path)
