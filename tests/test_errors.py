"""Bad input fails loudly, naming the offending value: one table of cases, API and CLI alike."""
from __future__ import annotations

import json
import re
import sys

import pytest
import torch

from helpers import C, make_data, make_model
from labelmeta import LABELS, Config, Learner, fit, make_label_optimizer, make_labels
from labelmeta.cli import main
from labelmeta.checks import check_config

TINY = Config(dataset_options=dict(num_samples=1000), meta_per_class=5, meta_batch_size=20, epochs=1, warmup_epochs=0, progress=False)
#: TINY as command-line flags
TINY_FLAGS = ["--data-num-samples", "1000", "--meta-per-class", "5", "--meta-batch-size", "20", "--epochs", "1",
              "--warmup-epochs", "0", "--no-progress"]


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
    from labelmeta.build import splits_for

    splits = splits_for(TINY)
    keep = splits.meta.y != 3
    splits.meta = IndexedTensorDataset(splits.meta.x[keep], splits.meta.y[keep])
    fit(TINY, splits)


def optimizer_the_unroll_cannot_reproduce():
    _learner(optimizer=lambda m: torch.optim.RMSprop(m.parameters()))


def meta_targets_out_of_range():
    learner, batch, (xm, ym, im) = _learner()
    learner.step(batch, (xm, ym + C, im))


def empty_meta_batch():
    learner, batch, (xm, ym, im) = _learner()
    learner.step(batch, (xm[:0], ym[:0], im[:0]))


def empty_training_batch():
    learner, (x, y, idx), meta = _learner()
    learner.step((x[:0], y[:0], idx[:0]), meta)


def nan_meta_batch():
    learner, batch, (xm, ym, im) = _learner()
    learner.step(batch, (xm * float("nan"), ym, im + 100))


def non_finite_training_loss():
    targets, (x, y, idx), _ = make_data()
    model = make_model("mlp")
    learner = Learner(model, torch.optim.SGD(model.parameters(), lr=0.1), make_labels("one-hot", targets, C), None)
    learner.step((x * float("nan"), y, idx))


def non_finite_meta_loss():
    learner, batch, (xm, ym, im) = _learner()
    learner.step(batch, (xm * float("inf"), ym, im))


def misspelt_label_option():
    fit(TINY.replace(label_options=dict(sclae=3.0)))


def mistyped_strategy_option():
    fit(TINY.replace(strategy="truncated", strategy_options=dict(steps="4")))


def dataset_option_it_does_not_take():
    fit(TINY.replace(dataset="digits"))  # TINY sets mnist1d's num_samples


def logits_of_the_wrong_shape_observed():
    make_labels("per-sample-ensemble", torch.tensor([0, 1, 2]), 3).observe(torch.tensor([0, 1]), torch.zeros(2, 4))


def non_finite_transition_matrix():
    from labelmeta.noise import add_noise

    add_noise(torch.arange(3), 3, "matrix", matrix=torch.tensor([[1.0, 0, 0], [float("nan"), 1.0, 0], [0, 0, 1.0]]))


API_CASES = [
    (wrong_batch_shapes, ValueError, r"batch has 3 inputs, 6 targets and 6 indices"),
    (batch_without_indices, ValueError, r"batch must be \(inputs, targets, indices\), got tuple of length 2"),
    (class_ids_out_of_range, ValueError, r"targets hold class ids \[\d+(, \d+)*\] outside \[0, 4\)"),
    (float_labels, TypeError, r"annotated targets must hold integer class ids, got dtype torch.float32"),
    (index_beyond_the_label_table, ValueError, r"indices hold sample indices \[\d+.*\] outside \[0, 12\)"),
    (label_table_of_another_size, ValueError, r"labels were built for 17 samples of 10 classes, the training set has 750"),
    (meta_set_with_a_missing_class, ValueError, r"the meta set has no sample of classes \[3\]"),
    (optimizer_the_unroll_cannot_reproduce, ValueError, r"no differentiable RMSprop .*; use one of: Adam, AdamW, SGD"),
    (meta_targets_out_of_range, ValueError, r"meta_batch targets hold class ids \[\d+(, \d+)*\] outside \[0, 4\)"),
    (empty_meta_batch, ValueError, r"meta_batch is empty"),
    (empty_training_batch, ValueError, r"^batch is empty"),
    (non_finite_training_loss, FloatingPointError,
     r"non-finite training loss at step 0, batch of 6 samples with indices \[.*\] \(its inputs are not finite\)"),
    (non_finite_meta_loss, FloatingPointError,
     r"non-finite meta loss.* at step 0: meta_batch of 8 samples with indices \[0, 1, .*\(its inputs are not finite\)"),
    (nan_meta_batch, FloatingPointError, r"meta_batch of 8 samples with indices \[100, 101, "),
    (logits_of_the_wrong_shape_observed, ValueError, r"logits must be \[B=2, C=3\], got \(2, 4\)"),
    (misspelt_label_option, ValueError, r"label parameterisation 'detect-correct' has no option 'sclae'; "
                                        r"its options: threshold, detect_fraction, momentum, weighting$"),
    (mistyped_strategy_option, ValueError, r"strategy 'truncated' option 'steps' takes int, got '4'"),
    (dataset_option_it_does_not_take, ValueError, r"dataset 'digits' has no option 'num_samples'; "
                                                  r"its options: data_seed, test_fraction"),
    (non_finite_transition_matrix, ValueError, r"^transition matrix rows \[1\] hold non-finite entries \(nan or inf\)$"),
]


