"""Contract sweep over every registered label parameterisation, and bad inputs."""
from __future__ import annotations

import pytest
import torch

from labelmeta import LABELS, make_labels

N, C = 50, 7


def _targets(seed=0):
    return torch.randint(0, C, (N,), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(params=LABELS.names(), ids=str)
def name(request):
    return request.param


@pytest.fixture
def labels(name):
    return make_labels(name, _targets(), C)


def test_contract_valid_distributions(labels):
    g = torch.Generator().manual_seed(1)
    # perturb parameters so that the check is not only at initialisation
    with torch.no_grad():
        for p in labels.parameters():
            p.add_(3 * torch.randn(p.shape, generator=g))
    idx = torch.randint(0, N, (33,), generator=g)
    for targets in (None, torch.randint(0, C, (33,), generator=g)):
        out = labels(idx, targets)
        assert out.shape == (33, C)
        assert torch.isfinite(out).all() and (out >= 0).all()
        torch.testing.assert_close(out.sum(1), torch.ones(33))
    assert labels.table().shape == (N, C)


def test_contract_starts_at_the_annotations(name, labels):
    if name == "temporal-ensemble":  # the model's running predictions (ELR's targets), uniform until it has seen some
        torch.testing.assert_close(labels.table(), torch.full((N, C), 1 / C))
        return
    targets = _targets()
    assert torch.equal(labels.hard_labels(), targets)
    table = labels.table()
    assert (table.gather(1, targets[:, None]) > 0.5).all()


def test_contract_state_dict_round_trip(name, labels):
    with torch.no_grad():
        for p in labels.parameters():
            p.add_(torch.randn(p.shape))
    copy = make_labels(name, _targets(1), C)
    copy.load_state_dict(labels.state_dict())
    assert torch.equal(copy.table(), labels.table())


def test_learnable_flags():
    assert not make_labels("one-hot", _targets(), C).learnable
    assert not make_labels("smoothing", _targets(), C).learnable
    for name in ("online-smoothing", "ps-kd"):
        assert not make_labels(name, _targets(), C).learnable
    for name in ("per-sample", "per-sample-ensemble", "per-class", "temperature", "class-temperature"):
        lab = make_labels(name, _targets(), C)
        assert lab.learnable and len(list(lab.parameters())) == 1


def test_smoothing_closed_form():
    lab = make_labels("smoothing", _targets(), C, smoothing=0.2)
    row = lab(torch.tensor([0]))[0]
    target = _targets()[0]
    assert row[target].item() == pytest.approx(0.8 + 0.2 / C)


def test_per_class_rows_are_shared_by_class():
    lab = make_labels("per-class", _targets(), C)
    with torch.no_grad():
        lab.logits.add_(torch.randn(C, C))
    t = _targets()
    same = (t == t[0]).nonzero().squeeze(1)
    out = lab(same)
    assert torch.equal(out, out[:1].expand_as(out))


@pytest.mark.parametrize("name", LABELS.names())
def test_bad_inputs(name):
    lab = make_labels(name, _targets(), C)
    with pytest.raises(ValueError, match=r"indices hold sample indices \[50, 51\] outside \[0, 50\)"):
        lab(torch.tensor([0, 50, 51]))
    with pytest.raises(ValueError, match=r"class ids \[7\] outside \[0, 7\)"):
        lab(torch.tensor([0, 1]), torch.tensor([2, 7]))
    with pytest.raises(ValueError, match="differ in shape"):
        lab(torch.tensor([0, 1]), torch.tensor([2]))
    with pytest.raises(TypeError, match="dtype torch.float32"):
        lab(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"1-D"):
        lab(torch.tensor([[0, 1]]))


def test_bad_annotations():
    with pytest.raises(ValueError, match=r"class ids \[-1\]"):
        make_labels("per-sample", torch.tensor([0, -1, 2]), 3)
    with pytest.raises(ValueError, match="num_classes"):
        make_labels("per-sample", torch.tensor([0, 0]), 1)


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ValueError, match="unknown label parameterisation 'per-pixel'; available: class-temperature, "):
        make_labels("per-pixel", _targets(), C)


def test_contract_observe_keeps_valid_distributions(labels):
    """Every parameterisation accepts the model's logits and still returns distributions."""
    g = torch.Generator().manual_seed(2)
    idx = torch.randperm(N, generator=g)[:20]
    labels.observe(idx, 5 * torch.randn(20, C, generator=g))
    out = labels(idx)
    assert torch.isfinite(out).all() and (out >= 0).all()
    torch.testing.assert_close(out.sum(1), torch.ones(20))


