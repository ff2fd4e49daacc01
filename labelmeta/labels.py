"""Label parameterisations: modules that map ``(indices, targets)`` to soft targets.

Every parameterisation subclasses :class:`LabelParameterization` and implements one hook,
:meth:`LabelParameterization.soft_targets`; the base class validates inputs, and provides the
full soft-label table and the current hard labels. A parameterisation that also uses the model's
own predictions overrides the optional :meth:`LabelParameterization.observe` (the learner calls
it after every model step). Register new ones with ``@LABELS.register("name")`` and they pass
through the contract tests in ``tests/test_labels.py``; :func:`preset` registers a name for one with
some options set (``class-temperature``: ``temperature`` with ``per_class=True``).
"""
from __future__ import annotations

import abc
import inspect
import math
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .options import check_count, check_range
from .registry import Registry
from .typing import Indices, Logits, SoftTargets, Targets

LABELS: Registry["LabelParameterization"] = Registry("label parameterisation")


def class_ids(y: Any, where: str) -> np.ndarray:
    """``y`` (one label a sample, read from a user's file: an array, a list) as int64 class ids; ``ValueError``
    naming ``where`` and the first that is not a whole number >= 0 (the range is the reader's to check)."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{where}: labels must be one a sample (one-dimensional), got shape {y.shape}")
    if y.dtype == bool or not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise ValueError(f"{where}: labels must be integer class ids, got dtype {y.dtype}")
    with np.errstate(invalid="ignore"):  # NaN compares unequal to itself: caught as not whole
        bad = (y != np.round(y)) | (y < 0) if np.issubdtype(y.dtype, np.floating) else y < 0
    if bad.any():
        i = int(bad.argmax())
        raise ValueError(f"{where}: label {y[i].item()!r} of sample {i} is not a class id (an integer >= 0)")
    return y.astype(np.int64)


def check_targets(targets: Tensor, num_classes: int, what: str = "targets", noun: str = "class ids") -> None:
    """Raise ``ValueError``/``TypeError`` unless ``targets`` is a 1-D integer tensor in ``[0, C)``."""
    if not isinstance(targets, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(targets).__name__}")
    if targets.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"{what} must hold integer {noun}, got dtype {targets.dtype}")
    if targets.dim() != 1:
        raise ValueError(f"{what} must be 1-D [B], got shape {tuple(targets.shape)}")
    if targets.numel() and not _within(targets, num_classes):
        bad = targets[(targets < 0) | (targets >= num_classes)]
        raise ValueError(
            f"{what} hold {noun} {bad[:5].tolist()} outside [0, {num_classes})"
        )


def _within(values: Tensor, size: int) -> bool:
    """Whether every entry lies in ``[0, size)``: one reduction and one device sync (this runs several times a step).

    On the CPU the two numbers are read as they are (reading one costs no sync there): three small
    kernels fewer, 5 µs a check."""
    low, high = torch.aminmax(values)
    if values.is_cpu:
        return low.item() >= 0 and high.item() < size
    return bool(((low >= 0) & (high < size)).item())


class LabelParameterization(nn.Module, abc.ABC):
    """Base class: soft targets for a batch of training samples.

    Args:
        targets: ``LongTensor[N]`` annotated (possibly noisy) class of every training sample; the
            initial labels are built from these, and they are kept as a buffer.
        num_classes: ``C``.

    Subclasses implement :meth:`soft_targets`. Call the module as ``labels(indices, targets)``;
    ``targets`` may be omitted, in which case the stored annotations of ``indices`` are used.
    """

    #: whether the parameterisation has parameters a meta step should learn
    learnable: bool = True
    #: the runner's label optimiser steps with ``label_lr * lr_scale`` (a parameter that moves
    #: many labels at once, like a temperature, needs a shorter step than a row of logits)
    lr_scale: float = 1.0

    def __init__(self, targets: Targets, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        check_targets(targets, num_classes, "annotated targets")
        self.num_classes = int(num_classes)
        self.register_buffer("targets", targets.detach().clone().long())

    @property
    def num_samples(self) -> int:
        """``N``, the number of training samples the labels were built for."""
        return self.targets.numel()

    def forward(self, indices: Indices, targets: Targets | None = None) -> SoftTargets:
        """Soft targets ``[B, C]`` of the samples at ``indices`` (``LongTensor[B]``)."""
        check_targets(indices, self.num_samples, "indices", noun="sample indices")
        if targets is None:
            targets = self.targets[indices]
        else:
            check_targets(targets, self.num_classes)
            if targets.shape != indices.shape:
                raise ValueError(
                    f"targets {tuple(targets.shape)} and indices {tuple(indices.shape)} differ in shape"
                )
        return self.soft_targets(indices.long(), targets.long())

    @abc.abstractmethod
    def soft_targets(self, indices: Indices, targets: Targets) -> SoftTargets:
        """The hook: ``[B, C]`` probability rows for validated ``indices`` and ``targets``."""

    def observe(self, indices: Indices, logits: Logits) -> None:
        """Optional hook: the model's detached ``[B, C]`` logits on the training samples ``indices``.

        :class:`~labelmeta.learner.Learner` calls it after every model step with the outputs the
        training loss was computed from. The default does nothing.
        """

    def observe_weights(self, indices: Indices, weights: Tensor) -> None:
        """Optional hook: the ``[B]`` weights a strategy that learns them gave the training samples ``indices``
        in a model step (:class:`~labelmeta.learner.Learner` calls it after every such step, after
        :meth:`observe`). The default does nothing.
        """

    def plain_weights(self, indices: Indices) -> Optional[Tensor]:
        """Optional hook: ``[B]`` non-negative per-sample weights for a model step taken without a meta step
        (a strategy's amortised steps, ``meta_every > 1``), e.g. the weights' verdict so far; the learner
        normalises them to sum to one. The default, ``None``: a plain batch mean."""
        return None

    def model_weights(self, indices: Indices, weights: Tensor) -> Optional[Tensor]:
        """Optional hook: the model step's ``[B]`` non-negative weights from a meta step's (``weights``, normalised
        by the strategy), which the learner normalises again over the global batch; e.g. each helpful sample the
        same weight. The default, ``None``: the strategy's weights as they are."""
        return None

    def kept(self) -> Optional[Tensor]:
        """Optional hook: ``[N]``, the share of each sample's visits at which its weight was positive, for labels
        that keep the weights' verdict on the annotations themselves (:meth:`observe_weights`); the run's
        label issues then use it in place of the run's own count. The default: ``None``."""
        return None

    def _check_observation(self, indices: Indices, logits: Logits) -> None:
        """``ValueError`` unless ``observe``'s arguments are sample indices and their ``[B, C]`` logits."""
        check_targets(indices, self.num_samples, "indices", noun="sample indices")
        if logits.shape != (indices.numel(), self.num_classes):
            raise ValueError(f"logits must be [B={indices.numel()}, C={self.num_classes}], "
                             f"got {tuple(logits.shape)}")

    def param_groups(self) -> list[dict[str, Any]]:
        """The parameters as the label optimiser's groups. A group with ``"tables": False`` holds
        parameters that are not tables of label logits (a network's), which the ``mirror``
        optimiser steps by its plain normalised gradient; the default is one group of all."""
        return [{"params": list(self.parameters())}]

    def set_epochs(self, epochs: int) -> None:
        """Optional hook: the run's length in epochs, told before training (by
        :func:`~labelmeta.build.build_learner`), for labels whose schedule depends on it. The default
        does nothing."""

    @torch.no_grad()
    def table(self, batch_size: int = 65536) -> Tensor:
        """The full ``[N, C]`` soft-label table (detached), for the stored annotations."""
        idx = torch.arange(self.num_samples, device=self.targets.device)
        return torch.cat([self(chunk) for chunk in idx.split(batch_size)])

    @torch.no_grad()
    def hard_labels(self) -> Tensor:
        """``LongTensor[N]``: the most probable class of every sample's current label."""
        return self.table().argmax(dim=1)


def _scaled_one_hot(targets: Tensor, num_classes: int, scale: float) -> Tensor:
    return scale * F.one_hot(targets, num_classes).to(torch.get_default_dtype())


@LABELS.register("one-hot")
class OneHot(LabelParameterization):
    """Fixed one-hot targets (ordinary cross-entropy)."""

    learnable = False

    def soft_targets(self, indices: Indices, targets: Targets) -> SoftTargets:
        # F.one_hot's rows without its own range check (a reduction and a sync: forward checked them)
        rows = torch.zeros(len(targets), self.num_classes, dtype=torch.get_default_dtype(), device=targets.device)
        return rows.scatter_(1, targets.unsqueeze(1), 1.0)


@LABELS.register("smoothing")
class LabelSmoothing(LabelParameterization):
    """Fixed label smoothing: ``(1 - eps) * one_hot + eps / C``.

    Args:
        smoothing: ``eps`` in ``[0, 1)``; default 0.1.
    """

    learnable = False

    def __init__(self, targets: Targets, num_classes: int, *, smoothing: float = 0.1) -> None:
        super().__init__(targets, num_classes)
        self.smoothing = check_range("smoothing", smoothing, 0.0, 1.0)

    def soft_targets(self, indices: Indices, targets: Targets) -> SoftTargets:
        one_hot = F.one_hot(targets, self.num_classes).to(torch.get_default_dtype())
        return one_hot * (1 - self.smoothing) + self.smoothing / self.num_classes


@LABELS.register("per-sample")
class PerSample(LabelParameterization):
    """An ``N x C`` table of label logits, one row per training sample (corrects noisy labels).

    Args:
        scale: initial logit of the annotated class (> 0; others 0); default 4, i.e. the annotated
            class starts with probability ``e^4 / (e^4 + C - 1)`` (0.86 for ten classes).

    The row of a sample ignores the ``targets`` argument: the row *is* that sample's label.
    """

    def __init__(self, targets: Targets, num_classes: int, *, scale: float = 4.0) -> None:
        super().__init__(targets, num_classes)
        scale = check_range("scale", scale, 0.0, low_open=True)  # <= 0: the annotation is no prior (or a repellent)
        self.logits = nn.Parameter(_scaled_one_hot(self.targets, num_classes, scale))

    def soft_targets(self, indices: Indices, targets: Targets) -> SoftTargets:
        return F.softmax(self.logits[indices], dim=1)


class _RunningPredictions(LabelParameterization):
    """A temporal ensemble of the model's predictions: an ``N x C`` buffer ``ensemble`` holding, per
    sample, an exponential moving average of the predicted distribution, updated by :meth:`observe`
    each time the sample is trained on. It starts uniform and, being a buffer, is a constant to the
    meta-gradient."""

    def _init_ensemble(self, momentum: float) -> None:
        self.momentum = check_range("momentum", momentum, 0.0, 1.0)
        self.register_buffer("ensemble", torch.full((self.num_samples, self.num_classes), 1.0 / self.num_classes))

    def log_ensemble(self, indices: Indices) -> Tensor:
        """``[B, C]`` log of the running predictions of ``indices`` (floored: a class the model has
        never predicted keeps a finite log)."""
        return self.ensemble[indices].clamp_min(1e-8).log()

    @torch.no_grad()
    def observe(self, indices: Indices, logits: Logits) -> None:
        self._check_observation(indices, logits)
        probs = F.softmax(logits.to(self.ensemble.dtype), dim=1)
        rows = self.ensemble[indices]
        self.ensemble[indices] = self.momentum * rows + (1 - self.momentum) * probs


@LABELS.register("per-sample-ensemble")
class SelfEnsembled(PerSample, _RunningPredictions):
    """Per-sample label logits plus the log of a running average of the model's own predictions.

    The soft target of sample ``i`` is ``softmax(z_i + weight * log e_i)``: ``z_i`` is the
    meta-learned row of :class:`PerSample` (the annotation as a prior, plus meta-gradient
    corrections) and ``e_i`` a temporal ensemble (exponential moving average) of the model's
    predicted distribution for that sample, updated by :meth:`observe` each time the sample is
    trained on. Evidence adds in log space: a label moves away from its annotation only when the
    meta-gradient and the model's consistent prediction together outweigh the prior ``scale``.
    The ensemble starts uniform (no effect) and is a buffer, so the meta-gradient treats it as a
    constant and reaches only ``z``.

    Args:
        scale: initial logit of the annotated class (> 0, see :class:`PerSample`); default 4.
        weight: ``weight`` of the ensemble's log-probabilities (>= 0); default 2.
        momentum: ensemble momentum per visit of a sample, in ``[0, 1)``; default 0.7.
    """

    def __init__(self, targets: Targets, num_classes: int, *, scale: float = 4.0, weight: float = 2.0,
                 momentum: float = 0.7) -> None:
        super().__init__(targets, num_classes, scale=scale)
        self.weight = check_range("weight", weight, 0.0)
        self._init_ensemble(momentum)

    def soft_targets(self, indices: Indices, targets: Targets) -> SoftTargets:
        return F.softmax(self.logits[indices] + self.weight * self.log_ensemble(indices), dim=1)


@LABELS.register("ensemble-trust")
class EnsembleTrust(_RunningPredictions):
    """The annotation and the model's running predictions, weighed by a learned trust shared by a class.

    The soft target of sample ``i`` with annotated class ``y`` is
    ``softmax(a_y * onehot(y) + b_y * log e_i)``, where ``e_i`` is the temporal ensemble of the
    model's predictions for the sample (see :class:`SelfEnsembled`) and ``a_y > 0`` (trust in
    the annotation) and ``b_y >= 0`` (trust in the model) are meta-learned, one pair per
    annotated class (or one global pair). A label leaves its annotation when the model's running
    prediction for another class outweighs the annotated one by a factor ``exp(a_y / b_y)``;
    every sample of the class in every batch contributes to learning that threshold (an
    amortised corrector: two numbers per class instead of a row per sample), so it adapts to the
    noise rate instead of being fixed by hand.

    Args:
        scale: initial ``a`` (> 0); default 4.
        weight: initial ``b`` (> 0); default 2.
        momentum: ensemble momentum per visit of a sample, in ``[0, 1)``; default 0.7.
        per_class: one ``(a, b)`` per annotated class, or one global pair; default ``True``.

    ``a`` and ``b`` are kept as logs (positive). ``lr_scale`` is 0.02, as for :class:`Temperature`:
    one number reshapes the labels of a whole class.
    """

    lr_scale = 0.02

    def __init__(self, targets: Targets, num_classes: int, *, scale: float = 4.0, weight: float = 2.0,
                 momentum: float = 0.7, per_class: bool = True) -> None:
        super().__init__(targets, num_classes)
        scale = check_range("scale", scale, 0.0, low_open=True)  # kept as logs
        weight = check_range("weight", weight, 0.0, low_open=True)
        size = num_classes if per_class else 1
        self.log_scale = nn.Parameter(torch.full((size,), math.log(scale)))
        self.log_weight = nn.Parameter(torch.full((size,), math.log(weight)))
        self._init_ensemble(momentum)

    def trust(self) -> tuple[Tensor, Tensor]:
        """``(a [C or 1], b [C or 1])``: the current trust in the annotation and in the model."""
        return self.log_scale.detach().exp(), self.log_weight.detach().exp()

    def soft_targets(self, indices: Indices, targets: Targets) -> SoftTargets:
        pick = targets if self.log_scale.numel() > 1 else torch.zeros_like(targets)
        # bounded logs: beyond e^+-20 the label is one-hot or the ensemble's to float precision
        a = self.log_scale[pick].clamp(-20.0, 20.0).exp().unsqueeze(1)
        b = self.log_weight[pick].clamp(-20.0, 20.0).exp().unsqueeze(1)
        one_hot = F.one_hot(targets, self.num_classes).to(a.dtype)
        return F.softmax(a * one_hot + b * self.log_ensemble(indices).to(a.dtype), dim=1)


@LABELS.register("temporal-ensemble")
class TemporalEnsemble(_RunningPredictions):
    """Fixed targets: each sample's temporal ensemble ``e_i`` of the model's predictions (see
    :class:`SelfEnsembled`), the targets of early-learning regularisation (the ``elr`` loss, Liu et
    al., 2020), which is the only loss that expects them. Not meta-learned.

    Args:
        momentum: ensemble momentum per visit of a sample, in ``[0, 1)``; default 0.7 (ELR's ``beta``
            for CIFAR-10).
    """

    learnable = False

    def __init__(self, targets: Targets, num_classes: int, *, momentum: float = 0.7) -> None:
        super().__init__(targets, num_classes)
        self._init_ensemble(momentum)

    def soft_targets(self, indices: Indices, targets: Targets) -> SoftTargets:
        return self.ensemble[indices]


@LABELS.register("corrector")
class Corrector(_RunningPredictions):
    """A meta-learned label-correction network (MLC, Zheng et al., 2021), amortised over all samples.

    The soft target of sample ``i`` annotated ``y`` is ``softmax(a_y * onehot(y) + g(log e_i, y))``:
    ``e_i`` is the temporal ensemble of the model's predictions for the sample (see
    :class:`SelfEnsembled`; a buffer, so a constant to the meta-gradient), ``g`` a small network
    ``Linear(2C, hidden) - ReLU - Linear(hidden, C)`` of the ensemble's log-probabilities and the
    annotation, and ``a_y > 0`` a learned trust in the annotation, one per annotated class (the
    mix toward the annotation MLC's authors advise for stability). Every sample of every batch
    trains the same parameters, so the meta-gradient's signal accumulates instead of being spread
    over ``N`` rows, and a correction learned on some samples applies to all that look alike. The
    last layer starts at zero: the labels start as :class:`PerSample`'s.

    MLC feeds the network the model's penultimate features; this one sees the model's output only
    (its running predictions), which any model has and which the ensemble smooths over visits.

    Args:
        hidden: width of the hidden layer (>= 1); default 64.
        scale: initial ``a`` (> 0); default 4, as :class:`PerSample`'s ``scale``.
        momentum: ensemble momentum per visit of a sample, in ``[0, 1)``; default 0.7.

    Its parameters are a network's, not tables of label logits: the ``mirror`` label optimiser
    steps them by its normalised gradient (:meth:`param_groups`). ``lr_scale`` is 0.02.
    """

    lr_scale = 0.02

    def __init__(self, targets: Targets, num_classes: int, *, hidden: int = 64, scale: float = 4.0,
                 momentum: float = 0.7) -> None:
        super().__init__(targets, num_classes)
        hidden = check_count("hidden", hidden)
        scale = check_range("scale", scale, 0.0, low_open=True)  # kept as a log
        self.log_scale = nn.Parameter(torch.full((num_classes,), math.log(scale)))
        self.net = nn.Sequential(nn.Linear(2 * num_classes, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)
        self._init_ensemble(momentum)

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.parameters()), "tables": False}]

    def soft_targets(self, indices: Indices, targets: Targets) -> SoftTargets:
        one_hot = F.one_hot(targets, self.num_classes).to(self.log_scale.dtype)
        features = torch.cat([self.log_ensemble(indices).to(one_hot.dtype), one_hot], dim=1)
        a = self.log_scale[targets].clamp(-20.0, 20.0).exp().unsqueeze(1)
        return F.softmax(a * one_hot + self.net(features), dim=1)


