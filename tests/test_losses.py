"""Training losses against their closed forms, and per-sample weighting."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from labelmeta.losses import LOSSES, make_loss, soft_cross_entropy


def _data(seed: int = 0, b: int = 6, c: int = 5):
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(b, c, generator=g)
    targets = torch.softmax(3 * torch.randn(b, c, generator=g), 1)
    weights = torch.rand(b, generator=g)
    return logits, targets, weights / weights.sum()


def test_gce_closed_form_and_limits(float64):
    logits, t, _ = _data()
    p = torch.softmax(logits, 1)
    q = 0.7
    expected = ((t * (1 - p**q)).sum(1) / q).mean()
    torch.testing.assert_close(make_loss("gce", q=q)(logits, t), expected, rtol=1e-12, atol=0)
    # q = 1 is the mean absolute error 1 - <t, p>; q -> 0 tends to cross-entropy
    torch.testing.assert_close(make_loss("gce", q=1.0)(logits, t), (1 - (t * p).sum(1)).mean(), rtol=1e-12, atol=0)
    torch.testing.assert_close(make_loss("gce", q=1e-7)(logits, t), soft_cross_entropy(logits, t), rtol=1e-5, atol=0)


@pytest.mark.parametrize("name, beta", [("bootstrap-soft", 0.95), ("bootstrap-hard", 0.8)])
def test_bootstrapping_closed_form(name, beta, float64):
    logits, t, _ = _data()
    log_p = F.log_softmax(logits, 1)
    own = log_p.exp() if name == "bootstrap-soft" else F.one_hot(logits.argmax(1), 5).double()
    expected = -((beta * t + (1 - beta) * own) * log_p).sum(1).mean()
    loss = make_loss(name)
    assert loss.beta == beta  # the paper's defaults
    torch.testing.assert_close(loss(logits, t), expected, rtol=1e-12, atol=0)
    # beta = 1 is plain cross-entropy
    torch.testing.assert_close(make_loss(name, beta=1.0)(logits, t), soft_cross_entropy(logits, t), rtol=1e-12, atol=0)


def test_soft_bootstrapping_differentiates_through_its_own_prediction(float64):
    """Reed et al.'s soft variant keeps the gradient of the prediction inside the target."""
    logits, t, _ = _data()
    logits.requires_grad_()
    (grad,) = torch.autograd.grad(make_loss("bootstrap-soft", beta=0.5)(logits, t), logits)
    detached = logits.detach().requires_grad_()
    target = 0.5 * t + 0.5 * torch.softmax(detached, 1).detach()
    (grad_detached,) = torch.autograd.grad(soft_cross_entropy(detached, target), detached)
    assert not torch.allclose(grad, grad_detached)


@pytest.mark.parametrize("name", LOSSES.names())
def test_weights_give_the_weighted_sum(name, float64):
    logits, t, w = _data()
    y = torch.arange(len(w)) % t.shape[1]
    loss = make_loss(name)
    per_sample = torch.stack([loss(logits[i:i + 1], t[i:i + 1], None, y[i:i + 1]) for i in range(len(w))])
    torch.testing.assert_close(loss(logits, t, w, y), (w * per_sample).sum(), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match=r"weights must be \[B=6\], got \(5,\)"):
        loss(logits, t, w[:5])
    with pytest.raises(ValueError, match=r"must both be \[B, C\]"):
        loss(logits, t[:, :4])


def test_bad_options_and_unknown_name():
    with pytest.raises(ValueError, match=r"q must lie in \(0, 1\], got 0"):
        make_loss("gce", q=0)
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 1\], got 1.5"):
        make_loss("bootstrap-soft", beta=1.5)
    with pytest.raises(ValueError, match="unknown training loss 'mae'; available: bootstrap-hard, bootstrap-soft, ce, distillation, elr, gce"):
        make_loss("mae")


