"""The GPU path, run on the CPU (and on CUDA when one is present: the tests marked ``cuda``):
bf16 autocast, channels-last, the products of the default strategy under both, the probe's choice
between them, loader workers, their checks.

On CUDA the default's forward-mode product runs through cuDNN's kernels (BatchNorm, convolutions),
whose forward-mode formulas torch declares apart from the CPU's (``docs/architecture.md``, "The
default on a GPU"); the tests marked ``cuda`` are those that exercise them when a GPU is present.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import (C, N, Activation, NoDoubleBackward, NoForwardMode, assert_close, devices, float32_exactly, make_data,
                     make_learnable_labels, make_model, write_cifar10)
from labelmeta import Config, Learner, fit, make_label_optimizer, make_splits
from labelmeta.accel import autocast, to_channels_last, to_device
from labelmeta.build import build_learner
from labelmeta.data import loader
from labelmeta.models import make_model as make_registered_model
from labelmeta.strategies import STRATEGIES, Functional, MetaProblem, OneStep, Strategy, Unrolled


def _on(device, *batches):
    return [tuple(t.to(device) for t in b) for b in batches]


@pytest.mark.cuda
@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("strategy", [Unrolled, Functional, OneStep])
@pytest.mark.parametrize("model_kind", ["bn", "mlp"])
def test_bf16_hypergradient_is_close_to_float32(model_kind, strategy, device):
    """The label gradient under bf16 autocast against the same step in float32 (bf16 keeps 8
    bits of mantissa: a relative error of a few 1e-3 is its round-off, not a wrong formula)."""
    grads = []
    for amp in (False, True):
        targets, batch, meta = make_data()
        batch, meta = _on(device, batch, meta)
        model = make_model(model_kind).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
        labels = make_learnable_labels("per-sample", targets).to(device)
        with autocast(device, amp), float32_exactly(device):
            Strategy(strategy(steps=1)).compute(MetaProblem(model, opt, labels, batch, meta))
        assert labels.logits.grad.dtype == torch.float32  # parameters and their gradients stay float32
        grads.append(labels.logits.grad)
    full, half = grads
    assert ((half - full).norm() / full.norm()).item() < 3e-2
    assert F.cosine_similarity(half.flatten(), full.flatten(), dim=0).item() > 0.999


# ---------------------------------------------------------------------------------------------
# The default's two products (one-step's forward-mode and reverse-mode J u) on BatchNorm CNNs,
# under bf16 autocast and channels-last: on CUDA, cuDNN's BatchNorm and convolutions.

#: labelmeta's BatchNorm CNNs on small inputs: sample shape and model options
CNNS = {"cnn1d-bn": ((40,), {}), "wrn": ((3, 8, 8), dict(depth=10, width=1))}
#: bf16 against float32 on these CNNs (measured on the CPU: up to 4.5 %, cosine 0.9991 on the WRN)
BF16_ERROR, BF16_COSINE = 8e-2, 0.998


def _cnn_problem(name: str, device: str, channels_last: bool = False, size: int = 8):
    """``name`` (:data:`CNNS`) with SGD (momentum, weight decay) after one real step, learnable
    per-sample labels, a batch and a meta batch of ``size``, all on ``device``; the model and the
    images channels-last if asked."""
    shape, options = CNNS[name]
    torch.manual_seed(0)
    model = make_registered_model(name, shape, C, **options).to(device)
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, C, (N,), generator=g)
    batch = (torch.randn(size, *shape, generator=g), targets[:size], torch.arange(size))
    meta = (torch.randn(size, *shape, generator=g), torch.randint(0, C, (size,), generator=g), torch.arange(size))
    batch, meta = _on(device, batch, meta)
    if channels_last:
        model = to_channels_last(model)
        batch, meta = [to_device(b, device, channels_last=True) for b in (batch, meta)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    with float32_exactly(device):
        F.cross_entropy(model(batch[0]), batch[1]).backward()
    opt.step()
    labels = make_learnable_labels("per-sample", targets).to(device)
    return MetaProblem(model, opt, labels, batch, meta)


def _default_hypergradient(backend, problem: MetaProblem, amp: bool = False):
    """The gradient the default's target asks for: the label parameters' and the sample weights' (at ``w = 1/B``)."""
    w = torch.full((len(problem.batch[0]),), 1 / len(problem.batch[0]), device=problem.batch[0].device,
                   requires_grad=True)
    device = problem.batch[0].device
    with autocast(device, amp), float32_exactly(device):
        _, grads = backend.hypergradient(problem, list(problem.labels.parameters()) + [w], w)
    assert all(g.dtype == torch.float32 for g in grads)  # meta parameters and their gradients stay float32
    return grads


