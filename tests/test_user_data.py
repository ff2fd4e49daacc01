"""Datasets from a user's own files (arrays, table, image-folder, path-list), written in the real
formats (``np.savez``, ``torch.save``, the csv module, PNG files): read back with their shapes, labels,
trusted samples and class names, and every malformed file refused with an error naming it."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from labelmeta import DATASETS, Config, fit
from labelmeta.build import splits_for
from labelmeta.label_issues import read_label_issues

PALETTE = {"bird": (0, 0, 255), "cat": (255, 0, 0), "dog": (0, 255, 0)}


def build(name, data_root=None, **options):
    return DATASETS.build(name, data_root, options=options)


def write_csv(path, rows, delimiter=","):
    with open(path, "w", newline="") as file:
        csv.writer(file, delimiter=delimiter).writerows(rows)
    return str(path)


def write_png(path, color, size=(6, 5)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def rows_of(x):
    return {tuple(row) for row in x.reshape(len(x), -1).tolist()}


# --- arrays ---------------------------------------------------------------------------------------

def test_arrays_from_npz_keep_shapes_trusted_samples_and_class_names(tmp_path):
    g = np.random.default_rng(0)
    x, y = g.normal(size=(30, 2, 3)), np.repeat([0, 1, 2], 10)
    trusted = np.zeros(30, bool)
    trusted[[0, 10, 20, 21]] = True
    np.savez(tmp_path / "d.npz", x=x, y=y, trusted=trusted, classes=np.array(["a", "b", "c"]))
    raw = build("arrays", path=str(tmp_path / "d.npz"), standardize=False, test_fraction=0.2)
    assert (raw.num_classes, raw.input_shape, raw.class_names, raw.truth_known) == (3, (2, 3), ("a", "b", "c"), False)
    assert len(raw.train) == 24 and len(raw.test) == 6  # 2 of each class's 10 held out
    assert torch.bincount(raw.test.y, minlength=3).tolist() == [2, 2, 2]
    assert raw.train.x.dtype == torch.float32 and torch.equal(raw.train_targets, raw.train.y)
    # the trusted samples are never held out, and the mask follows them into the training set
    assert rows_of(raw.train.x[raw.trusted]) == rows_of(torch.tensor(x[trusted], dtype=torch.float32))
    assert rows_of(raw.train.x) | rows_of(raw.test.x) == rows_of(torch.tensor(x, dtype=torch.float32))
    again = build("arrays", path=str(tmp_path / "d.npz"), standardize=False)
    other = build("arrays", path=str(tmp_path / "d.npz"), standardize=False, data_seed=7)
    assert torch.equal(again.test.x, raw.test.x) and not torch.equal(other.test.x, raw.test.x)


def test_arrays_from_pt_with_trusted_indices_a_test_file_and_training_statistics(tmp_path):
    x, y = torch.arange(24.0).reshape(12, 2) ** 1.5, torch.tensor([0, 1] * 6)
    torch.save({"x": x, "y": y, "trusted": torch.tensor([0, 3])}, tmp_path / "train.pt")
    xt = torch.ones(4, 2)
    torch.save({"x": xt, "y": torch.tensor([0, 1, 1, 0])}, tmp_path / "test.pt")
    raw = build("arrays", path=str(tmp_path / "train.pt"), test_path=str(tmp_path / "test.pt"))
    assert raw.trusted.nonzero().squeeze(1).tolist() == [0, 3] and len(raw.train) == 12
    mean, std = x.mean(0), x.std(0, unbiased=False)
    assert torch.allclose(raw.train.x, (x - mean) / std) and torch.allclose(raw.test.x, (xt - mean) / std)
    assert raw.test.y.tolist() == [0, 1, 1, 0] and raw.class_names is None


def test_relative_paths_are_looked_for_under_data_root(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 2)), y=np.array([0, 1] * 5))
    (tmp_path / "ok.txt").write_text("0\n1\n")
    raw = build("arrays", str(tmp_path), path="d.npz", trusted="ok.txt", standardize=False, test_fraction=0.4)
    assert len(raw.train) == 6 and raw.trusted.sum() == 2
    with pytest.raises(FileNotFoundError, match=r"path 'nope.npz' does not exist \(nor '.*nope.npz' under data_root\)"):
        build("arrays", str(tmp_path), path="nope.npz")
    with pytest.raises(ValueError, match=r"dataset 'arrays' needs the option path \(--data-path\)"):
        build("arrays")


@pytest.mark.parametrize("content, message", [
    (dict(x=np.zeros((4, 2)), labels=np.zeros(4)), r"has no array 'y'; its arrays: x, labels"),
    (dict(x=np.zeros((4, 2)), y=np.zeros(5)), r"x has 4 samples but y has 5"),
    (dict(x=np.zeros((4, 2)), y=np.array([0, 1.5, 1, 0])), r"label 1.5 of sample 1 is not a class id"),
    (dict(x=np.zeros((4, 2)), y=np.array([0, -1, 1, 0])), r"label -1 of sample 1 is not a class id"),
    (dict(x=np.zeros((4, 2)), y=np.array(["a", "b", "a", "b"])), r"labels must be integer class ids, got dtype <U1"),
    (dict(x=np.array([[0.0], [np.nan], [1], [2]]), y=np.zeros(4, int)), r"sample 1 of x is not finite"),
    (dict(x=np.zeros((0, 2)), y=np.zeros(0, int)), r"holds no samples"),
    (dict(x=np.zeros((4, 2)), y=np.array([0, 1, 2, 0]), classes=np.array(["a", "b"])),
     r"label 2 of sample 2 is out of range: its 'classes' array has 2 classes, 0..1"),
    (dict(x=np.zeros((4, 2)), y=np.array([0, 1, 1, 0]), trusted=np.array([0, 4])),
     r"trusted index 4 is out of range: there are 4 samples, 0..3"),
    (dict(x=np.zeros((4, 2)), y=np.array([0, 1, 1, 0]), trusted=np.array([1, 2, 1])), r"trusted index 1 is named 2 times"),
    (dict(x=np.zeros((4, 2)), y=np.array([0, 1, 1, 0]), trusted=np.array([True, False])),
     r"a trusted mask needs one flag for each of the 4 samples, got shape \(2,\)"),
    (dict(x=np.zeros((4, 2)), y=np.array([0, 1, 1, 0]), trusted=np.zeros(4, bool)), r"no sample is trusted"),
])
def test_malformed_array_files_are_named_with_their_problem(tmp_path, content, message):
    np.savez(tmp_path / "bad.npz", **content)
    with pytest.raises(ValueError, match=r"array file '.*bad.npz'.*" + message):
        build("arrays", path=str(tmp_path / "bad.npz"))


def test_array_files_of_the_wrong_kind_are_refused(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match=r"'.*list.pt' holds a list, not a dict"):
        build("arrays", path=str(tmp_path / "list.pt"))
    (tmp_path / "d.csv").write_text("x,y\n")
    with pytest.raises(ValueError, match=r"unknown suffix '.csv'; arrays reads .npz and .pt files"):
        build("arrays", path=str(tmp_path / "d.csv"))
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]), trusted=np.array([0]))
    (tmp_path / "t.txt").write_text("1\n")
    with pytest.raises(ValueError, match=r"holds a 'trusted' array and the option trusted='.*t.txt' names a file too"):
        build("arrays", path=str(tmp_path / "d.npz"), trusted=str(tmp_path / "t.txt"))
    np.savez(tmp_path / "t.npz", x=np.zeros((4, 3)), y=np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"test file '.*t.npz': its samples have shape \(3,\), the training file's \(2,\)"):
        build("arrays", path=str(tmp_path / "d.npz"), test_path=str(tmp_path / "t.npz"))


# --- table ----------------------------------------------------------------------------------------

def test_table_with_named_labels_a_trusted_column_and_a_test_table(tmp_path):
    rows = [["height", "note", "weight", "species", "checked"]]
    rows += [[str(i), "n", str(2 * i), ["dog", "cat", "bird"][i % 3], "yes" if i < 3 else "0"] for i in range(12)]
    train = write_csv(tmp_path / "train.csv", rows, delimiter=";")
    test = write_csv(tmp_path / "test.csv", [["weight", "species", "height"], ["8", "cat", "4"], ["0", "dog", "0"]],
                     delimiter=";")
    raw = build("table", path=train, label_column="species", feature_columns="height, weight", trusted_column="checked",
                delimiter=";", standardize=False, test_path=test)
    assert raw.class_names == ("bird", "cat", "dog") and raw.num_classes == 3 and raw.input_shape == (2,)
    assert raw.train.x[:3].tolist() == [[0, 0], [1, 2], [2, 4]] and raw.train_targets[:4].tolist() == [2, 1, 0, 2]
    assert raw.trusted.nonzero().squeeze(1).tolist() == [0, 1, 2] and not raw.truth_known
    assert raw.test.x.tolist() == [[4, 8], [0, 0]] and raw.test.y.tolist() == [1, 2]  # columns found by name


def test_table_with_class_ids_a_trusted_file_and_a_held_out_test_set(tmp_path):
    rows = [["f1", "f2", "label"]] + [[str(i), str(i % 5), str(i % 2)] for i in range(40)] + [[]]  # a blank last line
    path = write_csv(tmp_path / "t.csv", rows)
    (tmp_path / "trusted.txt").write_text("# reviewed by hand\n0\n1\n\n7\n")
    raw = build("table", path=path, label_column="label", trusted=str(tmp_path / "trusted.txt"), test_fraction=0.25)
    # a quarter of each class's untrusted rows held out: round(19 / 4) = 5 of class 0, round(18 / 4) = 4 of class 1
    assert raw.class_names is None and raw.num_classes == 2 and len(raw.train) == 31 and len(raw.test) == 9
    assert torch.bincount(raw.test.y).tolist() == [5, 4] and raw.trusted.sum() == 3
    assert torch.allclose(raw.train.x.mean(0), torch.zeros(2), atol=1e-5)  # standardised by the training rows
    assert torch.allclose(raw.train.x.std(0, unbiased=False), torch.ones(2), atol=1e-5)
    assert raw.train_targets[raw.trusted].tolist() == [0, 1, 1]  # rows 0, 1 and 7, never held out
    np.save(tmp_path / "trusted.npy", np.array([2, 3]))
    assert build("table", path=path, label_column="label", trusted=str(tmp_path / "trusted.npy")).trusted.sum() == 2


TABLE = [["a", "b", "label", "ok"], ["1", "2", "0", "1"], ["3", "4", "1", "0"], ["5", "6", "1", "true"]]


@pytest.mark.parametrize("rows, options, message", [
    (TABLE, dict(label_column="class"), r"has no column 'class' \(label_column\); its columns: a, b, label, ok"),
    (TABLE, dict(feature_columns="a,c"), r"has no column 'c' \(feature_columns\)"),
    (TABLE, dict(trusted_column="checked"), r"has no column 'checked' \(trusted_column\)"),
    ([TABLE[0], ["1", "x", "0", "1"]], {}, r"line 2, column 'b': 'x' is not a number"),
    ([TABLE[0], ["1", "2", "0", "1"], ["", "2", "0", "1"]], {}, r"line 3, column 'a': '' is not a number"),
    ([TABLE[0], ["1", "inf", "0", "1"]], {}, r"line 2, column 'b': 'inf' is not a finite number"),
    ([], {}, r"is empty: no header row"),
    ([TABLE[0]], {}, r"has a header but no data rows"),
    ([TABLE[0], ["1", "2", "0"]], {}, r"line 2: 3 fields, the header has 4 \(is the delimiter ',' right\?\)"),
    ([["a", "a", "label"], ["1", "2", "0"]], {}, r"the header names column 'a' twice"),
    ([TABLE[0], ["1", "2", "0", "1"], ["1", "2", "cat", "1"]], {},
     r"the label column mixes class ids \('0', line 2\) and names \('cat', line 3\)"),
    ([TABLE[0], ["1", "2", "-1", "1"]], {}, r"line 2: label '-1' is not a class id"),
    ([TABLE[0], ["1", "2", " ", "1"]], {}, r"line 2: the label is empty"),
    (TABLE, dict(trusted_column="ok", feature_columns="a"), None),
    ([TABLE[0], ["1", "2", "0", "maybe"]], dict(trusted_column="ok", feature_columns="a"),
     r"line 2, column 'ok': 'maybe' is not one of 0, 1, true, false, yes, no"),
    (TABLE, dict(delimiter=";;"), r"delimiter must be one character \(or 'tab'\), got ';;'"),
])
def test_malformed_tables_are_named_with_the_line_and_column(tmp_path, rows, options, message):
    path = write_csv(tmp_path / "bad.csv", rows)
    options = {"label_column": "label", "feature_columns": "a,b", "test_fraction": 0.6, **options}
    if message is None:  # the well-formed case the others break
        assert build("table", path=path, **options).num_classes == 2
        return
    with pytest.raises(ValueError, match=r"table '.*bad.csv'.*" + message):
        build("table", path=path, **options)


def test_table_options_and_trusted_files_are_checked(tmp_path):
    path = write_csv(tmp_path / "t.csv", TABLE)
    with pytest.raises(ValueError, match=r"dataset 'table' needs the option label_column \(--data-label-column\)"):
        build("table", path=path)
    (tmp_path / "tr.txt").write_text("0\n")
    with pytest.raises(ValueError, match=r"give the trusted rows once, as trusted_column='ok' or as the file"):
        build("table", path=path, label_column="label", trusted_column="ok", trusted=str(tmp_path / "tr.txt"))
    for text, message in [("0\n9\n", r"trusted index 9 is out of range: there are 3 samples, 0..2"),
                          ("0\n2\n0\n", r"trusted index 0 is named 2 times"),
                          ("0\nrow 2\n", r"line 2: 'row 2' is not a sample index \(a 0-based integer\)"),
                          ("# none yet\n", r"no sample is trusted")]:
        (tmp_path / "tr.txt").write_text(text)
        with pytest.raises(ValueError, match=r"'.*tr.txt'.*" + message):
            build("table", path=path, label_column="label", feature_columns="a,b", trusted=str(tmp_path / "tr.txt"))
    test = write_csv(tmp_path / "test.csv", [["a", "b", "label"], ["1", "1", "2"]])
    with pytest.raises(ValueError, match=r"table '.*test.csv', line 2: label 2 is out of range: the training table "
                                         r"has 2 classes, 0..1"):
        build("table", path=path, label_column="label", feature_columns="a,b", test_path=test)
    named = write_csv(tmp_path / "named.csv", [["a", "label"], ["1", "cat"], ["2", "dog"]])
    test = write_csv(tmp_path / "test.csv", [["a", "label"], ["1", "cow"]])
    with pytest.raises(ValueError, match=r"line 2: label 'cow' is not a class of the training table \(cat, dog\)"):
        build("table", path=named, label_column="label", test_path=test)
    with pytest.raises(ValueError, match=r"test_fraction=0.2 of its 2 untrusted samples leaves no test sample"):
        build("table", path=named, label_column="label")


# --- images ---------------------------------------------------------------------------------------

def test_image_folder_classes_from_folders_trusted_paths_and_a_test_folder(tmp_path):
    for name in ("cat", "dog"):
        for i in range(5):
            write_png(tmp_path / "train" / name / f"{i}.png", PALETTE[name], size=(6 + i, 5))
    write_png(tmp_path / "test" / "dog" / "0.png", PALETTE["dog"])
    (tmp_path / "trusted.txt").write_text("cat/0.png\n./dog/3.png\n")
    raw = build("image-folder", str(tmp_path), path="train", image_size=8, trusted="trusted.txt", test_path="test")
    assert raw.class_names == ("cat", "dog") and raw.num_classes == 2 and raw.input_shape == (3, 8, 8)
    assert raw.train_targets.tolist() == [0] * 5 + [1] * 5 and raw.trusted.nonzero().squeeze(1).tolist() == [0, 8]
    x, y = raw.train[6]
    assert x.shape == (3, 8, 8) and y == 1 and torch.allclose(x[1], torch.ones(8, 8)) and torch.allclose(x[0], -torch.ones(8, 8))
    x, y, i = raw.test[0]  # the test folder's only class is the training folder's second
    assert (y, i, len(raw.test)) == (1, 0, 1)
    held = build("image-folder", path=str(tmp_path / "train"), augment=True, test_fraction=0.4)
    assert len(held.train) == 6 and len(held.test) == 4 and held.meta[0][0].shape == (3, 32, 32)
    write_png(tmp_path / "test" / "cow" / "0.png", PALETTE["bird"])
    with pytest.raises(ValueError, match=r"test folder '.*test': class folder 'cow' is not a class of the training "
                                         r"folder \(cat, dog\)"):
        build("image-folder", path=str(tmp_path / "train"), test_path=str(tmp_path / "test"))
    (tmp_path / "trusted.txt").write_text("cat/9.png\n")
    with pytest.raises(ValueError, match=r"line 1: 'cat/9.png' is neither a sample index nor the path of a training image"):
        build("image-folder", path=str(tmp_path / "train"), trusted=str(tmp_path / "trusted.txt"))
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"image folder '.*empty': .*cat"):
        build("image-folder", path=str(tmp_path / "empty"))
    with pytest.raises(NotADirectoryError, match=r"image folder '.*trusted.txt' is not a folder"):
        build("image-folder", path=str(tmp_path / "trusted.txt"))


def test_path_list_reads_images_under_a_root_with_named_classes(tmp_path):
    lines = []
    for i in range(6):
        name = ["cat", "dog", "bird"][i % 3]
        write_png(tmp_path / "images" / f"{i // 3}" / f"im {i}.png", PALETTE[name])
        lines.append(f"{i // 3}/im {i}.png {i % 3}")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "train.txt").write_text("\n".join(lines) + "\n\n")
    (tmp_path / "lists" / "test.txt").write_text("0/im 1.png 1\n")
    (tmp_path / "lists" / "names.txt").write_text("cat\ndog\nbird\n")
    (tmp_path / "lists" / "trusted.txt").write_text("0/im 0.png\n1\n2\n")
    raw = build("path-list", str(tmp_path), path="lists/train.txt", image_root="images", classes="lists/names.txt",
                test_path="lists/test.txt", trusted="lists/trusted.txt", image_size=4)
    assert raw.class_names == ("cat", "dog", "bird") and raw.train_targets.tolist() == [0, 1, 2] * 2
    assert raw.trusted.nonzero().squeeze(1).tolist() == [0, 1, 2] and raw.input_shape == (3, 4, 4)
    x, y = raw.train[2]
    assert y == 2 and torch.allclose(x[2], torch.ones(4, 4)) and len(raw.test) == 1 and raw.test[0][1] == 1
    (tmp_path / "images" / "a.png").write_bytes((tmp_path / "images" / "0" / "im 0.png").read_bytes())
    (tmp_path / "images" / "l.txt").write_text("a.png 1\na.png 0\na.png 0\na.png 1\n")  # no image_root: the list's folder
    assert build("path-list", path=str(tmp_path / "images" / "l.txt"), test_fraction=0.5).num_classes == 2


@pytest.mark.parametrize("text, options, error, message", [
    ("a.png 0\nb.png\n", {}, ValueError, r"line 2: expected 'relative/path.jpg label' with a class id .*got 'b.png'"),
    ("a.png 0\nb.png one\n", {}, ValueError, r"line 2: expected 'relative/path.jpg label'"),
    ("a.png 0\nmissing.png 1\ngone.png 1\n", {}, FileNotFoundError, r"2 image\(s\) not found under '.*': "
                                                                    r"'missing.png' \(line 2\), 'gone.png' \(line 3\)"),
    ("\n", {}, ValueError, r"is empty"),
    ("a.png 0\na.png 2\n", dict(classes="names.txt"), ValueError,
     r"label 2 of sample 1 is out of range: the classes file 'names.txt' has 2 classes, 0..1"),
])
def test_malformed_path_lists_are_named_with_their_line(tmp_path, text, options, error, message):
    write_png(tmp_path / "a.png", PALETTE["cat"])
    (tmp_path / "names.txt").write_text("cat\ndog\n")
    (tmp_path / "list.txt").write_text(text)
    with pytest.raises(error, match=r"path list '.*list.txt'.*" + message):
        build("path-list", str(tmp_path), path=str(tmp_path / "list.txt"), **options)


# --- a run on one's own labels --------------------------------------------------------------------

def write_own_table(path, trusted_positions=(0, 1, 2)):
    """90 rows of three separable classes named a, b, c, three of them annotated wrongly; the rows at
    ``trusted_positions`` within each class's 30 marked trusted."""
    g = np.random.default_rng(0)
    truth = np.repeat([0, 1, 2], 30)
    x = g.normal(size=(90, 4)) + 3 * np.eye(3, 4)[truth]
    annotated = truth.copy()
    annotated[[10, 40, 70]] = (truth[[10, 40, 70]] + 1) % 3
    trusted = np.isin(np.arange(90) % 30, trusted_positions)
    rows = [["f1", "f2", "f3", "f4", "label", "trusted"]]
    rows += [[*map(str, x[i]), "abc"[annotated[i]], str(int(trusted[i]))] for i in range(90)]
    return write_csv(path, rows), x, trusted


