"""Label noise: how the training set's annotations are drawn, keeping the truth.

A kind is one module registering into :data:`NOISE` (``Config.noise`` names it, ``Config.noise_options``
sets its declared options; ``labelmeta list noise`` shows them): class-conditional
(:mod:`.class_conditional`: ``none``, ``symmetric``, ``asymmetric``, ``matrix``), instance-dependent
(:mod:`.instance`: ``instance``, ``confidence``) and a real noisy data set's annotations read from a
file (:mod:`.files`: ``file``, CIFAR-N). What they share is :mod:`.base`.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor

from .base import (CIFAR10_FLIPS, MNIST_FLIPS, NOISE, NoiseKind, NoisyLabels, Samples, apply_transition, check_matrix,
                   check_rate, clean, draw_rows, flip_matrix, load_matrix, symmetric_matrix)
from .class_conditional import draw_matrix
from . import files, instance  # noqa: F401  (register their kinds)


def add_noise(
    targets: Tensor, num_classes: int, kind: str, rate: float = 0.0, seed: int = 0,
    flips: Optional[Dict[int, int]] = None, matrix: Optional[Tensor] = None,
    inputs: Optional[Tensor] = None, data_root: Optional[str] = None, **options,
) -> NoisyLabels:
    """Corrupt ``targets`` with the registered noise ``kind`` (:data:`NOISE`), seeded independently
    of everything else.

    Args:
        kind: a name in :data:`NOISE`: ``"none"``, ``"symmetric"`` (redrawn uniformly at ``rate``),
            ``"asymmetric"`` (class ``i`` flipped to ``flips[i]`` at ``rate``, default map
            ``i → i + 1 mod C``), ``"matrix"`` (drawn from the rows of a transition matrix: its
            ``path`` option, or ``matrix`` here; ``rate`` is ignored), the instance-dependent kinds
            (they read ``inputs``), ``"file"``...
        matrix: a transition matrix for ``kind="matrix"`` in place of its ``path`` option.
        inputs: ``float [N, ...]``, the samples, for the kinds that read them.
        **options: the kind's declared options (``labelmeta list noise``).
    """
    samples = Samples(targets, num_classes, rate, torch.Generator().manual_seed(seed), flips=flips,
                      read_inputs=None if inputs is None else (lambda: inputs))
    if matrix is not None:
        if kind != "matrix":
            raise ValueError(f"a transition matrix is given, but noise is {kind!r}, not 'matrix'")
        return draw_matrix(samples, check_matrix(matrix, num_classes))
    return NOISE.build(kind, data_root, options=options)(samples)


__all__ = ["CIFAR10_FLIPS", "MNIST_FLIPS", "NOISE", "NoiseKind", "NoisyLabels", "Samples", "add_noise",
           "apply_transition", "check_matrix", "check_rate", "clean", "draw_matrix", "draw_rows", "flip_matrix",
           "load_matrix", "symmetric_matrix"]