class _EpochCounter(LabelParameterization):
    """Fixed labels that mix the annotation with the model's own predictions with a weight ``alpha`` in
    ``[0, 1]``, and change at epoch ends: counts the samples :meth:`observe` has seen (a buffer, so
    it is checkpointed), and calls :meth:`end_epoch` each time that count reaches a multiple of
    ``N``. The runner trains on every sample once per epoch, so those are its epoch ends."""

    learnable = False

    def __init__(self, targets: Targets, num_classes: int, alpha: float) -> None:
        super().__init__(targets, num_classes)
        self.alpha = check_range("alpha", alpha, 0.0, 1.0, high_open=False)
        self.register_buffer("observed", torch.zeros((), dtype=torch.long))

    @property
    def epoch(self) -> int:
        """The 0-based epoch the next :meth:`observe` belongs to."""
        return int(self.observed) // self.num_samples

    @torch.no_grad()
    def observe(self, indices: Indices, logits: Logits) -> None:
        self._check_observation(indices, logits)
        self.record(indices, logits)
        before = self.epoch
        self.observed += indices.numel()
        if self.epoch > before:
            self.end_epoch()

    @abc.abstractmethod
    def record(self, indices: Indices, logits: Logits) -> None:
        """What the labels keep of a training batch's ``[B, C]`` logits."""

    def end_epoch(self) -> None:
        """Called once an epoch's samples have all been observed. The default does nothing."""