def test_a_run_on_own_labels_meta_learns_on_the_trusted_rows_and_writes_its_label_issues(tmp_path):
    path, x, trusted = write_own_table(tmp_path / "own.csv")
    options = dict(path=path, label_column="label", trusted_column="trusted", standardize=False)
    config = Config(dataset="table", dataset_options=options, noise="none", noise_rate=0.0, model="mlp", batch_size=16, meta_batch_size=9, epochs=2,
                    warmup_epochs=1, progress=False, output=str(tmp_path / "run.json"))
    splits = splits_for(config)
    assert splits.class_names == ("a", "b", "c") and splits.labels.true is None  # the truth is unknown
    assert len(splits.meta) == 9 and len(splits.test) == 15 and len(splits.train) == 66  # 90 - 9 trusted - 15 held out
    # the meta set is the trusted rows, with their annotations
    assert torch.equal(splits.meta.x, torch.tensor(x[trusted], dtype=torch.float32))
    assert splits.meta.y.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    fit(config)
    issues = read_label_issues(tmp_path / "run.json")
    assert len(issues) == 66 and torch.equal(issues.annotated, splits.labels.noisy) and issues.true is None
    # each issue names the row of the file it came from (0-based, after the header), and the classes by name
    with open(path, newline="") as file:
        table = list(csv.DictReader(file))
    with open(tmp_path / "run.issues.csv", newline="") as file:
        written = list(csv.DictReader(file))
    for row in written:
        source = table[int(row["source_index"])]
        features = torch.tensor([float(v) for k, v in source.items() if k not in ("label", "trusted")])
        assert torch.equal(features, splits.train.x[int(row["index"])])
        assert row["annotated_name"] == source["label"] and row["suggested_name"] in ("a", "b", "c")
    assert torch.equal(issues.source_index, splits.source_index)


