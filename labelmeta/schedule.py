"""When meta steps happen and how fast the model and the labels move: the run's schedule, in one object."""
from __future__ import annotations

from typing import Literal, Optional

import torch

from .options import check_count

#: a learning-rate schedule: cosine decay over the steps that use it, or constant
LRSchedule = Literal["cosine", "constant"]


def lr_scheduler(optimizer: Optional[torch.optim.Optimizer], kind: str, steps: int):
    """A cosine schedule over ``steps`` steps (stepped once per step), or ``None`` for a constant rate."""
    if kind not in ("cosine", "constant"):
        raise ValueError(f"a learning-rate schedule is 'cosine' or 'constant', got {kind!r}")
    if optimizer is None or kind != "cosine" or steps < 1:
        return None
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)


class MetaSchedule:
    """Warm-up, a meta step every ``every`` training steps, and the label learning-rate schedule.

    Steps are counted over the whole run (``epoch * steps_per_epoch + step in epoch``, the
    learner's ``num_steps``). The first ``warmup_epochs`` epochs train on the labels as they are;
    after that, a meta step precedes every ``every``-th training step. The label learning rate
    follows ``label_schedule`` over the meta steps after warm-up: once the labels have settled,
    further label steps mostly break clean labels (in the single-seed recipe search behind the
    defaults, a constant label learning rate kept raising the share of broken clean labels until
    the last epoch; with the decay it levels off).

    Args:
        steps_per_epoch: training steps in an epoch.
        epochs: epochs in the run.
        warmup_epochs: epochs before the first meta step (>= 0).
        every: a meta step every ``every`` training steps (>= 1; amortisation).
        label_schedule: ``"cosine"`` or ``"constant"``.
    """

    def __init__(self, *, steps_per_epoch: int, epochs: int, warmup_epochs: int = 0, every: int = 1,
                 label_schedule: LRSchedule = "cosine") -> None:
        every = check_count("meta_every", every)
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        self.steps_per_epoch, self.epochs, self.every = steps_per_epoch, epochs, every
        self.label_schedule = label_schedule
        self.total_steps = epochs * steps_per_epoch
        self.first_step = min(warmup_epochs, epochs) * steps_per_epoch

    def due(self, step: int) -> bool:
        """Whether training step ``step`` (counted from 0 over the run) is preceded by a meta step."""
        return step >= self.first_step and step % self.every == 0

    @property
    def meta_steps(self) -> int:
        """How many meta steps the run takes."""
        start = -(-self.first_step // self.every) * self.every  # the first due step after warm-up
        return len(range(start, self.total_steps, self.every))

    def label_scheduler(self, label_optimizer: Optional[torch.optim.Optimizer]):
        """The label optimiser's schedule over :attr:`meta_steps` (``None``: constant); step it after each meta step."""
        return lr_scheduler(label_optimizer, self.label_schedule, self.meta_steps)
