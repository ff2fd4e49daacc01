"""Datasets, splits and noise, on real files written in the real on-disk formats."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from labelmeta import add_noise, make_splits
from labelmeta.data import loader
from helpers import write_cifar10 as _write_cifar10
from labelmeta.noise import CIFAR10_FLIPS, flip_matrix, symmetric_matrix


def test_mnist1d_generated_cached_and_split(tmp_path):
    s = make_splits("mnist1d", meta_per_class=5, noise="symmetric", noise_rate=0.4, seed=3,
                    data_root=str(tmp_path), num_samples=1000)
    assert list(tmp_path.glob("mnist1d_n1000_seed42.npz")), "the generated data is cached on disk"
    assert len(s.train) == 800 - 50 and len(s.meta) == 50 and len(s.test) == 200
    assert torch.bincount(s.meta.y, minlength=10).tolist() == [5] * 10
    x, y, idx = next(iter(loader(s.train, 32, shuffle=True)))
    assert x.shape == (32, 40) and torch.equal(y, s.labels.noisy[idx])
    again = make_splits("mnist1d", meta_per_class=5, noise="symmetric", noise_rate=0.4, seed=3,
                        data_root=str(tmp_path), num_samples=1000)
    assert torch.equal(again.labels.noisy, s.labels.noisy) and torch.equal(again.train.x, s.train.x)


def test_digits_split():
    s = make_splits("digits", meta_per_class=3, seed=0)
    assert s.input_shape == (64,) and len(s.meta) == 30
    assert len(s.train) + len(s.meta) + len(s.test) == 1797
    assert s.labels.effective_rate == 0.0


def test_symmetric_noise_rate_and_seed():
    y = torch.arange(10).repeat(2000)
    noisy = add_noise(y, 10, "symmetric", 0.4, seed=1)
    # a redraw can land on the true class: effective rate is 0.4 * 9 / 10
    assert noisy.effective_rate == pytest.approx(0.36, abs=0.015)
    assert torch.equal(noisy.true, y)
    assert torch.equal(add_noise(y, 10, "symmetric", 0.4, seed=1).noisy, noisy.noisy)
    assert not torch.equal(add_noise(y, 10, "symmetric", 0.4, seed=2).noisy, noisy.noisy)
    torch.testing.assert_close(symmetric_matrix(4, 0.4).sum(1), torch.ones(4, dtype=torch.float64))


def test_asymmetric_noise_follows_the_flip_map():
    y = torch.arange(10).repeat(1000)
    noisy = add_noise(y, 10, "asymmetric", 0.3, seed=0, flips=CIFAR10_FLIPS)
    changed = noisy.corrupted
    assert set(y[changed].unique().tolist()) == set(CIFAR10_FLIPS)
    for src, dst in CIFAR10_FLIPS.items():
        assert (noisy.noisy[changed & (y == src)] == dst).all()
    default = flip_matrix(10, 0.2)
    assert default[3, 4] == pytest.approx(0.2) and default[9, 0] == pytest.approx(0.2)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_bad_noise_rate(rate):
    with pytest.raises(ValueError, match=f"noise rate must lie in \\[0, 1\\), got {rate}"):
        add_noise(torch.zeros(5, dtype=torch.long), 10, "symmetric", rate)


def test_unknown_noise_and_dataset_names():
    with pytest.raises(ValueError, match="unknown noise kind 'pair'"):
        add_noise(torch.zeros(5, dtype=torch.long), 10, "pair", 0.2)
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; available: arrays, cifar10, cifar100, digits"):
        make_splits("imagenet")


def test_noise_kinds_are_a_registry_that_make_splits_and_the_config_use():
    """A noise kind registered for a while is checked, drawn and recorded like the built-in ones; those draw
    what the matrices they are named for draw (the stored results' noise)."""
    from labelmeta import Config
    from labelmeta.checks import check_config
    from labelmeta.noise import NOISE, NoiseKind, apply_transition

    assert NOISE.names() == ["asymmetric", "confidence", "file", "instance", "matrix", "none", "symmetric"]
    y = torch.arange(1000) % 10
    for kind, matrix in (("symmetric", symmetric_matrix(10, 0.4)), ("asymmetric", flip_matrix(10, 0.4))):
        expected = apply_transition(y, matrix, torch.Generator().manual_seed(5), 0.4)
        assert torch.equal(add_noise(y, 10, kind, 0.4, seed=5).noisy, expected.noisy)
    with pytest.raises(ValueError, match="unknown noise kind 'pair'; available: asymmetric, confidence, file, "):
        check_config(Config(noise="pair"))

    @NOISE.register("pair")
    class Pair(NoiseKind):
        """Pair flipping: class ``i`` to ``i + 1`` (a test's kind)."""

        def __init__(self, data_root=None):
            pass

        def __call__(self, samples):
            return apply_transition(samples.targets, flip_matrix(samples.num_classes, samples.rate), samples.generator,
                                    samples.rate)

    try:
        check_config(Config(noise="pair"))
        s = make_splits("digits", meta_per_class=3, noise="pair", noise_rate=0.3, seed=2)
        flipped = s.labels.corrupted
        assert flipped.any() and torch.equal(s.labels.noisy[flipped], (s.labels.true[flipped] + 1) % 10)
    finally:
        NOISE.unregister("pair")


def test_meta_split_larger_than_a_class():
    with pytest.raises(ValueError, match="fewer than the 500 asked for"):
        make_splits("digits", meta_per_class=500)


def test_cifar10_from_data_root(tmp_path):
    _write_cifar10(tmp_path)
    s = make_splits("cifar10", meta_per_class=1, noise="symmetric", noise_rate=0.2, data_root=str(tmp_path))
    assert s.input_shape == (3, 32, 32) and s.class_names[1] == "automobile"
    assert len(s.train) == 20 - 10 and len(s.meta) == 10 and len(s.test) == 6
    x, y, idx = next(iter(loader(s.train, 4, shuffle=True)))
    assert x.shape == (4, 3, 32, 32) and torch.equal(y, s.labels.noisy[idx])
    xm, ym, _ = next(iter(loader(s.meta, 10, shuffle=False)))
    assert sorted(ym.tolist()) == list(range(10))


@pytest.mark.parametrize("dataset, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_formats_from_data_root(tmp_path, dataset, folder):
    """``labelmeta.data.files.write_mnist`` writes what torchvision's MNIST and FashionMNIST read back."""
    from labelmeta.data.files import write_mnist

    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    written = write_mnist(tmp_path, train, np.arange(30) % 10, test, np.arange(10) % 10, name=folder)
    assert written == tmp_path / folder / "raw"
    s = make_splits(dataset, meta_per_class=1, data_root=str(tmp_path))
    assert s.input_shape == (1, 28, 28) and len(s.train) == 20 and len(s.test) == 10
    x, y, idx = next(iter(loader(s.train, 5, shuffle=False)))
    assert x.shape == (5, 1, 28, 28) and y.dtype == torch.long
    assert torch.equal(torch.bincount(s.labels.true, minlength=10), torch.full((10,), 2))  # 3 a class, 1 held out
    assert torch.cat([b[1] for b in loader(s.test, 10, shuffle=False)]).tolist() == list(range(10))
    with pytest.raises(ValueError, match=r"labels must be class ids in \[0, 10\), got 0 to 10"):
        write_mnist(tmp_path, train[:11], np.arange(11), test, np.arange(10))
    with pytest.raises(ValueError, match="name must be 'MNIST' or 'FashionMNIST'"):
        write_mnist(tmp_path, train, np.arange(30) % 10, test, np.arange(10), name="KMNIST")


def test_missing_data_root_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="CIFAR100 not found under data_root="):
        make_splits("cifar100", data_root=str(tmp_path))
    with pytest.raises(ValueError, match="needs data_root"):
        make_splits("cifar10")


def test_mismatched_sizes_are_named():
    from labelmeta.data import Indexed, IndexedTensorDataset

    with pytest.raises(ValueError, match="x has 3 samples but y has 4"):
        IndexedTensorDataset(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="5 targets given for a dataset of 3 samples"):
        Indexed(IndexedTensorDataset(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long)), torch.zeros(5))


