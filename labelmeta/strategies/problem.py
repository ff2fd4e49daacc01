"""What a meta step is about (:class:`MetaProblem`), what it measured (:class:`MetaStats`), and the
small helpers on label parameters every backend and target shares.

A strategy is a pair (:mod:`labelmeta.strategies.strategy`): a *backend* says how the gradient of the
meta loss is obtained (:mod:`.backend`) and a *target* says what receives it and how the model step
uses it (:mod:`.targets`). Both read the same :class:`MetaProblem`; the machinery of the inner steps
they share is :mod:`.inner_loop`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..distributed import ONE_PROCESS, Processes
from ..labels import LabelParameterization
from ..losses import LOSSES, TrainingLoss, make_loss, soft_cross_entropy
from ..options import check_count
from ..typing import Batch


@dataclass
class MetaProblem:
    """Everything one meta step is about, handed to :meth:`Strategy.compute` as one argument.

    Attributes:
        model: the model as it is before this step's real update (read, never changed).
        optimizer: its optimiser; the unroll copies its hyper-parameters and state.
        labels: the label parameterisation whose parameters get the gradient.
        batch: the training batch ``(x, y, indices)`` the inner steps train on.
        meta_batch: the batch the meta loss scores with its hard labels.
        loss: the training loss (the same the real step uses): a callable
            ``loss(logits, soft_targets, weights, targets)`` or a :data:`~labelmeta.losses.LOSSES` name.
        inner_scale: factor on the inner loss (a batch mean): this process's share of the global
            training batch (1 in one process; see :mod:`labelmeta.distributed`).
        meta_scale: factor on the meta loss: this process's share of the global meta batch mean.
        weighted_scale: factor on a weighted inner loss (a sum over the global batch's weights): the
            number of processes, whose average then is the global weighted sum (1 in one process).
        processes: the processes that take the same, global inner step (:data:`~labelmeta.distributed.ONE_PROCESS`
            by default); only :mod:`.inner_loop` calls on them.
        logits: the real model's outputs on the training batch, from the forward the model step
            will back-propagate (set by the learner for a strategy that :attr:`~Strategy.shares_forward`;
            differentiate it with ``retain_graph=True``); ``None`` otherwise.
        global_size: the global training batch's size, of which ``batch`` is this process's shard
            (``None``: ``len(batch[0])``).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    labels: LabelParameterization
    batch: Batch
    meta_batch: Batch
    loss: Union[TrainingLoss, str] = soft_cross_entropy
    inner_scale: float = 1.0
    meta_scale: float = 1.0
    weighted_scale: float = 1.0
    processes: Processes = ONE_PROCESS
    logits: Optional[Tensor] = None
    global_size: Optional[int] = None

    def __post_init__(self) -> None:
        if isinstance(self.loss, str):
            self.loss = make_loss(self.loss)  # an unknown name lists the registered ones
        elif not callable(self.loss):
            raise TypeError(f"MetaProblem.loss must be a training loss name ({', '.join(LOSSES.names())}) or a "
                            f"callable loss(logits, soft_targets, weights, targets), got {self.loss!r}")

    @property
    def batch_size(self) -> int:
        """The size of the (global) training batch: what per-sample weights are normalised over."""
        return len(self.batch[0]) if self.global_size is None else self.global_size

    def inner_loss(self, logits: Tensor, soft_targets: Tensor, weights: Optional[Tensor] = None) -> Tensor:
        """The training loss of ``logits`` on the training batch against ``soft_targets``, scaled: a batch
        mean by :attr:`inner_scale`, a weighted sum (``weights`` of the global batch) by :attr:`weighted_scale`."""
        value = self.loss(logits, soft_targets, weights, self.batch[1])
        scale = self.inner_scale if weights is None else self.weighted_scale
        return value if scale == 1 else value * scale

    def meta_loss(self, logits: Tensor) -> Tensor:
        """Hard-label cross-entropy of ``logits`` on the meta batch, scaled."""
        value = F.cross_entropy(logits, self.meta_batch[1])
        return value if self.meta_scale == 1.0 else value * self.meta_scale

    def soft_targets(self) -> Tensor:
        """The labels' soft targets for the training batch (differentiable in the label parameters)."""
        _, y, idx = self.batch
        return self.labels(idx, y)


@dataclass
class MetaStats:
    """What one meta step measured.

    ``sample_weights`` is set by strategies that learn per-sample weights instead of labels
    (``[B]``, summing to one or all zero); the learner then weights the model step with it.
    ``meta_loss`` is ``None`` for a strategy that takes no meta step (``none``).
    """

    meta_loss: Optional[float]
    sample_weights: Optional[Tensor] = None


def accumulate_label_grads(labels: LabelParameterization, grads: Sequence[Optional[Tensor]]) -> None:
    """Add ``grads`` (one per trainable label parameter, ``None`` for none) into their ``.grad``."""
    for p, g in zip(trainable(labels), grads):
        if g is not None:
            p.grad = g if p.grad is None else p.grad + g


def trainable(labels: LabelParameterization) -> List[Tensor]:
    """The label parameters a meta step gives gradients to."""
    return [p for p in labels.parameters() if p.requires_grad]


def inner_steps(steps: int) -> int:
    """``steps`` as an ``int`` (the ``steps`` option every unrolling backend declares), or ``ValueError``."""
    return check_count("steps", steps)
