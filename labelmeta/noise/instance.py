"""Instance-dependent noise: the chance and the direction of a flip depend on the sample.

* ``instance``: the generator of Xia et al. (NeurIPS 2020, "Part-dependent label noise"), as their
  released code draws the instance-dependent noise the field benchmarks on: a flip rate ``q_n`` per
  sample from a normal truncated to ``[0, 1]``, and the flip's direction from the sample's features
  projected by a random matrix of its class;
* ``confidence``: model-confidence noise after Zhang et al. (ICLR 2021, polynomial-margin-diminishing
  noise, type I): the samples a model finds ambiguous between their class and the next most likely one
  are flipped to that class, more often the smaller the margin.

Both scale their flip rates to mean ``noise_rate`` and pick the flipped samples by systematic sampling
(each with its own probability, the count the expected one), so the realised rate is the requested one
to within a sample (``instance``: to within the scatter of the mean of its random flip rates, about
``0.1 / sqrt(N)``).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..labels import check_targets
from ..options import check_count, check_range
from .base import NOISE, NoiseKind, NoisyLabels, Samples, check_rate, clean


def standardised_features(inputs: Tensor) -> Tensor:
    """``inputs`` flattened to ``[N, D]`` (float32), each feature centred and scaled to unit variance over
    the samples (a constant feature becomes 0): the normalised tensors a model reads."""
    x = inputs.reshape(len(inputs), -1).float()
    std = x.std(0, unbiased=False)
    return (x - x.mean(0)) / torch.where(std > 0, std, torch.ones_like(std))


def truncated_normal(mean: float, spread: float, size: int, generator: torch.Generator) -> Tensor:
    """``size`` draws (float64) from a normal of standard deviation ``spread`` truncated to ``[0, 1]``
    and located so that the truncated distribution's mean is ``mean`` (Xia et al. locate it at ``mean``,
    which shifts the realised rate by the truncation: up to half a point at 20 %)."""
    def truncated_mean(loc: float) -> float:
        a, b = torch.tensor([(0 - loc) / spread, (1 - loc) / spread], dtype=torch.float64)
        pdf = lambda z: torch.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
        mass = torch.special.ndtr(b) - torch.special.ndtr(a)
        return float(loc + spread * (pdf(a) - pdf(b)) / mass)

    low, high = mean - 10 * spread, mean + 10 * spread  # the truncated mean rises with loc: bisect
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if truncated_mean(mid) < mean else (low, mid)
    loc = (low + high) / 2
    lo, hi = torch.special.ndtr(torch.tensor([(0 - loc) / spread, (1 - loc) / spread], dtype=torch.float64))
    u = lo + (hi - lo) * torch.rand(size, generator=generator, dtype=torch.float64)
    return (loc + spread * torch.special.ndtri(u)).clamp(0, 1)


class FlipNoise(NoiseKind):
    """An instance-dependent kind: sample ``n`` flips with its own probability ``q_n``, to a class drawn
    from its own distribution over the others; a subclass gives both (:meth:`flips`)."""

    reads_inputs = True

    def flips(self, samples: Samples) -> Tuple[Tensor, Tensor]:
        """``q [N]`` and the flip's distribution over the classes, ``[N, C]`` (float64, zero on the sample's own)."""
        raise NotImplementedError

    def __call__(self, samples: Samples) -> NoisyLabels:
        check_rate(samples.rate)
        check_targets(samples.targets, samples.num_classes)
        if samples.rate == 0 or not len(samples.targets):
            return clean(samples.targets)
        return draw_flips(samples, *self.flips(samples))

    def rows(self, samples: Samples) -> Tensor:
        """Each sample's annotation distribution, ``[N, C]`` (float64; the generator consumed as a call does)."""
        return annotation_rows(samples.targets, *self.flips(samples))


@NOISE.register("instance")
class Instance(FlipNoise):
    """Instance-dependent noise (Xia et al. 2020's generator): sample ``n`` of class ``y`` keeps its
    label with probability ``1 - q_n`` (``q_n`` drawn around ``noise_rate``) and is otherwise flipped to
    ``j != y`` with probability ``softmax(x_n W_y)_j``, ``W_y`` a random ``D x C`` matrix of its class and
    ``x_n`` its standardised features.

    Args:
        spread: standard deviation of the per-sample flip rates ``q_n`` (Xia et al.'s 0.1), in (0, 1).
    """

    def __init__(self, data_root: Optional[str] = None, *, spread: float = 0.1) -> None:
        self.spread = check_range("noise 'instance' spread", spread, 0.0, 1.0, low_open=True)

    def flips(self, samples: Samples) -> Tuple[Tensor, Tensor]:
        """Each sample's flip probability ``q [N]`` and the distribution of a flip over the other classes,
        ``[N, C]`` (float64; ``q`` and ``W`` drawn from the generator)."""
        y, num_classes = samples.targets, samples.num_classes
        q = truncated_normal(samples.rate, self.spread, len(y), samples.generator)
        x = standardised_features(samples.inputs).double()
        logits = torch.empty(len(y), num_classes, dtype=torch.float64)
        for c in range(num_classes):  # W_c drawn for every class in order, members or not: one fixed stream
            w = torch.randn(x.shape[1], num_classes, generator=samples.generator, dtype=torch.float64)
            members = y == c
            logits[members] = x[members] @ w
        return q, torch.softmax(logits.scatter(1, y[:, None], -math.inf), dim=1)


