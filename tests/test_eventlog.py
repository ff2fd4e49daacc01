"""``--log-dir``: TensorBoard event files read back with TensorBoard's own loader, against the run's
records; the epochs as CSV; the error without TensorBoard, before any training."""
from __future__ import annotations

import csv
import sys

import pytest
import torch

from labelmeta import Config, fit
from labelmeta.build import splits_for
from labelmeta.cli import main

TINY = Config(dataset_options=dict(num_samples=1000), meta_per_class=5, meta_batch_size=20, epochs=3,
              warmup_epochs=1, progress=False)


def _events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def test_event_files_hold_the_runs_figures(tmp_path):
    # per-sample labels learn at every meta step (detect-correct's only after its detection phase)
    config = TINY.replace(labels="per-sample", log_dir=str(tmp_path / "runs" / "a"))
    r = fit(config)
    acc = _events(tmp_path / "runs" / "a")
    tags = acc.Tags()
    accuracy = acc.Scalars("test/accuracy")
    assert [e.value for e in accuracy] == pytest.approx([h.test_accuracy for h in r.history], rel=1e-6)
    steps = [e.step for e in accuracy]
    assert steps == sorted(steps) and len(set(steps)) == 3
    losses = acc.Scalars("train/loss")
    assert [e.step for e in losses] == list(range(1, steps[-1] + 1))  # one per training step
    # meta steps from the second epoch on (one warm-up epoch), with their label gradient and kept share
    meta = acc.Scalars("meta/loss")
    assert meta and min(e.step for e in meta) > steps[0]
    assert all(e.value > 0 for e in acc.Scalars("meta/label_grad_norm"))
    assert all(0 <= e.value <= 1 for e in acc.Scalars("meta/kept_fraction"))
    assert [e.value for e in acc.Scalars("labels/corrected")] == pytest.approx([h.corrected for h in r.history])
    # the learned labels' confidence, one histogram per epoch over every training sample
    assert {"labels/confidence", "labels/annotated_probability"} <= set(tags["histograms"])
    confidence = acc.Histograms("labels/confidence")
    assert [h.step for h in confidence] == steps
    assert confidence[0].histogram_value.num == len(splits_for(config).labels.noisy)
    assert 0.1 <= confidence[0].histogram_value.min <= confidence[-1].histogram_value.max <= 1.0
    with open(tmp_path / "runs" / "a" / "epochs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(row["test_accuracy"]) for row in rows] == [h.test_accuracy for h in r.history]


def test_a_plain_run_logs_no_meta_figures(tmp_path):
    fit(TINY.replace(labels="one-hot", strategy="none", log_dir=str(tmp_path / "plain")))
    tags = _events(tmp_path / "plain").Tags()
    assert "test/accuracy" in tags["scalars"] and "meta/loss" not in tags["scalars"]
    assert not tags["histograms"]  # nothing learned to show


def test_log_dir_from_the_command_line(tmp_path, capsys):
    args = ["train", "--data-num-samples", "1000", "--epochs", "2", "--warmup-epochs", "1", "--meta-per-class", "5",
            "--meta-batch-size", "20", "--no-progress", "--log-dir", str(tmp_path / "cli")]
    assert main(args) == 0
    assert len(_events(tmp_path / "cli").Scalars("test/accuracy")) == 2


def test_without_tensorboard_it_says_how_to_install_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails, as when not installed
    with pytest.raises(ImportError, match=r"pip install 'labelmeta\[tensorboard\]'"):
        fit(TINY.replace(log_dir=str(tmp_path / "x"), dataset="cifar10", dataset_options={}, data_root=str(tmp_path / "no-data")))


def test_log_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError, match="log_dir .* is a file; give a folder"):
        fit(TINY.replace(log_dir=str(tmp_path / "f")))


def test_a_resumed_log_drops_what_the_interrupted_run_wrote_after_its_checkpoint(tmp_path):
    """An interrupted run logged steps 1-10, its checkpoint is at step 5: the resumed run's log (purge_step
    6) replaces steps 6-10 with its own, so the curve has no doubled stretch."""
    from labelmeta.eventlog import EventLog
    from labelmeta.labels import make_labels

    labels = make_labels("one-hot", torch.tensor([0, 1]), 2)
    first = EventLog(tmp_path)
    for step in range(1, 11):
        first.step(step, float(step), None, None, labels)
    first.close()
    resumed = EventLog(tmp_path, purge_step=6)
    for step in range(6, 9):
        resumed.step(step, 100.0 + step, None, None, labels)
    resumed.close()
    events = _events(tmp_path).Scalars("train/loss")
    assert [(e.step, e.value) for e in events] == [(s, float(s)) for s in range(1, 6)] + [(s, 100.0 + s) for s in range(6, 9)]
