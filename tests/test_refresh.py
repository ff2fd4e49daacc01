"""one-step's ``refresh``: a kept meta direction reused between meta steps (float64 oracles)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from labelmeta import Learner, make_label_optimizer, make_labels
from labelmeta.strategies import MetaProblem, make_strategy

N, D, C, LR = 24, 5, 3, 0.3


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(N, D, generator=g, dtype=torch.float64), torch.randint(0, C, (N,), generator=g)
    meta = (torch.randn(10, D, generator=g, dtype=torch.float64), torch.randint(0, C, (10,), generator=g),
            torch.arange(10))
    return x, y, meta


def _model():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(D, 7), torch.nn.Tanh(), torch.nn.Linear(7, C)).double()


def _learner(y, strategy="one-step", **options):
    model, labels = _model(), make_labels("per-sample", y, C).double()
    return Learner(model, torch.optim.SGD(model.parameters(), lr=LR, momentum=0.5), labels,
                   make_strategy(strategy, **options), make_label_optimizer("mirror", labels.parameters(), 0.5))


@pytest.mark.parametrize("product", ["forward", "reverse"])
def test_a_reused_direction_gives_the_gradient_of_its_inner_product(data, product):
    """Between refreshes the label gradient is ``d/dlambda <u, grad_theta L(theta_now, lambda)>`` with
    ``u = -lr * grad L_meta`` at the refresh step's look-ahead (SGD's step is affine in the gradient),
    each written here with plain autograd on the real module."""
    x, y, meta = data
    learner = _learner(y, refresh=3, product=product)
    first, second = (x[:12], y[:12], torch.arange(12)), (x[12:], y[12:], torch.arange(12, N))
    before = copy.deepcopy((learner.model, learner.labels))
    learner.step(first, meta)

    model, labels = before  # the refresh step's look-ahead, by hand
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(F.cross_entropy(model(first[0]), labels(first[2], first[1])), list(params.values()))
    ahead = {k: (p - LR * g).detach().requires_grad_() for (k, p), g in zip(params.items(), grads)}
    v = torch.autograd.grad(F.cross_entropy(functional_call(model, ahead, (meta[0],)), meta[1]), list(ahead.values()))

    model, labels = copy.deepcopy((learner.model, learner.labels))  # the reused step, at today's weights
    inner = torch.autograd.grad(F.cross_entropy(model(second[0]), labels(second[2], second[1])),
                                list(model.parameters()), create_graph=True)
    expected = torch.autograd.grad(-LR * sum((g * d).sum() for g, d in zip(inner, v)), list(labels.parameters()))

    learner.labels.zero_grad()
    learner.strategy.compute(MetaProblem(learner.model, learner.optimizer, learner.labels, second, meta))
    for got, want in zip(learner.labels.parameters(), expected):
        torch.testing.assert_close(got.grad, want, rtol=1e-10, atol=1e-14)
    assert learner.strategy.backend.state_dict()["uses"] == 2


def test_refresh_one_is_the_exact_step_and_a_checkpoint_keeps_the_direction(data):
    x, y, meta = data
    batches = [(x[i:i + 8], y[i:i + 8], torch.arange(i, i + 8)) for i in (0, 8, 16, 0, 8)]
    exact, once = _learner(y), _learner(y, refresh=1)
    for b in batches:
        exact.step(b, meta), once.step(b, meta)
    for a, b in zip(exact.labels.parameters(), once.labels.parameters()):
        assert torch.equal(a, b)
    assert once.state_dict()["strategy"] == {}

    whole, half = _learner(y, "one-step-reweight", refresh=3), _learner(y, "one-step-reweight", refresh=3)
    for b in batches:
        whole.step(b, meta)
    for b in batches[:2]:
        half.step(b, meta)
    state = copy.deepcopy(half.state_dict())  # mid-way through a kept direction's life
    assert state["strategy"]["backend"]["uses"] == 2
    resumed = _learner(y, "one-step-reweight", refresh=3)
    resumed.load_state_dict(state)
    for b in batches[2:]:
        resumed.step(b, meta)
    for a, b in zip(whole.labels.parameters(), resumed.labels.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_refresh_must_be_a_count():
    with pytest.raises(ValueError, match="refresh must be a positive integer, got 0"):
        make_strategy("one-step", refresh=0)
