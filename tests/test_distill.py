"""Distillation and class-semantics pieces: teacher labels, the distill pipeline, the twins dataset, plots."""
from __future__ import annotations

import pytest
import torch

from labelmeta import Config, fit, make_splits
from labelmeta.distill import TeacherLabels, distill, fit_student, logits_by_index
from labelmeta.plots import plot_label_matrix
from labelmeta.runner import fit_learner

TINY = Config(dataset_options=dict(num_samples=1000), meta_per_class=5, meta_batch_size=20, epochs=1, warmup_epochs=0,
              noise="none", noise_rate=0.0, progress=False)


def test_teacher_labels_are_the_tempered_teacher(float64):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 3, generator=g)
    labels = TeacherLabels(torch.tensor([0, 1, 2, 0, 1, 2]), 3, logits, temperature=2.0)
    torch.testing.assert_close(labels(torch.tensor([4, 1])), torch.softmax(logits[[4, 1]] / 2.0, 1))
    assert not labels.learnable
    with pytest.raises(ValueError, match=r"teacher logits must be \[N=6, C=3\], got \(5, 3\)"):
        TeacherLabels(torch.zeros(6, dtype=torch.long), 3, logits[:5])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        TeacherLabels(torch.zeros(6, dtype=torch.long), 3, logits, temperature=0)


def test_logits_by_index_follows_the_indices():
    splits = make_splits("digits", meta_per_class=0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    table = logits_by_index(model, splits.train, len(splits.labels.noisy))
    x, _, idx = splits.train[torch.tensor([7, 3])]
    torch.testing.assert_close(table[[7, 3]], model(x))


def test_distill_hands_the_student_the_trained_teachers_tempered_predictions(monkeypatch):
    """Oracle: the student's targets are ``softmax(teacher(x_i) / T)`` for every training sample
    ``i``, with the trained teacher in eval mode (its BatchNorm on running statistics) and the
    *student's* temperature, recomputed here from the training tensors in one forward pass."""
    import labelmeta.distill as pipeline

    calls = {}

    def teacher_run(config, splits, *args, **kwargs):
        learner, results = fit_learner(config, splits, *args, **kwargs)
        calls["teacher"] = (config, splits, learner, results)
        return learner, results

    def student_run(config, splits, labels, *args, **kwargs):
        results = fit(config, splits, labels, *args, **kwargs)
        calls["student"] = (config, labels, results)
        return results

    monkeypatch.setattr(pipeline, "fit_learner", teacher_run)
    monkeypatch.setattr(pipeline, "fit", student_run)
    teacher = TINY.replace(labels="one-hot", strategy="none")  # cnn1d-bn
    result = distill(teacher, TINY.replace(model="mlp", loss_options=dict(temperature=2.0, alpha=0.5)))

    config, splits, learner, teacher_results = calls["teacher"]
    assert config == teacher and result.teacher is teacher_results
    n = len(splits.labels.noisy)
    x, _, idx = splits.train[torch.arange(n)]
    assert torch.equal(idx, torch.arange(n))
    learner.model.eval()
    with torch.no_grad():
        expected = torch.softmax(learner.model(x) / 2.0, 1)
    student_config, labels, student_results = calls["student"]
    assert isinstance(labels, TeacherLabels) and result.student is student_results
    torch.testing.assert_close(labels.probs, expected)
    assert student_config.loss == "distillation" and student_config.strategy == "none"
    assert student_config.loss_options == dict(temperature=2.0, alpha=0.5)


def test_a_student_of_a_certain_teacher_is_trained_by_cross_entropy():
    """Oracle: a teacher certain of the annotations (logits 100 * one-hot, T = 1) with alpha = 1
    gives the student the gradient of cross-entropy, so its run is plain training's."""
    from labelmeta import fit

    config = TINY.replace(model="mlp", epochs=2, loss_options=dict(temperature=1.0, alpha=1.0))
    from labelmeta.build import splits_for

    splits = splits_for(config)
    certain = 100.0 * torch.nn.functional.one_hot(splits.labels.noisy, splits.num_classes).float()
    student = fit_student(certain, config, splits)
    plain = fit(config.replace(labels="one-hot", strategy="none", loss_options={}), splits)
    assert student.config["loss"] == "distillation"
    assert [h.test_accuracy for h in student.history] == [h.test_accuracy for h in plain.history]
    torch.testing.assert_close(torch.tensor([h.train_loss for h in student.history]),
                               torch.tensor([h.train_loss for h in plain.history]), rtol=1e-5, atol=1e-6)


def test_labels_given_to_fit_must_fit_the_data():
    from labelmeta import fit, make_labels

    with pytest.raises(ValueError, match="labels were built for 3 samples of 10 classes"):
        fit(TINY, labels=make_labels("one-hot", torch.tensor([0, 1, 2]), 10))


def test_digits_twins_split_every_class_in_two():
    splits = make_splits("digits-twins", meta_per_class=2)
    assert splits.num_classes == 20 and splits.class_names[3] == "3a" and splits.class_names[13] == "3b"
    from labelmeta.data import DATASETS

    raw, base = DATASETS.build("digits-twins"), DATASETS.build("digits")
    assert torch.equal(raw.train_targets % 10, base.train_targets)  # the same digits, relabelled
    assert 0.4 < (raw.train_targets >= 10).float().mean() < 0.6


def test_plot_label_matrix(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    ax = plot_label_matrix(torch.softmax(torch.randn(4, 4), 1), ["a", "b", "c", "d"])
    ax.figure.savefig(tmp_path / "m.png")
    assert (tmp_path / "m.png").stat().st_size > 0
    with pytest.raises(ValueError, match="3 class names for a 4-class matrix"):
        plot_label_matrix(torch.eye(4), ["a", "b", "c"])
