"""The GPU path, run on the CPU: bf16 autocast, channels-last, loader workers, their checks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import make_data, make_learnable_labels, make_model, write_cifar10
from labelmeta import Config, Learner, fit, make_label_optimizer, make_splits
from labelmeta.accel import autocast, to_channels_last, to_device
from labelmeta.build import build_learner
from labelmeta.data import loader
from labelmeta.strategies import Functional, MetaProblem, OneStep, Unrolled


@pytest.mark.parametrize("strategy", [Unrolled, Functional, OneStep])
@pytest.mark.parametrize("model_kind", ["bn", "mlp"])
def test_bf16_hypergradient_is_close_to_float32(model_kind, strategy):
    """The label gradient under bf16 autocast against the same step in float32 (bf16 keeps 8
    bits of mantissa: a relative error of a few 1e-3 is its round-off, not a wrong formula)."""
    grads = []
    for amp in (False, True):
        targets, batch, meta = make_data()
        model = make_model(model_kind)
        opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
        labels = make_learnable_labels("per-sample", targets)
        with autocast("cpu", amp):
            strategy(steps=1).compute(MetaProblem(model, opt, labels, batch, meta))
        assert labels.logits.grad.dtype == torch.float32  # parameters and their gradients stay float32
        grads.append(labels.logits.grad)
    full, half = grads
    assert ((half - full).norm() / full.norm()).item() < 3e-2
    assert F.cosine_similarity(half.flatten(), full.flatten(), dim=0).item() > 0.999


def test_amp_runs_the_model_in_bf16():
    """``Learner(amp=True)``: the model's forwards (the shared one included) run in bfloat16."""
    targets, batch, meta = make_data()
    model = make_model("bn")
    seen = set()
    # the learner's model only: the probe's copies (float64 among them) carry the hook too
    model.register_forward_hook(lambda module, args, out: seen.add(out.dtype) if module is model else None)
    labels = make_learnable_labels("per-sample", targets)
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
