"""No graph survives a step: resident memory after 200 meta steps stays within a margin of that after 20."""
from __future__ import annotations

import gc
import os

import torch

from labelmeta import Learner, make_label_optimizer, make_labels
from labelmeta.strategies import Functional, FunctionalModel, InnerLoop

MARGIN = 16 * 2**20  # bytes


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _LeakyModel(FunctionalModel):
    kept: list = []

    def step(self, *args, **kwargs):
        point = super().step(*args, **kwargs)
        self.kept.append(point)
        return point


class _Leaky(Functional):
    """Keeps every unroll's fast weights (and the graph that made them) alive: the leak the test
    must catch. (Keeping only the meta loss would not do: backward frees the saved tensors, so a
    kept loss holds just the graph's small nodes.)"""

    def __init__(self) -> None:
        super().__init__(steps=1)
        _LeakyModel.kept = []

    def loop(self, problem):
        return InnerLoop(problem, _LeakyModel(problem.model, problem.optimizer))


def _growth(strategy) -> int:
    torch.manual_seed(0)
    n, d, b = 4096, 256, 256
    x, y = torch.randn(n, d), torch.randint(0, 10, (n,))
    model = torch.nn.Sequential(torch.nn.Linear(d, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10))
    labels = make_labels("per-sample-ensemble", y, 10)
    learner = Learner(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), labels, strategy,
                      make_label_optimizer("mirror", labels.parameters(), 0.5))
    g = torch.Generator().manual_seed(0)

    def step():
        idx, meta = torch.randint(0, n, (b,), generator=g), torch.randint(0, n, (b,), generator=g)
        learner.step((x[idx], y[idx], idx), (x[meta], y[meta], meta))

    for _ in range(20):
        step()
    gc.collect()
    after_20 = _rss()
    for _ in range(180):
        step()
    gc.collect()
    return _rss() - after_20


def test_memory_is_bounded_over_long_runs():
    assert _growth(Functional(steps=1)) < MARGIN


def test_the_memory_check_catches_a_leak():
    assert _growth(_Leaky()) > 4 * MARGIN
