"""Noise kinds: the registry's contract for every kind, the instance-dependent generators, annotation
files in the real formats (CIFAR-N's ``torch.save`` dict included, malformed ones too), and old Configs."""
from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

from labelmeta import Config, make_splits
from labelmeta.checks import check_config
from labelmeta.config import upgrade
from labelmeta.data import DATASETS, IndexedTensorDataset, RawData
from labelmeta.noise import NOISE, NoisyLabels, Samples, add_noise


def write_matrix(tmp_path) -> dict:
    np.save(tmp_path / "T.npy", np.full((4, 4), 0.1) + np.eye(4) * 0.6)
    return {"path": str(tmp_path / "T.npy")}


def write_file(tmp_path) -> dict:
    np.save(tmp_path / "annotations.npy", (np.arange(300) * 7) % 4)
    return {"path": str(tmp_path / "annotations.npy")}


#: every registered kind's options for the contract test (a kind missing here fails it: add yours)
KIND_OPTIONS = {"none": None, "symmetric": None, "asymmetric": None, "instance": None, "confidence": None,
                "matrix": write_matrix, "file": write_file}


def samples(n: int = 300, num_classes: int = 4, rate: float = 0.3, seed: int = 0, dim: int = 8) -> Samples:
    """``n`` samples of ``num_classes`` Gaussian clusters in ``dim`` dimensions, classes in turn."""
    g = torch.Generator().manual_seed(123)
    y = torch.arange(n) % num_classes
    centres = torch.randn(num_classes, dim, generator=g) * 2
    x = centres[y] + torch.randn(n, dim, generator=g)
    return Samples(y, num_classes, rate, torch.Generator().manual_seed(seed), read_inputs=lambda: x)


@pytest.mark.parametrize("kind", NOISE.names())
def test_every_noise_kind_keeps_the_registry_contract(kind, tmp_path):
    """Built from its declared options, a kind draws one annotation a sample within the classes, keeps the
    truth, draws the same for the same seed, and says which Config settings it reads."""
    assert kind in KIND_OPTIONS, f"noise kind {kind!r} has no entry in KIND_OPTIONS: add it to the contract test"
    make_options = KIND_OPTIONS[kind]
    options = make_options(tmp_path) if make_options else {}
    first = NOISE.build(kind, None, options=options)(samples())
    again = NOISE.build(kind, None, options=options)(samples())
    assert isinstance(first, NoisyLabels) and first.noisy.dtype == torch.long and first.noisy.shape == (300,)
    assert 0 <= int(first.noisy.min()) and int(first.noisy.max()) < 4
    assert torch.equal(first.true, samples().targets)
    assert torch.equal(first.noisy, again.noisy), "the same seed draws the same annotations"
    kind_object = NOISE.build(kind, None, options=options)
    assert isinstance(kind_object.uses_rate, bool) and isinstance(kind_object.reads_inputs, bool)
    assert NOISE.describe(kind).startswith(f"noise kind {kind!r}: ")


