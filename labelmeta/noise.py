"""Label-noise injection through a class-transition matrix, keeping the true targets.

``T[i, j]`` is the probability that a sample of true class ``i`` is annotated ``j``; symmetric
and asymmetric (class-flip) noise are two ways of building ``T``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch
from torch import Tensor

from .labels import check_targets

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


def _check_rate(rate: float) -> None:
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"noise rate must lie in [0, 1), got {rate}")


def symmetric_matrix(num_classes: int, rate: float) -> Tensor:
    """With probability ``rate`` the label is redrawn uniformly from *all* classes (so the
    effective rate is ``rate * (C - 1) / C``)."""
    _check_rate(rate)
    return (1 - rate) * torch.eye(num_classes, dtype=torch.float64) + rate / num_classes


def flip_matrix(num_classes: int, rate: float, flips: Optional[Dict[int, int]] = None) -> Tensor:
    """With probability ``rate`` class ``i`` is annotated ``flips[i]`` (classes absent from
    ``flips`` stay clean). Default map: ``i → (i + 1) mod C``, a fixed permutation."""
    _check_rate(rate)
    if flips is None:
        flips = {i: (i + 1) % num_classes for i in range(num_classes)}
    matrix = torch.eye(num_classes, dtype=torch.float64)
    for src, dst in flips.items():
        if not (0 <= src < num_classes and 0 <= dst < num_classes):
            raise ValueError(f"flip {src}->{dst} is outside [0, {num_classes})")
        matrix[src, src] -= rate
        matrix[src, dst] += rate
    return matrix


def check_matrix(matrix: Tensor, num_classes: int) -> Tensor:
    """``matrix`` as float64 if it is a ``C x C`` row-stochastic matrix, else ``ValueError``."""
    matrix = torch.as_tensor(matrix, dtype=torch.float64)
    if matrix.shape != (num_classes, num_classes):
        raise ValueError(f"transition matrix must be {num_classes} x {num_classes}, got {tuple(matrix.shape)}")
    sums = matrix.sum(1)
    bad = ((matrix < 0).any(1) | ((sums - 1).abs() > 1e-6)).nonzero().squeeze(1)
    if bad.numel():
        raise ValueError(f"transition matrix rows {bad.tolist()} are not probability distributions "
                         f"(row sums {sums[bad].tolist()})")
    return matrix


def load_matrix(path: str) -> Tensor:
    """Read a transition matrix from ``.npy``, ``.csv`` (comma-separated) or ``.json`` (nested list)."""
    import json

    import numpy as np

    suffix = str(path).rsplit(".", 1)[-1].lower()
    if suffix == "npy":
        array = np.load(path)
    elif suffix == "csv":
        array = np.loadtxt(path, delimiter=",", ndmin=2)
    elif suffix == "json":
        with open(path) as f:
            array = np.asarray(json.load(f), dtype=np.float64)
    else:
        raise ValueError(f"transition matrix file must be .npy, .csv or .json, got {path!r}")
    return torch.as_tensor(array, dtype=torch.float64)


def apply_transition(targets: Tensor, matrix: Tensor, generator: torch.Generator, rate: float = float("nan")) -> NoisyLabels:
    """Draw each annotation from row ``matrix[true class]``."""
    num_classes = len(matrix)
    matrix = check_matrix(matrix, num_classes)
    check_targets(targets, num_classes)
    noisy = torch.multinomial(matrix.double()[targets], 1, generator=generator).squeeze(1)
    return NoisyLabels(noisy=noisy, true=targets.clone(), nominal_rate=rate)


def add_noise(
    targets: Tensor, num_classes: int, kind: str, rate: float = 0.0, seed: int = 0,
    flips: Optional[Dict[int, int]] = None, matrix: Optional[Tensor] = None,
) -> NoisyLabels:
    """Corrupt ``targets`` with ``kind`` noise, seeded independently of everything else.

    Args:
        kind: ``"none"``; ``"symmetric"`` (redrawn uniformly at ``rate``); ``"asymmetric"``
            (class ``i`` flipped to ``flips[i]`` at ``rate``, default map ``i → i + 1 mod C``);
            ``"matrix"`` (drawn from the rows of the given transition ``matrix``; ``rate`` is
            ignored and the nominal rate is the expected fraction of changed annotations).
    """
    if kind == "matrix":
        if matrix is None:
            raise ValueError("noise 'matrix' needs a transition matrix (Config.noise_matrix: a .npy, .csv or .json file)")
        matrix = check_matrix(matrix, num_classes)
        check_targets(targets, num_classes)
        nominal = float(1 - matrix.diagonal()[targets].mean()) if targets.numel() else 0.0
        return apply_transition(targets, matrix, torch.Generator().manual_seed(seed), nominal)
    if kind == "none" or rate == 0:
        _check_rate(rate)
        if kind not in NOISE_KINDS:
            raise ValueError(f"unknown noise kind {kind!r}; available: {', '.join(NOISE_KINDS)}")
        return NoisyLabels(noisy=targets.clone(), true=targets.clone(), nominal_rate=0.0)
    if kind == "symmetric":
        matrix = symmetric_matrix(num_classes, rate)
    elif kind == "asymmetric":
        matrix = flip_matrix(num_classes, rate, flips)
    else:
        raise ValueError(f"unknown noise kind {kind!r}; available: {', '.join(NOISE_KINDS)}")
    return apply_transition(targets, matrix, torch.Generator().manual_seed(seed), rate)


NOISE_KINDS = ("none", "symmetric", "asymmetric", "matrix")
