"""Dataset sources: the registered datasets, each a factory of :class:`RawData` (before splitting).

A source is called as ``factory(data_root, **options)``: ``data_root`` is the user's folder (or
``None``), its options are its keyword-only arguments (see :mod:`labelmeta.options`). Embedded (no download): ``mnist1d`` (generated locally with the ``mnist1d`` package's
``make_dataset`` and cached on disk) and ``digits`` (scikit-learn's bundled 8×8 digits). From a
user's ``data_root`` through torchvision: ``cifar10``, ``cifar100``, ``mnist``, ``fashion-mnist``.
Nothing here downloads.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..noise import CIFAR10_FLIPS, MNIST_FLIPS
from ..registry import Registry
from .loading import Indexed, IndexedTensorDataset


@dataclass
class RawData:
    """A dataset before splitting: train and test sets, with the train set's targets.

    Attributes:
        train: yields ``(x, y)`` or is an :class:`IndexedTensorDataset`.
        train_targets: ``LongTensor[N]``, the training set's labels: the truth for the built-in
            datasets; the user's own annotations where ``truth_known`` is ``False``.
        test: yields ``(x, y)``.
        meta: the train set under the evaluation transform, for augmented data.
        class_names: a name per class, where the dataset has them.
        flips: the dataset's class-flip map for asymmetric noise.
        truth_known: whether ``train_targets`` are the truth. ``False`` for a user's own labels: the run
            then reports no corrected / broken / detection figures, only its label issues.
        trusted: ``BoolTensor[N]``, the training samples whose labels the user trusts: they become the
            meta set (in place of a stratified clean split); ``None``: the split is drawn.
        ids: ``LongTensor[N]``, each training sample's place in the user's file (a table's data row, a
            list's line of samples), 0-based, where a hold-out made ``train`` a part of it; ``None``: its
            place in ``train``. The label issues name it, so that a sample can be found where it came from.
    """

    train: Dataset
    train_targets: Tensor
    test: Dataset
    num_classes: int
    input_shape: Tuple[int, ...]
    meta: Optional[Dataset] = None
    class_names: Optional[Tuple[str, ...]] = None
    flips: Optional[Dict[int, int]] = None
    truth_known: bool = True
    trusted: Optional[Tensor] = None
    ids: Optional[Tensor] = None


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
def mnist1d(data_root: Optional[str] = None, *, num_samples: int = 10000, data_seed: int = 42) -> RawData:
    """MNIST-1D generated locally (``mnist1d.data.make_dataset``, 80 / 20 train / test split),
    cached as ``.npz`` under ``data_root`` (default :func:`default_cache_dir`).

    Args:
        num_samples: samples generated (80 % train, 20 % test; >= 100); default 10000.
        data_seed: seed of the generator; default 42 (the MNIST-1D paper's).
    """
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
def digits(data_root: Optional[str] = None, *, data_seed: int = 42, test_fraction: float = 0.2) -> RawData:
    """scikit-learn's bundled 8×8 digits (1 797 samples), scaled to [0, 1], stratified test split.

    Args:
        data_seed: seed of the test split; default 42.
        test_fraction: share of each class held out for testing, in (0, 1); default 0.2.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"digits test_fraction must lie in (0, 1), got {test_fraction}")
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.long)
    test_mask = stratified_mask(y, 10, fraction=test_fraction, seed=data_seed)
    train = IndexedTensorDataset(x[~test_mask], y[~test_mask])
    return RawData(train, train.y, IndexedTensorDataset(x[test_mask], y[test_mask]), 10, (64,),
                   class_names=tuple(str(c) for c in range(10)))


@DATASETS.register("digits-twins")
def digits_twins(data_root: Optional[str] = None, *, data_seed: int = 42, test_fraction: float = 0.2) -> RawData:
    """:func:`digits` with every class split at random into two look-alike classes, ``c`` and
    ``c + 10`` (20 classes): a dataset whose class similarity is known by construction, for
    checking that learned per-class labels find it.

    Args:
        data_seed: seed of the test split and of the twin assignment; default 42.
        test_fraction: share of each class held out for testing; default 0.2.
    """
    raw = digits(data_root, data_seed=data_seed, test_fraction=test_fraction)
    generator = torch.Generator().manual_seed(data_seed + 1)
    train, test = raw.train, raw.test
    twin = lambda y: y + 10 * torch.randint(0, 2, y.shape, generator=generator)  # noqa: E731
    train, test = IndexedTensorDataset(train.x, twin(train.y)), IndexedTensorDataset(test.x, twin(test.y))
    names = tuple(f"{c % 10}{'ab'[c // 10]}" for c in range(20))
    return RawData(train, train.y, test, 20, raw.input_shape, class_names=names)


def stratified_mask(y: Tensor, num_classes: int, seed: int, fraction: float = 0.0, per_class: int = 0) -> Tensor:
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
    def build(data_root: Optional[str] = None) -> RawData:
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