@LABELS.register("online-smoothing")
class OnlineSmoothing(_EpochCounter):
    """Online label smoothing (Zhang et al., 2021): per-class soft labels from the model's own correct
    predictions of the previous epoch.

    The target of a sample annotated ``y`` is ``(1 - alpha) * onehot(y) + alpha * S[y]``, where row
    ``S[y]`` is the mean predicted distribution over the training samples of class ``y`` that the
    model classified correctly during the previous epoch (the paper's loss
    ``(1 - alpha) CE(onehot) + alpha CE(S[y])`` is this target's cross-entropy). ``S`` starts as
    the identity (the first epoch trains on one-hot labels); a class without a correct prediction
    in an epoch keeps its previous row. Not meta-learned: a clean-label baseline.

    Args:
        alpha: weight of the online soft label, in ``[0, 1]``; default 0.5 (the paper's).
    """

    def __init__(self, targets: Targets, num_classes: int, *, alpha: float = 0.5) -> None:
        super().__init__(targets, num_classes, alpha)
        self.register_buffer("soft", torch.eye(num_classes))
        self.register_buffer("sums", torch.zeros(num_classes, num_classes))

    def soft_targets(self, indices: Indices, targets: Targets) -> SoftTargets:
        one_hot = F.one_hot(targets, self.num_classes).to(self.soft.dtype)
        return (1 - self.alpha) * one_hot + self.alpha * self.soft[targets]

    def record(self, indices: Indices, logits: Logits) -> None:
        probs = F.softmax(logits.to(self.sums.dtype), dim=1)
        targets = self.targets[indices]
        right = probs.argmax(1) == targets
        self.sums.index_add_(0, targets[right], probs[right])

    def end_epoch(self) -> None:
        totals = self.sums.sum(1, keepdim=True)
        seen = totals.squeeze(1) > 0
        self.soft[seen] = self.sums[seen] / totals[seen]
        self.sums.zero_()


