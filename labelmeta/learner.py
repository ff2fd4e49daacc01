"""The one composed entry point: model + optimiser + labels + strategy, stepped together."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Dict, Optional, Union

import torch
from torch import Tensor, nn

from .accel import autocast
from .distributed import Distributed, Shares
from .labels import LabelParameterization, check_targets
from .losses import TrainingLoss, check_finite, make_loss
from .probe import attempt, explain, head, misfit
from .profiling import phase
from .strategies import DEFAULT_STRATEGY, Backend, MetaProblem, MetaStats, Strategy, as_strategy
from .typing import Batch


@dataclass
class StepStats:
    """What one :meth:`Learner.step` measured; ``meta_loss`` is ``None`` for a step without a meta update."""

    loss: float
    meta_loss: Optional[float] = None
    #: ``[B]`` weights of the model step, from a strategy that learns them (else ``None``)
    sample_weights: Optional[Tensor] = None
    #: ``[B]`` the step's training samples (their rows in the label table), matching ``sample_weights``
    indices: Optional[Tensor] = None


class Learner:
    """Trains a model and its learnable labels together.

    Args:
        model: any ``nn.Module`` mapping inputs to ``[B, C]`` logits.
        optimizer: the model's optimiser; with a strategy, one the unroll reproduces exactly
            (``torch.optim`` SGD, Adam or AdamW with any of their arithmetic options; see
            :mod:`labelmeta.update_rules`). Checked here, before any training.
        labels: a :class:`~labelmeta.labels.LabelParameterization`.
        strategy: a :class:`~labelmeta.strategies.Strategy` (a backend and a target), a backend
            alone (it learns the labels), a registered name (:data:`~labelmeta.strategies.STRATEGIES`:
            a preset, a backend, or ``"BACKEND:TARGET"``), or ``None`` to train on the labels as
            they are (no meta-learning). Default: the default recipe, ``"one-step-reweight"``.
        label_optimizer: optimiser over ``labels.parameters()``; required when a strategy is
            given and the labels are learnable.
        loss: the training loss, a :data:`~labelmeta.losses.LOSSES` name or a callable
            ``loss(logits, soft_targets, weights=None, targets=None)``; used by the model step and by the
            strategy's inner steps alike. Default ``"ce"`` (soft cross-entropy).
        distributed: the process group when running under ``torchrun``
            (:func:`labelmeta.distributed.from_environment`); every process then passes its shard of
            each global batch to :meth:`step` (see :mod:`labelmeta.distributed`). ``None``: one process.
        amp: bfloat16 autocast around the meta step and the model step (:mod:`labelmeta.accel`).

    Each :meth:`step` (1) if a meta batch is given, computes the label gradient with the
    strategy (handing it one :class:`~labelmeta.strategies.MetaProblem`) and steps the label
    optimiser (or, for a strategy that learns per-sample weights, gets the weights), then (2) takes
    the real model step on the training batch against the (updated, detached) soft labels, and (3)
    shows the labels the model's outputs on that batch
    (:meth:`~labelmeta.labels.LabelParameterization.observe`). For a strategy that
    :attr:`~labelmeta.strategies.Strategy.shares_forward` (``one-step``), the model step's forward
    runs first and is handed to the strategy, so the two share it (in one process).

    The strategy differentiates on kernels that have every derivative it needs (:mod:`labelmeta.kernels`:
    the math kernel for attention), the model step runs on the default, fast ones. Before the first
    meta step, :meth:`probe` checks on copies and a few samples that the strategy can differentiate
    the model (:func:`labelmeta.runner.fit` calls it before training).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        labels: LabelParameterization,
        strategy: Union[Strategy, Backend, str, None] = DEFAULT_STRATEGY,
        label_optimizer: Optional[torch.optim.Optimizer] = None,
        loss: Union[TrainingLoss, str] = "ce",
        distributed: Optional[Distributed] = None,
        amp: bool = False,
    ) -> None:
        strategy = None if strategy is None else as_strategy(strategy)
        self.model = model
        self.optimizer = optimizer
        self.labels = labels
        self.strategy = strategy
        self.label_optimizer = label_optimizer
        self.loss: TrainingLoss = make_loss(loss) if isinstance(loss, str) else loss
        #: whether the meta step gives the label parameters gradients (learnable labels, and a strategy that learns them)
        self.learns_labels = strategy is not None and labels.learnable and strategy.learns_labels
        self.meta_enabled = self.learns_labels or (strategy is not None and strategy.learns_weights)
        if strategy is not None and not self.meta_enabled:
            warnings.warn(f"{type(labels).__name__} labels are fixed: the {strategy.name!r} strategy has "
                          "nothing to learn and no meta step will run (use learnable labels, or strategy=None)",
                          stacklevel=2)
        if strategy is not None and labels.learnable and not strategy.learns_labels:
            warnings.warn(f"the {strategy.name!r} strategy learns sample weights, not labels: the parameters "
                          f"of the {type(labels).__name__} labels stay as they are (use one-hot labels with it)",
                          stacklevel=2)
        if self.meta_enabled:
            strategy.check(optimizer)
            strategy.check_model(model)
            if all(float(group["lr"]) == 0 for group in optimizer.param_groups):
                warnings.warn("the model's learning rate is 0: the unrolled step does not move the model, so the "
                              "meta gradient is 0 and the labels never change", stacklevel=2)
        if self.learns_labels and label_optimizer is None:
            raise ValueError(
                f"a label_optimizer over labels.parameters() is required to learn "
                f"{type(labels).__name__} labels with the {strategy.name!r} strategy"
            )
        self.num_steps = 0
        self.amp = amp
        self.distributed = distributed
        #: whether the model step's forward is handed to the strategy (the probe may find it cannot be)
        self.share_forward = strategy is not None and strategy.shares_forward and distributed is None
        self.probed = False
        self._train_model = model
        if distributed is not None:
            if strategy is not None and not strategy.supports_distributed:
                half = strategy.backend if not strategy.backend.supports_distributed else strategy.target
                why = f"its {type(half).__name__} {'backend' if half is strategy.backend else 'target'} runs in one only"
                raise ValueError(f"the {strategy.name!r} strategy does not run in several processes ({why})")
            from torch.nn.parallel import DistributedDataParallel

            # the real step goes through DDP (gradient averaging); the unroll uses the local module
            self._train_model = DistributedDataParallel(model)

    def state_dict(self) -> Dict[str, Any]:
        """Everything the next :meth:`step` depends on that the learner owns: the model, its optimiser,
        the labels (parameters and buffers), the label optimiser, the step count and what the strategy
        learns itself (:meth:`~labelmeta.strategies.Strategy.state_dict`). Random states and the data
        order belong to the run (:mod:`labelmeta.checkpoint`)."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "labels": self.labels.state_dict(),
                "label_optimizer": None if self.label_optimizer is None else self.label_optimizer.state_dict(),
                "num_steps": self.num_steps,
                "strategy": self.strategy.state_dict() if self.strategy is not None else {}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (into a learner built the same way)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.labels.load_state_dict(state["labels"])
        if self.label_optimizer is not None and state["label_optimizer"] is not None:
            self.label_optimizer.load_state_dict(state["label_optimizer"])
        self.num_steps = state["num_steps"]
        if self.strategy is not None:
            self.strategy.load_state_dict(state.get("strategy", {}))

    def _check_batch(self, batch: Batch, what: str) -> None:
        """Raise ``ValueError`` naming ``what`` (``batch`` or ``meta_batch``) unless it is well formed."""
        if not isinstance(batch, (tuple, list)) or len(batch) != 3:
            raise ValueError(f"{what} must be (inputs, targets, indices), got {type(batch).__name__}"
                             + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""))
        x, y, idx = batch
        if not (len(x) == len(y) == len(idx)):
            raise ValueError(
                f"{what} has {len(x)} inputs, {len(y)} targets and {len(idx)} indices; they must match"
            )
        if len(x) == 0:
            raise ValueError(f"{what} is empty")
        check_targets(y, self.labels.num_classes, f"{what} targets")

    def step(self, batch: Batch, meta_batch: Optional[Batch] = None) -> StepStats:
        """One training step; a label update first if ``meta_batch`` is given.

        Under a process group (``distributed``), ``batch`` and ``meta_batch`` are this process's shards
        of the global batches, and the returned figures are the global batch's on every process.

        Args:
            batch: ``(x [B, ...], y LongTensor[B], indices LongTensor[B])`` from the training set.
            meta_batch: ``(x, y, indices)`` scored with hard labels by the meta loss, or ``None``
                to skip the label update (e.g. during warm-up; the run's
                :class:`~labelmeta.schedule.MetaSchedule` says when). Ignored without a meta strategy.
        """
        self._check_batch(batch, "batch")
        if meta_batch is not None and self.meta_enabled:
            self._check_batch(meta_batch, "meta_batch")  # before the forward touches BatchNorm's statistics
        else:
            meta_batch = None
        self.model.train()
        shares = None
        if self.distributed is not None:  # the global batches' sizes: how this process's losses are scaled
            shares = self.distributed.shares(batch, meta_batch)
        meta, logits = None, None
        with autocast(batch[0].device, self.amp):
            if meta_batch is not None:
                assert self.strategy is not None
                if not self.probed:
                    self.probe(batch, meta_batch)
                if self.share_forward:
                    with phase("labelmeta: model forward (shared)"):
                        logits = self._train_model(batch[0])  # the model step's forward, lent to the meta step first
                meta = self._meta_step(batch, meta_batch, shares, logits)
            weights = meta.sample_weights if meta is not None else None
            with phase("labelmeta: model step"):
                loss = self._model_step(batch, shares, weights, logits)
        self.num_steps += 1
        indices, meta_loss = batch[2], meta.meta_loss if meta else None
        if shares is None:
            return StepStats(loss, meta_loss, weights, indices)
        # the global batch's figures, the same on every process
        return StepStats(*self._global_stats(shares, loss, meta_loss, weights, indices))

    def _global_stats(self, shares: Shares, loss: float, meta_loss: Optional[float], weights: Optional[Tensor],
                      indices: Tensor) -> tuple:
        """The step's figures for the global batch: losses summed over processes (each process's
        is its share), and the weights and indices of every process in the global batch's order."""
        assert self.distributed is not None
        figures = torch.tensor([loss / self.distributed.world, meta_loss or 0.0], dtype=torch.float64,
                               device=indices.device)
        self.distributed.sum_([figures])
        if weights is not None:
            weights, indices = self.distributed.gather(weights, shares.sizes), self.distributed.gather(indices, shares.sizes)
        return figures[0].item(), (None if meta_loss is None else figures[1].item()), weights, indices

    def probe(self, batch: Batch, meta_batch: Batch) -> None:
        """Check, on copies and the first few samples of each batch, that the strategy can differentiate
        the model; ``ValueError`` naming the module and the strategies that can, or the batch that does not fit.

        Where a strategy has several ways to the same gradient (:meth:`~labelmeta.strategies.Strategy.variants`)
        or could share the model step's forward, the first combination that works is kept: e.g. a model
        whose fast attention kernel has no double backward gets the inner gradient from a forward of its
        own, on the math kernel. "Works" means it runs, and the derivatives the strategy takes of the model
        (:meth:`~labelmeta.strategies.Strategy.derivatives`) agree with central differences in float64
        (:mod:`labelmeta.probe`): a backward that cannot itself be differentiated drops its part of the
        hypergradient without an error. Runs once, by itself before the first meta step; nothing the run
        owns changes (random state included). A learner without a meta step has nothing to probe.
        """
        self.probed = True
        if not self.meta_enabled:
            return
        assert self.strategy is not None
        self._check_batch(batch, "batch")
        self._check_batch(meta_batch, "meta_batch")
        batch, meta_batch = head(batch), head(meta_batch)
        parts = (self.model, self.optimizer, self.labels)
        first: Optional[str] = None
        for strategy in self.strategy.variants(self.model):
            for share in ((True, False) if self.share_forward else (False,)):
                reason = attempt(*parts, strategy, self.loss, batch, meta_batch, share, self.amp)
                if reason is None:
                    self.strategy, self.share_forward = strategy, share
                    return
                first = first or reason
        assert first is not None
        raise explain(first, *parts, self.strategy, self.loss, batch, meta_batch, self.amp)

    def _meta_step(self, batch: Batch, meta_batch: Batch, shares: Optional[Shares],
                   logits: Optional[Tensor]) -> MetaStats:
        """The strategy's label gradient, then the label optimiser's step (``meta_batch`` checked)."""
        assert self.strategy is not None
        problem = MetaProblem(self.model, self.optimizer, self.labels, batch, meta_batch, self.loss, logits=logits)
        if shares is not None:
            assert self.distributed is not None
            rank = self.distributed.rank
            problem.inner_scale, problem.meta_scale = shares.scale(rank), shares.meta_scale(rank)
            problem.group, problem.global_size = self.distributed, sum(shares.sizes)
        if self.label_optimizer is not None:
            self.label_optimizer.zero_grad(set_to_none=True)
        try:
            with phase("labelmeta: meta step"):
                stats = self.strategy.compute(problem)
        except FloatingPointError as err:
            raise FloatingPointError(f"{err} at step {self.num_steps}: meta_batch of {len(meta_batch[2])} samples with "
                                     f"indices {_indices(meta_batch)}{_inputs_note(meta_batch)}; "
                                     f"training {_describe(batch)}") from None
        except RuntimeError as err:  # e.g. a later meta batch of another shape: say which batch it was
            wrong = misfit(self.model, problem.meta_batch, "meta_batch")
            if wrong is None:
                raise
            raise wrong from err
        if self.distributed is not None:  # per-class rows from every process, per-sample rows from one
            self.distributed.sum_([p.grad for p in self.labels.parameters()])
        if self.label_optimizer is not None:
            with phase("labelmeta: label step"):
                self.label_optimizer.step()
        return stats

    def _model_step(self, batch: Batch, shares: Optional[Shares], weights: Optional[Tensor],
                    logits: Optional[Tensor]) -> float:
        """The real optimiser step against the (updated, detached) labels; the labels then observe.
        Returns the loss (under a process group, this process's share of the global one).

        ``logits``: this step's forward when the meta step already ran it (its graph is kept).
        """
        x, y, idx = batch
        with torch.no_grad():
            targets = self.labels(idx, y)
        if logits is None:
            logits = self._train_model(x)
        loss = self.loss(logits, targets, weights, y)
        if shares is not None:  # DDP averages the gradients: scaled, the shards' losses add up to the global one
            assert self.distributed is not None
            loss = loss * (shares.scale(self.distributed.rank) if weights is None else self.distributed.world)
        value = loss.item()  # one read (a device sync) serves the check and the figure
        if not math.isfinite(value):  # the message is built only then: it reads the batch
            check_finite(loss, f"training loss at step {self.num_steps}, {_describe(batch)}{_inputs_note(batch)}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if shares is not None:  # every process's labels see the whole global batch
            assert self.distributed is not None
            self.labels.observe(self.distributed.gather(idx, shares.sizes),
                                self.distributed.gather(logits.detach(), shares.sizes))
        else:
            self.labels.observe(idx, logits.detach())
        return value


def _indices(batch: Batch) -> str:
    """The first few sample indices of ``batch``, for error messages."""
    idx = batch[2].flatten().tolist()
    return "[" + ", ".join(str(i) for i in idx[:8]) + (", ...]" if len(idx) > 8 else "]")


def _inputs_note(batch: Batch) -> str:
    """`` (its inputs are not finite)`` if they are not, else nothing."""
    x = batch[0]
    return "" if not x.is_floating_point() or torch.isfinite(x).all() else " (its inputs are not finite)"


def _describe(batch: Batch) -> str:
    """The batch in a few words, for error messages: which samples it held."""
    return f"batch of {len(batch[2])} samples with indices {_indices(batch)}"