def _relative(a, b) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.cuda
@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("name", sorted(CNNS))
def test_bf16_products_on_batchnorm_cnns(name, device):
    """Under bf16 autocast, the default's forward-mode product (its choice for these models) and
    the reverse-mode product give the float32 unroll's hypergradient to bf16 round-off, and agree
    with each other more closely still (the bf16 forward they share accounts for the rest)."""
    reference = _default_hypergradient(Functional(steps=1), _cnn_problem(name, device))
    assert OneStep().product_for(_cnn_problem(name, device).model) == "forward"
    half = {}
    for product in ("forward", "reverse"):
        half[product] = _default_hypergradient(OneStep(product=product), _cnn_problem(name, device), amp=True)
        for got, expected, what in zip(half[product], reference, ("labels", "weights")):
            assert _relative(got, expected) < BF16_ERROR, (product, what)
            assert F.cosine_similarity(got.flatten(), expected.flatten(), dim=0).item() > BF16_COSINE, (product, what)
    for forward, reverse in zip(half["forward"], half["reverse"]):
        assert _relative(forward, reverse) < 2e-2  # measured 0.2-0.5 %


@pytest.mark.cuda
@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("amp", [False, True], ids=["float32", "bf16"])
@pytest.mark.parametrize("product", ["forward", "reverse"])
def test_channels_last_products(product, amp, device):
    """A channels-last WRN on channels-last images: the hypergradient of the contiguous model's
    float32 unroll, by either product, in float32 (to round-off) and under bf16 autocast (to bf16's)."""
    reference = _default_hypergradient(Functional(steps=1), _cnn_problem("wrn", device))
    problem = _cnn_problem("wrn", device, channels_last=True)
    assert problem.batch[0].is_contiguous(memory_format=torch.channels_last)
    assert next(p for p in problem.model.parameters() if p.dim() == 4).is_contiguous(memory_format=torch.channels_last)
    grads = _default_hypergradient(OneStep(product=product), problem, amp=amp)
    for got, expected, what in zip(grads, reference, ("labels", "weights")):
        if amp:
            assert _relative(got, expected) < BF16_ERROR, what
        else:
            assert_close(got, expected, 1e-4, what)  # measured 3e-7 on the CPU


# ---------------------------------------------------------------------------------------------
# The probe's choice: reverse mode where forward mode is missing; a clear error where neither works.

def _custom_cnn_learner(function, device: str, amp: bool, **strategy_options):
    """A channels-last Conv2d-BatchNorm2d network around ``function``, the default strategy, its batches."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), Activation(function),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, C))
    model = to_channels_last(model.to(device))
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, C, (N,), generator=g)
    batch = (torch.randn(6, 3, 5, 5, generator=g), targets[:6], torch.arange(6))
    meta = (torch.randn(6, 3, 5, 5, generator=g), torch.randint(0, C, (6,), generator=g), torch.arange(6))
    batch, meta = [to_device(b, device, channels_last=True) for b in (batch, meta)]
    labels = make_learnable_labels("per-sample", targets).to(device)
    strategy = STRATEGIES.build("one-step-reweight", options=strategy_options)
    learner = Learner(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), labels, strategy,
                      make_label_optimizer("mirror", labels.parameters(), 0.5), amp=amp)
    return learner, batch, meta


@pytest.mark.cuda
@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("amp", [False, True], ids=["float32", "bf16"])
def test_missing_forward_mode_gets_the_reverse_product(amp, device):
    """BatchNorm makes the default prefer forward mode; a custom Function without ``jvp`` has none, so
    the probe keeps the reverse-mode product, and training runs as with ``product="reverse"`` asked for."""
    learner, batch, meta = _custom_cnn_learner(NoForwardMode, device, amp)
    assert learner.strategy.product == "auto" and learner.strategy.product_for(learner.model) == "forward"
    asked, _, _ = _custom_cnn_learner(NoForwardMode, device, amp, product="reverse")
    for _ in range(3):
        stats, expected = learner.step(batch, meta), asked.step(batch, meta)
        assert torch.isfinite(torch.tensor([stats.loss, stats.meta_loss])).all()
        assert stats.sample_weights.sum().item() == pytest.approx(1.0, abs=1e-5)
        assert_close(stats.sample_weights, expected.sample_weights, 1e-5, "sample weights")
    assert learner.plan.strategy.product == "reverse" and learner.strategy.product == "auto"
    for (name, a), b in zip(learner.model.state_dict().items(), asked.model.state_dict().values()):
        if a.is_floating_point():
            assert_close(a, b, 1e-5, name)
    assert_close(learner.labels.logits, asked.labels.logits, 1e-5, "labels")


@pytest.mark.cuda
@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("amp", [False, True], ids=["float32", "bf16"])
def test_neither_product_is_one_clear_error(amp, device):
    """Neither a ``jvp`` nor a differentiable backward: one ``ValueError`` before any training, naming the
    strategy, the module and why each product fails, and the strategies that can."""
    learner, batch, meta = _custom_cnn_learner(NoDoubleBackward, device, amp)
    before = copy.deepcopy(learner.model.state_dict())
    with pytest.raises(ValueError, match=r"^the 'one-step-reweight' strategy cannot differentiate this model: module '2' "
                                         r"\(Activation\): its forward mode is missing \(NotImplementedError: You must implement "
                                         r"the jvp function .*\); its double backward is wrong \(off by 100% against central "
                                         r"differences\); strategies that can: 'finite-difference:labels\+weights', "
                                         r"'head-only:labels\+weights'$"):
        learner.step(batch, meta)
    assert all(torch.equal(a, b) for a, b in zip(learner.model.state_dict().values(), before.values()))


@pytest.mark.cuda
@pytest.mark.parametrize("device", devices())
def test_amp_runs_the_model_in_bf16(device):
    """``Learner(amp=True)``: the model's forwards (the shared one included) run in bfloat16."""
    targets, batch, meta = make_data()
    batch, meta = _on(device, batch, meta)
    model = make_model("bn").to(device)
    seen = set()
    # the learner's model only: the probe's copies (float64 among them) carry the hook too
    model.register_forward_hook(lambda module, args, out: seen.add(out.dtype) if module is model else None)
    labels = make_learnable_labels("per-sample", targets).to(device)
    learner = Learner(model, torch.optim.SGD(model.parameters(), lr=0.1), labels, OneStep(),
                      make_label_optimizer("mirror", labels.parameters(), 0.5), amp=True)
    stats = learner.step(batch, meta)
    assert seen == {torch.bfloat16}
    assert torch.isfinite(torch.tensor([stats.loss, stats.meta_loss])).all()
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_fit_with_amp():
    config = Config(dataset="digits", model="mlp", epochs=6, lr=0.2, warmup_epochs=1, meta_per_class=5,
                    meta_batch_size=50, progress=False, amp=True)
    plain, mixed = fit(config.replace(amp=False)), fit(config)
    assert mixed.history[-1].train_loss != plain.history[-1].train_loss  # autocast did apply
    # and changed no more than round-off does: the same learning curve within a few points (the
    # default's weights keep a sample only where its hypergradient is negative, and round-off flips
    # the samples near zero; the hypergradient itself is checked against float32 above)
    for a, b in zip(mixed.history, plain.history):
        assert abs(a.test_accuracy - b.test_accuracy) < 0.05, (a.epoch, a.test_accuracy, b.test_accuracy)
    assert mixed.history[-1].test_accuracy > 0.8