@pytest.mark.parametrize("kind", ["instance", "confidence"])
@pytest.mark.parametrize("rate", [0.2, 0.4])
def test_instance_dependent_noise_realises_the_requested_rate_and_depends_on_the_input(kind, rate):
    s = samples(n=10_000, num_classes=10, rate=rate, seed=1, dim=20)
    noisy = NOISE.build(kind, None)(s)
    assert abs(noisy.effective_rate - rate) <= 0.01, f"realised {noisy.effective_rate:.4f} for {rate}"
    # the same draw for the same seed, another for another
    assert torch.equal(NOISE.build(kind, None)(samples(10_000, 10, rate, seed=1, dim=20)).noisy, noisy.noisy)
    assert not torch.equal(NOISE.build(kind, None)(samples(10_000, 10, rate, seed=2, dim=20)).noisy, noisy.noisy)
    # each sample's distribution over the other classes varies with its input within a class...
    rows = NOISE.build(kind, None).rows(samples(10_000, 10, rate, seed=1, dim=20))
    assert torch.allclose(rows.sum(1), torch.ones(10_000, dtype=torch.float64))
    in_class = (s.targets == 3).nonzero().squeeze(1)
    flip = 1 - rows[in_class, 3]
    direction = rows[in_class] / flip[:, None].clamp_min(1e-12)
    direction[:, 3] = 0
    assert direction.argmax(1).unique().numel() > 1, "samples of one class flip towards different classes"
    if kind == "confidence":
        assert flip.std() > 0.01, "the flip probability varies within a class"
    # ...and is a function of the input: a sample repeated gets the same direction
    x = s.inputs.clone()
    x[in_class[1]] = x[in_class[0]]
    twin = Samples(s.targets, 10, rate, torch.Generator().manual_seed(1), read_inputs=lambda: x)
    rows = NOISE.build(kind, None).rows(twin)
    same = [rows[i] / (1 - rows[i, 3]) for i in in_class[:2].tolist()]
    for r in same:
        r[3] = 0
    assert torch.allclose(same[0], same[1], atol=1e-9)


def test_instance_noise_options_are_checked_and_rate_zero_is_clean():
    with pytest.raises(ValueError, match=r"noise 'instance' spread must lie in \(0, 1\), got 0"):
        NOISE.build("instance", None, options={"spread": 0.0})
    with pytest.raises(ValueError, match=r"noise 'confidence' max_flip must lie in \(0, 1\], got 1.5"):
        NOISE.build("confidence", None, options={"max_flip": 1.5})
    with pytest.raises(ValueError, match="noise rate 0.4 is out of reach: at most 0.100"):
        NOISE.build("confidence", None, options={"max_flip": 0.1})(samples(rate=0.4))
    assert not NOISE.build("instance", None)(samples(rate=0.0)).corrupted.any()
    with pytest.raises(ValueError, match="reads the samples' inputs, and none were given"):
        NOISE.build("instance", None)(Samples(torch.arange(8) % 2, 2, 0.2, torch.Generator()))


def test_instance_noise_runs_end_to_end_on_a_dataset():
    s = make_splits("digits", meta_per_class=3, noise="instance", noise_rate=0.4, seed=0)
    assert abs(s.labels.effective_rate - 0.4) < 0.05 and s.labels.nominal_rate == 0.4
    again = make_splits("digits", meta_per_class=3, noise="instance", noise_rate=0.4, seed=0)
    assert torch.equal(again.labels.noisy, s.labels.noisy)


# --- annotation files ---------------------------------------------------------------------------------------


def digits_targets() -> torch.Tensor:
    return DATASETS.build("digits", None).train_targets


def flipped(targets: torch.Tensor, every: int = 3) -> np.ndarray:
    """The targets with every ``every``-th one moved to the next class."""
    noisy = targets.numpy().copy()
    noisy[::every] = (noisy[::every] + 1) % 10
    return noisy


def write_annotations(tmp_path, suffix: str, noisy: np.ndarray, truth: np.ndarray) -> dict:
    """``noisy`` (and ``truth``) written in a real format; the noise options that read it."""
    path = tmp_path / f"labels.{suffix}"
    if suffix == "npy":
        np.save(path, noisy)
        return {"path": str(path)}
    if suffix == "csv-column":
        path = tmp_path / "labels.csv"
        path.write_text("".join(f"{v}\n" for v in noisy))
        return {"path": str(path)}
    if suffix == "csv":
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image", "noisy", "clean"])
            writer.writerows([f"img{i}.png", int(a), int(b)] for i, (a, b) in enumerate(zip(noisy, truth)))
        return {"path": str(path), "key": "noisy", "truth_key": "clean"}
    # CIFAR-N's format: torch.save of a dict of numpy integer arrays
    torch.save({"clean_label": truth, "worse_label": noisy, "aggre_label": truth.copy()}, path)
    return {"path": str(path), "key": "worse_label", "truth_key": "clean_label"}


