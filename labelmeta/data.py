"""Datasets that yield ``(x, y, index)``, the embedded defaults, and train / meta / test splits.

Embedded (no download): ``mnist1d`` (generated locally with the ``mnist1d`` package's
``make_dataset`` and cached on disk) and ``digits`` (scikit-learn's bundled 8×8 digits). From a
user's ``data_root`` through torchvision: ``cifar10``, ``cifar100``, ``mnist``, ``fashion-mnist``.
Nothing here downloads.
"""
from __future__ import annotations

import itertools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler, Subset

from .labels import check_targets
from .noise import CIFAR10_FLIPS, MNIST_FLIPS, NoisyLabels, add_noise
from .registry import Registry


class IndexedTensorDataset(Dataset):
    """In-memory ``(x, y, index)`` samples; indexing with a ``LongTensor`` returns a whole batch.

    Args:
        x: ``[N, ...]`` inputs.
        y: ``LongTensor[N]`` targets.
    """

    batched = True  # ``loader`` fetches whole batches with one indexing call

    def __init__(self, x: Tensor, y: Tensor) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        self.x, self.y = x, y.long()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index):
        index = torch.as_tensor(index, dtype=torch.long)
        return self.x[index], self.y[index], index


class Indexed(Dataset):
    """Wrap a ``(x, y)`` dataset (e.g. torchvision's) to yield ``(x, targets[i], i)``.

    Args:
        dataset: the wrapped dataset.
        targets: ``LongTensor[len(dataset)]`` replacing the dataset's own targets (e.g. noisy
            ones); default: the dataset's.
    """

    def __init__(self, dataset: Dataset, targets: Optional[Tensor] = None) -> None:
        if targets is not None and len(targets) != len(dataset):
            raise ValueError(f"{len(targets)} targets given for a dataset of {len(dataset)} samples")
        self.dataset, self.targets = dataset, targets

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        x, y = self.dataset[i]
        y = int(self.targets[i]) if self.targets is not None else int(y)
        return x, y, i


class _Skipping(Sampler):
    """Wraps a sampler; the next pass first drops ``owner.pending`` of its items (indices or index
    lists) without loading any data, so that a pass resumes mid-way in the same order."""

    def __init__(self, inner: Sampler, owner: "Loader", per_batch: int) -> None:
        self.inner, self.owner, self.per_batch = inner, owner, per_batch

    def __iter__(self):
        it = iter(self.inner)
        skip, self.owner.pending = self.owner.pending * self.per_batch, 0
        for _ in itertools.islice(it, skip):
            pass
        yield from it

    def __len__(self) -> int:
        return len(self.inner)


class Loader:
    """A seeded, resumable loader of ``(x, y, index)`` batches; in-memory datasets are sliced, not collated.

    Iterating it is iterating a ``DataLoader``. ``generator`` draws each pass's order (save its
    state at the start of a pass) and :meth:`skip` makes the next pass start after some batches,
    which is how a run resumes mid-epoch in exactly the same order.

    A pass draws nothing from the global torch generator: a ``DataLoader`` draws a base seed (for
    its workers) from its own generator each time it is iterated, from the global one if it has
    none, and a resumed run starts passes (mid-epoch, and the meta stream's) where the
    uninterrupted one did not, which would shift whatever else draws from the global generator
    (augmentation, dropout). That seed is drawn from a copy of ``generator`` at the pass's start,
    so it too is fixed by the state a checkpoint keeps.
    """

    def __init__(self, dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False,
                 num_workers: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.generator = torch.Generator().manual_seed(seed)
        self.pending = 0
        sampler = RandomSampler(dataset, generator=self.generator) if shuffle else SequentialSampler(dataset)
        seeds = torch.Generator()  # the DataLoader's base seeds (see the class docstring)
        if getattr(dataset, "batched", False):
            batches = _Skipping(BatchSampler(sampler, batch_size, drop_last), self, per_batch=1)
            self.data = DataLoader(dataset, sampler=batches, batch_size=None, generator=seeds)
        else:
            self.data = DataLoader(dataset, batch_size=batch_size, sampler=_Skipping(sampler, self, batch_size),
                                   drop_last=drop_last, num_workers=num_workers, generator=seeds)

    def skip(self, batches: int) -> None:
        """Make the next pass begin after its first ``batches`` batches."""
        self.pending = int(batches)

    def __iter__(self):
        self.data.generator.set_state(self.generator.get_state())
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def dataset_targets(dataset: Dataset) -> Tensor:
    """``LongTensor[N]`` targets of a labelmeta dataset (``IndexedTensorDataset`` or ``Indexed``)."""
    if isinstance(dataset, IndexedTensorDataset):
        return dataset.y
    if isinstance(dataset, Indexed) and dataset.targets is not None:
        return dataset.targets
    return torch.as_tensor([int(dataset[i][1]) for i in range(len(dataset))], dtype=torch.long)


def loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False,
           num_workers: int = 0) -> Loader:
    """A seeded :class:`Loader` of ``(x, y, index)`` batches."""
    return Loader(dataset, batch_size, shuffle, seed, drop_last, num_workers)