@LABELS.register("ps-kd")
class ProgressiveSelfDistillation(_EpochCounter):
    """Progressive self-knowledge distillation, PS-KD (Kim et al., 2021): targets mixed with the model's
    own predictions of the previous epoch, with a weight that grows over training.

    The target of sample ``i`` annotated ``y`` in epoch ``t`` (0-based) of ``E`` is
    ``(1 - alpha_t) * onehot(y) + alpha_t * p_i``, with ``alpha_t = alpha * t / E`` and ``p_i`` the
    model's predicted distribution for sample ``i`` when it was last trained on (the previous
    epoch: each sample is trained on once per epoch, and the target is read before this epoch's
    prediction replaces it). The run's ``E`` comes from :meth:`set_epochs`. Not meta-learned: a
    clean-label baseline.

    Args:
        alpha: the final weight ``alpha_T`` of the model's predictions, in ``[0, 1]``; default 0.8 (the
            paper's for CIFAR-100).
    """

    def __init__(self, targets: Targets, num_classes: int, *, alpha: float = 0.8) -> None:
        super().__init__(targets, num_classes, alpha)
        self.epochs = 0  # set by set_epochs; 0 (not told) trains on one-hot labels, as epoch 0 does
        self.register_buffer("predictions", F.one_hot(self.targets, num_classes).to(torch.get_default_dtype()))

    def set_epochs(self, epochs: int) -> None:
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        self.epochs = int(epochs)

    def weight(self) -> float:
        """``alpha_t`` of the current epoch."""
        return self.alpha * min(self.epoch, self.epochs) / self.epochs if self.epochs else 0.0

    def soft_targets(self, indices: Indices, targets: Targets) -> SoftTargets:
        one_hot = F.one_hot(targets, self.num_classes).to(self.predictions.dtype)
        w = self.weight()
        return (1 - w) * one_hot + w * self.predictions[indices]

    def record(self, indices: Indices, logits: Logits) -> None:
        self.predictions[indices] = F.softmax(logits.to(self.predictions.dtype), dim=1)


