"""Class-conditional noise: each annotation drawn from the row of its true class in a transition
matrix: ``none``, ``symmetric``, ``asymmetric`` (class flips) and ``matrix`` (read from a file).

Their draws are those of every earlier version of labelmeta (one ``torch.multinomial`` over the rows
of the training samples' true classes, in order), so stored results and checkpoints stay valid.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from ..labels import check_targets
from ..paths import find_file
from .base import (NOISE, NoiseKind, NoisyLabels, Samples, apply_transition, check_matrix, check_rate, clean,
                   draw_rows, flip_matrix, load_matrix, matrix_nominal_rate, symmetric_matrix)


@NOISE.register("none")
class NoNoise(NoiseKind):
    """No noise: every annotation is the truth (``noise_rate`` must still be a rate; it is not used)."""

    uses_rate = False
    synthetic = False

    def __call__(self, samples: Samples) -> NoisyLabels:
        check_rate(samples.rate)
        return clean(samples.targets)


@NOISE.register("symmetric")
class Symmetric(NoiseKind):
    """Symmetric noise: with probability ``noise_rate`` an annotation is redrawn uniformly from all
    classes (the effective rate is ``rate * (C - 1) / C``)."""

    def __call__(self, samples: Samples) -> NoisyLabels:
        if samples.rate == 0:
            return clean(samples.targets)
        return apply_transition(samples.targets, symmetric_matrix(samples.num_classes, samples.rate),
                                samples.generator, samples.rate)


@NOISE.register("asymmetric")
class Asymmetric(NoiseKind):
    """Class-flip noise: with probability ``noise_rate`` class ``i`` is annotated ``flips[i]`` (the
    dataset's map, e.g. CIFAR-10's, else ``i -> i + 1 mod C``)."""

    def __call__(self, samples: Samples) -> NoisyLabels:
        if samples.rate == 0:
            return clean(samples.targets)
        return apply_transition(samples.targets, flip_matrix(samples.num_classes, samples.rate, samples.flips),
                                samples.generator, samples.rate)


def draw_matrix(samples: Samples, matrix: Tensor) -> NoisyLabels:
    """Each annotation drawn from the row of its true class in ``matrix`` (checked ``C x C``); the
    nominal rate is the expected fraction changed."""
    check_targets(samples.targets, samples.num_classes)
    return draw_rows(samples.targets, matrix.double()[samples.targets], samples.generator,
                     matrix_nominal_rate(samples.targets, matrix))


@NOISE.register("matrix")
class Matrix(NoiseKind):
    """Each annotation drawn from the row of its true class in a transition matrix read from a file
    (``noise_rate`` is not used; the nominal rate is the expected fraction of changed annotations).

    Args:
        path: the ``C x C`` row-stochastic matrix: ``.npy``, ``.csv`` (comma-separated) or ``.json``
            (nested list), read and checked when the run is set up, before any data is loaded; a relative
            path not found as given is read from ``data_root``.
    """

    uses_rate = False

    def __init__(self, data_root: Optional[str] = None, *, path: str = "") -> None:
        if not path:
            raise ValueError("noise 'matrix' needs a transition matrix: its option path (--noise-path), "
                             "a .npy, .csv or .json file")
        self.path = str(find_file(path, data_root, "transition matrix"))
        self.matrix = load_matrix(self.path)

    def __call__(self, samples: Samples) -> NoisyLabels:
        matrix = check_matrix(self.matrix, samples.num_classes, f"transition matrix {self.path!r}")
        return draw_matrix(samples, matrix)