def test_self_ensemble_closed_form(float64):
    """``softmax(z + w log e)`` with ``e`` the per-visit moving average of the model's softmax."""
    targets = _targets()
    lab = make_labels("per-sample-ensemble", targets, C, scale=3.0, weight=1.5, momentum=0.6)
    g = torch.Generator().manual_seed(3)
    idx = torch.tensor([4, 9, 31])
    first, second = torch.randn(3, C, generator=g), torch.randn(3, C, generator=g)
    lab.observe(idx, first)
    lab.observe(idx[:2], second[:2])
    uniform = torch.full((C,), 1.0 / C)
    e = 0.6 * uniform + 0.4 * torch.softmax(first, 1)
    e[:2] = 0.6 * e[:2] + 0.4 * torch.softmax(second[:2], 1)
    expected = torch.softmax(3.0 * torch.nn.functional.one_hot(targets[idx], C) + 1.5 * e.log(), 1)
    torch.testing.assert_close(lab(idx), expected, rtol=1e-12, atol=1e-12)
    # rows never observed keep the plain per-sample label
    plain = make_labels("per-sample", targets, C, scale=3.0)
    torch.testing.assert_close(lab(torch.tensor([0])), plain(torch.tensor([0])))


def test_self_ensemble_bad_options_and_inputs():
    with pytest.raises(ValueError, match="weight must be >= 0, got -1"):
        make_labels("per-sample-ensemble", _targets(), C, weight=-1)
    with pytest.raises(ValueError, match=r"momentum must lie in \[0, 1\), got 1.0"):
        make_labels("per-sample-ensemble", _targets(), C, momentum=1.0)
    lab = make_labels("per-sample-ensemble", _targets(), C)
    with pytest.raises(ValueError, match=r"logits must be \[B=2, C=7\], got \(2, 5\)"):
        lab.observe(torch.tensor([0, 1]), torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"sample indices \[50\] outside \[0, 50\)"):
        lab.observe(torch.tensor([0, 50]), torch.zeros(2, C))


@pytest.mark.parametrize("per_class", [True, False])
def test_ensemble_trust_closed_form(per_class, float64):
    """``softmax(a_y onehot(y) + b_y log e)``: ``e`` the running predictions, ``(a, b)`` per annotated class."""
    targets = _targets()
    lab = make_labels("ensemble-trust", targets, C, scale=3.0, weight=1.5, momentum=0.6, per_class=per_class)
    assert [n for n, _ in lab.named_parameters()] == ["log_scale", "log_weight"]
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # move the trust off its start, differently per class
        lab.log_scale.add_(0.3 * torch.randn(lab.log_scale.shape, generator=g))
        lab.log_weight.add_(0.3 * torch.randn(lab.log_weight.shape, generator=g))
    idx = torch.tensor([4, 9, 31])
    first = torch.randn(3, C, generator=g)
    lab.observe(idx, first)
    e = 0.6 / C + 0.4 * torch.softmax(first, 1)
    y = targets[idx]
    pick = y if per_class else torch.zeros_like(y)
    a, b = lab.log_scale.detach()[pick].exp(), lab.log_weight.detach()[pick].exp()
    expected = torch.softmax(a[:, None] * torch.nn.functional.one_hot(y, C) + b[:, None] * e.log(), 1)
    torch.testing.assert_close(lab(idx), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lab.trust()[0][pick], a)


def test_ensemble_trust_bad_options():
    for option, value, message in [("scale", 0.0, "scale must be > 0, got 0.0"), ("weight", -1.0, "weight must be > 0, got -1.0"),
                                   ("momentum", 1.0, r"momentum must lie in \[0, 1\), got 1.0")]:
        with pytest.raises(ValueError, match=message):
            make_labels("ensemble-trust", _targets(), C, **{option: value})


@pytest.mark.parametrize("name", ["temperature", "class-temperature"])
def test_extreme_temperatures_stay_finite(name):
    lab = make_labels(name, _targets(), C)
    for value in (-200.0, 200.0):
        with torch.no_grad():
            lab.log_temperature.fill_(value)
        out = lab(torch.arange(N))
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out.sum(1), torch.ones(N))


def _epoch_of_logits(lab, logits, batch=16):
    """Show ``lab`` one epoch: every sample once, in batches, with ``logits [N, C]``."""
    for idx in torch.arange(N).split(batch):
        lab.observe(idx, logits[idx])