class BatchStream:
    """Endless batches from a :class:`Loader`, reshuffled every pass, with a resumable position."""

    def __init__(self, data: Loader) -> None:
        self.data = data
        self._it = None
        self._pass_state = data.generator.get_state()
        self._position = 0

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            if self._it is None:
                self._pass_state = self.data.generator.get_state()
                self.data.skip(self._position)
                self._it = iter(self.data)
            try:
                batch = next(self._it)
            except StopIteration:
                self._it, self._position = None, 0
                continue
            self._position += 1
            return batch

    def state_dict(self) -> Dict[str, object]:
        """Where the stream is: the order generator at the start of this pass, and batches taken from it."""
        return {"pass_state": self._pass_state, "position": self._position}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        self.data.generator.set_state(state["pass_state"])
        self._pass_state, self._position, self._it = state["pass_state"], int(state["position"]), None


def cycle(data: Loader) -> BatchStream:
    """Iterate over ``data`` forever (reshuffling each pass)."""
    return BatchStream(data)


@dataclass
class RawData:
    """A dataset before splitting: train and test sets, with the train set's clean targets."""

    train: Dataset          # yields (x, y) or is an IndexedTensorDataset
    train_targets: Tensor   # LongTensor[N]
    test: Dataset
    num_classes: int
    input_shape: Tuple[int, ...]
    meta: Optional[Dataset] = None  # the train set under the evaluation transform, for augmented data
    class_names: Optional[Tuple[str, ...]] = None
    flips: Optional[Dict[int, int]] = None  # the dataset's class-flip map for asymmetric noise


@dataclass
class Splits:
    """Train / meta / test sets ready for the runner.

    Attributes:
        train: yields ``(x, annotated y, i)``, ``i`` in ``[0, N)`` indexing the label table.
        meta: clean held-out samples (``None`` when ``meta_per_class == 0``).
        test: yields ``(x, y, i)``.
        labels: annotated (possibly noisy) and true targets of ``train``.
    """

    train: Dataset
    meta: Optional[Dataset]
    test: Dataset
    labels: NoisyLabels
    num_classes: int
    input_shape: Tuple[int, ...]
    class_names: Optional[Tuple[str, ...]] = None


DATASETS: Registry[RawData] = Registry("dataset")


def default_cache_dir() -> Path:
    """``$LABELMETA_CACHE`` or ``~/.cache/labelmeta``."""
    return Path(os.environ.get("LABELMETA_CACHE", Path.home() / ".cache" / "labelmeta"))


