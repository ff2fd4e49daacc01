"""A checkpointed unroll (``checkpoint=s``: segments recomputed in the backward pass) gives the plain
unroll's hypergradient to round-off, for every segment length, optimiser and the layers whose
forward draws random numbers or keeps running statistics. (Its memory is measured in
``benchmarks/unroll_depth.py``, not here.)"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import labelmeta
from labelmeta.strategies import (Functional, HeadOnly, LabelsAndWeights, MetaProblem, Truncated, Unrolled,
                                  make_strategy)

B, D, C, N = 16, 6, 4, 40


def _problem(model, optimizer, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, C, (N,), generator=g)
    idx = torch.randperm(N, generator=g)[:B]
    labels = labelmeta.make_labels("per-sample", targets, C, scale=1.0).to(dtype)
    batch = (torch.randn(B, D, generator=g, dtype=dtype), targets[idx], idx)
    meta = (torch.randn(20, D, generator=g, dtype=dtype), torch.randint(0, C, (20,), generator=g), torch.arange(20))
    return MetaProblem(model, optimizer, labels, batch, meta)


def _grads(backend, problem, seed=0):
    meta = LabelsAndWeights().parameters(problem)
    torch.manual_seed(seed)  # the same dropout masks for every backend compared
    loss, grads = backend.hypergradient(problem, meta.inputs, meta.weights())
    return loss, grads


def _same(a, b, rtol):
    (loss_a, grads_a), (loss_b, grads_b) = a, b
    assert loss_a == pytest.approx(loss_b, rel=rtol)
    for x, y in zip(grads_a, grads_b):
        assert float((x - y).norm()) <= rtol * float(y.norm()), float((x - y).norm() / y.norm())


@pytest.mark.parametrize("make_optimizer", [lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
                                            lambda p: torch.optim.Adam(p, lr=0.01),
                                            lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)],
                         ids=["sgd", "adam", "adamw"])
@pytest.mark.parametrize("segment", [1, 2, 4, 6])
def test_equals_the_plain_unroll(make_optimizer, segment):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, C)).double()
    problem = _problem(model, make_optimizer(model.parameters()))
    _same(_grads(Functional(steps=6, checkpoint=segment), problem), _grads(Functional(steps=6), problem), 1e-12)


@pytest.mark.parametrize("segment", [1, 2, 3])
def test_higher_backend_checkpoints_too(segment):
    """``unrolled`` (``higher``'s patched copy and ``diffopt.step``) by recomputed segments: its plain unroll's
    gradient, and ``functional``'s, to round-off; a model that reads a submodule's weight without calling it
    (``MultiheadAttention``'s ``out_proj``) sees each segment's own weights."""
    torch.manual_seed(0)

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.attention, self.head = nn.Linear(1, 4), nn.MultiheadAttention(4, 2, batch_first=True), \
                nn.Linear(4, C)

        def forward(self, x):
            h = self.embed(x.unsqueeze(-1))
            return self.head(self.attention(h, h, h, need_weights=False)[0].mean(1))

    model = Attention().double()
    problem = _problem(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3))
    plain = _grads(Unrolled(steps=3), problem)
    _same(_grads(Unrolled(steps=3, checkpoint=segment), problem), plain, 1e-12)
    _same(_grads(Functional(steps=3), problem), plain, 1e-12)


def test_dropout_and_batchnorm_are_recomputed_as_they_ran():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, C))
    problem = _problem(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), dtype=torch.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plain = _grads(Functional(steps=4), problem)
    _same(_grads(Functional(steps=4, checkpoint=2), problem), plain, 1e-5)
    assert not torch.equal(plain[1][1], _grads(Functional(steps=4), problem, seed=1)[1][1])  # masks matter
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # running statistics untouched


def test_truncated_and_head_only_checkpoint_their_differentiated_steps():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, C)).double()
    problem = _problem(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    _same(_grads(Truncated(steps=6, through=4, checkpoint=2), problem), _grads(Truncated(steps=6, through=4), problem),
          1e-12)
    _same(_grads(HeadOnly(steps=5, checkpoint=2), problem), _grads(HeadOnly(steps=5), problem), 1e-12)


@pytest.mark.parametrize("value", [-1, 1.5])
def test_bad_checkpoint_is_refused(value):
    with pytest.raises(ValueError, match="checkpoint must be an integer >= 0"):
        Functional(steps=4, checkpoint=value)
    with pytest.raises(ValueError, match="checkpoint"):
        make_strategy("functional", steps=4, checkpoint=value)


def test_a_weight_network_gets_the_same_gradient_through_its_weights():
    from labelmeta.strategies import WeightNet

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, C)).double()
    problem = _problem(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    target = WeightNet(hidden=5)
    target.net.double()
    results = []
    for backend in (Functional(steps=5, checkpoint=2), Functional(steps=5)):
        meta = target.parameters(problem)
        results.append(backend.hypergradient(problem, meta.inputs, meta.weights()))
    _same(*results, 1e-12)
