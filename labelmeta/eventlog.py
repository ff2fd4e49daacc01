"""TensorBoard event files of a run (``--log-dir``): per-step and per-epoch scalars, and a histogram of
the learned labels' confidence; the epoch records as ``epochs.csv`` beside them.

``tensorboard`` is an optional extra (``pip install 'labelmeta[tensorboard]'``); asking for a log
without it is an error before any training.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from .labels import LabelParameterization
from .records import EpochRecord, write_csv


class MissingExtra(ImportError):
    """An optional extra a setting needs is not installed: a set-up error, which the command line
    reports in one line (an ``ImportError`` for code that catches that)."""


def _summary_writer():
    # imported at each call, not once at module level: whether TensorBoard is there is asked anew
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise MissingExtra("log_dir needs TensorBoard, which is not installed: pip install 'labelmeta[tensorboard]' "
                           f"(or pip install tensorboard) [{err}]") from None
    return SummaryWriter


def check_available() -> None:
    """:class:`MissingExtra` (an ``ImportError``) with the install command if TensorBoard is missing
    (call before training)."""
    _summary_writer()


class EventLog:
    """Writes one run's events under ``log_dir``; ``purge_step``: a resumed run's first step (events an
    interrupted run wrote after its checkpoint are dropped, so the curves have no doubled stretch)."""

    def __init__(self, log_dir: str | Path, purge_step: Optional[int] = None) -> None:
        self.dir = Path(log_dir)
        self.writer = _summary_writer()(log_dir=str(self.dir), purge_step=purge_step)
        self.records: list[EpochRecord] = []

    def step(self, step: int, loss: float, meta_loss: Optional[float], weights: Optional[Tensor],
             labels: LabelParameterization) -> None:
        """The training step ``step``'s figures: its loss; after a meta step the meta loss, the norm of
        the label gradient and, for a weighting strategy, the share of the batch it kept."""
        self.writer.add_scalar("train/loss", loss, step)
        if meta_loss is not None:
            self.writer.add_scalar("meta/loss", meta_loss, step)
            grads = [p.grad for p in labels.parameters() if p.grad is not None]
            if grads:
                norm = torch.sqrt(sum((g.detach().double() ** 2).sum() for g in grads))
                self.writer.add_scalar("meta/label_grad_norm", norm.item(), step)
            if weights is not None:
                self.writer.add_scalar("meta/kept_fraction", (weights > 0).double().mean().item(), step)

    def epoch(self, step: int, record: EpochRecord, labels: LabelParameterization, learned: bool) -> None:
        """An epoch's record as scalars (at the step the epoch ended); with ``learned`` labels, a
        histogram of every sample's label confidence and of the probability its annotation keeps."""
        for name, value in (("test/accuracy", record.test_accuracy), ("test/ece", record.test_ece),
                            ("epoch/train_loss", record.train_loss), ("epoch/meta_loss", record.meta_loss),
                            ("epoch/seconds", record.seconds), ("labels/corrected", record.corrected),
                            ("labels/clean_broken", record.clean_broken),
                            ("noise/flag_precision", record.detect_precision),
                            ("noise/flag_recall", record.detect_recall)):
            if value is not None:
                self.writer.add_scalar(name, value, step)
        if learned:
            with torch.no_grad():
                table = labels.table().float().cpu()
            self.writer.add_histogram("labels/confidence", table.max(dim=1).values, step)
            annotated = table.gather(1, labels.targets.cpu().unsqueeze(1)).squeeze(1)
            self.writer.add_histogram("labels/annotated_probability", annotated, step)
        self.writer.flush()
        self.records.append(record)
        write_csv(self.records, self.dir / "epochs.csv")

    def close(self) -> None:
        self.writer.close()