def _atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@DATASETS.register("mnist1d")
def mnist1d(data_root: Optional[str] = None, num_samples: int = 10000, data_seed: int = 42, **_) -> RawData:
    """MNIST-1D generated locally (``mnist1d.data.make_dataset``, 80 / 20 train / test split),
    cached as ``.npz`` under ``data_root`` (default :func:`default_cache_dir`)."""
    if num_samples < 100:
        raise ValueError(f"mnist1d needs num_samples >= 100, got {num_samples}")
    root = Path(data_root) if data_root else default_cache_dir()
    path = root / f"mnist1d_n{num_samples}_seed{data_seed}.npz"
    if not path.exists():
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples, args.seed = num_samples, data_seed
        d = make_dataset(args)
        _atomic_save_npz(path, x=d["x"], y=d["y"], x_test=d["x_test"], y_test=d["y_test"])
    with np.load(path) as d:
        x, y = torch.tensor(d["x"], dtype=torch.float32), torch.tensor(d["y"], dtype=torch.long)
        xt, yt = torch.tensor(d["x_test"], dtype=torch.float32), torch.tensor(d["y_test"], dtype=torch.long)
    return RawData(IndexedTensorDataset(x, y), y, IndexedTensorDataset(xt, yt), 10, tuple(x.shape[1:]),
                   class_names=tuple(str(c) for c in range(10)))


@DATASETS.register("digits")
def digits(data_seed: int = 42, test_fraction: float = 0.2, **_) -> RawData:
    """scikit-learn's bundled 8×8 digits (1 797 samples), scaled to [0, 1], stratified test split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.long)
    test_mask = _stratified_mask(y, 10, fraction=test_fraction, seed=data_seed)
    train = IndexedTensorDataset(x[~test_mask], y[~test_mask])
    return RawData(train, train.y, IndexedTensorDataset(x[test_mask], y[test_mask]), 10, (64,),
                   class_names=tuple(str(c) for c in range(10)))


@DATASETS.register("digits-twins")
def digits_twins(data_seed: int = 42, **options) -> RawData:
    """:func:`digits` with every class split at random into two look-alike classes, ``c`` and
    ``c + 10`` (20 classes): a dataset whose class similarity is known by construction, for
    checking that learned per-class labels find it."""
    raw = digits(data_seed=data_seed, **options)
    generator = torch.Generator().manual_seed(data_seed + 1)
    train, test = raw.train, raw.test
    twin = lambda y: y + 10 * torch.randint(0, 2, y.shape, generator=generator)  # noqa: E731
    train, test = IndexedTensorDataset(train.x, twin(train.y)), IndexedTensorDataset(test.x, twin(test.y))
    names = tuple(f"{c % 10}{'ab'[c // 10]}" for c in range(20))
    return RawData(train, train.y, test, 20, raw.input_shape, class_names=names)


def _stratified_mask(y: Tensor, num_classes: int, seed: int, fraction: float = 0.0, per_class: int = 0) -> Tensor:
    """Bool mask choosing ``per_class`` (or ``fraction`` of each class's) samples of each class."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(y), dtype=torch.bool)
    for c in range(num_classes):
        members = (y == c).nonzero().squeeze(1)
        n = per_class if per_class else int(round(fraction * len(members)))
        if n > len(members):
            raise ValueError(f"class {c} has {len(members)} samples, fewer than the {n} asked for")
        mask[members[torch.randperm(len(members), generator=generator)[:n]]] = True
    return mask


def _without_checksums(cls: type) -> type:
    """A torchvision CIFAR class that checks its files are present but not their MD5 sums, so
    that a re-packed or sub-sampled copy in the same on-disk format loads (the reading code is
    torchvision's own)."""
    if not hasattr(cls, "train_list"):
        return cls
    return type(cls.__name__, (cls,), {
        "train_list": [[name, None] for name, _ in cls.train_list],
        "test_list": [[name, None] for name, _ in cls.test_list],
        "meta": {**cls.meta, "md5": None},
    })


def _torchvision(cls_name: str, num_classes: int, mean, std, augment: bool,
                 flips: Optional[Dict[int, int]] = None) -> Callable[..., RawData]:
    def build(data_root: Optional[str] = None, **_) -> RawData:
        from torchvision import datasets, transforms

        if not data_root:
            raise ValueError(f"{cls_name} needs data_root, a folder holding the torchvision {cls_name} files")
        cls = _without_checksums(getattr(datasets, cls_name))
        eval_tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
        train_tf = eval_tf
        if augment:
            train_tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), eval_tf])
        try:
            train = cls(data_root, train=True, transform=train_tf, download=False)
            train_eval = cls(data_root, train=True, transform=eval_tf, download=False)
            test = cls(data_root, train=False, transform=eval_tf, download=False)
        except RuntimeError as err:
            raise FileNotFoundError(
                f"{cls_name} not found under data_root={data_root!r} ({err}); download it once on a "
                f"machine with internet: torchvision.datasets.{cls_name}({data_root!r}, download=True)"
            ) from None
        targets = torch.as_tensor(train.targets, dtype=torch.long)
        x0, _ = train_eval[0]
        names = tuple(getattr(train, "classes", ())) or None
        return RawData(train, targets, Indexed(test), num_classes, tuple(x0.shape), meta=train_eval,
                       class_names=names, flips=flips)

    build.__doc__ = f"torchvision ``{cls_name}`` read from ``data_root`` (never downloaded)."
    return build