@pytest.mark.parametrize("suffix", ["npy", "csv-column", "csv", "pt"])
def test_annotations_from_a_file_in_each_format(tmp_path, suffix):
    targets = digits_targets()
    noisy = flipped(targets)
    options = write_annotations(tmp_path, suffix, noisy, targets.numpy())
    check_config(Config(dataset="digits", noise="file", noise_options=options))
    s = make_splits("digits", meta_per_class=3, noise="file", noise_options=options, seed=4)
    meta = make_splits("digits", meta_per_class=3, noise="none", seed=4)
    assert torch.equal(s.train.x, meta.train.x), "the same split as without the file"
    # each training sample's annotation is the file's row of that sample, its truth the dataset's
    rows = {tuple(x.tolist()): i for i, x in enumerate(DATASETS.build("digits", None).train.x)}
    index = torch.tensor([rows[tuple(x.tolist())] for x in s.train.x])
    assert torch.equal(s.labels.noisy, torch.as_tensor(noisy)[index])
    assert torch.equal(s.labels.true, targets[index])
    assert s.labels.nominal_rate == pytest.approx(s.labels.effective_rate)
    assert abs(s.labels.effective_rate - 1 / 3) < 0.02


def test_a_relative_annotation_file_is_read_from_the_data_root(tmp_path):
    np.save(tmp_path / "labels.npy", digits_targets().numpy())
    kind = NOISE.build("file", str(tmp_path), options={"path": "labels.npy"})
    assert kind.path == tmp_path / "labels.npy"


def _malformed(tmp_path):
    n = len(digits_targets())
    good = digits_targets().numpy()
    cases = []

    def case(name, write, options, message):
        cases.append((name, write, options, message))

    case("missing", lambda p: None, {"path": "nowhere.npy"}, r"noise file 'nowhere.npy' does not exist")
    case("suffix", lambda p: (p / "labels.txt").write_text("1\n"), {"path": "labels.txt"},
         r"noise file must be .npy, .csv, .pt, .pth, got 'labels.txt'")
    case("no path", lambda p: None, {}, r"noise 'file' needs the file of annotations: its option path")
    case("2-D", lambda p: np.save(p / "labels.npy", np.zeros((n, 2), dtype=np.int64)), {"path": "labels.npy"},
         r"labels must be one a sample \(one-dimensional\), got shape \(\d+, 2\)")
    case("float", lambda p: np.save(p / "labels.npy", good + 0.5), {"path": "labels.npy"},
         r"label 0.5 of sample 0 is not a class id \(an integer >= 0\)")
    case("negative", lambda p: np.save(p / "labels.npy", good - 1), {"path": "labels.npy"},
         r"label -1 of sample 0 is not a class id")
    case("text", lambda p: (p / "labels.csv").write_text("label\n1\ncat\n"), {"path": "labels.csv", "key": "label"},
         r"entry 'label' holds 1 entries that are not integer class ids \(row 1: 'cat'\)")
    case("empty", lambda p: (p / "labels.csv").write_text(""), {"path": "labels.csv"}, r"labels.csv' is empty")
    case("columns", lambda p: (p / "labels.csv").write_text("1,2\n3,4\n"), {"path": "labels.csv"},
         r"has 2 columns and no header: give one column of labels")
    case("no key", lambda p: torch.save({"clean_label": good, "worse_label": good}, p / "labels.pt"),
         {"path": "labels.pt"}, r"holds several entries \(clean_label, worse_label\): name the annotations with the option key")
    case("missing key", lambda p: torch.save({"clean_label": good}, p / "labels.pt"),
         {"path": "labels.pt", "key": "worst_label"}, r"has no entry 'worst_label'; its entries: clean_label")
    case("corrupt", lambda p: (p / "labels.pt").write_bytes(b"not a torch file"), {"path": "labels.pt"},
         r"cannot read noise file '.*labels.pt': ")
    case("truth length", lambda p: torch.save({"a": good, "b": good[:-1]}, p / "labels.pt"),
         {"path": "labels.pt", "key": "a", "truth_key": "b"}, rf"has {n} annotations but {n - 1} true labels")
    return cases


