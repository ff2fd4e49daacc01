"""Label-noise injection through a class-transition matrix, keeping the true targets.

``T[i, j]`` is the probability that a sample of true class ``i`` is annotated ``j``; symmetric
and asymmetric (class-flip) noise are two ways of building ``T``, a matrix read from a file a third.
The kinds ``Config.noise`` names are registered in :data:`NOISE`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch
from torch import Tensor

from .labels import check_targets
from .options import check_range
from .registry import Registry

#: The standard CIFAR-10 class-flip map: truck→automobile, bird→airplane, deer→horse, cat↔dog.
CIFAR10_FLIPS: Dict[int, int] = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
#: The MNIST map of Patrini et al. (2017): 2→7, 3→8, 5↔6, 7→1.
MNIST_FLIPS: Dict[int, int] = {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}


@dataclass
class NoisyLabels:
    """Annotated (noisy) targets together with the truth.

    Attributes:
        noisy: ``LongTensor[N]`` the annotations training sees.
        true: ``LongTensor[N]`` the clean targets, for evaluation only.
        nominal_rate: the requested noise rate.
    """

    noisy: Tensor
    true: Tensor
    nominal_rate: float

    @property
    def corrupted(self) -> Tensor:
        """``BoolTensor[N]``: which annotations differ from the truth."""
        return self.noisy != self.true

    @property
    def effective_rate(self) -> float:
        """Fraction of annotations that actually differ from the truth."""
        return self.corrupted.float().mean().item() if self.true.numel() else 0.0


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
    noisy = torch.multinomial(matrix.double()[targets], 1, generator=generator).squeeze(1)
    return NoisyLabels(noisy=noisy, true=targets.clone(), nominal_rate=rate)


def _clean(targets: Tensor) -> NoisyLabels:
    return NoisyLabels(noisy=targets.clone(), true=targets.clone(), nominal_rate=0.0)


#: noise kinds by name (``Config.noise``). Each is registered as
#: ``kind(targets, num_classes, rate, generator, flips=None, matrix=None) -> NoisyLabels``: the true
#: ``targets [N]``, the nominal ``rate`` (``Config.noise_rate``), a generator seeded for the noise
#: alone, the dataset's class-flip map and the transition matrix read from ``Config.noise_matrix``
#: (either ``None`` when there is none). A kind declares no options of its own.
NOISE: Registry[NoisyLabels] = Registry("noise kind")


@NOISE.register("none")
def no_noise(targets: Tensor, num_classes: int, rate: float, generator: torch.Generator,
             flips: Optional[Dict[int, int]] = None, matrix: Optional[Tensor] = None) -> NoisyLabels:
    """No noise: every annotation is the truth (``noise_rate`` must still be a rate; it is not used)."""
    check_rate(rate)
    return _clean(targets)


@NOISE.register("symmetric")
def symmetric_noise(targets: Tensor, num_classes: int, rate: float, generator: torch.Generator,
                    flips: Optional[Dict[int, int]] = None, matrix: Optional[Tensor] = None) -> NoisyLabels:
    """Symmetric noise: with probability ``noise_rate`` an annotation is redrawn uniformly from all
    classes (:func:`symmetric_matrix`; the effective rate is ``rate * (C - 1) / C``)."""
    if rate == 0:
        return _clean(targets)
    return apply_transition(targets, symmetric_matrix(num_classes, rate), generator, rate)


@NOISE.register("asymmetric")
def asymmetric_noise(targets: Tensor, num_classes: int, rate: float, generator: torch.Generator,
                     flips: Optional[Dict[int, int]] = None, matrix: Optional[Tensor] = None) -> NoisyLabels:
    """Class-flip noise: with probability ``noise_rate`` class ``i`` is annotated ``flips[i]``
    (:func:`flip_matrix`; the dataset's map, e.g. CIFAR-10's, else ``i -> i + 1 mod C``)."""
    if rate == 0:
        return _clean(targets)
    return apply_transition(targets, flip_matrix(num_classes, rate, flips), generator, rate)


@NOISE.register("matrix")
def matrix_noise(targets: Tensor, num_classes: int, rate: float, generator: torch.Generator,
                 flips: Optional[Dict[int, int]] = None, matrix: Optional[Tensor] = None) -> NoisyLabels:
    """Each annotation drawn from the row of its true class in a transition matrix (``noise_matrix``:
    a .npy, .csv or .json file); ``noise_rate`` is not used, the nominal rate is the expected
    fraction of changed annotations."""
    if matrix is None:
        raise ValueError("noise 'matrix' needs a transition matrix (Config.noise_matrix: a .npy, .csv or .json file)")
    matrix = check_matrix(matrix, num_classes)
    check_targets(targets, num_classes)
    nominal = float(1 - matrix.diagonal()[targets].mean()) if targets.numel() else 0.0
    return apply_transition(targets, matrix, generator, nominal)


def add_noise(
    targets: Tensor, num_classes: int, kind: str, rate: float = 0.0, seed: int = 0,
    flips: Optional[Dict[int, int]] = None, matrix: Optional[Tensor] = None,
) -> NoisyLabels:
    """Corrupt ``targets`` with the registered noise ``kind`` (:data:`NOISE`), seeded independently
    of everything else.

    Args:
        kind: ``"none"``; ``"symmetric"`` (redrawn uniformly at ``rate``); ``"asymmetric"``
            (class ``i`` flipped to ``flips[i]`` at ``rate``, default map ``i → i + 1 mod C``);
            ``"matrix"`` (drawn from the rows of the given transition ``matrix``; ``rate`` is
            ignored and the nominal rate is the expected fraction of changed annotations); or
            any other registered name.
    """
    return NOISE.build(kind, targets, num_classes, rate, torch.Generator().manual_seed(seed), flips, matrix)
