"""The implicit hypergradient against closed forms and independent solves, in float64.

Oracles: ridge regression's inner solution in closed form (a linear solve the test writes,
differentiated by autograd), L2-regularised logistic regression solved by Newton's method to
round-off with central differences of the meta loss around it, and the identity between the
Neumann series at a stationary point and a k-step unroll of plain SGD.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import meta_learning_signal

import labelmeta
from labelmeta import Config, fit
from labelmeta.strategies import (Functional, Implicit, Labels, LabelsAndWeights, MetaProblem, Strategy, WeightNet,
                                  Weights, make_strategy)

D, C, N, B, M, WD, LR = 4, 3, 12, 8, 10, 0.1, 0.2


def squared(logits, soft_targets, weights=None, targets=None):
    """Half the squared error to the soft targets: with weight decay, the inner problem is ridge regression."""
    per_sample = 0.5 * ((logits - soft_targets) ** 2).sum(1)
    return per_sample.mean() if weights is None else (per_sample * weights).sum()


def _problem(loss=squared, momentum=0.0, model=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, xm = torch.randn(B, D, generator=g, dtype=torch.float64), torch.randn(M, D, generator=g, dtype=torch.float64)
    targets = torch.randint(0, C, (N,), generator=g)
    idx = torch.randperm(N, generator=g)[:B]
    labels = labelmeta.make_labels("per-sample", targets, C, scale=1.0).double()
    with torch.no_grad():
        labels.logits.add_(0.5 * torch.randn(N, C, generator=g, dtype=torch.float64))
    model = model if model is not None else nn.Linear(D, C).double()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=momentum, weight_decay=WD)
    meta_batch = (xm, torch.randint(0, C, (M,), generator=g), torch.arange(M))
    return MetaProblem(model, opt, labels, (x, targets[idx], idx), meta_batch, loss=loss)


def _augmented(x):
    return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)


def ridge(x, soft, omega):
    """``[D + 1, C]``: the weights and bias minimising ``sum_i omega_i |W x_i + b - Y_i|^2 / 2 + WD |.|^2 / 2``."""
    xa = _augmented(x)
    a = xa.T @ (omega[:, None] * xa) + WD * torch.eye(xa.shape[1], dtype=x.dtype)
    return torch.linalg.solve(a, xa.T @ (omega[:, None] * soft))


def _set_linear(module, theta):
    with torch.no_grad():
        module.weight.copy_(theta[:-1].T)
        module.bias.copy_(theta[-1])


def _close(got, want, rtol):
    assert got is not None and want is not None
    err = float((got - want).norm() / want.norm())
    assert err <= rtol, err


@pytest.mark.parametrize("target", [Labels(), Weights(at="mean"), Weights(at="zero"), LabelsAndWeights(),
                                    WeightNet(hidden=5)], ids=lambda t: type(t).__name__ + getattr(t, "at", ""))
@pytest.mark.parametrize("solver", ["cg", "neumann"])
def test_matches_ridge_closed_form(target, solver):
    problem = _problem()
    if isinstance(target, WeightNet):
        target.net.double()
    meta = target.parameters(problem)
    with torch.enable_grad():
        weights = meta.weights()
        omega = torch.full((B,), 1.0 / B, dtype=torch.float64) if weights is None else weights
        theta = ridge(problem.batch[0], problem.soft_targets(), omega)
        value = F.cross_entropy(_augmented(problem.meta_batch[0]) @ theta, problem.meta_batch[1])
        want = torch.autograd.grad(value, meta.inputs, allow_unused=True)
    _set_linear(problem.model, theta.detach())
    xa = _augmented(problem.batch[0])
    eigen = torch.linalg.eigvalsh(xa.T @ (omega.detach()[:, None] * xa)) + WD  # the Hessian's, per output class
    # the series' error shrinks as (1 - lambda_min / lambda_max)^j at step 1 / lambda_max: 1e-10 of it
    ratio = float(eigen.min() / eigen.max())
    terms = 1 if ratio > 1 - 1e-12 else math.ceil(math.log(1e-10) / math.log1p(-ratio))
    options = (dict(iterations=3 * (D + 1) * C, tolerance=0.0) if solver == "cg"
               else dict(solver="neumann", step=float(1 / eigen.max()), iterations=terms))
    backend = Implicit(steps=0, **options)
    loss, got = backend.hypergradient(problem, meta.inputs, meta.weights())
    assert loss == pytest.approx(value.item(), rel=1e-12)
    for g, w in zip(got, want):
        if w is None or not w.abs().max() > 0:
            assert g is None or g.abs().max() < 1e-12
        else:
            _close(g, w, 1e-9 if solver == "cg" else 1e-6)
    assert backend.last_solve.residual < 1e-8


def test_inner_steps_at_the_solution_leave_it_where_it_is():
    problem = _problem(momentum=0.9)
    with torch.enable_grad():
        theta = ridge(problem.batch[0], problem.soft_targets(), torch.full((B,), 1.0 / B, dtype=torch.float64))
        value = F.cross_entropy(_augmented(problem.meta_batch[0]) @ theta, problem.meta_batch[1])
        [want] = torch.autograd.grad(value, [problem.labels.logits])
    _set_linear(problem.model, theta.detach())
    _, [got] = Implicit(steps=5, iterations=100, tolerance=0.0).hypergradient(problem, [problem.labels.logits])
    _close(got, want, 1e-9)


def test_steps_approach_the_solution_from_elsewhere():
    """From the initial weights, more inner steps bring the answer to the closed form's."""
    problem = _problem()
    with torch.enable_grad():
        theta = ridge(problem.batch[0], problem.soft_targets(), torch.full((B,), 1.0 / B, dtype=torch.float64))
        value = F.cross_entropy(_augmented(problem.meta_batch[0]) @ theta, problem.meta_batch[1])
        [want] = torch.autograd.grad(value, [problem.labels.logits])
    errors = []
    for steps in (0, 10, 100, 1000):
        _, [got] = Implicit(steps=steps, iterations=100, tolerance=0.0).hypergradient(problem, [problem.labels.logits])
        errors.append(float((got - want).norm() / want.norm()))
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-6 < errors[0], errors


