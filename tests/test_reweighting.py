"""Strategies that weight the model step's samples: ``one-step-reweight`` (weights, and labels with
learnable labels, from one hypergradient) and ``meta-weight-net`` (a meta-learned loss -> weight network).

Oracles (float64): a closed form of the weight gradient after one plain SGD step; central
differences of the meta loss after a *real* ``torch.optim`` step of a copy of the model (for the
label gradient and for the network's parameters); bit-for-bit equality of a resumed run with an
uninterrupted one (the network and its optimiser are checkpointed).
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from helpers import assert_close, make_data, make_learnable_labels, make_model
from labelmeta import Config, fit, make_labels
from labelmeta.learner import Learner
from labelmeta.strategies import MetaProblem, MetaWeightNet, OneStep, OneStepReweight, make_strategy
from helpers import C


def _setup(model_kind: str, labels_name: str, momentum: float = 0.0):
    targets, batch, meta = make_data()
    model = make_model(model_kind).double()
    batch = (batch[0].double(), *batch[1:])
    meta = (meta[0].double(), *meta[1:])
    labels = (make_labels(labels_name, targets, C) if labels_name == "one-hot"
              else make_learnable_labels(labels_name, targets)).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=momentum)
    return model, opt, labels, batch, meta


def _meta_after_real_step(model, opt, targets, weights, batch, meta) -> float:
    """The meta loss after one real ``torch.optim`` step of a copy, on ``sum_i w_i CE(x_i, t_i)``."""
    twin = copy.deepcopy(model)
    twin_opt = type(opt)(twin.parameters(), lr=opt.defaults["lr"])
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    twin_opt.zero_grad()
    (weights * -(targets * F.log_softmax(twin(batch[0]), 1)).sum(1)).sum().backward()
    twin_opt.step()
    with torch.no_grad():
        return F.cross_entropy(twin(meta[0]), meta[1]).item()


@pytest.mark.parametrize("weighting", ["proportional", "binary"])
@pytest.mark.parametrize("product", ["forward", "reverse"])
@pytest.mark.parametrize("model_kind", ["mlp", "bn"])
def test_one_step_reweight_weights_closed_form(model_kind, product, weighting, float64):
    """Plain SGD from ``w = 1/B``: ``dL/dw_i = -lr <grad L_meta(theta'), grad l_i(theta)>``, with
    ``theta'`` after the ordinary step; the weights are ``max(-dL/dw, 0)`` (``binary``: its
    indicator), normalised."""
    model, opt, labels, batch, meta = _setup(model_kind, "one-hot")
    strategy = OneStepReweight(product=product, weighting=weighting)
    stats = strategy.compute(MetaProblem(model, opt, labels, batch, meta))
    x, y, _ = batch
    twin = copy.deepcopy(model)  # the step, by hand (BatchNorm's statistics move in the twin only)
    params = list(twin.parameters())
    per_sample_grads = [torch.autograd.grad(F.cross_entropy(twin(x), y, reduction="none")[i], params)
                        for i in range(len(x))]  # each in the batch's own statistics
    mean = [sum(g[j] for g in per_sample_grads) / len(x) for j in range(len(params))]
    with torch.no_grad():
        for p, g in zip(params, mean):
            p -= 0.3 * g
    meta_grad = torch.autograd.grad(F.cross_entropy(twin(meta[0]), meta[1]), params)
    grad = torch.stack([-0.3 * sum((a * b).sum() for a, b in zip(meta_grad, g)) for g in per_sample_grads])
    expected = (-grad).clamp_min(0)
    assert 0 < (expected > 0).sum() < len(x), "the case should both keep and drop samples"
    if weighting == "binary":
        expected = (expected > 0).double()
    assert_close(stats.sample_weights, expected / expected.sum(), 1e-10, "weights")


@pytest.mark.parametrize("model_kind", ["mlp", "bn"])
def test_one_step_reweight_label_gradient_finite_differences(model_kind, float64):
    """With learnable labels the same pass gives the label gradient of the ordinary (mean) step:
    central differences of the meta loss after a real SGD step with momentum."""
    model, opt, labels, batch, meta = _setup(model_kind, "per-sample-ensemble", momentum=0.9)
    opt.zero_grad()
    F.cross_entropy(model(batch[0]), batch[1]).backward()
    opt.step()  # momentum buffers
    OneStepReweight().compute(MetaProblem(model, opt, labels, batch, meta))
    (grad,) = [p.grad for p in labels.parameters()]
    assert grad.abs().sum() > 0
    uniform = torch.full((len(batch[0]),), 1 / len(batch[0]), dtype=torch.float64)
    direction = torch.randn(grad.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)

    def meta_at(h: float) -> float:
        moved = copy.deepcopy(labels)
        with torch.no_grad():
            moved.logits += h * direction
            targets = moved(batch[2], batch[1])
        return _meta_after_real_step(model, opt, targets, uniform, batch, meta)

    numeric = (meta_at(1e-5) - meta_at(-1e-5)) / 2e-5
    assert numeric == pytest.approx((grad * direction).sum().item(), rel=1e-6)


def test_one_step_reweight_learns_weights_and_labels():
    strategy = make_strategy("one-step-reweight")
    assert strategy.learns_weights and strategy.learns_labels and strategy.supports_distributed
    assert not make_strategy("meta-weight-net").learns_labels


def test_meta_weight_net_gradient_finite_differences(float64):
    """The network's gradient against central differences of the meta loss after a real SGD
    step weighted by the network, along a random direction of its parameters."""
    model, opt, labels, batch, meta = _setup("bn", "one-hot", momentum=0.9)
    torch.manual_seed(0)
    strategy = MetaWeightNet(hidden=8)
    strategy.net.double()
    with torch.no_grad():
        losses = F.cross_entropy(model(batch[0]), batch[1], reduction="none")  # train mode, as the step
    model.load_state_dict(_setup("bn", "one-hot", momentum=0.9)[0].state_dict())  # undo the statistics' update
    params = list(strategy.net.parameters())
    problem = MetaProblem(model, opt, labels, batch, meta)
    _, grads = strategy.hypergradient(problem, params, weights=strategy.weights(losses))
    direction = [torch.randn(p.shape, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
                 for i, p in enumerate(params)]
    targets = F.one_hot(batch[1], C).double()

    def meta_at(h: float) -> float:
        net = copy.deepcopy(strategy)
        with torch.no_grad():
            for p, d in zip(net.net.parameters(), direction):
                p += h * d
            w = net.weights(losses)
        return _meta_after_real_step(model, opt, targets, w, batch, meta)

    numeric = (meta_at(1e-5) - meta_at(-1e-5)) / 2e-5
    analytic = sum((g * d).sum() for g, d in zip(grads, direction)).item()
    assert abs(analytic) > 0
    assert numeric == pytest.approx(analytic, rel=1e-6)


def test_meta_weight_net_steps_its_network_and_weights_the_batch(float64):
    model, opt, labels, batch, meta = _setup("mlp", "one-hot")
    strategy = MetaWeightNet(hidden=8)
    strategy.net.double()
    before = copy.deepcopy(strategy.net.state_dict())
    stats = strategy.compute(MetaProblem(model, opt, labels, batch, meta))
    assert any(not torch.equal(before[k], v) for k, v in strategy.net.state_dict().items())
    assert stats.sample_weights.sum().item() == pytest.approx(1.0)
    losses = F.cross_entropy(model(batch[0]), batch[1], reduction="none")
    assert_close(stats.sample_weights, strategy.weights(losses).detach(), 1e-12, "weights of the updated network")


@pytest.mark.parametrize("options, message", [(dict(hidden=0), "hidden"), (dict(lr=0.0), "lr"),
                                              (dict(weight_decay=-1.0), "weight_decay")])
def test_meta_weight_net_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        MetaWeightNet(**options)


def test_one_step_reweight_bad_weighting():
    with pytest.raises(ValueError, match="weighting must be 'proportional' or 'binary', got 'soft'"):
        OneStepReweight(weighting="soft")


def test_meta_weight_net_resumes_bit_for_bit(tmp_path):
    """The network and its Adam state are in the checkpoint: a run stopped after its first epoch
    and resumed ends with the uninterrupted run's numbers."""
    config = Config(dataset_options=dict(num_samples=600), meta_per_class=5, meta_batch_size=50, batch_size=64,
                    epochs=3, warmup_epochs=1, labels="one-hot", strategy="meta-weight-net", progress=False)
    full = fit(config)

    class Stop(Exception):
        pass

    def stop_after_two(learner, splits, record):
        if record.epoch == 2:
            raise Stop

    path = str(tmp_path / "ck.pt")
    from labelmeta.runner import fit_learner

    with pytest.raises(Stop):
        fit_learner(config.replace(checkpoint=path), on_epoch=stop_after_two)
    resumed = fit(config.replace(checkpoint=path, resume=True))
    assert [h.test_accuracy for h in resumed.history] == [h.test_accuracy for h in full.history]
    assert [h.train_loss for h in resumed.history] == [h.train_loss for h in full.history]


def test_learner_keeps_labels_of_a_weights_only_strategy():
    targets, batch, meta = make_data()
    model = make_model("mlp")
    labels = make_learnable_labels("per-sample", targets)
    with pytest.warns(UserWarning, match="learns sample weights, not labels"):
        Learner(model, torch.optim.SGD(model.parameters(), lr=0.1), labels, MetaWeightNet(hidden=4))
    with pytest.raises(ValueError, match="label_optimizer"):
        Learner(model, torch.optim.SGD(model.parameters(), lr=0.1), labels, OneStepReweight())
    assert isinstance(OneStepReweight().backend, OneStep)
