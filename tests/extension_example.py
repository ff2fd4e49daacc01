"""One file that extends labelmeta with a label parameterisation, a hypergradient backend, a meta
target and a dataset.

Nothing else is edited: each component registers itself and declares its options as keyword-only
arguments, and the command line and ``fit`` pick them up; the backend runs with every target and
the target with every backend (``--strategy BACKEND:TARGET``)::

    labelmeta --import tests/extension_example.py train --dataset example-blobs --data-num-samples 400 \\
        --model mlp --labels example-floor --label-floor 0.1 --strategy example-damped --strategy-damping 0.5
    labelmeta --import tests/extension_example.py train ... --strategy one-step:example-capped --strategy-cap 2

``tests/test_extending.py`` runs exactly that, and the same run through ``fit``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labelmeta.data import DATASETS, IndexedTensorDataset, RawData
from labelmeta.labels import LABELS, LabelParameterization
from labelmeta.strategies import BACKENDS, TARGETS, Functional, MetaProblem, MetaStats, UnrollBackend, Weights


@LABELS.register("example-floor")
class FloorLabels(LabelParameterization):
    """Per-sample label logits whose distribution never gives a class less than ``floor / C``.

    Args:
        floor: mass spread uniformly over the classes, in ``[0, 1)``; default 0.
    """

    def __init__(self, targets: Tensor, num_classes: int, *, floor: float = 0.0) -> None:
        super().__init__(targets, num_classes)
        if not 0.0 <= floor < 1.0:
            raise ValueError(f"floor must lie in [0, 1), got {floor}")
        self.floor = floor
        self.logits = nn.Parameter(4.0 * F.one_hot(self.targets, num_classes).float())

    def soft_targets(self, indices: Tensor, targets: Tensor) -> Tensor:
        return (1 - self.floor) * F.softmax(self.logits[indices], dim=1) + self.floor / self.num_classes


@BACKENDS.register("example-damped")
class Damped(UnrollBackend):
    """The exact one-step hypergradient, multiplied by ``damping``.

    Args:
        damping: factor on the meta loss (> 0); default 1.
    """

    def __init__(self, *, damping: float = 1.0) -> None:
        if damping <= 0:
            raise ValueError(f"damping must be > 0, got {damping}")
        self.damping = damping
        self.exact = Functional(steps=1)

    def meta_loss(self, problem: MetaProblem, weights: Optional[Tensor] = None) -> Tensor:
        return self.damping * self.exact.meta_loss(problem, weights)


@TARGETS.register("example-capped")
class Capped(Weights):
    """Learning to reweight with no sample weighing more than ``cap`` times an average one (what the
    cap removes is not given to the others: the model step is shortened instead).

    Args:
        cap: the largest weight relative to ``1 / B`` (>= 1); default 2.
    """

    def __init__(self, *, cap: float = 2.0) -> None:
        super().__init__(at="zero")
        if cap < 1:
            raise ValueError(f"cap must be >= 1, got {cap}")
        self.cap = cap

    def update(self, problem, meta, meta_loss, grads) -> MetaStats:
        stats = super().update(problem, meta, meta_loss, grads)
        return MetaStats(meta_loss, stats.sample_weights.clamp_max(self.cap / len(stats.sample_weights)))


@DATASETS.register("example-blobs")
def blobs(data_root: Optional[str] = None, *, num_samples: int = 600) -> RawData:
    """Four Gaussian blobs in 8 dimensions: ``num_samples`` training samples and 200 test samples.

    Args:
        num_samples: training samples (>= 40); default 600.
    """
    if num_samples < 40:
        raise ValueError(f"example-blobs needs num_samples >= 40, got {num_samples}")
    g = torch.Generator().manual_seed(0)
    centres = 2.0 * torch.randn(4, 8, generator=g)

    def draw(n: int) -> IndexedTensorDataset:
        y = torch.arange(n) % 4
        return IndexedTensorDataset(centres[y] + torch.randn(n, 8, generator=g), y)

    train, test = draw(num_samples), draw(200)
    return RawData(train, train.y, test, num_classes=4, input_shape=(8,))
