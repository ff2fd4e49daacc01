"""Writing data in torchvision's on-disk formats (synthetic data for benchmarks and tests)."""
from __future__ import annotations

import pickle
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


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)
