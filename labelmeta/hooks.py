"""What watches a run without changing it: the progress bar, the event log, checkpoints, a user's callback.

The loop (:func:`labelmeta.runner.fit_learner`) calls every hook after each training step, after
each epoch's evaluation, and once at the end, in the order it was given them. A hook reads the run
(:class:`labelmeta.runner.Run`) and must not change what the next step computes.
"""
from __future__ import annotations

import sys
import time
from typing import Callable

from . import checkpoint, eventlog
from .data import Splits
from .learner import Learner, StepStats
from .records import EpochRecord
from .run import Run


class RunHook:
    """Base class: every method does nothing by default."""

    def after_step(self, run: Run, stats: StepStats) -> None:
        """After the learner's step, the schedules' steps and the run state's update."""

    def after_epoch(self, run: Run, record: EpochRecord) -> None:
        """After the epoch's evaluation and its record."""

    def close(self) -> None:
        """After the last epoch."""


class EventLogHook(RunHook):
    """TensorBoard scalars and label histograms (:class:`labelmeta.eventlog.EventLog`) under ``log_dir``."""

    def __init__(self, log_dir: str, run: Run) -> None:
        steps = run.learner.num_steps
        self.log = eventlog.EventLog(log_dir, purge_step=steps if steps else None)  # a resumed run drops later events

    def after_step(self, run: Run, stats: StepStats) -> None:
        self.log.step(run.learner.num_steps, stats.loss, stats.meta_loss, stats.sample_weights, run.learner.labels)

    def after_epoch(self, run: Run, record: EpochRecord) -> None:
        self.log.epoch(run.learner.num_steps, record, run.learner.labels, run.learner.learns_labels)

    def close(self) -> None:
        self.log.close()


class Checkpointing(RunHook):
    """A checkpoint (:mod:`labelmeta.checkpoint`) at every epoch's end and every ``every`` steps (0: epoch ends only)."""

    def __init__(self, path: str, every: int = 0) -> None:
        self.path, self.every = path, every

    def save(self, run: Run) -> None:
        checkpoint.save(self.path, run.config, run.learner, run.schedulers, run.meta_batches, run.state, run.elapsed())

    def after_step(self, run: Run, stats: StepStats) -> None:
        if self.every and run.learner.num_steps % self.every == 0:
            self.save(run)

    def after_epoch(self, run: Run, record: EpochRecord) -> None:
        self.save(run)


class EpochCallback(RunHook):
    """``callback(learner, splits, record)`` after every epoch (``fit_learner``'s ``on_epoch``)."""

    def __init__(self, callback: Callable[[Learner, Splits, EpochRecord], None]) -> None:
        self.callback = callback

    def after_epoch(self, run: Run, record: EpochRecord) -> None:
        self.callback(run.learner, run.splits, record)


class Progress(RunHook):
    """A tqdm bar on a terminal; elsewhere (a log file, CI) one plain line per epoch, since a bar's
    carriage-return redraws pile up into one unreadable line there; nothing with ``enabled=False``."""

    def __init__(self, total: int, initial: int, desc: str, enabled: bool) -> None:
        if not enabled:  # tqdm.auto is not imported: in a notebook without ipywidgets it warns on import
            from tqdm import tqdm as silent

            self.bar = silent(total=total, initial=initial, disable=True)
        elif not _is_terminal(sys.stderr):
            self.bar = _EpochLines(total, initial, desc)
        else:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True)

    def after_step(self, run: Run, stats: StepStats) -> None:
        self.bar.update(1)

    def after_epoch(self, run: Run, record: EpochRecord) -> None:
        self.bar.set_postfix(acc=f"{record.test_accuracy:.3f}", refresh=False)

    def close(self) -> None:
        self.bar.close()


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


class _EpochLines:
    """The progress bar's interface (``update``, ``set_postfix``, ``close``), printing one line per
    epoch to stderr: steps done, the test accuracy, time so far."""

    def __init__(self, total: int, initial: int, desc: str) -> None:
        self.total, self.n, self.desc, self.start = total, initial, desc, time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, refresh: bool = False, **values: str) -> None:
        shown = ", ".join(f"{k} {v}" for k, v in values.items())
        print(f"{self.desc}: step {self.n}/{self.total} ({100 * self.n / max(self.total, 1):.0f}%), {shown}, "
              f"{time.perf_counter() - self.start:.0f} s", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


__all__ = ["Checkpointing", "EpochCallback", "EventLogHook", "Progress", "RunHook"]
