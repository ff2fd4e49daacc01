"""What a run measured: one :class:`EpochRecord` per epoch, and the run's :class:`Results`."""
from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional


@dataclass
class EpochRecord:
    """One epoch's figures. The label-quality fields are ``None`` for a method that has no such figure
    (``corrected`` needs learned labels; ``detect_*`` a method that flags samples)."""

    epoch: int
    train_loss: float
    meta_loss: Optional[float]          #: mean meta loss of the epoch's meta steps (None: none taken)
    seconds: float
    test_accuracy: float
    test_ece: float                     #: expected calibration error on the test set
    corrected: Optional[float] = None   #: corrupted annotations whose learned hard label is the truth
    clean_broken: Optional[float] = None  #: clean annotations whose learned hard label left them
    detect_precision: Optional[float] = None  #: of the method's "corrupted" flags, see ``noise_detection``
    detect_recall: Optional[float] = None
    #: accuracy on the training samples against their annotations (eval mode, as the training loader
    #: serves them), measured at the last epoch only: with ``test_accuracy``, the run's train-test gap
    train_accuracy: Optional[float] = None


@dataclass
class Results:
    """What :func:`~labelmeta.runner.fit` measured. ``history`` holds one record per epoch."""

    config: Dict[str, Any]
    history: List[EpochRecord] = field(default_factory=list)
    best_accuracy: float = float("nan")
    last_accuracy: float = float("nan")
    best_epoch: int = -1
    ece: float = float("nan")  #: expected calibration error on the test set, last epoch
    #: accuracy on the training samples against their annotations, last epoch (see ``EpochRecord``)
    train_accuracy: float = float("nan")
    corrected: float = float("nan")
    clean_broken: float = float("nan")
    detect_precision: float = float("nan")
    detect_recall: float = float("nan")
    #: the flags' F1 and the ranking's average precision (:mod:`labelmeta.label_issues`), at the end;
    #: there, ``detect_precision`` and ``detect_recall`` are those of every method's flags, the model's
    #: disagreement with the annotation for a method that learns neither labels nor weights
    detect_f1: float = float("nan")
    detect_average_precision: float = float("nan")
    #: the false-negative rate of the issues' ranking at a budget equal to the noise rate (LabelIssues.stats)
    detect_missed_at_budget: float = float("nan")
    nominal_noise: float = 0.0
    effective_noise: float = 0.0
    wall_time: float = 0.0
    #: the learned ``C x C`` label matrix at the end, for parameterisations that have one
    #: (``similarity()``: ``per-class``); ``None`` for the others
    label_matrix: Optional[List[List[float]]] = None
    #: the dataset's number of classes and their names (``None``: a run stored before they were recorded,
    #: or a dataset without names)
    num_classes: Optional[int] = None
    class_names: Optional[List[str]] = None

    @classmethod
    def from_history(cls, config: Dict[str, Any], history: List[EpochRecord], **fields: Any) -> "Results":
        """The run's figures from its epochs: best and last test accuracy, the last epoch's label figures."""
        accs = [h.test_accuracy for h in history]
        best = accs.index(max(accs))  # the first epoch with the best accuracy
        last = history[-1]
        nan = float("nan")
        return cls(config=config, history=history, best_accuracy=accs[best], last_accuracy=accs[-1],
                   best_epoch=best + 1, ece=last.test_ece,
                   train_accuracy=nan if last.train_accuracy is None else last.train_accuracy,
                   corrected=nan if last.corrected is None else last.corrected,
                   clean_broken=nan if last.clean_broken is None else last.clean_broken,
                   detect_precision=nan if last.detect_precision is None else last.detect_precision,
                   detect_recall=nan if last.detect_recall is None else last.detect_recall, **fields)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Results":
        """Results as :meth:`to_json` wrote them."""
        return cls(**{**data, "history": [EpochRecord(**h) for h in data.get("history", [])]})

    def to_json(self, path: str | Path) -> None:
        """Write the results (and the config that produced them) as JSON, and the epoch records as
        CSV beside it (``run.json`` -> ``run.csv``: one row per epoch, for a spreadsheet or pandas)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1, allow_nan=True))
        # a JSON file named *.csv keeps its name; the records then go to *.csv.epochs.csv
        self.to_csv(path.with_suffix(".csv") if path.suffix != ".csv" else path.with_name(path.name + ".epochs.csv"))

    def to_csv(self, path: str | Path) -> None:
        """Write the epoch records as CSV (see :func:`write_csv`)."""
        write_csv(self.history, path)


def write_csv(records: List[EpochRecord], path: str | Path) -> None:
    """Epoch records as CSV: a header of :class:`EpochRecord`'s fields, a row per epoch (an empty
    cell where a method has no such figure)."""
    names = [f.name for f in dataclasses.fields(EpochRecord)]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(names)
        for record in records:
            writer.writerow(["" if getattr(record, n) is None else getattr(record, n) for n in names])


class ResultsNotWritten(OSError):
    """Writing a finished run's results failed; ``.results`` holds them all the same."""

    def __init__(self, message: str, results: Results) -> None:
        super().__init__(message)
        self.results = results