#: malformed at the data's arrival: what needs the dataset to be known
AT_THE_DATA = [
    ("length", lambda p, good: np.save(p / "labels.npy", good[:-5]), {"path": "labels.npy"},
     r"labels.npy' has \d+ labels, the dataset's training set \d+ samples: give one label a training sample"),
    ("range", lambda p, good: np.save(p / "labels.npy", good + 1), {"path": "labels.npy"},
     r"holds labels up to 10, outside the dataset's 10 classes \[0, 10\)"),
    ("order", lambda p, good: torch.save({"noisy": good, "clean": good[::-1].copy()}, p / "labels.pt"),
     {"path": "labels.pt", "key": "noisy", "truth_key": "clean"},
     r"true labels disagree with the dataset's on \d+ of \d+ samples: the file is not in the dataset's order"),
]


@pytest.mark.parametrize("index", range(13))
def test_a_malformed_annotation_file_is_refused_before_the_data_naming_it(tmp_path, index):
    name, write, options, message = _malformed(tmp_path)[index]
    write(tmp_path)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        check_config(Config(dataset="digits", noise="file", noise_options=options, data_root=str(tmp_path)))


@pytest.mark.parametrize("name, write, options, message", AT_THE_DATA, ids=[c[0] for c in AT_THE_DATA])
def test_an_annotation_file_that_does_not_fit_the_dataset_is_refused_naming_it(tmp_path, name, write, options, message):
    write(tmp_path, digits_targets().numpy())
    options = {**options, "path": str(tmp_path / options["path"])}
    with pytest.raises(ValueError, match=message):
        make_splits("digits", meta_per_class=3, noise="file", noise_options=options)


def test_cifar10n_preset_reads_the_human_annotations_from_the_data_root(tmp_path):
    """The CIFAR-N path: a tiny CIFAR-10 and a CIFAR-10_human.pt in the real formats under --data-root."""
    from helpers import write_cifar10
    from labelmeta.cli import build_parser, config_from_args
    from labelmeta.build import splits_for
    from labelmeta.presets import PRESETS

    write_cifar10(tmp_path, n_train_per_batch=20)  # 100 images, classes in turn
    clean = np.arange(100) % 10
    worse = clean.copy()
    worse[:40] = (worse[:40] + 3) % 10
    torch.save({"clean_label": clean, "aggre_label": clean.copy(), "worse_label": worse,
                "random_label1": clean.copy(), "random_label2": clean.copy(), "random_label3": clean.copy()},
               tmp_path / "CIFAR-10_human.pt")
    config = config_from_args(build_parser().parse_args(["train", "--data-root", str(tmp_path), "--device", "cpu",
                                                         "--meta-per-class", "2"]), PRESETS["cifar10n"])
    check_config(config.replace(workers=0, pin_memory=False))
    s = splits_for(config)
    assert len(s.labels.noisy) == 80 and s.labels.nominal_rate == pytest.approx(s.labels.effective_rate)
    assert torch.equal(s.labels.true, torch.as_tensor(clean)[s.labels.true.new_tensor(
        [s.train.dataset.indices[i] for i in range(80)])])
    assert 0.2 < s.labels.effective_rate < 0.6
    assert s.source_index.tolist() == list(s.train.dataset.indices)  # each sample's image in CIFAR-10's training set
    aggregate = config.replace(noise_options={**config.noise_options, "key": "aggre_label"})
    assert not splits_for(aggregate).labels.corrupted.any()


