"""Seeded factories, on-disk dataset writers and one comparison helper shared by the tests."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import numpy as np

import torch
from torch import Tensor, nn

from labelmeta import LABELS, make_labels

N, C, D, B = 12, 4, 5, 6  # samples, classes, input features, batch size


def devices() -> List[str]:
    """The devices a test marked ``cuda`` runs on: ``"cpu"``, and ``"cuda"`` when a CUDA device is
    present (``pytest -m cuda`` selects those tests; ``benchmarks/device_check.py`` runs them)."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@contextlib.contextmanager
def float32_exactly(device: str) -> Iterator[None]:
    """float32 computed in float32 on ``device`` inside the block: cuDNN's convolutions take TF32 (10
    bits of mantissa) by default on recent GPUs, too coarse for float32 tolerances. Nothing changes
    on the CPU."""
    if torch.device(device).type != "cuda":
        yield
        return
    backends = torch.backends
    saved = backends.cudnn.conv.fp32_precision, backends.cuda.matmul.fp32_precision
    backends.cudnn.conv.fp32_precision = backends.cuda.matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        backends.cudnn.conv.fp32_precision, backends.cuda.matmul.fp32_precision = saved


class UnusedParam(nn.Module):
    """An MLP with a parameter that never enters the forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(D, 7), nn.Tanh(), nn.Linear(7, C))
        self.unused = nn.Parameter(torch.randn(3))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def make_model(kind: str, seed: int = 0) -> nn.Module:
    """``mlp`` (smooth), ``bn`` (with BatchNorm1d), ``ln`` (with LayerNorm) or ``unused`` (a
    parameter without gradient)."""
    torch.manual_seed(seed)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(D, 7), nn.Tanh(), nn.Linear(7, C))
    if kind == "bn":
        return nn.Sequential(nn.Linear(D, 7), nn.BatchNorm1d(7), nn.Tanh(), nn.Linear(7, C))
    if kind == "ln":
        return nn.Sequential(nn.Linear(D, 7), nn.LayerNorm(7), nn.Tanh(), nn.Linear(7, C))
    if kind == "unused":
        return UnusedParam()
    raise ValueError(kind)


def make_data(seed: int = 0):
    """Annotations ``[N]``, a training batch and a meta batch, each ``(x, y, idx)``."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, C, (N,), generator=g)
    idx = torch.randperm(N, generator=g)[:B]
    batch = (torch.randn(B, D, generator=g), targets[idx], idx)
    meta = (torch.randn(8, D, generator=g), torch.randint(0, C, (8,), generator=g), torch.arange(8))
    return targets, batch, meta


def make_learnable_labels(name: str, targets: Tensor, seed: int = 0):
    """Labels ``name`` with parameters moved off their symmetric initialisation."""
    labels = make_labels(name, targets, C, **({"scale": 2.0} if "scale" in LABELS.schema(name).options else {}))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in labels.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    # parameterisations that watch the model's predictions get some to watch, and those that watch the weights
    # a verdict: every other sample at weight zero (detect-correct's rejected rows learn) (a no-op for the rest)
    everyone = torch.arange(len(targets))
    labels.set_epochs(1)
    labels.observe(everyone, torch.randn(len(targets), C, generator=g))
    labels.observe_weights(everyone, (everyone % 2).double())
    return labels


def meta_learning_signal(config) -> Tuple[Dict[str, float], object]:
    """Which way a short noisy run's meta steps moved, as a flipped hypergradient sign would reverse it
    (and the run's ``Results``):

    - ``"labels"`` (a run that learns per-sample labels): over the corrupted samples, the mean change
      from the initial labels of the learned margin ``q[true] - q[annotated]`` (> 0: towards the truth);
    - ``"weights"`` (a run that learns weights): each sample's mean weight over its visits (relative to
      uniform), clean minus corrupted, averaged (> 0: the clean samples weigh more).
    """
    from labelmeta.build import splits_for
    from labelmeta.hooks import RunHook
    from labelmeta.runner import fit_learner

    class Weights(RunHook):
        total = count = None

        def after_step(self, run, stats) -> None:
            if stats.sample_weights is not None:
                if self.total is None:
                    n = len(run.splits.labels.noisy)
                    self.total, self.count = torch.zeros(n, dtype=torch.float64), torch.zeros(n)
                self.total[stats.indices] += stats.sample_weights.double() * len(stats.indices)
                self.count[stats.indices] += 1

    splits, seen = splits_for(config), Weights()
    learner, results = fit_learner(config, splits=splits, hooks=[seen])
    annotated, true = splits.labels.noisy, splits.labels.true
    corrupted = annotated != true
    signal = {}
    if learner.learns_labels:
        def margin(table: Tensor) -> float:
            rows = table[corrupted]
            return (rows.gather(1, true[corrupted, None]) - rows.gather(1, annotated[corrupted, None])).mean().item()

        initial = make_labels(config.labels, annotated, splits.num_classes, **config.label_options).table()
        signal["labels"] = margin(learner.labels.table().detach()) - margin(initial)
    if seen.total is not None:
        weight = seen.total / seen.count.clamp_min(1)
        signal["weights"] = (weight[~corrupted].mean() - weight[corrupted].mean()).item()
    return signal, results


def assert_close(actual: Tensor, expected: Tensor, rtol: float, what: str = "") -> None:
    """Relative error ``|a - e| / |e|`` (norms over all entries) at most ``rtol``."""
    err = (actual - expected).norm() / expected.norm().clamp_min(1e-300)
    assert err <= rtol, f"{what}: relative error {err:.3e} > {rtol:.1e}"


def write_cifar10(root: Path, n_train_per_batch: int = 4, n_test: int = 6) -> None:
    """A tiny CIFAR-10 in torchvision's on-disk format: random pixels, class ids in turn."""
    from labelmeta.data.files import write_cifar10 as write

    rng = np.random.default_rng(0)
    n_train = 5 * n_train_per_batch
    write(root, rng.integers(0, 256, (n_train, 3072), dtype=np.uint8), [i % 10 for i in range(n_train)],
          rng.integers(0, 256, (n_test, 3072), dtype=np.uint8), [i % 10 for i in range(n_test)])

class NoForwardMode(torch.autograd.Function):
    """tanh with a differentiable backward and no forward-mode formula (no ``jvp``, as a hand-written
    CUDA kernel may be): for the probe's tests."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * (1 - y * y)


class NoDoubleBackward(NoForwardMode):
    """tanh with neither a ``jvp`` nor a backward that can itself be differentiated."""

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        return NoForwardMode.backward(ctx, grad)


class Activation(nn.Module):
    """A module applying an ``autograd.Function`` (one of the above)."""

    def __init__(self, function) -> None:
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function.apply(x)