def test_a_trusted_set_without_some_class_is_warned_about_when_it_becomes_the_meta_set(tmp_path):
    path, _, _ = write_own_table(tmp_path / "own.csv")
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    for row in rows[61:]:  # class c's rows: none trusted
        row[-1] = "0"
    write_csv(tmp_path / "own.csv", rows)
    config = Config(dataset="table", dataset_options=dict(path=path, label_column="label", trusted_column="trusted"),
                    noise="none", noise_rate=0.0)
    with pytest.warns(UserWarning, match=r"trusted samples hold no sample of classes \[2\]"):
        splits = splits_for(config)
    assert len(splits.meta) == 6


def test_image_folder_splits_put_the_trusted_images_in_the_meta_set_and_load_in_batches(tmp_path):
    from labelmeta import make_splits
    from labelmeta.data import loader

    for name in ("cat", "dog"):
        for i in range(6):
            write_png(tmp_path / name / f"{i}.png", PALETTE[name])
    (tmp_path / "trusted.txt").write_text("cat/1.png\ndog/2.png\n")
    splits = make_splits("image-folder", noise="none", noise_rate=0.0, path=str(tmp_path), image_size=8,
                         trusted=str(tmp_path / "trusted.txt"), test_fraction=0.34)
    assert (len(splits.meta), len(splits.train), len(splits.test)) == (2, 6, 4)  # round(5 * 0.34) = 2 a class held out
    assert [int(y) for _, y, _ in splits.meta] == [0, 1] and splits.labels.true is None
    x, y, i = next(iter(loader(splits.train, 4, shuffle=False)))
    assert x.shape == (4, 3, 8, 8) and torch.equal(y, splits.labels.noisy[i])