# --- the user's own labels and trusted samples ---------------------------------------------------------------


@pytest.fixture
def own_labels():
    """A dataset of a user's own labels (truth unknown) with five trusted samples a class."""
    @DATASETS.register("own-test")
    def own(data_root=None):
        """A user's labels (a test's)."""
        g = torch.Generator().manual_seed(0)
        y = torch.arange(200) % 4
        x = torch.randn(200, 6, generator=g) + y[:, None]
        trusted = torch.zeros(200, dtype=torch.bool)
        trusted[:20] = True
        return RawData(IndexedTensorDataset(x, y), y, IndexedTensorDataset(x[:40], y[:40]), 4, (6,),
                       truth_known=False, trusted=trusted)

    yield "own-test"
    DATASETS.unregister("own-test")


def test_the_trusted_samples_are_the_meta_set_and_unknown_truth_is_none(own_labels, tmp_path):
    s = make_splits(own_labels, meta_per_class=50, noise="none", seed=0)
    assert len(s.meta) == 20 and len(s.train) == 180 and torch.equal(s.meta.x, DATASETS.build(own_labels).train.x[:20])
    assert s.labels.true is None and not s.labels.truth_known and np.isnan(s.labels.effective_rate)
    with pytest.raises(ValueError, match="'own-test' holds your own labels, whose truth is unknown; noise 'symmetric'"):
        make_splits(own_labels, noise="symmetric", noise_rate=0.2)
    # a file that knows the truth supplies it
    np.save(tmp_path / "truth.npy", np.arange(200) % 4)
    np.save(tmp_path / "noisy.npy", (np.arange(200) + 1) % 4)
    torch.save({"noisy": (np.arange(200) + 1) % 4, "truth": np.arange(200) % 4}, tmp_path / "both.pt")
    known = make_splits(own_labels, noise="file", noise_options={"path": str(tmp_path / "both.pt"), "key": "noisy",
                                                                    "truth_key": "truth"})
    assert known.labels.truth_known and known.labels.effective_rate == 1.0
    unknown = make_splits(own_labels, noise="file", noise_options={"path": str(tmp_path / "noisy.npy")})
    assert unknown.labels.true is None


def test_a_run_on_labels_of_unknown_truth_reports_no_correction_and_writes_its_issues(own_labels, tmp_path):
    from labelmeta import fit, read_label_issues

    out = tmp_path / "run.json"
    results = fit(Config(dataset=own_labels, model="mlp", noise="none", noise_rate=0.0, epochs=2, warmup_epochs=1,
                         batch_size=32, meta_batch_size=20, progress=False, output=str(out)))
    assert np.isnan(results.corrected) and np.isnan(results.detect_precision) and np.isnan(results.effective_noise)
    issues = read_label_issues(out)
    assert len(issues) == 180 and issues.true is None
    assert json.loads(out.read_text())["history"][-1]["corrected"] is None


# --- old Configs, CLI lines and checkpoints ------------------------------------------------------------------


def test_an_old_config_dict_with_a_noise_matrix_loads_as_the_matrix_kinds_path(tmp_path):
    old = {**dataclasses.asdict(Config()), "noise": "matrix", "noise_matrix": "T.npy"}
    del old["noise_options"]
    assert Config.from_dict(old).noise_options == {"path": "T.npy"}
    old.update(noise="symmetric", noise_matrix=None)
    assert Config.from_dict(old) == Config()
    assert upgrade({"noise_matrix": None}) == {}
    with pytest.raises(ValueError, match="unknown Config field"):
        Config.from_dict({"nosie": "none"})


