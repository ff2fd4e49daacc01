"""A run in progress (:class:`Run`): what the loop (:mod:`labelmeta.runner`), the evaluation and the
hooks (:mod:`labelmeta.hooks`) read."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import torch

from . import accel
from .checkpoint import RunState
from .config import Config
from .data import BatchStream, Loader, Splits
from .learner import Learner
from .schedule import MetaSchedule


@dataclass
class Run:
    """A run in progress: what the loop, the evaluation and the hooks (:mod:`labelmeta.hooks`) read."""

    config: Config
    splits: Splits
    learner: Learner
    device: torch.device
    train_loader: Loader
    meta_batches: BatchStream                   #: the meta batches, cycled (its position is checkpointed)
    test_loader: Loader
    schedule: MetaSchedule
    schedulers: Tuple[Any, Any]                 #: the model's and the labels' learning-rate schedules (or None)
    state: RunState
    start: float = field(default_factory=time.perf_counter)  #: when this process took over
    #: the model's ``[N, C]`` probabilities on the training set, indexed like the label table, from the
    #: last epoch's evaluation (the label issues of a method without learned labels read them)
    train_probabilities: Optional[torch.Tensor] = None

    def elapsed(self) -> float:
        """Seconds of the whole run so far, the processes before a resume included."""
        return self.state.elapsed + time.perf_counter() - self.start

    def to_device(self, batch):
        return accel.to_device(batch, self.device, non_blocking=self.pinned, channels_last=self.config.channels_last)

    @property
    def pinned(self) -> bool:
        return self.loader_options["pin_memory"]

    @property
    def loader_options(self) -> Dict[str, Any]:
        return loader_options(self.config, self.device)


def loader_options(config: Config, device: torch.device) -> Dict[str, Any]:
    """The data loaders' worker settings (pinned memory only where it helps: copies to a GPU)."""
    return dict(workers=config.workers, pin_memory=config.pin_memory and device.type == "cuda",
                persistent_workers=config.persistent_workers)