def annotation_rows(y: Tensor, q: Tensor, direction: Tensor) -> Tensor:
    """Each sample's annotation distribution: ``1 - q_n`` on its class, ``q_n`` spread over the others as
    ``direction_n`` (zero on its class)."""
    return (direction * q[:, None]).scatter(1, y[:, None], (1 - q)[:, None])


def systematic_flips(q: Tensor, generator: torch.Generator) -> Tensor:
    """Which samples flip: sample ``n`` with probability ``q_n`` exactly, and the number flipped
    ``floor`` or ``ceil`` of ``sum(q)`` (systematic sampling in a random order), so that the realised rate
    is the expected one to a sample, where independent draws would scatter by ``~0.5 / sqrt(N)``."""
    order = torch.randperm(len(q), generator=generator)
    upper = torch.cumsum(q[order], 0)
    offset = torch.rand(1, generator=generator, dtype=torch.float64)
    hit = torch.floor(upper - offset) > torch.floor(upper - q[order] - offset)  # a point offset + m in (lower, upper]
    return torch.zeros(len(q), dtype=torch.bool).index_put_((order,), hit)


def draw_flips(samples: Samples, q: Tensor, direction: Tensor) -> NoisyLabels:
    """The annotations: the samples :func:`systematic_flips` picks move to a class drawn from their
    ``direction``; the rest keep theirs."""
    flip = systematic_flips(q, samples.generator)
    noisy = samples.targets.clone()
    if bool(flip.any()):
        noisy[flip] = torch.multinomial(direction[flip], 1, generator=samples.generator).squeeze(1)
    return NoisyLabels(noisy=noisy, true=samples.targets.clone(), nominal_rate=samples.rate)


def fit_probabilities(x: Tensor, y: Tensor, num_classes: int, steps: int, weight_decay: float = 1e-3) -> Tensor:
    """A multinomial logistic regression fitted to ``(x, y)`` by L-BFGS from zero (deterministic), and its
    class probabilities for ``x`` (``[N, C]``)."""
    weight = torch.zeros(x.shape[1], num_classes, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight + bias, y) + weight_decay * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return torch.softmax(x @ weight + bias, dim=1)


def scale_to_mean(base: Tensor, rate: float, cap: float) -> Tensor:
    """``min(cap, c * base)`` with ``c`` chosen so that its mean is ``rate`` (``ValueError`` where even
    ``cap`` everywhere cannot reach it)."""
    reachable = float(torch.where(base > 0, torch.full_like(base, cap), base).mean())
    if rate > reachable + 1e-12:
        raise ValueError(f"noise rate {rate} is out of reach: at most {reachable:.3f} of these samples can be "
                         f"flipped with max_flip={cap}")
    low, high = 0.0, 1.0
    while float((high * base).clamp(max=cap).mean()) < rate:
        high *= 2
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if float((mid * base).clamp(max=cap).mean()) < rate else (low, mid)
    return (high * base).clamp(max=cap)


@NOISE.register("confidence")
class Confidence(FlipNoise):
    """Model-confidence noise (after Zhang et al. 2021's polynomial-margin-diminishing noise, type I): a
    logistic regression fitted to the clean labels gives each sample its class probabilities ``η``; the
    sample is flipped to the most likely other class ``s`` with probability ``c (1 - (η_y - η_s)^2)``
    (at most ``max_flip``), ``c`` chosen so that the rate is ``noise_rate``: the ambiguous samples, near
    the boundary the model draws, are the mislabelled ones, and always towards the same neighbour.

    Args:
        max_flip: the largest flip probability of a sample, in (0, 1].
        steps: L-BFGS iterations of the logistic regression.
    """

    def __init__(self, data_root: Optional[str] = None, *, max_flip: float = 1.0, steps: int = 100) -> None:
        self.max_flip = check_range("noise 'confidence' max_flip", max_flip, 0.0, 1.0, low_open=True, high_open=False)
        self.steps = check_count("noise 'confidence' steps", steps)

    def flips(self, samples: Samples) -> Tuple[Tensor, Tensor]:
        """Each sample's flip probability ``q [N]`` and its flip's class, one-hot ``[N, C]`` (float64): a
        function of its input alone, given the training set."""
        y, num_classes = samples.targets, samples.num_classes
        eta = fit_probabilities(standardised_features(samples.inputs), y, num_classes, self.steps).double()
        other = eta.scatter(1, y[:, None], -1.0).argmax(1)
        margin = eta.gather(1, y[:, None]).squeeze(1) - eta.gather(1, other[:, None]).squeeze(1)
        q = scale_to_mean(1 - margin.square(), samples.rate, self.max_flip)
        return q, torch.nn.functional.one_hot(other, num_classes).double()
