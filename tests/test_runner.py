"""The runner's wiring: Config fields reach the components they configure."""
from __future__ import annotations

import pytest
import torch

from helpers import meta_learning_signal
from labelmeta import Config, fit
from labelmeta.build import build_learner, splits_for
from labelmeta.strategies import BACKENDS

TINY = Config(dataset_options=dict(num_samples=1000), meta_per_class=5, meta_batch_size=20, epochs=1, progress=False)


def test_declared_options_reach_the_components_they_configure():
    import torch

    config = TINY.replace(labels="per-sample-ensemble", label_options=dict(scale=5.0, weight=1.5, momentum=0.9),
                          model="mlp", model_options=dict(hidden=(7,)))
    learner = build_learner(config, splits_for(TINY))
    assert (learner.labels.weight, learner.labels.momentum) == (1.5, 0.9)
    assert torch.equal(learner.labels.logits.detach().max(1).values, torch.full((len(learner.labels.targets),), 5.0))
    assert [m.out_features for m in learner.model.modules() if isinstance(m, torch.nn.Linear)] == [7, 10]
    learner = build_learner(TINY.replace(labels="smoothing", label_options=dict(smoothing=0.2), strategy="none"),
                            splits_for(TINY))
    assert learner.labels.smoothing == 0.2


def test_meta_schedule_closed_form():
    """Warm-up, every m and the label schedule, counted by hand: 3 steps an epoch, 4 epochs, 1 of warm-up,
    a meta step every 2nd step: steps 4, 6, 8 and 10 (3 is after warm-up but odd)."""
    from labelmeta.schedule import MetaSchedule

    schedule = MetaSchedule(steps_per_epoch=3, epochs=4, warmup_epochs=1, every=2)
    assert [s for s in range(12) if schedule.due(s)] == [4, 6, 8, 10] and schedule.meta_steps == 4
    assert MetaSchedule(steps_per_epoch=3, epochs=2, warmup_epochs=5).meta_steps == 0
    with pytest.raises(ValueError, match="meta_every must be a positive integer, got 0"):
        MetaSchedule(steps_per_epoch=3, epochs=2, every=0)


@pytest.mark.parametrize("label_schedule, final", [("cosine", 0.0), ("constant", 0.5)])
def test_label_learning_rate_schedule(label_schedule, final):
    from labelmeta.schedule import MetaSchedule, lr_scheduler

    config = TINY.replace(label_lr=0.5, label_schedule=label_schedule)
    learner = build_learner(config, splits_for(config))
    schedule = MetaSchedule(steps_per_epoch=5, epochs=2, warmup_epochs=1, every=1, label_schedule=label_schedule)
    model_scheduler, label_scheduler = lr_scheduler(learner.optimizer, "cosine", 10), \
        schedule.label_scheduler(learner.label_optimizer)
    assert (label_scheduler is None) == (label_schedule == "constant")
    for step in range(10):
        learner.optimizer.step()
        model_scheduler.step()
        if schedule.due(step):  # five warm-up steps without label updates
            learner.label_optimizer.step()
            if label_scheduler is not None:
                label_scheduler.step()
    assert learner.label_optimizer.param_groups[0]["lr"] == pytest.approx(final, abs=1e-12)
    assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_bad_label_schedule_is_named():

    with pytest.raises(ValueError, match="label_schedule must be one of 'cosine', 'constant', got 'step'"):
        fit(TINY.replace(label_schedule="step"))


def test_noise_detection_closed_form():
    import torch

    from labelmeta.metrics import noise_detection

    annotated = torch.tensor([0, 1, 2, 3, 0, 1])
    true = torch.tensor([0, 2, 2, 0, 1, 1])        # samples 1, 3, 4 corrupted
    flagged = torch.tensor([False, True, True, False, True, False])
    d = noise_detection(flagged, annotated, true)
    assert d.precision == pytest.approx(2 / 3) and d.recall == pytest.approx(2 / 3)
    assert noise_detection(torch.zeros(6, dtype=torch.bool), annotated, true).recall == 0.0
    with pytest.raises(ValueError, match="same shape"):
        noise_detection(flagged[:3], annotated, true)


def test_loss_and_label_optimizer_options_reach_their_factories():
    learner = build_learner(TINY.replace(loss="gce", loss_options=dict(q=0.4)), splits_for(TINY))
    assert learner.loss.q == 0.4
    learner = build_learner(TINY.replace(loss="bootstrap-hard"), splits_for(TINY))  # its own default beta
    assert learner.loss.beta == 0.8 and learner.loss.hard
    learner = build_learner(TINY.replace(label_optimizer="mirror", label_optimizer_options=dict(normalize="row")),
                            splits_for(TINY))
    assert learner.label_optimizer.param_groups[0]["normalize"] == "row"