@LABELS.register("per-class")
class PerClass(LabelParameterization):
    """A ``C x C`` table of label logits, one row per annotated class (learns class similarity).

    Args:
        scale: initial diagonal logit (> 0); default 4.
    """

    def __init__(self, targets: Targets, num_classes: int, *, scale: float = 4.0) -> None:
        super().__init__(targets, num_classes)
        scale = check_range("scale", scale, 0.0, low_open=True)
        self.logits = nn.Parameter(scale * torch.eye(num_classes))

    def soft_targets(self, indices: Indices, targets: Targets) -> SoftTargets:
        return F.softmax(self.logits[targets], dim=1)

    @torch.no_grad()
    def similarity(self) -> Tensor:
        """``[C, C]`` row-stochastic matrix: the learned label of each annotated class."""
        return F.softmax(self.logits, dim=1)


@LABELS.register("temperature")
class Temperature(LabelParameterization):
    """Learnable temperature softening the scaled one-hot logits: ``softmax(scale * onehot / T)``.

    Args:
        scale: logit of the annotated class before tempering (> 0).
        per_class: one temperature per annotated class instead of a single global one (the
            ``class-temperature`` preset).
        init_temperature: starting ``T`` (> 0).

    ``T = exp(log_temperature)`` keeps the temperature positive. ``lr_scale`` is 0.02: the
    normalised label step moves each ``log T`` by about ``label_lr`` per step, and one ``log T``
    reshapes the labels of a whole class (or of all samples), so the step that suits a row of
    logits (0.5) made ``T`` swing by a factor e^0.5 a step and collapsed clean-data runs
    (``benchmarks/clean_labels.py``: 73.7 % instead of 97 % on MNIST-1D).
    """

    lr_scale = 0.02

    def __init__(
        self,
        targets: Targets,
        num_classes: int,
        *,
        scale: float = 4.0,
        per_class: bool = False,
        init_temperature: float = 1.0,
    ) -> None:
        super().__init__(targets, num_classes)
        self.scale = check_range("scale", scale, 0.0, low_open=True)
        init_temperature = check_range("init_temperature", init_temperature, 0.0, low_open=True)  # kept as a log
        size = num_classes if per_class else 1
        self.log_temperature = nn.Parameter(torch.full((size,), float(init_temperature)).log())

    def soft_targets(self, indices: Indices, targets: Targets) -> SoftTargets:
        log_t = self.log_temperature[targets] if self.log_temperature.numel() > 1 else self.log_temperature
        # bounded so that scale / T stays finite (0 * inf would make the zero logits NaN): beyond
        # |log T| = 50 the label is one-hot or uniform to float precision anyway
        log_t = log_t.clamp(-50.0, 50.0)
        logits = _scaled_one_hot(targets, self.num_classes, self.scale) * torch.exp(-log_t).unsqueeze(-1)
        return F.softmax(logits, dim=1)


