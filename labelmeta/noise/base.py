"""What every noise kind shares: :class:`NoisyLabels`, :class:`Samples`, the registry :data:`NOISE`,
class-transition matrices (``T[i, j]``: the probability that a sample of true class ``i`` is annotated
``j``) and the draw through them."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch
from torch import Tensor

from ..labels import check_targets
from ..options import check_range
from ..registry import Registry

#: The standard CIFAR-10 class-flip map: truck→automobile, bird→airplane, deer→horse, cat↔dog.
CIFAR10_FLIPS: Dict[int, int] = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
#: The MNIST map of Patrini et al. (2017): 2→7, 3→8, 5↔6, 7→1.
MNIST_FLIPS: Dict[int, int] = {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}


@dataclass
class NoisyLabels:
    """Annotated (noisy) targets together with the truth.

    Attributes:
        noisy: ``LongTensor[N]`` the annotations training sees.
        true: ``LongTensor[N]`` the clean targets, for evaluation only; ``None`` where the truth is
            unknown (a user's own labels): the run then reports no correction or detection figures.
        nominal_rate: the requested noise rate (``nan`` where unknown).
        trusted: ``BoolTensor[N]``, the samples whose annotation is known to be right because they came from
            the clean set (``meta_in_train``); the label-quality and detection figures leave them out, as
            no method is asked to judge them. ``None``: none.
    """

    noisy: Tensor
    true: Optional[Tensor]
    nominal_rate: float
    trusted: Optional[Tensor] = None

    @property
    def judged(self) -> Tensor:
        """``BoolTensor[N]``: the samples whose annotation a method is asked to judge (all but the trusted)."""
        return torch.ones_like(self.noisy, dtype=torch.bool) if self.trusted is None else ~self.trusted

    @property
    def truth_known(self) -> bool:
        """Whether the truth is known."""
        return self.true is not None

    @property
    def corrupted(self) -> Tensor:
        """``BoolTensor[N]``: which annotations differ from the truth (``ValueError`` where it is unknown)."""
        if self.true is None:
            raise ValueError("the truth of these annotations is unknown: which are corrupted cannot be said")
        return self.noisy != self.true

    @property
    def effective_rate(self) -> float:
        """Fraction of annotations that actually differ from the truth (``nan`` where it is unknown)."""
        if self.true is None:
            return float("nan")
        return self.corrupted.float().mean().item() if self.true.numel() else 0.0


@dataclass
class Samples:
    """What a noise kind sees: the training samples to annotate.

    Attributes:
        targets: ``LongTensor[N]``, their true classes.
        num_classes: ``C``.
        rate: the nominal rate asked for (``Config.noise_rate``; kinds that read their annotations
            from a file or a matrix do not use it).
        generator: seeded for the noise alone (``Config.seed``), consumed in a fixed order.
        indices: ``LongTensor[N]``, the samples' positions in the dataset's training set, for
            per-sample annotation files that cover the whole training set (CIFAR-N's 50 000 rows).
        dataset_size: the size of that training set (``None``: ``N``).
        truth_known: whether ``targets`` are the truth (``False`` for a user's own labels).
        flips: the dataset's class-flip map, if it has one.
        read_inputs: returns the samples' inputs, ``float [N, ...]`` as the model sees them before
            augmentation; called at most once, and only by the kinds that read the samples.
    """

    targets: Tensor
    num_classes: int
    rate: float
    generator: torch.Generator
    indices: Optional[Tensor] = None
    dataset_size: Optional[int] = None
    truth_known: bool = True
    flips: Optional[Dict[int, int]] = None
    read_inputs: Optional[Callable[[], Tensor]] = None

    def __post_init__(self) -> None:
        if self.indices is None:
            self.indices = torch.arange(len(self.targets))
        if self.dataset_size is None:
            self.dataset_size = len(self.targets)

    @functools.cached_property
    def inputs(self) -> Tensor:
        """The samples' inputs, read once (``ValueError`` where none were given)."""
        if self.read_inputs is None:
            raise ValueError("this noise kind reads the samples' inputs, and none were given")
        inputs = self.read_inputs()
        if len(inputs) != len(self.targets):
            raise ValueError(f"{len(inputs)} inputs were given for {len(self.targets)} samples")
        return inputs


def check_rate(rate: float) -> None:
    """``ValueError`` unless ``rate`` is a noise rate in ``[0, 1)``."""
    check_range("noise rate", rate, 0.0, 1.0)


def symmetric_matrix(num_classes: int, rate: float) -> Tensor:
    """With probability ``rate`` the label is redrawn uniformly from *all* classes (so the
    effective rate is ``rate * (C - 1) / C``)."""
    check_rate(rate)
    return (1 - rate) * torch.eye(num_classes, dtype=torch.float64) + rate / num_classes


def flip_matrix(num_classes: int, rate: float, flips: Optional[Dict[int, int]] = None) -> Tensor:
    """With probability ``rate`` class ``i`` is annotated ``flips[i]`` (classes absent from
    ``flips`` stay clean). Default map: ``i → (i + 1) mod C``, a fixed permutation."""
    check_rate(rate)
    if flips is None:
        flips = {i: (i + 1) % num_classes for i in range(num_classes)}
    matrix = torch.eye(num_classes, dtype=torch.float64)
    for src, dst in flips.items():
        if not (0 <= src < num_classes and 0 <= dst < num_classes):
            raise ValueError(f"flip {src}->{dst} is outside [0, {num_classes})")
        matrix[src, src] -= rate
        matrix[src, dst] += rate
    return matrix


def check_matrix(matrix: Tensor, num_classes: int, what: str = "transition matrix") -> Tensor:
    """``matrix`` as float64 if it is a ``C x C`` row-stochastic matrix, else ``ValueError`` naming
    ``what`` (e.g. the file it came from) and the offending rows."""
    matrix = torch.as_tensor(matrix, dtype=torch.float64)
    if matrix.shape != (num_classes, num_classes):
        raise ValueError(f"{what} must be {num_classes} x {num_classes}, got {tuple(matrix.shape)}")
    return _check_rows(matrix, what)


def _check_rows(matrix: Tensor, what: str) -> Tensor:
    """``matrix`` (2-D, float64) if every row is a probability distribution: finite, non-negative
    entries summing to one; else ``ValueError`` naming ``what`` and the rows."""
    def refuse(rows: Tensor, problem: str) -> None:
        bad = rows.nonzero().squeeze(1)
        if bad.numel():
            raise ValueError(f"{what} rows {bad.tolist()} {problem}")

    # non-finite first: a NaN row's sum is NaN too, and torch.multinomial would fail on it mid-set-up
    refuse(~matrix.isfinite().all(1), "hold non-finite entries (nan or inf)")
    refuse((matrix < 0).any(1), "hold negative entries")
    sums = matrix.sum(1)
    off = (sums - 1).abs() > 1e-6
    refuse(off, f"are not probability distributions (row sums {sums[off].tolist()})")
    return matrix


def load_matrix(path: str) -> Tensor:
    """Read a transition matrix from ``.npy``, ``.csv`` (comma-separated) or ``.json`` (nested list).

    Checked as it is read, before any data is loaded: a square table whose rows are probability
    distributions, else ``ValueError`` naming ``path`` (and the rows); whether it has a row per
    class is :func:`check_matrix`'s, once the dataset is known. A missing file is ``OSError``.
    """
    import json

    import numpy as np

    suffix = str(path).rsplit(".", 1)[-1].lower()
    if suffix not in ("npy", "csv", "json"):
        raise ValueError(f"transition matrix file must be .npy, .csv or .json, got {path!r}")
    what = f"transition matrix {str(path)!r}"
    try:
        if suffix == "npy":
            array = np.load(path)
        elif suffix == "csv":
            array = np.loadtxt(path, delimiter=",", ndmin=2)
        else:
            with open(path) as f:
                array = np.asarray(json.load(f), dtype=np.float64)
        matrix = torch.as_tensor(array, dtype=torch.float64)
    except (ValueError, TypeError) as err:  # unparsable text, a ragged, pickled or text table: say which file
        raise ValueError(f"cannot read {what}: {err}") from None
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{what} must be a square C x C table, got shape {tuple(matrix.shape)}")
    return _check_rows(matrix, what)


def apply_transition(targets: Tensor, matrix: Tensor, generator: torch.Generator, rate: float = float("nan")) -> NoisyLabels:
    """Draw each annotation from row ``matrix[true class]``."""
    num_classes = len(matrix)
    matrix = check_matrix(matrix, num_classes)
    check_targets(targets, num_classes)
    return draw_rows(targets, matrix.double()[targets], generator, rate)


def draw_rows(targets: Tensor, rows: Tensor, generator: torch.Generator, rate: float) -> NoisyLabels:
    """Draw sample ``n``'s annotation from its own distribution ``rows[n]`` (``[N, C]``, rows summing
    to one): the one draw every kind that samples its annotations makes."""
    noisy = torch.multinomial(rows, 1, generator=generator).squeeze(1) if len(targets) else targets.clone()
    return NoisyLabels(noisy=noisy, true=targets.clone(), nominal_rate=rate)


def matrix_nominal_rate(targets: Tensor, matrix: Tensor) -> float:
    """The expected fraction of ``targets`` a draw through ``matrix`` changes."""
    return float(1 - matrix.diagonal()[targets].mean()) if targets.numel() else 0.0


def clean(targets: Tensor) -> NoisyLabels:
    """Every annotation is the truth."""
    return NoisyLabels(noisy=targets.clone(), true=targets.clone(), nominal_rate=0.0)


#: noise kinds by name (``Config.noise``), each built as ``kind(data_root, **options)`` (its declared
#: options, ``Config.noise_options``: building it reads and checks any file it names, before any data
#: is loaded) and called as ``kind(samples) -> NoisyLabels`` on the :class:`Samples` of the training set.
#: The built-in kinds are the other modules of :mod:`labelmeta.noise`.
NOISE: Registry["NoiseKind"] = Registry("noise kind")


class NoiseKind:
    """A registered noise kind: construction checks its options (and reads its files); a call draws.

    Attributes:
        uses_rate: whether it reads ``Config.noise_rate`` (``Samples.rate``).
        reads_inputs: whether it reads the samples' inputs (``Samples.inputs``).
        gives_truth: whether its draws carry a truth of their own.
        synthetic: whether it corrupts the dataset's labels (so needs them to be the truth).
    """

    uses_rate: bool = True
    reads_inputs: bool = False
    gives_truth: bool = False
    synthetic: bool = True

    def __init__(self, data_root: Optional[str] = None) -> None:
        """A kind without options (and without files): nothing to read or check."""

    def __call__(self, samples: Samples) -> NoisyLabels:
        raise NotImplementedError

