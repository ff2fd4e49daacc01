"""The runner's wiring: Config fields reach the components they configure."""
from __future__ import annotations

import pytest

from labelmeta import Config
from labelmeta.runner import build_learner, label_options, make_schedulers, splits_for

TINY = Config(num_samples=1000, meta_per_class=5, meta_batch_size=20, epochs=1, progress=False)


def test_label_options_follow_each_constructor():
    assert label_options(TINY.replace(labels="one-hot")) == {}
    assert label_options(TINY.replace(labels="smoothing", smoothing=0.2)) == {"smoothing": 0.2}
    assert label_options(TINY.replace(labels="class-temperature", label_scale=3.0)) == {"scale": 3.0}
    assert label_options(TINY.replace(labels="per-sample-ensemble", label_scale=5.0, ensemble_weight=1.5,
                                      ensemble_momentum=0.9)) == {"scale": 5.0, "weight": 1.5, "momentum": 0.9}


@pytest.mark.parametrize("label_schedule, final", [("cosine", 0.0), ("constant", 0.5)])
def test_label_learning_rate_schedule(label_schedule, final):
    config = TINY.replace(label_lr=0.5, label_schedule=label_schedule)
    learner = build_learner(config, splits_for(config))
    model_scheduler, label_scheduler = make_schedulers(config, learner, model_steps=10, label_steps=6)
    assert (label_scheduler is None) == (label_schedule == "constant")
    for step in range(10):
        learner.optimizer.step()
        model_scheduler.step()
        if step >= 4:  # four warm-up steps without label updates
            learner.label_optimizer.step()
            if label_scheduler is not None:
                label_scheduler.step()
    assert learner.label_optimizer.param_groups[0]["lr"] == pytest.approx(final, abs=1e-12)
    assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_bad_label_schedule_is_named():
    from labelmeta import fit

    with pytest.raises(ValueError, match="label_schedule must be 'cosine' or 'constant', got 'step'"):
        fit(TINY.replace(label_schedule="step"))