def test_meta_in_train_appends_clean_meta_samples():
    base = make_splits("digits", meta_per_class=3, noise="symmetric", noise_rate=0.5, seed=1)
    both = make_splits("digits", meta_per_class=3, noise="symmetric", noise_rate=0.5, seed=1, meta_in_train=True)
    n = len(base.train)
    assert len(both.train) == n + 30
    assert torch.equal(both.labels.noisy[:n], base.labels.noisy)  # the same noise draw
    assert torch.equal(both.train.x[n:], base.meta.x) and torch.equal(both.labels.noisy[n:], base.meta.y)
    assert not both.labels.corrupted[n:].any()


@pytest.mark.parametrize("suffix", ["npy", "csv", "json"])
def test_transition_matrix_from_a_file(tmp_path, suffix):
    from labelmeta.noise import load_matrix

    matrix = np.full((4, 4), 0.1) + np.eye(4) * 0.6  # 30 % of every class spread over the others
    matrix[3] = [0.0, 0.0, 0.5, 0.5]                  # class 3: half flipped to 2
    path = tmp_path / f"T.{suffix}"
    if suffix == "npy":
        np.save(path, matrix)
    elif suffix == "csv":
        np.savetxt(path, matrix, delimiter=",")
    else:
        import json
        path.write_text(json.dumps(matrix.tolist()))
    y = torch.arange(4).repeat(5000)
    noisy = add_noise(y, 4, "matrix", seed=0, matrix=load_matrix(str(path)))
    assert noisy.nominal_rate == pytest.approx((0.3 * 3 + 0.5) / 4)
    assert noisy.effective_rate == pytest.approx(noisy.nominal_rate, abs=0.01)
    assert set(noisy.noisy[y == 3].unique().tolist()) == {2, 3}