def test_distillation_closed_form(float64):
    """``alpha T^2 KL(p_T || q_T) + (1 - alpha) CE``, written out with sums."""
    student, teacher_logits, _ = _data(1)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    T, alpha = 3.0, 0.7
    p = torch.softmax(teacher_logits / T, 1)
    q = torch.softmax(student / T, 1)
    kl = (p * (p.log() - q.log())).sum(1)
    ce = -torch.log_softmax(student, 1)[torch.arange(6), y]
    expected = (alpha * T**2 * kl + (1 - alpha) * ce).mean()
    loss = make_loss("distillation", temperature=T, alpha=alpha)
    torch.testing.assert_close(loss(student, p, targets=y), expected, rtol=1e-12, atol=0)
    from labelmeta import distillation_loss
    torch.testing.assert_close(distillation_loss(student, teacher_logits, y, T, alpha), expected, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="needs the annotated targets"):
        loss(student, p)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        make_loss("distillation", temperature=0)


# --- losses as registered classes (issue 25, part 6) ------------------------------------------------

def _previous(name, **options):
    """The training losses as the closures before them computed them (``git show 5c246dd:labelmeta/losses.py``),
    operation for operation: the classes must give the same bits."""
    q = options.get("q", 0.7)
    beta = options.get("beta", {"bootstrap-soft": 0.95, "bootstrap-hard": 0.8}.get(name))
    T, alpha = options.get("temperature", 4.0), options.get("alpha", 0.9)

    def reduce(per_sample, weights):
        return per_sample.mean() if weights is None else (weights * per_sample).sum()

    def loss(logits, soft_targets, weights=None, targets=None):
        if name == "ce":
            if weights is None:
                return F.cross_entropy(logits, soft_targets)
            return (weights * F.cross_entropy(logits, soft_targets, reduction="none")).sum()
        if name == "gce":
            powered = torch.exp(q * F.log_softmax(logits, dim=1))
            return reduce((soft_targets * (1 - powered)).sum(1) / q, weights)
        if name.startswith("bootstrap"):
            log_probs = F.log_softmax(logits, dim=1)
            if name == "bootstrap-hard":
                own = F.one_hot(logits.argmax(1), logits.shape[1]).to(logits.dtype)
            else:
                own = log_probs.exp()
            mixed = beta * soft_targets + (1 - beta) * own
            return reduce(-(mixed * log_probs).sum(1), weights)
        kl = F.kl_div(F.log_softmax(logits / T, dim=1), soft_targets, reduction="none").sum(1)
        per_sample = alpha * T**2 * kl
        if alpha < 1:
            per_sample = per_sample + (1 - alpha) * F.cross_entropy(logits, targets, reduction="none")
        return reduce(per_sample, weights)

    return loss


CASES = [("ce", {}), ("gce", {}), ("gce", {"q": 0.3}), ("bootstrap-soft", {}), ("bootstrap-soft", {"beta": 0.6}),
         ("bootstrap-hard", {}), ("bootstrap-hard", {"beta": 0.5}), ("distillation", {}),
         ("distillation", {"temperature": 2.0, "alpha": 0.4})]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("name, options", CASES, ids=[f"{n}{o or ''}" for n, o in CASES])
def test_losses_give_the_bits_of_the_previous_closures(name, options, dtype):
    """Values and both gradients, with and without weights: not one bit moved (stored results reproduce)."""
    logits, t, w = (x.to(dtype) for x in _data(3, b=9, c=7))
    y = torch.arange(9) % 7
    new, old = make_loss(name, **options), _previous(name, **options)
    for weights in (None, w):
        out = []
        for loss in (new, old):
            z, s = logits.clone().requires_grad_(), t.clone().requires_grad_()
            value = loss(z, s, weights, y)
            out.append((value, *torch.autograd.grad(value, (z, s))))
        for a, b in zip(*out):
            assert a.dtype == dtype and torch.equal(a, b)