def test_channels_last(tmp_path):
    write_cifar10(tmp_path)
    splits = make_splits("cifar10", meta_per_class=1, data_root=str(tmp_path))
    config = Config(dataset="cifar10", model="resnet18", channels_last=True, labels="per-class", meta_source="train",
                    meta_per_class=0, noise="none", noise_rate=0.0)
    learner = build_learner(config, splits)
    conv = next(p for p in learner.model.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    batch = next(iter(loader(splits.train, 4, shuffle=False)))
    x, y, idx = to_device(batch, "cpu", channels_last=True)
    assert x.is_contiguous(memory_format=torch.channels_last) and torch.equal(x, batch[0])
    assert torch.equal(y, batch[1]) and torch.equal(idx, batch[2])
    # the same numbers as the default layout (to float32 round-off)
    reference = make_model_like(learner.model)
    torch.testing.assert_close(learner.model.eval()(x), reference.eval()(batch[0]), rtol=1e-4, atol=1e-5)


def make_model_like(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    twin = copy.deepcopy(model)
    return twin.to(memory_format=torch.contiguous_format)


def test_workers_keep_the_order_and_are_reproducible(tmp_path):
    """Images decoded in worker processes: the same samples in the same order as in the main
    process, and the same augmented pixels from one run to the next."""
    write_cifar10(tmp_path)
    train = make_splits("cifar10", meta_per_class=1, data_root=str(tmp_path)).train

    def epoch(**options):
        return list(loader(train, 4, shuffle=True, seed=3, **options))

    main, first, again = epoch(), epoch(workers=1), epoch(workers=1)
    assert [b[2].tolist() for b in first] == [b[2].tolist() for b in main]
    assert [b[1].tolist() for b in first] == [b[1].tolist() for b in main]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again))


def test_bad_worker_settings_are_refused():
    with pytest.raises(ValueError, match="workers must be >= 0, got -1"):
        fit(Config(workers=-1))
    with pytest.raises(ValueError, match="persistent_workers=True needs workers > 0"):
        fit(Config(persistent_workers=True))


@pytest.mark.parametrize("setting, message", [(dict(workers=2), "workers=2 has no effect: the digits data are in memory"),
                                              (dict(channels_last=True), "channels_last has no effect: the inputs are")])
def test_idle_speed_settings_warn(setting, message):
    config = Config(dataset="digits", model="mlp", epochs=1, warmup_epochs=0, meta_per_class=5, meta_batch_size=50,
                    progress=False, strategy="none", labels="one-hot", **setting)
    with pytest.warns(UserWarning, match=message):
        fit(config)


def test_channels_last_model_helper():
    model = to_channels_last(make_model("bn"))  # 1-D convolutions: nothing to reformat, and no error
    assert all(p.is_contiguous() for p in model.parameters())
