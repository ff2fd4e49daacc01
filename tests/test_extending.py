"""Extending is one file: ``tests/extension_example.py`` registers a label parameterisation, a
hypergradient backend, a meta target and a dataset, each with an option, and they run from the
command line and from ``fit`` without any other module knowing them; the backend with every
registered target, the target with every registered backend."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labelmeta import Config, DATASETS, LABELS
from labelmeta.strategies import BACKENDS, STRATEGIES, TARGETS
from labelmeta.cli import import_components
from labelmeta.runner import fit_learner

EXAMPLE = Path(__file__).with_name("extension_example.py")
ROOT = Path(__file__).parent.parent
NAMES = [(LABELS, "example-floor"), (BACKENDS, "example-damped"), (TARGETS, "example-capped"),
         (DATASETS, "example-blobs")]
FLAGS = ["--dataset", "example-blobs", "--data-num-samples", "400", "--model", "mlp", "--labels", "example-floor",
         "--label-floor", "0.1", "--strategy", "example-damped", "--strategy-damping", "0.5",
         "--label-optimizer", "sgd", "--label-lr", "50", "--noise-rate", "0.3", "--meta-per-class", "10",
         "--meta-batch-size", "40", "--batch-size", "32", "--epochs", "2", "--warmup-epochs", "1", "--no-progress"]


@pytest.fixture(scope="module")
def registered():
    """The example's components registered in this process for the module's tests, then removed."""
    import_components(str(EXAMPLE))
    yield
    for registry, name in NAMES:
        registry.unregister(name)


def config(damping: float = 0.5) -> Config:
    # SGD on the labels: MirrorDescent normalises its steps, which would hide the damping
    return Config(dataset="example-blobs", dataset_options=dict(num_samples=400), model="mlp",
                  labels="example-floor", label_options=dict(floor=0.1), strategy="example-damped",
                  strategy_options=dict(damping=damping), label_optimizer="sgd", label_lr=50.0, noise_rate=0.3,
                  meta_per_class=10, meta_batch_size=40, batch_size=32, epochs=2, warmup_epochs=1, progress=False)


def test_the_components_run_through_fit_with_their_options(registered):
    learner, results = fit_learner(config())
    assert learner.labels.floor == 0.1 and learner.strategy.damping == 0.5
    assert learner.labels.num_samples == 400 - 4 * 10  # the dataset's option, less the held-out meta samples
    assert learner.labels.table().min() >= 0.1 / 4 - 1e-6  # the floor
    assert results.history[1].meta_loss is not None and results.corrected >= 0
    _, undamped = fit_learner(config(damping=1.0))
    assert undamped.history[1].train_loss != results.history[1].train_loss  # the option changes the run


def test_the_components_run_from_the_command_line_as_they_do_in_fit(registered, tmp_path):
    out = tmp_path / "run.json"
    cli = [sys.executable, "-m", "labelmeta", "--threads", str(torch.get_num_threads()), "--import", str(EXAMPLE)]
    run = subprocess.run([*cli, "train", *FLAGS, "--output", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    stored = json.loads(out.read_text())
    assert stored["config"]["strategy_options"] == {"damping": 0.5}
    assert stored["config"]["label_options"] == {"floor": 0.1}
    _, results = fit_learner(config())
    assert [h["train_loss"] for h in stored["history"]] == [h.train_loss for h in results.history]
    assert stored["last_accuracy"] == results.last_accuracy

    listing = subprocess.run([*cli, "list", "example-floor"], cwd=ROOT, capture_output=True, text=True)
    assert listing.returncode == 0 and "floor (float, default 0.0)" in listing.stdout
    assert "--label-floor" in listing.stdout
    bad = subprocess.run([*cli, "train", *FLAGS, "--label-flor", "0.2"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "unrecognized arguments: --label-flor" in bad.stderr


def _pairs():
    """Every strategy the example's backend or target is half of (known once the example is imported)."""
    import_components(str(EXAMPLE))
    try:
        return ([f"example-damped:{t}" for t in TARGETS.names() if t != "example-capped"]
                + [f"{b}:example-capped" for b in BACKENDS.names()])
    finally:
        for registry, name in NAMES:
            registry.unregister(name)


@pytest.mark.parametrize("strategy", _pairs())
def test_the_backend_and_the_target_run_with_every_counterpart(registered, strategy):
    """Through ``fit``, one meta epoch each on the example data (with one-hot labels where the target learns weights)."""
    labels = {} if STRATEGIES.build(strategy).learns_labels else dict(labels="one-hot", label_options={})
    learner, results = fit_learner(config().replace(strategy=strategy, strategy_options={}, epochs=1, warmup_epochs=0,
                                                    dataset_options=dict(num_samples=120), meta_per_class=5,
                                                    meta_batch_size=20, **labels))
    assert learner.strategy.name == strategy
    assert results.history[0].meta_loss is not None and results.history[0].meta_loss > 0


def test_the_target_caps_the_weights(registered):
    """``example-capped``: the weights of learning to reweight, none above ``cap / B``."""
    from labelmeta.strategies import MetaParameters

    target = TARGETS.build("example-capped", options=dict(cap=1.5))
    grads = [-torch.tensor([8.0, 1.0, 1.0, 0.0, -3.0, 1.0])]  # one sample helps far more than the others
    weights = target.update(None, MetaParameters([torch.zeros(6)]), 0.0, grads).sample_weights
    uncapped = torch.tensor([8.0, 1.0, 1.0, 0.0, 0.0, 1.0]) / 11  # learning to reweight's
    assert torch.allclose(weights, uncapped.clamp_max(1.5 / 6))


def test_a_name_registers_once(registered):
    assert "example-floor" in LABELS
    with pytest.raises(ValueError, match="label parameterisation 'example-floor' is already registered"):
        LABELS.register("example-floor")(object)
