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


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)