def test_bad_transition_matrices_are_named(tmp_path):
    from labelmeta.noise import load_matrix

    y = torch.arange(3).repeat(4)
    with pytest.raises(ValueError, match=r"rows \[1\] are not probability distributions \(row sums \[1.5\]\)"):
        add_noise(y, 3, "matrix", matrix=torch.tensor([[1.0, 0, 0], [0.5, 1.0, 0], [0, 0, 1.0]]))
    with pytest.raises(ValueError, match=r"must be 3 x 3, got \(2, 2\)"):
        add_noise(y, 3, "matrix", matrix=torch.eye(2))
    with pytest.raises(ValueError, match="needs a transition matrix"):
        add_noise(y, 3, "matrix")
    with pytest.raises(ValueError, match=r"must be .npy, .csv or .json, got '.*T.txt'"):
        load_matrix(str(tmp_path / "T.txt"))


def test_cifar10_asymmetric_noise_uses_the_standard_flips(tmp_path):
    _write_cifar10(tmp_path, n_train_per_batch=200)
    s = make_splits("cifar10", meta_per_class=0, noise="asymmetric", noise_rate=0.5, data_root=str(tmp_path))
    changed = s.labels.corrupted
    assert changed.any()
    for src, dst in CIFAR10_FLIPS.items():
        assert (s.labels.noisy[changed & (s.labels.true == src)] == dst).all()
    assert set(s.labels.true[changed].unique().tolist()) <= set(CIFAR10_FLIPS)


@pytest.mark.parametrize("source", ["digits", "cifar10"])
def test_subset_keeps_the_chosen_samples_reindexed(tmp_path, source):
    """``Splits.subset``: the kept samples, in order, with their inputs, annotations and truth, indexed
    0..M-1 for the label table; in memory (digits) and read from files (CIFAR-10)."""
    if source == "cifar10":
        _write_cifar10(tmp_path)
    s = make_splits(source, meta_per_class=1, noise="symmetric", noise_rate=0.5, seed=3, data_root=str(tmp_path))
    keep = torch.arange(len(s.labels.noisy)) % 3 != 1
    sub = s.subset(keep)
    assert len(sub.train) == int(keep.sum()) and sub.meta is s.meta and sub.test is s.test
    assert torch.equal(sub.labels.noisy, s.labels.noisy[keep]) and torch.equal(sub.labels.true, s.labels.true[keep])
    x, y, idx = next(iter(loader(sub.train, len(sub.train), shuffle=False)))
    x_all, _, _ = next(iter(loader(s.train, len(s.train), shuffle=False)))
    assert torch.equal(idx, torch.arange(len(sub.train))) and torch.equal(y, sub.labels.noisy)
    if source == "digits":
        assert torch.equal(x, x_all[keep])
    else:  # augmented on every read: the kept samples are the same files' samples, in order
        assert sub.train.dataset.dataset is s.train.dataset and sub.train.dataset.indices == keep.nonzero()[:, 0].tolist()
    with pytest.raises(ValueError, match=r"keep must be a BoolTensor\[%d\]" % len(s.labels.noisy)):
        s.subset(keep[:-1])
    with pytest.raises(ValueError, match="selects no training sample"):
        s.subset(torch.zeros_like(keep))


