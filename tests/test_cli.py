"""The demo, the CLI and the benchmark run end to end on tiny configurations."""
from __future__ import annotations

import csv
import dataclasses
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Dict, Tuple

import pytest
import torch

from labelmeta import Config, Learner, fit, make_labels, make_label_optimizer
from labelmeta.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEMO_TINY = ["--num-samples", "1000", "--epochs", "2"]
TINY = ["--data-num-samples", "1000", "--epochs", "2"]


def test_demo_prints_its_table(capsys, tmp_path):
    """One seed: plain figures (no spread to show), each method's time relative to cross-entropy's,
    and where mean ± std comes from; the figures are those of the runs (--output)."""
    out_json = tmp_path / "demo.json"
    assert main(["demo", *DEMO_TINY, "--no-progress", "--output", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "effective" in out and "--seeds 0 1 2" in out and "noisy_labels.py" in out
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in out.splitlines() if line.startswith("| ") and "---" not in line}
    header = rows.pop("method")
    assert header[-1] == "time (× cross-entropy)"
    runs = json.loads(out_json.read_text())
    assert set(rows) == set(runs) == {"cross-entropy", "detect, then correct (default)"}
    for name, cells in rows.items():
        assert not any("±" in c for c in cells), cells
        [run] = runs[name]
        assert float(cells[header.index("test acc last (%)")]) == pytest.approx(100 * run["last_accuracy"], abs=0.051)
        ratio = run["wall_time"] / runs["cross-entropy"][0]["wall_time"]
        assert float(cells[-1]) == pytest.approx(ratio, abs=0.051)


def test_table_with_several_seeds_shows_the_spread():
    from labelmeta.compare import Row, format_table

    row = Row("m", 3, (90.0, 1.0), (89.0, 0.5), (50.0, 2.0), (0.1, 0.01), (10.0, 1.0))
    assert "| m | 3 | 90.0 ± 1.0 | 89.0 ± 0.5 | 50.0 ± 2.0 | 0.10 ± 0.01 | – | 10 ± 1 |" in format_table([row])
    with pytest.raises(ValueError, match="time_relative_to='ce' is not one of the methods \\['m'\\]"):
        format_table([row], time_relative_to="ce")


def test_train_writes_json(tmp_path, capsys):
    out = tmp_path / "run.json"
    args = ["train", *TINY, "--warmup-epochs", "1", "--meta-per-class", "5", "--meta-batch-size", "50",
            "--no-progress", "--output", str(out), "--labels", "per-class"]
    assert main(args) == 0
    results = json.loads(out.read_text())
    assert len(results["history"]) == 2 and results["config"]["labels"] == "per-class"
    assert results["history"][1]["meta_loss"] is not None
    assert 0.0 <= results["last_accuracy"] <= 1.0
    assert json.loads(capsys.readouterr().out)["last_accuracy"] == results["last_accuracy"]
    # the epoch records as CSV beside the JSON, the same numbers
    with open(tmp_path / "run.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for row, record in zip(rows, results["history"]):
        assert float(row["test_accuracy"]) == record["test_accuracy"]
        assert row["meta_loss"] == ("" if record["meta_loss"] is None else repr(record["meta_loss"]))


def test_results_named_csv_keep_their_json(tmp_path):
    """An output path ending in .csv holds the JSON; the records go beside it, neither overwrites the other."""
    from labelmeta.records import EpochRecord, Results

    r = Results.from_history({}, [EpochRecord(1, 0.5, None, 1.0, 0.9, 0.01)])
    r.to_json(tmp_path / "run.csv")
    assert json.loads((tmp_path / "run.csv").read_text())["last_accuracy"] == 0.9
    assert (tmp_path / "run.csv.epochs.csv").read_text().splitlines()[1].startswith("1,0.5,,1.0,0.9,0.01,")


@pytest.mark.parametrize("flag, value, message", [
    ("--labels", "per-pixel", "unknown label parameterisation 'per-pixel'"),
    ("--model", "vgg", "unknown model 'vgg'"),
    ("--strategy", "magic", "unknown strategy 'magic'"),
    ("--label-optimizer", "lbfgs", "unknown label optimiser 'lbfgs'"),
    ("--optimizer", "lbfgs", "unknown model optimiser 'lbfgs'; available: adam, adamw, sgd"),
    ("--noise-rate", "1.2", "noise rate must lie in [0, 1), got 1.2"),
])
def test_cli_bad_input_is_a_clear_error(flag, value, message, capsys):
    assert main(["train", *TINY, "--no-progress", flag, value]) == 2
    assert message in capsys.readouterr().err


def test_list_shows_noise_kinds_model_optimisers_and_presets(capsys):
    """``labelmeta list`` names the registered noise kinds and model optimisers; NAME describes one,
    and says a preset is one."""
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "noise (noise kind): asymmetric, confidence, file, instance, matrix, none, symmetric" in lines
    assert "optimizer (model optimiser): adam, adamw, sgd" in lines
    assert main(["list", "class-temperature"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("label parameterisation 'class-temperature': A preset of 'temperature' with per_class=True")
    assert "select with --labels class-temperature; set with --label-scale --label-init-temperature" in out
    assert main(["list", "sgd"]) == 0  # a label optimiser and a model optimiser
    out = capsys.readouterr().out
    assert "label optimiser 'sgd'" in out and "model optimiser 'sgd': SGD with momentum" in out
    assert "select with --optimizer sgd" in out
    assert main(["list", "asymmetric"]) == 0
    assert "noise kind 'asymmetric': Class-flip noise" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # the flags name the registered entries
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--optimizer {adam,adamw,sgd}" in out
    # a noise kind's options are flags of their own; --noise-matrix, the flag of earlier versions, is the path's
    assert "--noise-path STR, --noise-matrix STR" in out and "--noise-truth-key STR" in out


def test_console_script_entry_point():
    proc = subprocess.run([sys.executable, "-m", "labelmeta.cli", "list"], capture_output=True, text=True, check=True)
    assert "per-sample" in proc.stdout and "unrolled" in proc.stdout


def test_non_finite_loss_stops_with_the_step():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=1e30)
    targets = torch.tensor([0, 1, 2, 0])
    learner = Learner(model, opt, make_labels("one-hot", targets, 3), strategy=None)
    batch = (torch.randn(4, 4) * 1e10, targets, torch.arange(4))
    with pytest.raises(FloatingPointError, match=r"non-finite training loss at step \d"):
        for _ in range(5):
            learner.step(batch)


def test_learner_rejects_bad_batches_and_missing_label_optimizer():
    model = torch.nn.Linear(4, 3)
    targets = torch.tensor([0, 1, 2, 0])
    labels = make_labels("per-sample", targets, 3)
    with pytest.raises(ValueError, match="label_optimizer"):
        Learner(model, torch.optim.SGD(model.parameters(), lr=0.1), labels, "unrolled")
    learner = Learner(model, torch.optim.SGD(model.parameters(), lr=0.1), labels, "unrolled",
                      make_label_optimizer("mirror", labels.parameters(), 1.0))
    with pytest.raises(ValueError, match="3 inputs, 4 targets and 4 indices"):
        learner.step((torch.randn(3, 4), targets, torch.arange(4)))
    with pytest.raises(ValueError, match=r"sample indices \[7\] outside \[0, 4\)"):
        learner.step((torch.randn(4, 4), targets, torch.tensor([0, 1, 2, 7])), (torch.randn(2, 4), targets[:2], torch.arange(2)))


def test_meta_source_clean_needs_a_meta_split():
    with pytest.raises(ValueError, match="meta_per_class > 0"):
        fit(Config(dataset_options=dict(num_samples=1000), epochs=1, meta_per_class=0, progress=False))


def test_optional_fields_and_component_options_parse_to_their_declared_types():
    from labelmeta.cli import build_parser, config_from_args

    def parse(*flags):
        return config_from_args(build_parser().parse_args(["train", *flags]))

    config = parse("--loss", "bootstrap-soft", "--loss-beta", "0.6", "--noise", "matrix", "--noise-path", "T.npy")
    assert config.loss_options == {"beta": 0.6} and config.noise_options == {"path": "T.npy"}
    # the flag of earlier versions (Config.noise_matrix) is the matrix kind's path
    assert parse("--noise", "matrix", "--noise-matrix", "T.npy") == config.replace(loss="ce", loss_options={})
    assert parse("--noise", "file", "--noise-path", "h.pt", "--noise-key", "worse_label").noise_options == \
        {"path": "h.pt", "key": "worse_label"}
    assert parse("--strategy", "head-only", "--strategy-head", "none").strategy_options == {"head": None}
    assert parse("--model", "mlp", "--model-hidden", "32,16").model_options == {"hidden": (32, 16)}
    assert parse("--label-opt-normalize", "row").label_optimizer_options == {"normalize": "row"}
    assert parse("--data-num-samples", "2000").dataset_options == {"num_samples": 2000}
    # the defaults' options are kept when the flags keep the component, dropped when they change it
    from labelmeta.presets import PRESETS
    assert config_from_args(build_parser().parse_args(["train", "--label-scale", "3"]), PRESETS["cifar10"]) \
        .label_options == {"scale": 3.0}


@pytest.mark.parametrize("flags, message", [
    (["--loss-q", "0.5"], "--loss-q is not an option of training loss 'ce'; its options: none"),
    (["--labels", "one-hot", "--label-scale", "2"], "--label-scale is not an option of label parameterisation "
                                                   "'one-hot'; its options: none"),
    (["--strategy", "none", "--strategy-steps", "2"], "--strategy-steps is not an option of strategy 'none'; its "
                                                      "options: none"),
    (["--strategy-steps", "two"], "strategy 'one-step-reweight' option 'steps' takes int, got 'two'"),
    (["--strategy-product", "sideways"], "option 'product' takes one of {auto,forward,reverse}, got 'sideways'"),
    (["--label-opt-normalize", "rows"], "option 'normalize' takes one of {batch,row,none}, got 'rows'"),
    (["--model", "mlp", "--model-hidden", "a,b"], "model 'mlp' option 'hidden' takes ints, got 'a,b'"),
    (["--dataset", "digits", "--data-num-samples", "500"], "--data-num-samples is not an option of dataset "
                                                           "'digits'; its options: --data-data-seed, --data-test-fraction"),
])
def test_an_option_the_component_does_not_declare_is_a_clear_error(flags, message, capsys):
    assert main(["train", *TINY, "--no-progress", *flags]) == 2
    assert message in capsys.readouterr().err


def test_cifar_preset_end_to_end_on_a_tiny_on_disk_cifar(tmp_path, capsys):
    """The CIFAR recipe (ResNet-18, augmentation, learned labels) on torchvision's real file format:
    it trains and meta-learns from the first step (warm-up 0), and the accuracy it prints is the
    saved model's, recounted here on the 6 test images."""
    import math

    from helpers import write_cifar10
    from labelmeta import make_model, make_splits
    from labelmeta.metrics import expected_calibration_error

    write_cifar10(tmp_path / "data")  # 20 training images (2 per class), 6 test images of classes 0-5
    out, ckpt = tmp_path / "run.json", tmp_path / "run.pt"
    # images are decoded in a worker process (the preset's 4, one here: this machine may have 2 cores)
    with warnings.catch_warnings():  # shown, not raised: the CLI prints it
        warnings.filterwarnings("always", message="with workers > 0")
        assert main(["train", "--preset", "cifar10", "--data-root", str(tmp_path / "data"), "--device", "cpu",
                     "--epochs", "1", "--batch-size", "8", "--meta-batch-size", "8", "--warmup-epochs", "0",
                     "--no-progress", "--output", str(out), "--checkpoint", str(ckpt), "--workers", "1"]) == 0
    printed = capsys.readouterr()
    run, summary = json.loads(out.read_text()), json.loads(printed.out)
    # a checkpointed run with workers is told what a resume restores
    assert "labelmeta: warning: with workers > 0 a resumed run sees the same samples" in printed.err
    config = run["config"]
    assert (config["model"], config["labels"], config["dataset"], config["epochs"]) == ("resnet18", "per-class", "cifar10", 1)
    [epoch] = run["history"]
    assert math.isfinite(epoch["train_loss"]) and epoch["meta_loss"] is not None and math.isfinite(epoch["meta_loss"])
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["learner"]
    assert saved["num_steps"] == 3  # ceil(20 / 8) model steps
    # a meta step moved the per-class label logits off their initialisation, 4 * identity
    assert (saved["labels"]["logits"] - 4.0 * torch.eye(10)).abs().max() > 1e-3
    # the printed accuracy (and the recorded ECE) are the trained model's on the test images
    splits = make_splits("cifar10", meta_per_class=0, data_root=str(tmp_path / "data"))
    model = make_model("resnet18", splits.input_shape, splits.num_classes)
    model.load_state_dict(saved["model"])
    x = torch.stack([splits.test[i][0] for i in range(len(splits.test))])
    y = torch.tensor([splits.test[i][1] for i in range(len(splits.test))])
    assert y.tolist() == [0, 1, 2, 3, 4, 5]
    with torch.no_grad():
        logits = model.eval()(x)
    assert summary["last_accuracy"] == run["last_accuracy"] == (logits.argmax(1) == y).sum().item() / 6
    assert epoch["test_ece"] == pytest.approx(expected_calibration_error(torch.softmax(logits, 1), y), abs=1e-6)


def test_cifar_training_set_is_augmented(tmp_path):
    from helpers import write_cifar10
    from labelmeta import make_splits

    write_cifar10(tmp_path)
    s = make_splits("cifar10", meta_per_class=1, data_root=str(tmp_path))
    names = [type(t).__name__ for t in s.train.dataset.dataset.transform.transforms]
    assert names[:2] == ["RandomCrop", "RandomHorizontalFlip"]
    assert "RandomCrop" not in [type(t).__name__ for t in s.meta.dataset.dataset.transform.transforms]


def test_cifar100_preset_end_to_end_on_a_tiny_on_disk_cifar100(tmp_path, capsys):
    """The CIFAR-100 recipe's data path on torchvision's real CIFAR-100 format: per-class labels (100 x 100)
    meta-learned on a held-out split of every class that is not trained on (the MLP, for speed)."""
    import numpy as np

    from labelmeta.data.files import write_cifar100
    from labelmeta.presets import PRESETS

    preset = PRESETS["cifar100"]
    assert (preset.labels, preset.meta_source, preset.meta_per_class) == ("per-class", "clean", 25)
    rng = np.random.default_rng(0)
    labels = [c for c in range(100) for _ in range(3)]  # 3 images a class: 1 held out, 2 trained on
    write_cifar100(tmp_path / "data", rng.integers(0, 256, (300, 3072), dtype=np.uint8), labels,
                   rng.integers(0, 256, (10, 3072), dtype=np.uint8), list(range(10)))
    out, ckpt = tmp_path / "run.json", tmp_path / "run.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the workers-and-checkpoint notice (tested above)
        assert main(["train", "--preset", "cifar100", "--data-root", str(tmp_path / "data"), "--device", "cpu",
                     "--model", "mlp", "--meta-per-class", "1", "--epochs", "1", "--batch-size", "50",
                     "--meta-batch-size", "50", "--warmup-epochs", "0", "--workers", "0", "--no-pin-memory",
                     "--no-channels-last", "--no-progress", "--output", str(out), "--checkpoint", str(ckpt)]) == 0
    capsys.readouterr()
    config = json.loads(out.read_text())["config"]
    assert (config["dataset"], config["labels"], config["meta_source"], config["strategy"]) == \
        ("cifar100", "per-class", "clean", "one-step")
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["learner"]
    assert saved["num_steps"] == 4  # 200 trained images (the 100 held out are not trained on), batches of 50
    assert saved["labels"]["logits"].shape == (100, 100)
    assert (saved["labels"]["logits"] - 4.0 * torch.eye(100)).abs().max() > 1e-3


def _train_help(monkeypatch, capsys) -> Dict[str, str]:
    """``labelmeta train --help``, as ``flag -> its help text`` (unwrapped: the terminal is made wide)."""
    monkeypatch.setenv("COLUMNS", "1000")
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    helps: Dict[str, str] = {}
    flag = None
    for line in capsys.readouterr().out.splitlines():
        match = re.match(r"  (--[\w-]+)(?:, --[\w-]+)?(?: \S+)?(?:\s{2,}(.*))?$", line)
        if match:
            flag, helps[match.group(1)] = match.group(1), match.group(2) or ""
        elif flag is not None and line.startswith("    "):  # the help under a long flag
            helps[flag] = (helps[flag] + " " + line.strip()).strip()
        else:
            flag = None
    return helps


def test_every_config_flag_says_what_its_field_is(monkeypatch, capsys):
    """Each Config field's flag shows its ``#:`` description before its default (a field added without
    one fails here); the component options keep their docstrings' help."""
    from labelmeta.cli import _OPTION_FIELDS

    helps = _train_help(monkeypatch, capsys)
    defaults = Config()
    missing = []
    for f in dataclasses.fields(Config):
        if f.name in _OPTION_FIELDS:
            continue
        text, default = helps["--" + f.name.replace("_", "-")], f"default: {getattr(defaults, f.name)}"
        if text == default:
            missing.append(f.name)
        else:
            assert text.endswith(f" ({default})") and text[:-len(default) - 3].strip(), (f.name, text)
    assert not missing, f"Config fields without a #: description in config.py: {missing}"
    # the three places a description is written: above the field (two lines), trailing it, and in ``...``
    assert helps["--validation-per-class"].startswith("hold out this many of the meta_per_class clean samples a "
                                                      "class as a validation set")
    assert "(for choosing hyper-parameters off the test set; 0: off) (default: 0)" in helps["--validation-per-class"]
    assert helps["--meta-per-class"] == "clean samples per class held out for the meta loss (default: 50)"
    assert helps["--dataset"] == "a name in DATASETS (default: mnist1d)"
    assert helps["--label-scale"].endswith("per-sample, per-sample-ensemble, temperature: logit of the annotated "
                                           "class before tempering (> 0).")
    assert helps["--loss-q"].startswith("gce: ") and len(helps["--loss-q"]) > len("gce: ") + 10


def test_field_descriptions_read_the_comments_sphinx_reads():
    from labelmeta.cli import field_descriptions

    assert field_descriptions(_Described) == {
        "above": "one line above", "two_above": "two lines above", "trailing": "trailing a line",
        "spanning": "trailing the field's last line", "both": "above and trailing", "quoted": "a name in NAMES"}
    assert field_descriptions(int) == {}  # no source: no descriptions (the flags show their defaults)


@dataclasses.dataclass
class _Described:
    #: one line above
    above: int = 1
    #: two lines
    #: above
    two_above: int = 2
    trailing: int = 3  #: trailing a line
    # a plain comment describes nothing
    plain: int = 4
    #: a blank line parts a comment from the field

    parted: str = "#: not a comment"
    spanning: Tuple[int, ...] = dataclasses.field(
        default=(1,))  #: trailing the field's last line
    #: above and
    both: int = 5  #: trailing
    quoted: str = "x"  #: a name in ``NAMES``
    bare: int = 6
