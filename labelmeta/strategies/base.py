"""What a meta step is about (:class:`MetaProblem`), what it measured (:class:`MetaStats`), and the
small helpers every backend and target shares.

A strategy is a pair (:mod:`labelmeta.strategies.strategy`): a *backend* says how the gradient of the
meta loss is obtained (:mod:`.backend`: an unroll through ``higher`` or ``torch.func``, a
Jacobian-vector product, finite differences) and a *target* says what receives it and how the model
step uses it (:mod:`.targets`: label parameters, per-sample weights, a weight network). Both read the
same :class:`MetaProblem`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..labels import LabelParameterization
from ..losses import LOSSES, TrainingLoss, make_loss, soft_cross_entropy
from ..options import check_count
from ..typing import Batch

if TYPE_CHECKING:  # annotations only: strategies never import the process-group module
    from ..distributed import Distributed


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
        group: the process group whose processes take the same, global inner step (``None``: one process).
        global_size: the global training batch's size, of which ``batch`` is this process's shard
            (``None``: one process, ``len(batch[0])``).
        logits: the real model's outputs on the training batch, from the forward the model step
            will back-propagate (set by the learner for a strategy that :attr:`~Strategy.shares_forward`;
            differentiate it with ``retain_graph=True``); ``None`` otherwise.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    labels: LabelParameterization
    batch: Batch
    meta_batch: Batch
    loss: Union[TrainingLoss, str] = soft_cross_entropy
    inner_scale: float = 1.0
    meta_scale: float = 1.0
    group: Optional["Distributed"] = None
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

    @property
    def world(self) -> int:
        """The number of processes taking the inner step together (1 in one process)."""
        return 1 if self.group is None else self.group.world

    def inner_loss(self, logits: Tensor, soft_targets: Tensor, weights: Optional[Tensor] = None) -> Tensor:
        """The training loss of ``logits`` on the training batch against ``soft_targets``, scaled.

        A batch mean is scaled by :attr:`inner_scale`; a weighted sum (``weights`` of the global batch)
        by the number of processes, whose average then is the global weighted sum.
        """
        value = self.loss(logits, soft_targets, weights, self.batch[1])
        scale = self.inner_scale if weights is None else self.world
        return value if scale == 1 else value * scale

    def summed(self, grads: Sequence[Optional[Tensor]], like: Sequence[Tensor]) -> List[Tensor]:
        """``grads`` (zeros where ``None``, shaped as ``like``) summed over the processes: each process's
        part of a gradient of the global meta loss, made whole; as they are in one process."""
        out = [torch.zeros_like(p) if g is None else g for p, g in zip(like, grads)]
        if self.group is not None:
            self.group.sum_(out)
        return out

    def total(self, value: Tensor) -> Tensor:
        """``value`` summed over the processes (differentiably), or as it is in one."""
        return value if self.group is None else self.group.total(value)

    def meta_loss(self, logits: Tensor) -> Tensor:
        """Hard-label cross-entropy of ``logits`` on the meta batch, scaled."""
        value = F.cross_entropy(logits, self.meta_batch[1])
        return value if self.meta_scale == 1.0 else value * self.meta_scale

    def soft_targets(self) -> Tensor:
        """The labels' soft targets for the training batch (differentiable in the label parameters)."""
        _, y, idx = self.batch
        return self.labels(idx, y)

    def average(self, grads: Sequence[Optional[Tensor]]) -> Sequence[Optional[Tensor]]:
        """Inner gradients averaged over the processes (differentiably), or as they are in one."""
        return grads if self.group is None else self.group.mean_differentiable(grads)


@dataclass
class MetaStats:
    """What one meta step measured.

    ``sample_weights`` is set by strategies that learn per-sample weights instead of labels
    (``[B]``, summing to one or all zero); the learner then weights the model step with it.
    """

    meta_loss: float
    sample_weights: Optional[Tensor] = None


def normalised(weights: Tensor, problem: Optional[MetaProblem] = None) -> Tensor:
    """``weights [B]`` scaled to sum to one, or as they are (all zero) when they sum to zero: a
    weighted batch then takes the step length of a plain batch mean, and a batch no sample helps is skipped.

    ``problem``: the step's, whose processes' weights are normalised together (differentiably), as
    the global batch's (:meth:`MetaProblem.total`); ``None``: over ``weights`` alone.
    """
    total = weights.sum() if problem is None else problem.total(weights.sum())
    return weights / total if total > 0 else weights


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