def _logistic_solution(problem, iterations=30):
    """The weights and bias of the L2-regularised soft-label logistic regression, by Newton's method."""
    x, soft = _augmented(problem.batch[0]), problem.soft_targets().detach()

    def objective(flat):
        theta = flat.view(D + 1, C)
        return -(soft * F.log_softmax(x @ theta, 1)).sum(1).mean() + WD / 2 * (flat ** 2).sum()

    flat = torch.zeros((D + 1) * C, dtype=torch.float64)
    for _ in range(iterations):
        grad = torch.autograd.functional.jacobian(objective, flat)
        flat = flat - torch.linalg.solve(torch.autograd.functional.hessian(objective, flat), grad)
    assert torch.autograd.functional.jacobian(objective, flat).abs().max() < 1e-13
    return flat.view(D + 1, C)


def test_matches_central_differences_of_logistic_regression_solved_by_newton():
    problem = _problem(loss="ce")
    logits = problem.labels.logits

    def meta_loss():
        theta = _logistic_solution(problem)
        return F.cross_entropy(_augmented(problem.meta_batch[0]) @ theta, problem.meta_batch[1]).item()

    want, eps = torch.zeros_like(logits), 1e-5
    with torch.no_grad():
        for i in problem.batch[2].tolist():
            for c in range(C):
                logits[i, c] += eps
                up = meta_loss()
                logits[i, c] -= 2 * eps
                down = meta_loss()
                logits[i, c] += eps
                want[i, c] = (up - down) / (2 * eps)
    _set_linear(problem.model, _logistic_solution(problem))
    _, [got] = Implicit(steps=0, iterations=50, tolerance=0.0).hypergradient(problem, [logits])
    _close(got, want, 1e-6)


@pytest.mark.parametrize("k", [2, 3, 6])
def test_neumann_at_a_stationary_point_is_a_k_step_unroll_of_sgd(k):
    problem = _problem(loss="ce")
    _set_linear(problem.model, _logistic_solution(problem))
    _, [unrolled] = Functional(steps=k).hypergradient(problem, [problem.labels.logits])
    backend = Implicit(steps=0, solver="neumann", step=LR, iterations=k - 1)  # k terms of the series
    _, [implicit] = backend.hypergradient(problem, [problem.labels.logits])
    _close(implicit, unrolled, 1e-12)