def test_online_smoothing_closed_form(float64):
    """``(1 - alpha) onehot(y) + alpha S[y]``: ``S[y]`` the mean predicted distribution of the previous
    epoch's correctly classified samples of class ``y``; a class with none keeps its row."""
    targets = _targets()
    lab = make_labels("online-smoothing", targets, C, alpha=0.3)
    eye = torch.eye(C, dtype=torch.float64)
    torch.testing.assert_close(lab(torch.arange(N)), eye[targets])  # epoch 0: one-hot
    g = torch.Generator().manual_seed(7)
    logits = 2 * torch.randn(N, C, generator=g, dtype=torch.float64)
    logits[targets == 0, 0] = -10.0  # class 0 is never predicted right: its row stays the identity's
    probs = torch.softmax(logits, 1)
    right = probs.argmax(1) == targets
    for idx in torch.arange(N).split(16)[:-1]:
        lab.observe(idx, logits[idx])
    torch.testing.assert_close(lab(torch.arange(N)), eye[targets])  # mid-epoch: unchanged
    lab.observe(torch.arange(N).split(16)[-1], logits[torch.arange(N).split(16)[-1]])
    soft = eye.clone()
    for c in range(C):
        mine = right & (targets == c)
        if mine.any():
            soft[c] = probs[mine].mean(0)
    assert torch.equal(soft[0], eye[0])
    assert lab.epoch == 1
    torch.testing.assert_close(lab(torch.arange(N)), 0.7 * eye[targets] + 0.3 * soft[targets], rtol=1e-12, atol=1e-12)
    # the next epoch replaces S by its own correct predictions, not a running mean of both
    _epoch_of_logits(lab, 5 * eye[targets])
    expected = torch.softmax(5 * eye, 1)
    torch.testing.assert_close(lab(torch.arange(N)), 0.7 * eye[targets] + 0.3 * expected[targets],
                               rtol=1e-12, atol=1e-12)


def test_ps_kd_closed_form(float64):
    """``(1 - alpha t / E) onehot(y) + (alpha t / E) p_i``, ``p_i`` the sample's prediction when last trained on."""
    targets = _targets()
    lab = make_labels("ps-kd", targets, C, alpha=0.6)
    lab.set_epochs(4)
    eye = torch.eye(C, dtype=torch.float64)
    g = torch.Generator().manual_seed(8)
    first, second = (torch.randn(N, C, generator=g, dtype=torch.float64) for _ in range(2))
    torch.testing.assert_close(lab(torch.arange(N)), eye[targets])  # epoch 0: alpha_0 = 0
    _epoch_of_logits(lab, first)
    w = 0.6 * 1 / 4
    torch.testing.assert_close(lab(torch.arange(N)), (1 - w) * eye[targets] + w * torch.softmax(first, 1),
                               rtol=1e-12, atol=1e-12)
    # within epoch 1: a sample already trained on this epoch has its new prediction, the others the old
    lab.observe(torch.arange(10), second[:10])
    expected = (1 - w) * eye[targets] + w * torch.softmax(torch.cat([second[:10], first[10:]]), 1)
    torch.testing.assert_close(lab(torch.arange(N)), expected, rtol=1e-12, atol=1e-12)
    for idx in torch.arange(10, N).split(16):
        lab.observe(idx, second[idx])
    assert lab.epoch == 2 and lab.weight() == pytest.approx(0.6 * 2 / 4)
    # without set_epochs (a parameterisation built outside a run) it stays one-hot
    bare = make_labels("ps-kd", targets, C)
    _epoch_of_logits(bare, first)
    torch.testing.assert_close(bare(torch.arange(N)), eye[targets])


@pytest.mark.parametrize("name", ["online-smoothing", "ps-kd"])
def test_self_distillation_bad_options_and_inputs(name):
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\], got 1.5"):
        make_labels(name, _targets(), C, alpha=1.5)
    lab = make_labels(name, _targets(), C)
    with pytest.raises(ValueError, match=r"logits must be \[B=2, C=7\], got \(2, 5\)"):
        lab.observe(torch.tensor([0, 1]), torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"sample indices \[50\] outside \[0, 50\)"):
        lab.observe(torch.tensor([0, 50]), torch.zeros(2, C))
    assert not lab.learnable


