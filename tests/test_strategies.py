"""Every strategy against an independent oracle (float64).

- ``functional`` (torch.func backend) against ``unrolled`` (higher): exact, to round-off;
- ``truncated`` against plain ``torch.optim`` steps followed by the exact unroll of the rest;
- ``head-only`` against the exact unroll of the same model with its backbone frozen;
- ``finite-difference`` against the exact gradient of the same (last-step) objective: its error
  is second order in the radius (halving it quarters the error), the statement its docstring makes.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from helpers import C, assert_close, make_data, make_learnable_labels, make_model
from labelmeta import LABELS, Learner, make_label_optimizer, make_labels
from labelmeta.distributed import Distributed
from labelmeta.strategies import (BACKENDS, STRATEGIES, TARGETS, FiniteDifference, Functional, HeadOnly, MetaProblem,
                                  OneStep, Strategy, Truncated, Unrolled, Weights, as_strategy, find_head,
                                  make_strategy)

LEARNABLE = [n for n in LABELS.names() if LABELS.get(n)(torch.zeros(2, dtype=torch.long), 2).learnable]

OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.3, momentum=0.9, weight_decay=0.01),
    "sgd-nesterov": lambda p: torch.optim.SGD(p, lr=0.2, momentum=0.8, nesterov=True, weight_decay=0.01),
    "sgd-dampening": lambda p: torch.optim.SGD(p, lr=0.2, momentum=0.7, dampening=0.3),
    "sgd-plain": lambda p: torch.optim.SGD(p, lr=0.5),
    "adam": lambda p: torch.optim.Adam(p, lr=0.05, weight_decay=0.01),
    "adam-amsgrad": lambda p: torch.optim.Adam(p, lr=0.05, amsgrad=True),
}


def _setup(model_kind="mlp", labels_name="per-sample", optimizer="sgd", warm=True, dtype=torch.float64):
    targets, batch, meta = make_data()
    model = make_model(model_kind).to(dtype)
    batch = (batch[0].to(dtype), batch[1], batch[2])
    meta = (meta[0].to(dtype), meta[1], meta[2])
    labels = make_learnable_labels(labels_name, targets).to(dtype)
    opt = OPTIMIZERS[optimizer](model.parameters())
    if warm:  # one real step so that the optimiser carries state
        opt.zero_grad()
        F.cross_entropy(model(batch[0]), batch[1]).backward()
        opt.step()
    return model, opt, labels, batch, meta


def _grads(strategy, model, opt, labels, batch, meta):
    for p in labels.parameters():
        p.grad = None
    as_strategy(strategy).compute(MetaProblem(model, opt, labels, batch, meta))
    return [p.grad.clone() for p in labels.parameters()]


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("model_kind", ["mlp", "bn", "unused"])
def test_functional_backend_agrees_with_higher(model_kind, optimizer, k, float64):
    model, opt, labels, batch, meta = _setup(model_kind, "per-sample-ensemble", optimizer)
    for a, b in zip(_grads(Functional(steps=k), model, opt, labels, batch, meta),
                    _grads(Unrolled(steps=k), model, opt, labels, batch, meta)):
        assert_close(a, b, 1e-11, f"{model_kind}/{optimizer}/k={k}")


@pytest.mark.parametrize("labels_name", LEARNABLE)
def test_functional_backend_every_parameterisation(labels_name, float64):
    model, opt, labels, batch, meta = _setup("bn", labels_name)
    assert_close(Functional(steps=2).meta_loss(MetaProblem(model, opt, labels, batch, meta)),
                 Unrolled(steps=2).meta_loss(MetaProblem(model, opt, labels, batch, meta)), 1e-13, "meta loss")
    for a, b in zip(_grads(Functional(steps=2), model, opt, labels, batch, meta),
                    _grads(Unrolled(steps=2), model, opt, labels, batch, meta)):
        assert_close(a, b, 1e-11, labels_name)


def test_functional_from_a_fresh_optimiser_and_leaves_state_alone(float64):
    model, opt, labels, batch, meta = _setup("bn", optimizer="adam", warm=False)
    before = copy.deepcopy(model.state_dict())
    for a, b in zip(_grads(Functional(steps=2), model, opt, labels, batch, meta),
                    _grads(Unrolled(steps=2), model, opt, labels, batch, meta)):
        assert_close(a, b, 1e-11, "fresh Adam")
    assert not opt.state
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


@pytest.mark.parametrize("k, t", [(2, 1), (3, 2), (3, 3)])
def test_truncated_equals_plain_steps_then_the_exact_unroll(k, t, float64):
    model, opt, labels, batch, meta = _setup("bn")
    got = _grads(Truncated(steps=k, through=t), model, opt, labels, batch, meta)
    # oracle: k - t real torch.optim steps on a copy against the current labels, then exact
    twin = copy.deepcopy(model)
    twin_opt = OPTIMIZERS["sgd"](twin.parameters())
    twin_opt.load_state_dict(opt.state_dict())
    x, y, idx = batch
    for _ in range(k - t):
        twin_opt.zero_grad()
        F.cross_entropy(twin(x), labels(idx, y).detach()).backward()
        twin_opt.step()
    twin.load_state_dict({**twin.state_dict(), **{n: b for n, b in model.named_buffers()}})  # unroll never moves stats
    expected = _grads(Unrolled(steps=t), twin, twin_opt, labels, batch, meta)
    for a, b in zip(got, expected):
        assert_close(a, b, 1e-10, f"truncated k={k} t={t}")


def test_head_only_equals_the_exact_unroll_with_a_frozen_backbone(float64):
    model, opt, labels, batch, meta = _setup("bn")
    name, head = find_head(model)
    assert name == "3"  # the last nn.Linear of the Sequential
    got = _grads(HeadOnly(steps=2), model, opt, labels, batch, meta)
    frozen = copy.deepcopy(model)
    for n, p in frozen.named_parameters():
        p.requires_grad_(n.startswith("3."))
    head_params = [p for n, p in frozen.named_parameters() if n.startswith("3.")]
    head_opt = OPTIMIZERS["sgd"](head_params)
    head_opt.state.update({q: {k: v.clone() for k, v in opt.state[p].items()}
                           for (n, p), q in zip(model.named_parameters(), frozen.parameters()) if n.startswith("3.")})
    expected = _grads(Unrolled(steps=2), frozen, head_opt, labels, batch, meta)
    for a, b in zip(got, expected):
        assert_close(a, b, 1e-10, "head-only")


@pytest.mark.parametrize("optimizer", ["sgd", "sgd-nesterov", "sgd-dampening", "sgd-plain"])
@pytest.mark.parametrize("k", [1, 3])
def test_finite_difference_approximates_the_last_step(optimizer, k, float64):
    """Within 1e-4 (relative) of the exact gradient through the last inner step on this model
    (not a bound for every model: see the next test)."""
    model, opt, labels, batch, meta = _setup("bn", "per-sample-ensemble", optimizer)
    got = _grads(FiniteDifference(steps=k), model, opt, labels, batch, meta)
    exact = _grads(Truncated(steps=k, through=1), model, opt, labels, batch, meta)
    for a, b in zip(got, exact):
        assert_close(a, b, 1e-4, f"finite difference k={k}")


@pytest.mark.parametrize("labels_name", ["temperature", "class-temperature", "per-sample-ensemble", "per-class"])
@pytest.mark.parametrize("model_kind", ["mlp", "bn", "ln"])
def test_finite_difference_error_is_second_order_in_the_radius(model_kind, labels_name, float64):
    """The stated accuracy: the relative error is ``K * scale**2``; halving the radius divides it by 4."""
    model, opt, labels, batch, meta = _setup(model_kind, labels_name, "sgd")
    exact = torch.cat([g.flatten() for g in _grads(Truncated(steps=1, through=1), model, opt, labels, batch, meta)])
    errors = []
    for scale in (0.04, 0.02, 0.01):
        got = torch.cat([g.flatten() for g in _grads(FiniteDifference(steps=1, scale=scale), model, opt, labels, batch, meta)])
        errors.append(((got - exact).norm() / exact.norm()).item())
    for larger, smaller in zip(errors, errors[1:]):
        assert 3.5 <= larger / smaller <= 4.5, errors


def test_finite_difference_is_close_to_the_exact_one_step_gradient_in_float32():
    model, opt, labels, batch, meta = _setup("mlp", dtype=torch.float32)
    for a, b in zip(_grads(FiniteDifference(steps=1), model, opt, labels, batch, meta),
                    _grads(Unrolled(steps=1), model, opt, labels, batch, meta)):
        assert_close(a, b, 2e-2, "finite difference, float32")


def test_the_learner_takes_a_meta_step_exactly_when_given_a_meta_batch():
    """When is the schedule's business (labelmeta.schedule.MetaSchedule): the learner steps the labels
    whenever it is handed a meta batch, and leaves them alone otherwise."""
    targets, batch, meta = make_data()
    model = make_model("mlp")
    labels = make_labels("per-sample", targets, C)
    learner = Learner(model, torch.optim.SGD(model.parameters(), lr=0.1), labels, Functional(steps=1),
                      make_label_optimizer("mirror", labels.parameters(), 0.5))
    given = [True, False, False, True, False]
    before = labels.logits.detach().clone()
    took = []
    for g in given:
        took.append(learner.step(batch, meta if g else None).meta_loss is not None)
        if not g:
            assert torch.equal(labels.logits.detach(), before)
        before = labels.logits.detach().clone()
    assert took == given


def test_registry_and_bad_options():
    assert {"one-step", "unrolled", "functional", "truncated", "head-only", "finite-difference",
            "reweight", "one-step-reweight", "meta-weight-net"} <= set(STRATEGIES.names())
    assert isinstance(make_strategy("truncated", steps=4, through=2).backend, Truncated)
    with pytest.raises(ValueError, match=r"through must be an integer in \[1, steps=2\], got 3"):
        Truncated(steps=2, through=3)
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        Functional(steps=0)
    with pytest.raises(ValueError, match=r"strategy 'truncated' has no option 'every'; its options: steps, through"):
        make_strategy("truncated", every=2)
    with pytest.raises(ValueError, match="scale must be > 0"):
        FiniteDifference(steps=1, scale=0)
    with pytest.raises(ValueError, match="model has no submodule 'fc'"):
        find_head(make_model("mlp"), "fc")


INCOMPATIBLE = [
    ("one-step", torch.optim.RMSprop, r"no differentiable RMSprop .*; use one of: Adam, AdamW, SGD"),
    ("functional", torch.optim.RMSprop, r"no differentiable RMSprop .*; use one of: Adam, AdamW, SGD"),
    ("unrolled", torch.optim.RMSprop, r"no differentiable RMSprop .*; use one of: Adam, AdamW, SGD"),
    ("truncated", torch.optim.Adagrad, r"no differentiable Adagrad"),
    ("head-only", torch.optim.RMSprop, r"no differentiable RMSprop"),
    ("reweight", torch.optim.RMSprop, r"no differentiable RMSprop"),
    ("one-step-reweight", torch.optim.RMSprop, r"no differentiable RMSprop"),
    ("meta-weight-net", torch.optim.RMSprop, r"no differentiable RMSprop"),
    ("finite-difference", torch.optim.Adam, r"finite-difference needs SGD .* got Adam"),
]


@pytest.mark.parametrize("strategy, optimizer, message", INCOMPATIBLE, ids=[c[0] for c in INCOMPATIBLE])
def test_incompatible_optimizer_is_refused_when_the_learner_is_built(strategy, optimizer, message):
    """Refused by the constructor, before any step (not at the first meta step, after warm-up)."""
    model, _, labels, _, _ = _setup("mlp", dtype=torch.float32)
    label_optimizer = make_label_optimizer("mirror", labels.parameters(), 0.5)
    if not make_strategy(strategy).learns_labels:  # it learns weights, not labels
        labels, label_optimizer = make_labels("one-hot", labels.targets, C), None
    with pytest.raises(ValueError, match=message) as err:
        Learner(model, optimizer(model.parameters()), labels, strategy, label_optimizer)
    assert "higher" not in str(err.value)


def test_every_exact_strategy_takes_adamw_and_maximize():
    model, _, labels, batch, meta = _setup("mlp", dtype=torch.float32)
    for name in ("one-step", "one-step-reweight", "unrolled", "functional", "truncated", "head-only"):
        for opt in (torch.optim.AdamW(model.parameters()), torch.optim.SGD(model.parameters(), lr=0.1, maximize=True)):
            Learner(model, opt, labels, name, make_label_optimizer("mirror", labels.parameters(), 0.5)).step(batch, meta)




# ---------------------------------------------------------------------------------------------
# Every backend with every target, against the independent oracle.

#: options that make each backend exact for the test's problem (head-only: the model's backbone is
#: frozen, see below; finite-difference: a radius whose second-order error is below the tolerance)
PAIR_OPTIONS = {"finite-difference": dict(scale=1e-4), "truncated": dict(steps=2, through=2)}


#: backends whose gradient is not a k-step unroll's: their oracles are elsewhere (implicit: the
#: stationary point's, against closed forms and Newton solves in tests/test_implicit.py)
NOT_K_STEP = {"implicit"}


@pytest.mark.parametrize("target", TARGETS.names())
@pytest.mark.parametrize("backend", [b for b in BACKENDS.names() if b not in NOT_K_STEP])
def test_every_backend_with_every_target_against_real_optimizer_steps(backend, target, float64):
    """The hypergradient of each pair with respect to each meta parameter its target names (label
    parameters, the inner loss's per-sample weights, a weight network's parameters) against central
    differences of the meta loss after real ``torch.optim`` steps (:mod:`labelmeta.gradcheck`)."""
    from labelmeta.gradcheck import strategy_relative_error

    targets, batch, meta = make_data()
    model = make_model("bn").double()
    if backend == "head-only":  # exact for a model whose backbone does not train
        for p in list(model.parameters())[:-2]:
            p.requires_grad_(False)
    batch, meta = (batch[0].double(), *batch[1:]), (meta[0].double(), *meta[1:])
    labels = make_learnable_labels("per-sample", targets).double()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.3, momentum=0.9, weight_decay=0.01)
    F.cross_entropy(model(batch[0]), batch[1]).backward()
    opt.step()  # momentum to carry
    strategy = make_strategy(f"{backend}:{target}", **PAIR_OPTIONS.get(backend, {}))
    if target == "weight-net":
        strategy.target.net.double()
    steps = strategy.backend.steps
    error = strategy_relative_error(strategy, model, opt, labels, batch, meta, steps=steps)
    assert error <= (1e-5 if backend == "finite-difference" else 1e-7), error


class _LocalBackend(OneStep):
    supports_distributed = False  # as a user's backend would declare it


class _LocalTarget(Weights):
    supports_distributed = False


@pytest.mark.parametrize("half", ["backend", "target"])
def test_a_pair_that_runs_in_one_process_is_refused_naming_its_half(half):
    """Under several processes (the check comes before the process group is used, so any stand-in
    for it reaches it) a pair one of whose halves declares it runs in one process is refused, naming that half."""
    targets, batch, meta = make_data()
    model = make_model("mlp")
    strategy = Strategy(_LocalBackend() if half == "backend" else OneStep(),
                        _LocalTarget() if half == "target" else Weights(), "mine")
    name = "_LocalBackend backend" if half == "backend" else "_LocalTarget target"
    with pytest.raises(ValueError, match=rf"'mine' strategy does not run in several processes \(its {name} "
                                         r"runs in one only\)"):
        Learner(model, torch.optim.SGD(model.parameters(), lr=0.1), make_labels("one-hot", targets, C), strategy,
                distributed=Distributed(0, 2))
