"""The one composed entry point: model + optimiser + labels + strategy, stepped together."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Dict, Optional, Union

import torch
from torch import Tensor, nn

from .accel import autocast
from .distributed import ONE_PROCESS, Processes, Shares
from .labels import LabelParameterization, check_targets
from .losses import TrainingLoss, check_finite, make_loss
from .probe import attempt, explain, few, misfit
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


@dataclass(frozen=True)
class MetaPlan:
    """How a learner takes its meta steps, as its probe found (:meth:`Learner.probe`).

    Attributes:
        strategy: the configured strategy, or the variant of it that can differentiate the model
            (:meth:`~labelmeta.strategies.Strategy.variants`: the same numbers another way; it shares the
            configured one's target and state).
        share_forward: whether the strategy is handed the model step's forward.
    """

    strategy: Strategy
    share_forward: bool


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
    (:meth:`~labelmeta.labels.LabelParameterization.observe`) and the meta step's sample weights, if it gave
    any (:meth:`~labelmeta.labels.LabelParameterization.observe_weights`). A step without a meta step weights
    its samples as the labels say (:meth:`~labelmeta.labels.LabelParameterization.plain_weights`; a plain mean
    by default). For a strategy that
    :attr:`~labelmeta.strategies.Strategy.shares_forward` (``one-step``), the model step's forward
    runs first and is handed to the strategy, so the two share it (under torchrun too).

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
        distributed: Optional[Processes] = None,
        amp: bool = False,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.labels = labels
        #: the strategy as configured (``None`` is ``none``: no meta step); its meta steps follow :attr:`plan`
        self.strategy = strategy = as_strategy(strategy)
        self.label_optimizer = label_optimizer
        self.loss: TrainingLoss = make_loss(loss) if isinstance(loss, str) else loss
        #: whether the meta step gives the label parameters gradients (learnable labels, and a strategy that learns them)
        self.learns_labels = labels.learnable and strategy.learns_labels
        self.meta_enabled = self.learns_labels or strategy.learns_weights
        if strategy.learns and not self.meta_enabled:
            warnings.warn(f"{type(labels).__name__} labels are fixed: the {strategy.name!r} strategy has "
                          "nothing to learn and no meta step will run (use learnable labels, or strategy=None)",
                          stacklevel=2)
        if labels.learnable and strategy.learns_weights and not strategy.learns_labels:
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
        #: the processes taking each step together (one, unless under ``torchrun``)
        self.processes = ONE_PROCESS if distributed is None else distributed
        if self.processes.world > 1 and not strategy.supports_distributed:
            half = strategy.backend if not strategy.backend.supports_distributed else strategy.target
            why = f"its {type(half).__name__} {'backend' if half is strategy.backend else 'target'} runs in one only"
            raise ValueError(f"the {strategy.name!r} strategy does not run in several processes ({why})")
        #: how the meta steps are taken, once the probe has run (:meth:`probe`; before the first meta step)
        self.plan: Optional[MetaPlan] = None
        # the real step goes through DDP under several processes (gradient averaging); the unroll uses the model
        self._train_model = self.processes.wrap(model)

    def state_dict(self) -> Dict[str, Any]:
        """Everything the next :meth:`step` depends on that the learner owns: the model, its optimiser,
        the labels (parameters and buffers), the label optimiser, the step count and what the strategy
        learns itself (:meth:`~labelmeta.strategies.Strategy.state_dict`). Random states and the data
        order belong to the run (:mod:`labelmeta.checkpoint`)."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "labels": self.labels.state_dict(),
                "label_optimizer": None if self.label_optimizer is None else self.label_optimizer.state_dict(),
                "num_steps": self.num_steps, "strategy": self.strategy.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (into a learner built the same way)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.labels.load_state_dict(state["labels"])
        if self.label_optimizer is not None and state["label_optimizer"] is not None:
            self.label_optimizer.load_state_dict(state["label_optimizer"])
        self.num_steps = state["num_steps"]
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
        _train_mode(self.model)
        shares = self.processes.shares(batch, meta_batch)  # the global batches' sizes: how losses are scaled
        meta, logits = None, None
        with autocast(batch[0].device, self.amp):
            if meta_batch is not None:
                plan = self.plan or self.probe(batch, meta_batch)
                if plan.share_forward:
                    with phase("labelmeta: model forward (shared)"):
                        logits = self._train_model(batch[0])  # the model step's forward, lent to the meta step first
                meta = self._meta_step(plan.strategy, batch, meta_batch, shares, logits)
            weights = self._meta_weights(batch[2], meta.sample_weights) if meta is not None else \
                self._plain_weights(batch[2])
            with phase("labelmeta: model step"):
                loss = self._model_step(batch, shares, weights, logits)
        self.num_steps += 1
        # the global batch's figures, the same on every process
        # only a meta step's weights are the meta-gradient's verdict on the samples
        stats = StepStats(*self.processes.step_figures(shares, loss, meta.meta_loss if meta else None,
                                                       meta.sample_weights if meta else None, batch[2]))
        if stats.sample_weights is not None:
            self.labels.observe_weights(stats.indices, stats.sample_weights)
        return stats

    def _meta_weights(self, indices: Tensor, weights: Optional[Tensor]) -> Optional[Tensor]:
        """The model step's weights from a meta step's (:meth:`~labelmeta.labels.LabelParameterization.model_weights`:
        the labels may reshape them), normalised over the global batch."""
        if weights is None:
            return None
        shaped = self.labels.model_weights(indices, weights)
        return weights if shaped is None else self._normalised(shaped)

    def _plain_weights(self, indices: Tensor) -> Optional[Tensor]:
        """The labels' weights for a model step without a meta step (:meth:`~labelmeta.labels.LabelParameterization.
        plain_weights`), normalised over the global batch; ``None`` for a plain batch mean."""
        if not self.meta_enabled:
            return None
        weights = self.labels.plain_weights(indices)
        return None if weights is None else self._normalised(weights)

    def _normalised(self, weights: Tensor) -> Tensor:
        """``weights`` scaled to sum to one over the global batch (as they are where they sum to zero: the step
        is skipped, as a strategy's are)."""
        total = self.processes.total(weights.sum())
        return weights / total if total > 0 else weights

    def probe(self, batch: Batch, meta_batch: Batch) -> MetaPlan:
        """Check, on copies and the first few samples of each batch, that the strategy can differentiate
        the model, and keep how its meta steps will be taken (:attr:`plan`); ``ValueError`` naming the module
        and the strategies that can, or the batch that does not fit.

        Where a strategy has several ways to the same gradient (:meth:`~labelmeta.strategies.Strategy.variants`)
        or could share the model step's forward, the first combination that works is kept: e.g. a model
        whose fast attention kernel has no double backward gets the inner gradient from a forward of its
        own, on the math kernel. "Works" means it runs, and the derivatives the strategy takes of the model
        (:meth:`~labelmeta.strategies.Strategy.derivatives`) agree with central differences in float64
        (:mod:`labelmeta.probe`): a backward that cannot itself be differentiated drops its part of the
        hypergradient without an error. Runs once, by itself before the first meta step; nothing else the
        learner owns changes (random state included). A learner without a meta step has nothing to probe.
        """
        if not self.meta_enabled:
            self.plan = MetaPlan(self.strategy, False)
            return self.plan
        self._check_batch(batch, "batch")
        self._check_batch(meta_batch, "meta_batch")
        batch, meta_batch = few(batch), few(meta_batch)
        parts = (self.model, self.optimizer, self.labels)
        first: Optional[str] = None
        for strategy in self.strategy.variants(self.model):
            for share in ((True, False) if self.strategy.shares_forward else (False,)):
                reason = attempt(*parts, strategy, self.loss, batch, meta_batch, share, self.amp)
                if reason is None:
                    self.plan = MetaPlan(strategy, share)
                    return self.plan
                first = first or reason
        assert first is not None
        raise explain(first, *parts, self.strategy, self.loss, batch, meta_batch, self.amp)

    def _meta_step(self, strategy: Strategy, batch: Batch, meta_batch: Batch, shares: Shares,
                   logits: Optional[Tensor]) -> MetaStats:
        """The strategy's label gradient, then the label optimiser's step (``meta_batch`` checked)."""
        rank = self.processes.rank
        problem = MetaProblem(self.model, self.optimizer, self.labels, batch, meta_batch, self.loss,
                              inner_scale=shares.scale(rank), meta_scale=shares.meta_scale(rank),
                              weighted_scale=self.processes.world, processes=self.processes,
                              logits=logits, global_size=sum(shares.sizes))
        if self.label_optimizer is not None:
            self.label_optimizer.zero_grad(set_to_none=True)
        try:
            with phase("labelmeta: meta step"):
                stats = strategy.compute(problem)
        except FloatingPointError as err:
            raise FloatingPointError(f"{err} at step {self.num_steps}: meta_batch of {len(meta_batch[2])} samples with "
                                     f"indices {_indices(meta_batch)}{_inputs_note(meta_batch)}; "
                                     f"training {_describe(batch)}") from None
        except RuntimeError as err:  # e.g. a later meta batch of another shape: say which batch it was
            wrong = misfit(self.model, problem.meta_batch, "meta_batch")
            if wrong is None:
                raise
            raise wrong from err
        # per-class rows from every process, per-sample rows from one
        self.processes.sum_([p.grad for p in self.labels.parameters()])
        if self.label_optimizer is not None:
            with phase("labelmeta: label step"):
                self.label_optimizer.step()
        return stats

    def _model_step(self, batch: Batch, shares: Shares, weights: Optional[Tensor], logits: Optional[Tensor]) -> float:
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
        # DDP averages the gradients: scaled, the shards' losses add up to the global one (1 in one process)
        scale = shares.scale(self.processes.rank) if weights is None else self.processes.world
        if scale != 1:
            loss = loss * scale
        value = loss.item()  # one read (a device sync) serves the check and the figure
        if not math.isfinite(value):  # the message is built only then: it reads the batch
            check_finite(loss, f"training loss at step {self.num_steps}, {_describe(batch)}{_inputs_note(batch)}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        # every process's labels see the whole global batch
        self.labels.observe(self.processes.gather(idx, shares.sizes), self.processes.gather(logits.detach(), shares.sizes))
        return value


def _train_mode(model: nn.Module) -> None:
    """``model.train()``, called only where a module is not in training mode already: ``Module.train`` sets
    the flag on every module through ``__setattr__``'s slow path, a fifth of a plain step's Python on a
    small MLP, and a step finds the model as the last step left it."""
    if not all(m.training for m in model.modules()):
        model.train()


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
