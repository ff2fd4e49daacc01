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


def apply_transition(targets: Tensor, matrix: Tensor, generator: torch.Generator, rate: float = float("nan")) -> NoisyLabels:
    """Draw each annotation from row ``matrix[true class]``."""
    num_classes = matrix.shape[0]
    if matrix.shape != (num_classes, num_classes):
        raise ValueError(f"transition matrix must be square, got {tuple(matrix.shape)}")
    if (matrix < 0).any() or not torch.allclose(matrix.sum(1), torch.ones(num_classes, dtype=matrix.dtype)):
        raise ValueError("transition matrix rows must be probability distributions")
    check_targets(targets, num_classes)
    noisy = torch.multinomial(matrix.double()[targets], 1, generator=generator).squeeze(1)
    return NoisyLabels(noisy=noisy, true=targets.clone(), nominal_rate=rate)


def add_noise(
    targets: Tensor, num_classes: int, kind: str, rate: float, seed: int = 0,
    flips: Optional[Dict[int, int]] = None,
) -> NoisyLabels:
    """Corrupt ``targets`` with ``kind`` ∈ {"none", "symmetric", "asymmetric"} noise at ``rate``.

    Seeded independently of everything else, so every method in a comparison sees the same draw.
    """
    if kind == "none" or rate == 0:
        _check_rate(rate)
        return NoisyLabels(noisy=targets.clone(), true=targets.clone(), nominal_rate=0.0)
    if kind == "symmetric":
        matrix = symmetric_matrix(num_classes, rate)
    elif kind == "asymmetric":
        matrix = flip_matrix(num_classes, rate, flips)
    else:
        raise ValueError(f"unknown noise kind {kind!r}; available: none, symmetric, asymmetric")
    generator = torch.Generator().manual_seed(seed)
    return apply_transition(targets, matrix, generator, rate)
