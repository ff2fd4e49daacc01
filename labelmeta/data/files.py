"""Writers of torchvision's on-disk dataset formats: small stand-ins for CIFAR-10, CIFAR-100, MNIST and
Fashion-MNIST, to run a pipeline offline.

The ``cifar10``, ``cifar100``, ``mnist`` and ``fashion-mnist`` datasets are read from ``data_root``
by torchvision's own classes and never downloaded. These functions write arrays you give them (random
pixels, a subset of the real data, images of your own) in exactly the layout those classes read, so
a configuration, a preset or a new model can be tried end to end on a machine without the data or
without internet, in seconds, before the real run::

    rng = np.random.default_rng(0)
    write_cifar10("/tmp/fake-cifar", rng.integers(0, 256, (500, 3072), dtype=np.uint8), np.arange(500) % 10,
                  rng.integers(0, 256, (100, 3072), dtype=np.uint8), np.arange(100) % 10)
    # then: labelmeta train --preset cifar10 --data-root /tmp/fake-cifar --device cpu --workers 0 --epochs 2 --warmup-epochs 1

``benchmarks/cifar_epoch.py`` times an epoch on such files and the tests read every format back
through the datasets. Only the layout is written: CIFAR's MD5 sums are not checked on reading
(:mod:`labelmeta.data.sources`), so a sub-sampled or re-packed copy loads too.
"""
from __future__ import annotations

import pickle
import struct
from pathlib import Path
from typing import Sequence

import numpy as np

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def write_cifar10(root: str | Path, train_images: np.ndarray, train_labels: Sequence[int],
                  test_images: np.ndarray, test_labels: Sequence[int]) -> Path:
    """Write a CIFAR-10 folder (``cifar-10-batches-py``: five training batches, a test batch and
    ``batches.meta``, pickled as the original) that ``torchvision.datasets.CIFAR10`` reads.

    Args:
        root: the ``data_root`` to write under (created).
        train_images, test_images: ``uint8 [N, 3072]`` rows (red, green, blue planes of 32 x 32).
        train_labels, test_labels: class ids in ``[0, 10)``.

    Returns the folder written. The training images are split over the five batches in order.
    """
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for images, labels in ((train_images, train_labels), (test_images, test_labels)):
        if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072 or len(images) != len(labels):
            raise ValueError(f"images must be uint8 [N, 3072] with N labels, got {images.dtype} {images.shape} "
                             f"and {len(labels)} labels")
    bounds = np.linspace(0, len(train_images), 6).round().astype(int)
    for i in range(5):
        lo, hi = bounds[i], bounds[i + 1]
        _dump(folder / f"data_batch_{i + 1}", {"data": train_images[lo:hi], "labels": list(map(int, train_labels[lo:hi]))})
    _dump(folder / "test_batch", {"data": test_images, "labels": list(map(int, test_labels))})
    _dump(folder / "batches.meta", {"label_names": list(CIFAR10_CLASSES)})
    return folder


def write_cifar100(root: str | Path, train_images: np.ndarray, train_labels: Sequence[int],
                   test_images: np.ndarray, test_labels: Sequence[int]) -> Path:
    """Write a CIFAR-100 folder (``cifar-100-python``: ``train``, ``test`` and ``meta``, pickled as the
    original, fine and coarse labels) that ``torchvision.datasets.CIFAR100`` reads.

    Args: as :func:`write_cifar10`, with class ids in ``[0, 100)`` (the coarse label of class ``c`` is
    ``c // 5``, and the class names are ``class_00`` ... ``class_99``).

    Returns the folder written.
    """
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, images, labels in (("train", train_images, train_labels), ("test", test_images, test_labels)):
        if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072 or len(images) != len(labels):
            raise ValueError(f"images must be uint8 [N, 3072] with N labels, got {images.dtype} {images.shape} "
                             f"and {len(labels)} labels")
        fine = list(map(int, labels))
        _dump(folder / name, {"data": images, "fine_labels": fine, "coarse_labels": [c // 5 for c in fine]})
    _dump(folder / "meta", {"fine_label_names": [f"class_{c:02d}" for c in range(100)],
                            "coarse_label_names": [f"superclass_{c:02d}" for c in range(20)]})
    return folder


def write_mnist(root: str | Path, train_images: np.ndarray, train_labels: Sequence[int],
                test_images: np.ndarray, test_labels: Sequence[int], name: str = "MNIST") -> Path:
    """Write an MNIST-format folder (``<name>/raw``: the four uncompressed IDX files) that
    ``torchvision.datasets.MNIST`` (``name="MNIST"``, dataset ``mnist``) or ``FashionMNIST``
    (``name="FashionMNIST"``, dataset ``fashion-mnist``) reads.

    Args:
        root: the ``data_root`` to write under (created).
        train_images, test_images: ``uint8 [N, 28, 28]`` grey images.
        train_labels, test_labels: class ids in ``[0, 10)``.
        name: ``"MNIST"`` or ``"FashionMNIST"``, the torchvision class that will read it.

    Returns the folder written.
    """
    if name not in ("MNIST", "FashionMNIST"):
        raise ValueError(f"name must be 'MNIST' or 'FashionMNIST', got {name!r}")
    folder = Path(root) / name / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, images, labels in (("train", train_images, train_labels), ("t10k", test_images, test_labels)):
        labels = np.asarray(labels)
        if images.dtype != np.uint8 or images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise ValueError(f"images must be uint8 [N, 28, 28] with N labels, got {images.dtype} {images.shape} "
                             f"and {len(labels)} labels")
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise ValueError(f"labels must be class ids in [0, 10), got {labels.min()} to {labels.max()}")
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))
    return folder


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes: the magic number (type 0x08, the number of dimensions), the
    dimensions as big-endian 32-bit integers, then the data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)