def test_user_hooks_see_every_step_with_its_samples_and_weights():
    from labelmeta.hooks import RunHook
    from labelmeta.runner import fit_learner

    class Seen(RunHook):
        def __init__(self):
            self.steps, self.state = [], None

        def after_step(self, run, stats):
            self.steps.append((run.state.epoch, stats.indices.clone(), stats.sample_weights))
            self.state = run.state

    seen = Seen()
    config = TINY.replace(labels="one-hot", strategy="reweight", epochs=2, warmup_epochs=1)
    learner, results = fit_learner(config, hooks=[seen])
    n = len(splits_for(config).train)
    for epoch in (0, 1):
        indices = torch.cat([i for e, i, _ in seen.steps if e == epoch])
        assert sorted(indices.tolist()) == list(range(n))  # each training sample once an epoch
    rejected = torch.zeros(n)
    for epoch, indices, weights in seen.steps:
        assert (weights is None) == (epoch == 0)  # the warm-up epoch has no meta step
        if weights is not None:
            rejected[indices] += (weights == 0).float()
    # the run counts the same visits and rejections: one weighed visit a sample (one meta epoch)
    assert torch.equal(seen.state.weighed, torch.ones(n)) and torch.equal(seen.state.rejected, rejected)
    assert torch.equal(seen.state.kept(), 1 - rejected)
    assert fit(config).last_accuracy == results.last_accuracy  # watching changes nothing


def test_reweighting_run_reports_its_flags():

    r = fit(TINY.replace(labels="one-hot", strategy="reweight", epochs=2, warmup_epochs=1))
    assert r.history[0].detect_precision is not None and r.history[0].detect_recall is not None
    assert 0.0 <= r.detect_recall <= 1.0 and r.history[-1].corrected is None
    plain = fit(TINY.replace(labels="one-hot", strategy="none"))
    assert plain.history[-1].detect_recall is None


@pytest.mark.parametrize("backend", BACKENDS.names())
def test_every_backend_learns_the_right_way_in_the_runner(backend):
    """On a tiny noisy problem (40 % symmetric), one meta epoch of each backend moves the corrupted
    samples' labels towards their true class, and, with the weights target, gives the clean samples
    more weight than the corrupted ones: a hypergradient of the wrong sign fails both (measured with
    every backend's sign flipped: the label margin went from +0.002-0.004 to below 0, the weight gap
    from +0.23-0.46 to below -0.16, seeds 0 and 1)."""
    options = dict(steps=2) if backend == "truncated" else {}
    # per-sample labels learn from the first meta step (detect-correct's only after its detection phase)
    config = TINY.replace(labels="per-sample", strategy=backend, strategy_options=options, epochs=2, warmup_epochs=1,
                          label_lr=0.5)
    signal, results = meta_learning_signal(config)
    assert signal["labels"] > 0 and results.history[1].meta_loss is not None
    assert meta_learning_signal(config.replace(labels="one-hot", strategy=f"{backend}:weights"))[0]["weights"] > 0


def test_a_meta_step_every_m_steps_runs_in_the_runner():
    r = fit(TINY.replace(strategy="unrolled", epochs=2, warmup_epochs=1, label_lr=0.5, meta_every=3))
    assert r.history[1].meta_loss is not None and 0 <= r.corrected <= 1


def test_strategy_options_reach_the_strategy():
    learner = build_learner(TINY.replace(strategy="truncated", strategy_options=dict(steps=4, through=2)),
                            splits_for(TINY))
    assert (learner.strategy.steps, learner.strategy.through) == (4, 2)
    learner = build_learner(TINY.replace(strategy="head-only", strategy_options=dict(head="head")), splits_for(TINY))
    assert learner.strategy.head == "head"


def test_expected_calibration_error_closed_form():
    import torch

    from labelmeta.metrics import expected_calibration_error

    # two bins of the top-class confidence: 0.9 (3 right of 4) and 0.6 (1 right of 2)
    probs = torch.tensor([[0.9, 0.1]] * 4 + [[0.4, 0.6]] * 2)
    targets = torch.tensor([0, 0, 0, 1, 1, 0])
    expected = 4 / 6 * abs(0.75 - 0.9) + 2 / 6 * abs(0.5 - 0.6)
    assert expected_calibration_error(probs, targets, bins=10) == pytest.approx(expected)
    perfect = torch.eye(3)
    assert expected_calibration_error(perfect, torch.arange(3)) == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"probs must be \[N, C\]"):
        expected_calibration_error(probs[:3], targets)


@pytest.mark.parametrize("labels, lr", [("per-sample-ensemble", 0.5), ("per-class", 0.5), ("temperature", 0.01),
                                        ("class-temperature", 0.01)])
def test_label_step_length_is_scaled_per_parameterisation(labels, lr):
    learner = build_learner(TINY.replace(labels=labels, label_lr=0.5), splits_for(TINY))
    assert learner.label_optimizer.param_groups[0]["lr"] == pytest.approx(lr)


def test_progress_off_a_terminal_is_one_line_per_epoch(capsys):
    """Under pytest stderr is not a terminal (as in a log file or CI): no bar redraws, a line per epoch."""
    fit(TINY.replace(epochs=2, warmup_epochs=1, progress=True))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if ": step " in line]
    assert "\r" not in err and len(lines) == 2, err
    total = int(lines[0].split("/")[2].split(" ")[0])
    assert lines[1].split(": step ")[1].startswith(f"{total}/{total} (100%), acc 0.")