def test_ps_kd_is_told_the_run_length():
    """The runner tells the labels its epochs (the PS-KD ramp), and refuses a non-positive length."""
    from labelmeta import Config
    from labelmeta.build import build_learner, splits_for

    config = Config(labels="ps-kd", strategy="none", epochs=7, dataset="digits", model="mlp", meta_per_class=0,
                    meta_source="train")
    learner = build_learner(config, splits_for(config))
    assert learner.labels.epochs == 7
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        learner.labels.set_epochs(0)


def test_class_temperature_is_a_preset_of_temperature_with_the_old_state_dict():
    """``per_class`` is an option of ``temperature``; ``class-temperature`` (Config files, CLI lines, checkpoints
    and stored results name it) builds that module, with the keys and shapes the old class had, and
    declares ``temperature``'s other options as ``temperature`` declares them."""
    from labelmeta.labels import ClassTemperature, Temperature

    preset = make_labels("class-temperature", _targets(), C, scale=3.0, init_temperature=2.0)
    option = make_labels("temperature", _targets(), C, scale=3.0, init_temperature=2.0, per_class=True)
    assert type(preset) is Temperature and preset.lr_scale == option.lr_scale == 0.02
    # the old ClassTemperature's state dict: its labels' annotations and one log-temperature per class
    assert {k: tuple(v.shape) for k, v in preset.state_dict().items()} == {"log_temperature": (C,), "targets": (N,)}
    for a, b in ((preset, option), (option, preset)):  # a checkpoint of either loads into the other
        with torch.no_grad():
            a.log_temperature.copy_(torch.linspace(-1, 1, C))
        b.load_state_dict(a.state_dict())
        assert torch.equal(a.table(), b.table())
    schema, base = LABELS.schema("class-temperature").options, LABELS.schema("temperature").options
    assert schema == {k: o for k, o in base.items() if k != "per_class"}  # types, defaults and help: temperature's
    assert "A preset of 'temperature' with per_class=True" in LABELS.describe("class-temperature")
    assert type(ClassTemperature(_targets(), C)) is Temperature  # the old name still builds it
    with pytest.raises(ValueError, match="has no option 'per_class'"):
        make_labels("class-temperature", _targets(), C, per_class=False)


def test_corrector_closed_form(float64):
    """``softmax(a_y onehot(y) + W2 relu(W1 [log e; onehot(y)] + b1) + b2)``, written out with the
    network's own matrices; ``e`` the running predictions, ``a`` per annotated class."""
    targets = _targets()
    lab = make_labels("corrector", targets, C, hidden=5, scale=3.0, momentum=0.6)
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():  # off the start (its last layer is zero there)
        for p in lab.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g))
    idx = torch.tensor([2, 17, 40, 41])
    first = torch.randn(4, C, generator=g)
    lab.observe(idx, first)
    e = 0.6 / C + 0.4 * torch.softmax(first, 1)
    y = targets[idx]
    one_hot = torch.nn.functional.one_hot(y, C).double()
    w1, b1, w2, b2 = (p.detach() for p in (lab.net[0].weight, lab.net[0].bias, lab.net[2].weight, lab.net[2].bias))
    hidden = (torch.cat([e.log(), one_hot], 1) @ w1.T + b1).clamp_min(0)
    a = lab.log_scale.detach()[y].exp()
    expected = torch.softmax(a[:, None] * one_hot + hidden @ w2.T + b2, 1)
    torch.testing.assert_close(lab(idx), expected, rtol=1e-12, atol=1e-12)


def test_corrector_starts_as_per_sample_labels(float64):
    targets = _targets()
    torch.testing.assert_close(make_labels("corrector", targets, C, scale=2.5).table(),
                               make_labels("per-sample", targets, C, scale=2.5).table(), rtol=1e-12, atol=1e-12)
    groups = make_labels("corrector", targets, C).param_groups()
    assert [group["tables"] for group in groups] == [False]  # a network: the mirror step does not apply
    assert make_labels("per-sample", targets, C).param_groups()[0].get("tables", True)


def test_corrector_bad_options():
    for option, value, message in [("hidden", 0, "hidden must be a positive integer, got 0"),
                                   ("hidden", 2.5, "option 'hidden' takes int, got 2.5"),
                                   ("scale", 0.0, "scale must be > 0, got 0.0"),
                                   ("momentum", 1.0, r"momentum must lie in \[0, 1\), got 1.0")]:
        with pytest.raises(ValueError, match=message):
            make_labels("corrector", _targets(), C, **{option: value})