def test_the_unroll_approaches_the_implicit_answer_as_it_converges():
    problem = _problem(loss="ce")
    _set_linear(problem.model, _logistic_solution(problem))
    _, [implicit] = Implicit(steps=0, iterations=100, tolerance=0.0).hypergradient(problem, [problem.labels.logits])
    errors = [float((Functional(steps=k).hypergradient(problem, [problem.labels.logits])[1][0] - implicit).norm()
                    / implicit.norm()) for k in (1, 10, 100)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.05, errors


def test_head_only_solves_for_the_head_on_the_model_features():
    model = nn.Sequential(nn.Linear(D, 5), nn.Tanh(), nn.Linear(5, C)).double()
    problem = _problem(model=model)
    with torch.no_grad():
        features, meta_features = model[:2](problem.batch[0]), model[:2](problem.meta_batch[0])
    with torch.enable_grad():
        xa = torch.cat([features, torch.ones(B, 1, dtype=torch.float64)], 1)
        a = xa.T @ xa / B + WD * torch.eye(6, dtype=torch.float64)
        theta = torch.linalg.solve(a, xa.T @ problem.soft_targets() / B)
        value = F.cross_entropy(torch.cat([meta_features, torch.ones(M, 1, dtype=torch.float64)], 1) @ theta,
                                problem.meta_batch[1])
        [want] = torch.autograd.grad(value, [problem.labels.logits])
    _set_linear(model[2], theta.detach())
    _, [got] = Implicit(steps=0, iterations=100, tolerance=0.0, head_only=True).hypergradient(
        problem, [problem.labels.logits])
    _close(got, want, 1e-9)


@pytest.mark.parametrize("options, message", [
    (dict(steps=-1), "steps must be an integer >= 0"), (dict(steps=1.5), "steps must be an integer >= 0"),
    (dict(solver="lu"), "solver must be 'cg' or 'neumann'"), (dict(iterations=0), "iterations must be"),
    (dict(tolerance=-1.0), "tolerance must be >= 0"), (dict(damping=-0.1), "damping must be >= 0"),
    (dict(step=0.0), "step must be > 0"), (dict(head="fc"), "head='fc' names the head of head_only=True"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        Implicit(**options)
    with pytest.raises(ValueError, match=message.split()[0]):  # by name: the schema's check or the constructor's
        make_strategy("implicit", **options)


def test_adamw_and_a_missing_head_are_refused_before_training():
    config = Config(dataset_options=dict(num_samples=300), meta_per_class=3, meta_batch_size=20, epochs=1,
                    progress=False, strategy="implicit")
    with pytest.raises(ValueError, match="AdamW's decoupled decay"):
        fit(config.replace(optimizer="adamw"))
    with pytest.raises(ValueError, match="has no submodule 'nope'"):
        fit(config.replace(strategy_options=dict(head_only=True, head="nope")))


@pytest.mark.parametrize("strategy, options", [("implicit", dict(steps=2, iterations=3)),
                                               ("implicit:labels+weights", dict(steps=1, iterations=3, head_only=True)),
                                               ("implicit:labels+weights", dict(steps=1, solver="neumann"))])
def test_trains_in_the_runner(strategy, options):
    # per-sample labels learn from the first meta step (detect-correct's only after its detection phase)
    config = Config(dataset_options=dict(num_samples=600), meta_per_class=5, meta_batch_size=20, epochs=2,
                    warmup_epochs=1, progress=False, strategy=strategy, strategy_options=options, label_lr=0.5,
                    labels="per-sample")
    signal, results = meta_learning_signal(config)
    assert results.history[1].meta_loss is not None and results.corrected >= 0.0
    assert isinstance(make_strategy(strategy, **options), Strategy)
    # the right way (tests/test_runner.py's check); the head alone moves the labels too little here to tell,
    # its weights do (measured, seeds 0-2: a weight gap of +0.31 to +0.42, and -0.06 to -0.35 with the sign flipped)
    assert signal["weights" if options.get("head_only") else "labels"] > 0 and signal.get("weights", 1.0) > 0