@pytest.mark.parametrize("case, error, message", API_CASES, ids=[c[0].__name__ for c in API_CASES])
def test_api_bad_input(case, error, message):
    with pytest.raises(error, match=message):
        case()


CLI_CASES = [
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'; available: arrays, cifar10, cifar100, digits"),
    (["--noise", "pair"], "unknown noise kind 'pair'; available: asymmetric, confidence, file, instance, matrix, none"),
    (["--noise", "matrix"], "noise 'matrix' needs a transition matrix"),
    (["--loss", "mae"], "unknown training loss 'mae'; available: bootstrap-hard"),
    (["--optimizer", "rmsprop"], "unknown model optimiser 'rmsprop'; available: adam, adamw, sgd"),
    (["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "cuda:99"], "device 'cuda"),
    (["--device", "gpu"], "device 'gpu' is not a torch device"),
    (["--strategy", "finite-difference", "--optimizer", "adam"], "finite-difference needs SGD"),
    (["--threads", "0", "train"], "argument --threads: must be >= 1, got 0"),
    (["train", "--epoch", "1"], "unrecognized arguments: --epoch 1"),
    (["train", "--noise-r", "0.2"], "unrecognized arguments: --noise-r 0.2"),
    (["--schedule", "step"], "schedule must be one of 'cosine', 'constant', got 'step'"),
    (["--strategy", "truncated", "--strategy-steps", "2", "--strategy-through", "3"],
     "through must be an integer in [1, steps=2], got 3"),
    (["--meta-every", "0"], "meta_every must be >= 1, got 0"),
    (["--labels", "per-sample", "--label-weight", "2"], "--label-weight is not an option of label parameterisation "
                                                        "'per-sample'; its options: --label-scale"),
    (["--batch-size", "0"], "batch_size must be >= 1, got 0"),
    (["--checkpoint-every", "-1"], "checkpoint_every must be >= 0, got -1"),
    (["--resume"], "resume=True needs checkpoint"),
    (["--meta-per-class", "0"], "meta_source='clean' needs a held-out meta split"),
    (["--noise-matrix", "missing.npy", "--noise", "matrix"], "transition matrix 'missing.npy' does not exist"),
    (["--momentum", "1"], "momentum must lie in [0, 1), got 1.0"),
    (["--lr", "-0.1"], "lr must be >= 0, got -0.1"),
    (["--labels", "per-class", "--label-scale", "0"], "scale must be > 0, got 0.0"),
]


@pytest.mark.parametrize("flags, message", CLI_CASES, ids=[" ".join(c[0]) for c in CLI_CASES])
def test_cli_bad_input(flags, message, capsys):
    base = ["--data-num-samples", "1000", "--epochs", "1", "--warmup-epochs", "0", "--no-progress"]
    try:  # global flags come before the sub-command
        code = main(flags + base if flags[-1] == "train" or flags[0] == "train" else ["train", *base, *flags])
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_refuses_an_unwritable_output_before_training(tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    checkpoint = tmp_path / "ck.pt"
    assert main(["train", "--data-num-samples", "1000", "--epochs", "1", "--warmup-epochs", "0", "--no-progress",
                 "--checkpoint", str(checkpoint), "--output", str(tmp_path / "a-file" / "run.json")]) == 2
    assert f"cannot write output {str(tmp_path / 'a-file' / 'run.json')!r}" in capsys.readouterr().err
    assert not checkpoint.exists()  # no epoch was trained: the first checkpoint comes after one
    assert main(["train", "--no-progress", "--checkpoint", str(tmp_path)]) == 2
    assert f"checkpoint {str(tmp_path)!r} is a folder" in capsys.readouterr().err


def test_results_that_cannot_be_written_at_the_end_are_not_lost(tmp_path, capsys, monkeypatch):
    """The folder of ``output`` turns into a file during training: fit hands the results over
    with the error, and the CLI prints the summary before the error."""
    import labelmeta.config
    from labelmeta.records import ResultsNotWritten
    from labelmeta.runner import fit_learner

    folder = tmp_path / "out"

    def break_the_folder(learner, splits, record):
        if folder.is_dir():
            folder.rmdir()
            folder.write_text("now a file")

    config = TINY.replace(output=str(folder / "run.json"), labels="one-hot", strategy="none")
    with pytest.raises(ResultsNotWritten, match="cannot write the results to") as err:
        fit_learner(config, on_epoch=break_the_folder)
    results = err.value.results
    assert len(results.history) == 1 and results.last_accuracy == results.history[0].test_accuracy

    # the CLI: the check before training is skipped, so that writing fails at the end only
    monkeypatch.setattr(labelmeta.checks, "check_writable", lambda path, what: None)
    assert main(["train", "--data-num-samples", "1000", "--epochs", "1", "--warmup-epochs", "0", "--no-progress",
                 "--labels", "one-hot", "--strategy", "none", "--output", str(folder / "run.json")]) == 2
    out, errors = capsys.readouterr()
    assert json.loads(out)["best_epoch"] == 1
    assert "cannot write the results to" in errors


SILENT_NO_OPS = [
    (dict(lr=0.0), "learning rate is 0: .* the labels never change"),
    (dict(warmup_epochs=1, epochs=1), "warmup_epochs=1 >= epochs=1: no meta step will run"),
    (dict(labels="one-hot", strategy="one-step"), "OneHot labels are fixed: the 'one-step' strategy has nothing to learn"),
    (dict(labels="smoothing", strategy="functional"), "LabelSmoothing labels are fixed: the 'functional' strategy"),
    (dict(strategy="reweight"), "'reweight' strategy learns sample weights, not labels: the parameters of the "
                                "DetectCorrect labels stay"),
    # ignored settings: the run differs from what was asked for
    (dict(noise="none"), r"^noise_rate=0.4 is ignored: noise is 'none', no annotation is corrupted \(set noise_rate=0\)$"),
    (dict(meta_source="train"), r"^meta_per_class=5 is ignored with meta_source='train': no clean samples are held out, "
                                r"and the meta batches are drawn from the training set with its annotated"),
    (dict(meta_source="train", meta_per_class=0, meta_in_train=True),
     r"^meta_in_train=True is ignored with meta_source='train': no samples are held out"),
]


@pytest.mark.parametrize("changes, message", SILENT_NO_OPS, ids=[str(c[0]) for c in SILENT_NO_OPS])
def test_settings_that_make_a_run_a_no_op_warn(changes, message):
    with pytest.warns(UserWarning, match=message):
        fit(TINY.replace(**changes))


def test_cli_shows_the_warning(capsys):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always")  # the suite turns warnings into errors; a user's shell shows them
        assert main(["train", "--data-num-samples", "1000", "--meta-per-class", "5", "--epochs", "1", "--no-progress"]) == 0
    assert "labelmeta: warning: warmup_epochs=2 >= epochs=1" in capsys.readouterr().err


def test_cli_unreadable_checkpoint(tmp_path, capsys):
    bad = tmp_path / "ck.pt"
    bad.write_text("garbage")
    assert main(["train", "--data-num-samples", "1000", "--epochs", "1", "--warmup-epochs", "0", "--no-progress",
                 "--checkpoint", str(bad), "--resume"]) == 2
    assert "is corrupt or not a torch file" in capsys.readouterr().err


CONFIG_CASES = [
    (dict(momentum=1.0), r"^momentum must lie in \[0, 1\), got 1.0$"),
    (dict(momentum=-0.1), r"^momentum must lie in \[0, 1\), got -0.1$"),
    (dict(lr=-0.1), r"^lr must be >= 0, got -0.1$"),
    (dict(lr=float("nan")), r"^lr must be finite and >= 0, got nan$"),
    (dict(weight_decay=-1e-4), r"^weight_decay must be >= 0, got -0.0001$"),
    (dict(label_lr=-0.5), r"^label_lr must be >= 0, got -0.5$"),
    (dict(label_lr=float("inf")), r"^label_lr must be finite and >= 0, got inf$"),
    (dict(noise_rate=1.2), r"^noise rate must lie in \[0, 1\), got 1.2$"),  # before any data is loaded
    (dict(meta_per_class=5, validation_per_class=5), r"^validation_per_class=5 must be in \[0, meta_per_class=5\)"),
    (dict(meta_per_class=5, validation_per_class=-2), r"^validation_per_class=-2 must be in"),
    (dict(meta_source="train", meta_per_class=0, validation_per_class=1), r"with meta_source='clean' \(got 'train'\)"),
]


@pytest.mark.parametrize("changes, message", CONFIG_CASES, ids=[str(c[0]) for c in CONFIG_CASES])
def test_config_values_out_of_their_domain_are_refused_by_check_config(changes, message):
    with pytest.raises(ValueError, match=message):
        check_config(TINY.replace(**changes))


SCALED = [name for name in LABELS.names() if "scale" in LABELS.schema(name).options]


@pytest.mark.parametrize("name", SCALED)
@pytest.mark.parametrize("value, message", [(0.0, "must be > 0, got 0.0"), (-1.0, "must be > 0, got -1.0"),
                                            (float("nan"), "must be finite and > 0, got nan"),
                                            (float("inf"), "must be finite and > 0, got inf")])
def test_every_label_scale_must_be_finite_and_positive(name, value, message):
    assert {"per-sample", "per-sample-ensemble", "ensemble-trust", "per-class", "temperature"} <= set(SCALED)
    with pytest.raises(ValueError, match=f"^scale {re.escape(message)}$"):
        make_labels(name, torch.tensor([0, 1, 2]), 3, scale=value)


@pytest.mark.parametrize("name, option, value, message", [
    ("per-sample-ensemble", "weight", float("nan"), "weight must be finite and >= 0, got nan"),
    ("per-sample-ensemble", "weight", float("inf"), "weight must be finite and >= 0, got inf"),
    ("ensemble-trust", "weight", float("inf"), "weight must be finite and > 0, got inf"),
    ("temperature", "init_temperature", float("inf"), "init_temperature must be finite and > 0, got inf"),
    ("class-temperature", "init_temperature", float("nan"), "init_temperature must be finite and > 0, got nan"),
])
def test_label_options_out_of_their_domain(name, option, value, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make_labels(name, torch.tensor([0, 1, 2]), 3, **{option: value})


def test_two_outputs_in_one_file_are_refused_before_training(tmp_path, monkeypatch):
    """Two spellings of one path are one file: the checkpoint and the results (or the epochs' CSV)
    would overwrite each other, and the run would keep only one."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"^output './run.json' and checkpoint 'run.json' are the same file "
                                         f"{re.escape(repr(str(tmp_path.resolve() / 'run.json')))}: one would "
                                         r"overwrite the other; give them different paths$"):
        fit(TINY.replace(output="./run.json", checkpoint="run.json"))
    with pytest.raises(ValueError, match=r"^output 'logs/../logs/epochs.csv' and log_dir's epochs.csv "
                                         r"'logs/epochs.csv' are the same file"):
        fit(TINY.replace(output="logs/../logs/epochs.csv", log_dir="logs"))
    assert not list(tmp_path.iterdir())  # refused before anything was written


@pytest.mark.parametrize("table, problem", [
    ("1,0,0\nnan,1,0\n0,0,inf\n", r"rows \[1, 2\] hold non-finite entries \(nan or inf\)"),
    ("1,0,0\n0,1,0\n-0.5,0.5,1\n", r"rows \[2\] hold negative entries"),
    ("1,0,0\n0.5,1,0\n0,0,0.9\n", r"rows \[1, 2\] are not probability distributions \(row sums \[1.5, 0.9\]\)"),
])
def test_cli_bad_transition_matrix_file_is_refused_before_the_data(tmp_path, capsys, table, problem):
    """The file is checked as it is read: the data (CIFAR-10 files that are not there) are never reached."""
    path = tmp_path / "T.csv"
    path.write_text(table)
    assert main(["train", "--epochs", "1", "--no-progress", "--dataset", "cifar10", "--data-root",
                 str(tmp_path / "no-data"), "--noise", "matrix", "--noise-matrix", str(path)]) == 2
    assert re.fullmatch(f"labelmeta: error: transition matrix {re.escape(repr(str(path)))} {problem}\n",
                        capsys.readouterr().err)


@pytest.mark.parametrize("source, error", [
    ("import math\n\ndef broken(:\n    pass\n", r"SyntaxError: .+"),
    ("import math\n\nraise RuntimeError('no GPU here')\n", r"RuntimeError: no GPU here"),
], ids=["syntax error", "raises at import"])
def test_cli_import_of_a_broken_file_is_a_one_line_error(tmp_path, capsys, source, error):
    path = tmp_path / "plugin.py"
    path.write_text(source)
    assert main(["--import", str(path), "list"]) == 2
    file = re.escape(str(path))
    assert re.fullmatch(f"labelmeta: error: cannot import '{file}': {error} \\({file}, line 3\\)\n",
                        capsys.readouterr().err)
    assert "labelmeta_user_plugin" not in sys.modules  # no half-made module left behind


def test_cli_log_dir_without_tensorboard_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails, as when not installed
    assert main(["train", *TINY_FLAGS, "--log-dir", str(tmp_path / "logs")]) == 2
    assert re.fullmatch(r"labelmeta: error: log_dir needs TensorBoard, which is not installed: "
                        r"pip install 'labelmeta\[tensorboard\]' .*\n", capsys.readouterr().err)