def preset(of: str, summary: str, **fixed: Any) -> Callable[..., LabelParameterization]:
    """A factory that builds the registered parameterisation ``of`` with the options ``fixed`` set, to
    register under another name (a method's, or a name that Config files, command lines, checkpoints
    and stored results use). Its options are ``of``'s others, with the types, defaults and help ``of``
    declares (written once, there); its description says it is a preset of ``of``.

    Args:
        of: a registered name, e.g. ``"temperature"``.
        summary: what the preset is, for ``labelmeta list``.
        fixed: the options it sets, checked against ``of``'s declaration.
    """
    cls, schema = LABELS.get(of), LABELS.schema(of)
    fixed = schema.check(fixed)
    kept = [option for name, option in schema.options.items() if name not in fixed]

    def build(targets: Targets, num_classes: int, **options: Any) -> LabelParameterization:
        return cls(targets, num_classes, **options, **fixed)

    P = inspect.Parameter
    build.__signature__ = inspect.Signature(  # what the registry reads: the kept options, as declared
        [P("targets", P.POSITIONAL_OR_KEYWORD), P("num_classes", P.POSITIONAL_OR_KEYWORD)]
        + [P(o.name, P.KEYWORD_ONLY, default=o.default, annotation=o.type) for o in kept])
    build.__annotations__ = {o.name: o.type for o in kept}
    settings = ", ".join(f"{name}={value!r}" for name, value in fixed.items())
    build.__doc__ = f"A preset of {of!r} with {settings}: {summary}\n\nArgs:\n" + "".join(
        f"    {o.name}: {o.help}\n" for o in kept)
    build.__name__ = build.__qualname__ = f"{of.replace('-', '_')}_preset"
    build.preset_of = (of, dict(fixed))  # type: ignore[attr-defined]
    return build


#: the name before ``per_class`` was an option of ``temperature``: the same module and state dict keys
ClassTemperature = LABELS.register("class-temperature")(
    preset("temperature", "one learnable temperature per annotated class.", per_class=True))


def make_labels(name: str, targets: Targets, num_classes: int, **options) -> LabelParameterization:
    """Build the registered parameterisation ``name`` (see ``LABELS.names()``) with its declared ``options``."""
    return LABELS.build(name, targets, num_classes, options=options)
