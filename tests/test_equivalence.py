"""With one-hot labels and meta-learning off, a learner step is a plain torch.optim step, bit for bit."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from helpers import C, make_data, make_model
from labelmeta import Learner, make_labels, make_label_optimizer, soft_cross_entropy


@pytest.mark.parametrize("model_kind", ["mlp", "bn"])
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_one_hot_learner_equals_plain_training(model_kind, opt_name):
    targets, batch, meta = make_data()
    model = make_model(model_kind)
    reference = copy.deepcopy(model)

    def optimizer(m):
        if opt_name == "sgd":
            return torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        return torch.optim.Adam(m.parameters(), lr=0.01, weight_decay=5e-4)

    learner = Learner(model, optimizer(model), make_labels("one-hot", targets, C), strategy=None)
    ref_opt = optimizer(reference)
    x, y, idx = batch
    for _ in range(5):
        stats = learner.step(batch, meta)  # the meta batch is ignored: nothing to learn
        ref_opt.zero_grad()
        loss = F.cross_entropy(reference(x), y)
        loss.backward()
        ref_opt.step()
        # parameters must match bit for bit (below); the reported loss may differ in the last
        # bit because the probability-target loss reduces in a different order
        assert stats.loss == pytest.approx(loss.item(), rel=1e-6)
        assert stats.meta_loss is None
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name


def test_soft_cross_entropy_of_one_hot_is_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 10, generator=g, requires_grad=True)
    y = torch.randint(0, 10, (64,), generator=g)
    a = soft_cross_entropy(logits, F.one_hot(y, 10).float())
    (ga,) = torch.autograd.grad(a, logits)
    b = F.cross_entropy(logits, y)
    (gb,) = torch.autograd.grad(b, logits)
    # the gradient is identical; the value may differ in the last bit (reduction order)
    assert torch.equal(ga, gb)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=0)


def test_meta_step_then_model_step_uses_updated_labels():
    """The model step trains on the labels *after* the label optimiser step."""
    targets, batch, meta = make_data()
    model = make_model("mlp")
    reference = copy.deepcopy(model)
    labels = make_labels("per-sample", targets, C)
    label_opt = make_label_optimizer("sgd", labels.parameters(), lr=100.0)
    learner = Learner(model, torch.optim.SGD(model.parameters(), lr=0.1), labels, "unrolled", label_opt)
    before = labels.logits.detach().clone()
    learner.step(batch, meta)
    assert not torch.equal(labels.logits, before)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    x, y, idx = batch
    soft_cross_entropy(reference(x), labels(idx).detach()).backward()
    ref_opt.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.equal(a, b)


def test_labels_observe_the_outputs_the_loss_used():
    """After the model step, the labels see the model's logits from *before* that step."""
    targets, batch, meta = make_data()
    model = make_model("bn")
    reference = copy.deepcopy(model)
    labels = make_labels("per-sample-ensemble", targets, C, momentum=0.5)
    learner = Learner(model, torch.optim.SGD(model.parameters(), lr=0.5), labels, strategy=None)
    x, y, idx = batch
    learner.step(batch)
    reference.train()
    expected = 0.5 / C + 0.5 * torch.softmax(reference(x), 1)
    torch.testing.assert_close(labels.ensemble[idx], expected, rtol=0, atol=1e-7)
