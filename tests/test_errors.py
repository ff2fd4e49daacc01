"""Bad input fails loudly, naming the offending value: one table of cases, API and CLI alike."""
from __future__ import annotations

import pytest
import torch

from helpers import C, make_data, make_model
from labelmeta import Config, Learner, fit, make_label_optimizer, make_labels
from labelmeta.cli import main

TINY = Config(num_samples=1000, meta_per_class=5, meta_batch_size=20, epochs=1, warmup_epochs=0, progress=False)


def _learner(labels_name="per-sample", optimizer=None):
    targets, batch, meta = make_data()
    model = make_model("mlp")
    labels = make_labels(labels_name, targets, C)
    opt = optimizer(model) if optimizer else torch.optim.SGD(model.parameters(), lr=0.1)
    return Learner(model, opt, labels, "unrolled", make_label_optimizer("mirror", labels.parameters(), 0.5)), batch, meta


def wrong_batch_shapes():
    learner, (x, y, idx), meta = _learner()
    learner.step((x[:3], y, idx), meta)


def batch_without_indices():
    learner, (x, y, idx), meta = _learner()
    learner.step((x, y), meta)


def class_ids_out_of_range():
    learner, (x, y, idx), meta = _learner()
    learner.step((x, y + C, idx), meta)


def float_labels():
    make_labels("per-sample", torch.tensor([0.0, 1.0, 2.0]), 3)


def index_beyond_the_label_table():
    learner, (x, y, idx), meta = _learner()
    learner.step((x, y, idx + 100), meta)


def label_table_of_another_size():
    fit(TINY, labels=make_labels("per-sample", torch.zeros(17, dtype=torch.long), 10))


def meta_set_with_a_missing_class():
    from labelmeta.data import IndexedTensorDataset
    from labelmeta.runner import splits_for

    splits = splits_for(TINY)
    keep = splits.meta.y != 3
    splits.meta = IndexedTensorDataset(splits.meta.x[keep], splits.meta.y[keep])
    fit(TINY, splits)


def adamw_optimizer():
    learner, batch, meta = _learner(optimizer=lambda m: torch.optim.AdamW(m.parameters()))


def non_finite_training_loss():
    targets, (x, y, idx), _ = make_data()
    model = make_model("mlp")
    learner = Learner(model, torch.optim.SGD(model.parameters(), lr=0.1), make_labels("one-hot", targets, C), None)
    learner.step((x * float("nan"), y, idx))


def non_finite_meta_loss():
    learner, batch, (xm, ym, im) = _learner()
    learner.step(batch, (xm * float("inf"), ym, im))


def logits_of_the_wrong_shape_observed():
    make_labels("per-sample-ensemble", torch.tensor([0, 1, 2]), 3).observe(torch.tensor([0, 1]), torch.zeros(2, 4))


API_CASES = [
    (wrong_batch_shapes, ValueError, r"batch has 3 inputs, 6 targets and 6 indices"),
    (batch_without_indices, ValueError, r"batch must be \(inputs, targets, indices\), got tuple of length 2"),
    (class_ids_out_of_range, ValueError, r"targets hold class ids \[\d+(, \d+)*\] outside \[0, 4\)"),
    (float_labels, TypeError, r"annotated targets must hold integer class ids, got dtype torch.float32"),
    (index_beyond_the_label_table, ValueError, r"indices hold sample indices \[\d+.*\] outside \[0, 12\)"),
    (label_table_of_another_size, ValueError, r"labels were built for 17 samples of 10 classes, the training set has 750"),
    (meta_set_with_a_missing_class, ValueError, r"the meta set has no sample of classes \[3\]"),
    (adamw_optimizer, ValueError, r"higher cannot differentiate through AdamW; use one of: .*SGD.*"),
    (non_finite_training_loss, FloatingPointError, r"non-finite training loss at step 0, batch of 6 samples with indices \["),
    (non_finite_meta_loss, FloatingPointError, r"non-finite meta loss.* at step 0, batch of 6 samples"),
    (logits_of_the_wrong_shape_observed, ValueError, r"logits must be \[B=2, C=3\], got \(2, 4\)"),
]


@pytest.mark.parametrize("case, error, message", API_CASES, ids=[c[0].__name__ for c in API_CASES])
def test_api_bad_input(case, error, message):
    with pytest.raises(error, match=message):
        case()


CLI_CASES = [
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'; available: cifar10, cifar100, digits"),
    (["--noise", "pair"], "unknown noise kind 'pair'; available: none, symmetric, asymmetric, matrix"),
    (["--noise", "matrix"], "noise 'matrix' needs a transition matrix"),
    (["--loss", "mae"], "unknown training loss 'mae'; available: bootstrap-hard"),
    (["--optimizer", "adamw"], "higher has no differentiable AdamW: use adam with weight_decay, or sgd"),
    (["--schedule", "step"], "schedule must be 'cosine' or 'constant', got 'step'"),
    (["--strategy", "truncated", "--unroll-steps", "2", "--unroll-through", "3"], "through must be an integer in [1, steps=2], got 3"),
    (["--batch-size", "0"], "batch_size must be >= 1, got 0"),
    (["--checkpoint-every", "-1"], "checkpoint_every must be >= 0, got -1"),
    (["--resume"], "resume=True needs checkpoint"),
    (["--meta-per-class", "0"], "meta_source='clean' needs a held-out meta split"),
    (["--noise-matrix", "missing.npy", "--noise", "matrix"], "No such file"),
]


@pytest.mark.parametrize("flags, message", CLI_CASES, ids=[" ".join(c[0]) for c in CLI_CASES])
def test_cli_bad_input(flags, message, capsys):
    assert main(["train", "--num-samples", "1000", "--epochs", "1", "--no-progress", *flags]) == 2
    assert message in capsys.readouterr().err


def test_cli_unreadable_checkpoint(tmp_path, capsys):
    bad = tmp_path / "ck.pt"
    bad.write_text("garbage")
    assert main(["train", "--num-samples", "1000", "--epochs", "1", "--no-progress",
                 "--checkpoint", str(bad), "--resume"]) == 2
    assert "is corrupt or not a torch file" in capsys.readouterr().err