def test_losses_are_registered_classes_that_declare_their_defaults_once():
    import inspect

    from labelmeta.losses import Loss, TrainingLoss

    for name in LOSSES.names():
        cls = LOSSES.get(name)
        assert inspect.isclass(cls) and issubclass(cls, Loss), name
        loss = make_loss(name)
        assert isinstance(loss, cls) and isinstance(loss, TrainingLoss)
        defaults = {o.name: o.default for o in LOSSES.schema(name).options.values()}
        assert {k: getattr(loss, k) for k in defaults} == defaults  # the object holds what the schema read
        assert repr(loss) == f"{cls.__name__}({', '.join(f'{k}={v!r}' for k, v in defaults.items())})"
    assert repr(make_loss("gce", q=0.5)) == "GeneralizedCrossEntropy(q=0.5)"
    assert make_loss("bootstrap-hard").hard and not make_loss("bootstrap-soft").hard
    # distillation_loss's defaults are the class's, read from its declaration
    from labelmeta import distillation_loss

    params = inspect.signature(distillation_loss).parameters
    declared = LOSSES.schema("distillation").options
    assert {k: params[k].default for k in ("temperature", "alpha")} == {k: declared[k].default for k in declared}
    assert isinstance(soft_cross_entropy, TrainingLoss)  # a plain function follows the protocol


def test_a_plain_function_is_still_a_loss_where_losses_are_accepted():
    """A callable that is no registered class trains a learner exactly as the registered loss it copies."""
    from labelmeta import Learner, make_labels

    def plain(logits, soft_targets, weights=None, targets=None):
        return F.cross_entropy(logits, soft_targets)

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 4, generator=g), torch.arange(8) % 3
    runs = []
    for loss in (plain, "ce", make_loss("ce")):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 3)
        learner = Learner(model, torch.optim.SGD(model.parameters(), lr=0.1), make_labels("one-hot", y, 3), None,
                          loss=loss)
        for _ in range(3):
            learner.step((x, y, torch.arange(8)))
        runs.append(model.weight.detach().clone())
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[1], runs[2])


def test_elr_gradient_is_the_papers(float64):
    """ELR's gradient with respect to the logits (Liu et al., 2020, Lemma 1): cross-entropy's
    ``p - onehot(y)`` plus ``-lam * p * (t - <p, t>) / (1 - <p, t>)``, written out, not autograd's
    of the same formula; the targets ``t`` are a constant (no gradient reaches them)."""
    logits, t, _ = _data(4)
    y = torch.tensor([0, 3, 1, 4, 2, 2])
    z, s = logits.clone().requires_grad_(), t.clone().requires_grad_()
    value = make_loss("elr", lam=2.5)(z, s, None, y)
    grad_z, grad_t = torch.autograd.grad(value, (z, s), allow_unused=True)
    p = torch.softmax(logits, 1)
    assert ((p > 1e-4) & (p < 1 - 1e-4)).all()  # the clamp is inactive here
    inner = (p * t).sum(1, keepdim=True)
    expected = (p - F.one_hot(y, 5) - 2.5 * p * (t - inner) / (1 - inner)) / len(y)
    torch.testing.assert_close(grad_z, expected, rtol=1e-10, atol=1e-12)
    assert grad_t is None or torch.equal(grad_t, torch.zeros_like(t))
    # lam = 0 is cross-entropy on the annotations
    torch.testing.assert_close(make_loss("elr", lam=0.0)(logits, t, None, y), F.cross_entropy(logits, y), rtol=1e-12, atol=0)


def test_elr_needs_the_annotations_and_its_own_labels():
    from labelmeta import Config
    from labelmeta.checks import check_config

    logits, t, _ = _data()
    with pytest.raises(ValueError, match="elr needs the annotated targets"):
        make_loss("elr")(logits, t)
    with pytest.raises(ValueError, match="lam must be finite and >= 0, got -1"):
        make_loss("elr", lam=-1.0)
    with pytest.raises(ValueError, match="loss 'elr' reads the soft targets of labels 'temporal-ensemble', got labels 'detect-correct'"):
        check_config(Config(loss="elr"))
    check_config(Config(loss="elr", labels="temporal-ensemble", strategy="none"))