def test_a_checkpoint_written_before_noise_options_resumes(tmp_path):
    from labelmeta import fit

    ckpt = tmp_path / "run.pt"
    config = Config(dataset="digits", model="mlp", labels="one-hot", strategy="none", epochs=2, progress=False,
                    checkpoint=str(ckpt))
    whole = fit(config)
    fit(config.replace(epochs=2))  # nothing left: resume=False would start afresh; write the old format by hand
    saved = torch.load(ckpt, weights_only=False)
    saved["config"] = {**{k: v for k, v in saved["config"].items() if k != "noise_options"}, "noise_matrix": None}
    torch.save(saved, ckpt)
    resumed = fit(config.replace(resume=True))
    assert resumed.last_accuracy == whole.last_accuracy


#: sha256 (first 16 hex digits) of the int64 annotations the code before issue 37 drew (commit 8836395) for
#: digits, 5 clean samples a class held out, seed 7: the class-conditional kinds must draw them still
BEFORE_ISSUE_37 = {("symmetric", 0.4): "1a46903da3e33632", ("asymmetric", 0.3): "68a3cea337694ded",
                   ("matrix", 0.0): "53c297b797ffe7eb"}


@pytest.mark.parametrize("noise, rate", list(BEFORE_ISSUE_37), ids=[k for k, _ in BEFORE_ISSUE_37])
def test_the_class_conditional_draws_are_those_of_the_code_before_noise_kinds_had_options(tmp_path, noise, rate):
    import hashlib

    np.save(tmp_path / "T.npy", np.full((10, 10), 0.05) + np.eye(10) * 0.5)
    options = {"path": str(tmp_path / "T.npy")} if noise == "matrix" else {}
    s = make_splits("digits", meta_per_class=5, noise=noise, noise_rate=rate, seed=7, noise_options=options)
    digest = hashlib.sha256(s.labels.noisy.numpy().astype(np.int64).tobytes()).hexdigest()[:16]
    assert digest == BEFORE_ISSUE_37[(noise, rate)]


def test_stored_benchmark_cells_draw_the_noise_they_recorded():
    """The digits cells of the noisy-label benchmark, run before issue 37, recorded their effective noise:
    their stored configurations draw it again, to the last sample."""
    from pathlib import Path

    from labelmeta.build import splits_for

    store = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "noisy_labels.json").read_text())
    cells = [c for key, c in store["cells"].items() if key.startswith("digits | ") and key.endswith("| cross-entropy | seed 1")]
    assert len(cells) >= 5
    for cell in cells:
        config = Config.from_dict(cell["config"])
        assert splits_for(config).labels.effective_rate == cell["effective_noise"], config.noise


def test_instance_noise_reads_a_torchvision_datasets_pixels(tmp_path):
    """On CIFAR-10 files the instance-dependent kinds read the raw pixels of the training images (in the
    samples' order), drawn the same for a seed."""
    from helpers import write_cifar10
    from labelmeta.data.splits import read_inputs

    write_cifar10(tmp_path, n_train_per_batch=40)
    s = make_splits("cifar10", meta_per_class=2, noise="instance", noise_rate=0.4, seed=0, data_root=str(tmp_path))
    again = make_splits("cifar10", meta_per_class=2, noise="instance", noise_rate=0.4, seed=0, data_root=str(tmp_path))
    assert torch.equal(s.labels.noisy, again.labels.noisy) and abs(s.labels.effective_rate - 0.4) < 0.05
    raw = DATASETS.build("cifar10", str(tmp_path))
    pixels = read_inputs(raw, s.source_index)
    assert pixels.shape == (180, 32, 32, 3)
    assert torch.equal(pixels[5], torch.as_tensor(raw.train.data[int(s.source_index[5])]).float())


def test_a_relative_matrix_file_is_read_from_the_data_root_too(tmp_path):
    write_matrix(tmp_path)
    assert NOISE.build("matrix", str(tmp_path), options={"path": "T.npy"}).path == str(tmp_path / "T.npy")
    with pytest.raises(FileNotFoundError, match=r"transition matrix 'U.npy' does not exist \(nor '.*U.npy' under data_root\)"):
        NOISE.build("matrix", str(tmp_path), options={"path": "U.npy"})