DATASETS.register("cifar10")(_torchvision("CIFAR10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True,
                                          flips=CIFAR10_FLIPS))
DATASETS.register("cifar100")(_torchvision("CIFAR100", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True))
DATASETS.register("mnist")(_torchvision("MNIST", 10, (0.1307,), (0.3081,), False, flips=MNIST_FLIPS))
DATASETS.register("fashion-mnist")(_torchvision("FashionMNIST", 10, (0.2860,), (0.3530,), False))


def make_splits(
    dataset: str = "mnist1d",
    meta_per_class: int = 50,
    noise: str = "none",
    noise_rate: float = 0.0,
    seed: int = 0,
    meta_in_train: bool = False,
    noise_matrix: Optional[Tensor] = None,
    **dataset_options,
) -> Splits:
    """Load ``dataset``, hold out a clean stratified meta split, then corrupt the rest.

    Args:
        dataset: a name in ``DATASETS.names()``.
        meta_per_class: clean samples per class held out of the training set for the meta loss
            (0: none, the meta batches then come from the training data).
        noise, noise_rate, noise_matrix: see :func:`labelmeta.noise.add_noise`; asymmetric noise
            uses the dataset's class-flip map (CIFAR-10's standard one, Patrini et al.'s for MNIST),
            else the fixed permutation ``i → i + 1 mod C``.
        seed: seeds the meta split and the noise draw.
        meta_in_train: also train on the clean meta samples (appended after the noisy ones, with
            their true labels) — the fair baseline for methods that use the meta set.
        **dataset_options: passed to the dataset factory (``data_root``, ``num_samples``...).
    """
    raw = DATASETS.build(dataset, **dataset_options)
    check_targets(raw.train_targets, raw.num_classes, "dataset targets")
    if len(raw.train_targets) != len(raw.train):
        raise ValueError(f"dataset has {len(raw.train)} samples but {len(raw.train_targets)} targets")
    if meta_per_class < 0:
        raise ValueError(f"meta_per_class must be >= 0, got {meta_per_class}")
    meta_mask = _stratified_mask(raw.train_targets, raw.num_classes, seed, per_class=meta_per_class) \
        if meta_per_class else torch.zeros(len(raw.train_targets), dtype=torch.bool)
    train_idx, meta_idx = (~meta_mask).nonzero().squeeze(1), meta_mask.nonzero().squeeze(1)
    labels = add_noise(raw.train_targets[train_idx], raw.num_classes, noise, noise_rate, seed=seed,
                       flips=raw.flips, matrix=noise_matrix)
    if meta_in_train:
        clean = raw.train_targets[meta_idx]
        labels = NoisyLabels(torch.cat([labels.noisy, clean]), torch.cat([labels.true, clean]), labels.nominal_rate)
        train_idx = torch.cat([train_idx, meta_idx])

    meta_source = raw.meta if raw.meta is not None else raw.train
    if isinstance(raw.train, IndexedTensorDataset):
        train: Dataset = IndexedTensorDataset(raw.train.x[train_idx], labels.noisy)
        meta = IndexedTensorDataset(raw.train.x[meta_idx], raw.train_targets[meta_idx]) if meta_per_class else None
    else:
        train = Indexed(Subset(raw.train, train_idx.tolist()), labels.noisy)
        meta = Indexed(Subset(meta_source, meta_idx.tolist()), raw.train_targets[meta_idx]) if meta_per_class else None
    return Splits(train, meta, raw.test, labels, raw.num_classes, raw.input_shape, raw.class_names)