@pytest.mark.parametrize("source", ["digits", "cifar10"])
def test_validation_split_comes_out_of_the_meta_split_and_replaces_the_test_set(tmp_path, source):
    """``validation_per_class``: v clean samples a class of the meta split become the evaluation set;
    the training set and its noise draw are untouched, the meta split keeps the rest, ``meta_in_train``
    adds only those, and nothing of the test set is read."""
    if source == "cifar10":
        _write_cifar10(tmp_path)
    per_class, v = (6, 2) if source == "digits" else (2, 1)
    base = make_splits(source, meta_per_class=per_class, noise="symmetric", noise_rate=0.5, seed=4,
                       data_root=str(tmp_path))
    val = make_splits(source, meta_per_class=per_class, noise="symmetric", noise_rate=0.5, seed=4,
                      validation_per_class=v, data_root=str(tmp_path))
    added = make_splits(source, meta_per_class=per_class, noise="symmetric", noise_rate=0.5, seed=4,
                        validation_per_class=v, meta_in_train=True, data_root=str(tmp_path))
    assert torch.equal(val.labels.noisy, base.labels.noisy) and torch.equal(val.labels.true, base.labels.true)
    _, ym, _ = next(iter(loader(val.meta, 1000, shuffle=False)))
    xv, yv, _ = next(iter(loader(val.test, 1000, shuffle=False)))
    xb, yb, _ = next(iter(loader(base.meta, 1000, shuffle=False)))
    assert torch.equal(torch.bincount(yv, minlength=10), torch.full((10,), v))
    assert torch.equal(torch.bincount(ym, minlength=10), torch.full((10,), per_class - v))
    # the validation samples are meta samples of the plain split, with their true labels
    rows = {tuple(r.flatten().tolist()): int(c) for r, c in zip(xb, yb)}
    assert all(rows.get(tuple(r.flatten().tolist())) == int(c) for r, c in zip(xv, yv))
    assert len(added.train) == len(val.train) + 10 * (per_class - v)
    if source == "digits":  # no validation sample is trained on, and the test set is not the evaluation set
        xt, _, _ = next(iter(loader(added.train, 2000, shuffle=False)))
        trained = {tuple(r.tolist()) for r in xt}
        assert not any(tuple(r.tolist()) in trained for r in xv) and len(val.test) != len(base.test)
    for bad in (per_class, -1):
        with pytest.raises(ValueError, match=f"validation_per_class={bad} must be in"):
            make_splits(source, meta_per_class=per_class, validation_per_class=bad, data_root=str(tmp_path))


class _Counted(torch.utils.data.Dataset):
    """Samples read one by one (as torchvision's datasets are), recording which were read."""

    def __init__(self, n: int) -> None:
        self.n, self.read = n, []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        self.read.append(i)
        return torch.tensor([float(i)]), i % 3, i


@pytest.mark.parametrize("in_memory", [True, False], ids=["in-memory", "sample-by-sample"])
def test_each_process_reads_only_its_shard_of_every_batch(in_memory):
    """Two processes' loaders (``shard=(rank, 2)``) hand out, batch by batch, the two halves of the
    global batches one loader draws, in the same order, resumed at the same place; each reads only its half."""
    from labelmeta.data import IndexedTensorDataset

    def data():
        return IndexedTensorDataset(torch.arange(23.0).unsqueeze(1), torch.arange(23) % 3) if in_memory else _Counted(23)

    whole = list(loader(data(), 6, shuffle=True, seed=4))
    parts = [loader(data(), 6, shuffle=True, seed=4, shard=(rank, 2)) for rank in (0, 1)]
    halves = [list(part) for part in parts]
    assert [len(b[2]) for b in halves[0]] == [3, 3, 3, 2] and [len(b[2]) for b in halves[1]] == [3, 3, 3, 3]
    for batch, first, second in zip(whole, *halves):
        for t, a, b in zip(batch, first, second):
            assert torch.equal(t, torch.cat([a, b]))
    if not in_memory:  # each read its own samples, none of the other's
        read = [set(part.data.dataset.read) for part in parts]
        assert not read[0] & read[1] and read[0] | read[1] == set(range(23))
    for part in parts:  # the first pass again, resumed after two batches, as a run resumes an epoch
        part.generator.manual_seed(4)
        part.skip(2)
    for batch, first, second in zip(whole[2:], *(list(part) for part in parts)):
        assert torch.equal(batch[2], torch.cat([first[2], second[2]]))


def test_shards_that_would_leave_a_process_without_samples_are_refused():
    from labelmeta.data import IndexedTensorDataset

    data = IndexedTensorDataset(torch.zeros(13, 1), torch.zeros(13))
    with pytest.raises(ValueError, match=r"last batch of each pass over 13 samples \(batch size 6\).* 1 samples"):
        loader(data, 6, shuffle=True, shard=(0, 2))
    with pytest.raises(ValueError, match="a batch of 2 samples cannot be shared by 3 processes"):
        loader(data, 2, shuffle=True, shard=(0, 3))
    with pytest.raises(ValueError, match=r"shard must be \(rank, world\).*\(2, 2\)"):
        loader(data, 4, shuffle=True, shard=(2, 2))
    loader(data, 13, shuffle=True, shard=(1, 2))  # one batch of 13: shards of 6 and 7
