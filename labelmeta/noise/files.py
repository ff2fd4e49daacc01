"""``file``: the annotations of a real noisy data set, one per training sample, read from a file.

CIFAR-10N / CIFAR-100N ship one ``torch.save`` dict a data set (``CIFAR-10_human.pt``: ``clean_label``,
``aggre_label``, ``worse_label``, ``random_label1..3``; ``CIFAR-100_human.pt``: ``clean_label``,
``noisy_label``), each an integer array over the 50 000 training images in torchvision's order.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..labels import class_ids
from ..paths import find_file
from .base import NOISE, NoiseKind, NoisyLabels, Samples

#: the suffixes read
SUFFIXES = (".npy", ".csv", ".pt", ".pth")


def _numpy_globals() -> list:
    """What a ``torch.save`` of numpy arrays pickles (CIFAR-N's dicts): allowed to a weights-only load,
    so reading a label file runs no code from it."""
    core = getattr(np, "_core", None) or np.core
    dtypes = [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, *dtypes]


def read_table(path: Path) -> Tuple[Any, str]:
    """The file's contents: a dict of columns / entries, or one array; and how to name it."""
    suffix = path.suffix.lower()
    what = f"noise file {str(path)!r}"
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False), what
        if suffix == ".csv":
            with open(path, newline="") as f:
                rows = [row for row in csv.reader(f) if row]
            if not rows:
                raise ValueError(f"{what} is empty")
            if all(_is_int(cell) for cell in rows[0]):  # no header: one column of labels
                if len(rows[0]) != 1:
                    raise ValueError(f"{what} has {len(rows[0])} columns and no header: give one column of labels, "
                                     "or a header naming the columns (and the option key)")
                return np.array([row[0] for row in rows]), what
            header, body = rows[0], rows[1:]
            return {name: np.array([row[i] if i < len(row) else "" for row in body]) for i, name in enumerate(header)}, what
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True), what
    except (ValueError, OSError, RuntimeError, EOFError, Exception) as err:
        if isinstance(err, ValueError) and str(err).startswith(what):
            raise
        raise ValueError(f"cannot read {what}: {type(err).__name__}: {err}") from None


def _is_int(text: str) -> bool:
    try:
        int(text)
        return True
    except ValueError:
        return False


def labels_of(value: Any, what: str) -> Tensor:
    """``value`` (an array, tensor, list or a CSV column of text) as ``LongTensor[M]``, else ``ValueError``
    naming ``what`` and the problem (:func:`labelmeta.labels.class_ids`; text that is not an integer too)."""
    array = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
    if array.dtype.kind in "US":  # a CSV column
        bad = [i for i, cell in enumerate(array.reshape(-1)) if not _is_int(str(cell))]
        if bad:
            raise ValueError(f"{what} holds {len(bad)} entries that are not integer class ids "
                             f"(row {bad[0]}: {str(array.reshape(-1)[bad[0]])!r})")
        array = array.astype(np.int64)
    return torch.as_tensor(class_ids(array, what))


def entry(table: Any, key: str, what: str, role: str) -> Tensor:
    """The labels ``table`` holds under ``key`` (a dict / CSV header) or, with no key, the table itself."""
    if isinstance(table, dict):
        if not key:
            raise ValueError(f"{what} holds several entries ({', '.join(map(str, table))}): name the {role} with "
                             f"the option {'key' if role == 'annotations' else 'truth_key'}")
        if key not in table:
            raise ValueError(f"{what} has no entry {key!r}; its entries: {', '.join(map(str, table))}")
        return labels_of(table[key], f"{what} entry {key!r}")
    if key:
        raise ValueError(f"{what} holds one array, not named entries: {key!r} cannot be read from it")
    return labels_of(table, what)


@NOISE.register("file")
class File(NoiseKind):
    """Each training sample's annotation read from a file covering the whole training set in the
    dataset's order (a real noisy data set's labels: CIFAR-10N's ``worse_label``...); ``noise_rate`` is
    not used. The truth is the dataset's; a ``truth_key`` in the file is checked against it (a file in
    another order is refused), and stands for it where the dataset's labels are not the truth.

    Args:
        path: ``.npy`` (an integer array), ``.csv`` (one column, or a header naming the columns) or
            ``.pt`` / ``.pth`` (a ``torch.save`` array, tensor or dict of them: CIFAR-N's
            ``CIFAR-10_human.pt``); a relative path not found as given is read from ``data_root``.
        key: the dict entry or CSV column holding the annotations (e.g. ``worse_label``).
        truth_key: the entry or column holding the truth (CIFAR-N's ``clean_label``), if any.
    """

    uses_rate = False
    synthetic = False  # the file's labels replace the dataset's: their truth is not needed

    def __init__(self, data_root: Optional[str] = None, *, path: str = "", key: str = "", truth_key: str = "") -> None:
        if not path:
            raise ValueError("noise 'file' needs the file of annotations: its option path (--noise-path), "
                             f"a {', '.join(SUFFIXES)} file")
        if Path(path).suffix.lower() not in SUFFIXES:
            raise ValueError(f"noise file must be {', '.join(SUFFIXES)}, got {path!r}")
        self.path = find_file(path, data_root, "noise file")
        table, self.what = read_table(self.path)
        self.labels = entry(table, key, self.what, "annotations")
        self.truth = entry(table, truth_key, self.what, "truth") if truth_key else None
        self.gives_truth = self.truth is not None
        if self.truth is not None and len(self.truth) != len(self.labels):
            raise ValueError(f"{self.what} has {len(self.labels)} annotations but {len(self.truth)} true labels")

    def __call__(self, samples: Samples) -> NoisyLabels:
        if len(self.labels) != samples.dataset_size:
            raise ValueError(f"{self.what} has {len(self.labels)} labels, the dataset's training set "
                             f"{samples.dataset_size} samples: give one label a training sample, in the dataset's order")
        for name, labels in (("labels", self.labels), ("true labels", self.truth)):
            if labels is not None and labels.numel() and int(labels.max()) >= samples.num_classes:
                raise ValueError(f"{self.what} holds {name} up to {int(labels.max())}, outside the dataset's "
                                 f"{samples.num_classes} classes [0, {samples.num_classes})")
        noisy = self.labels[samples.indices]
        true: Optional[Tensor] = samples.targets.clone() if samples.truth_known else None
        if self.truth is not None:
            theirs = self.truth[samples.indices]
            if true is not None and not torch.equal(theirs, true):
                differ = int((theirs != true).sum())
                raise ValueError(f"{self.what}'s true labels disagree with the dataset's on {differ} of "
                                 f"{len(true)} samples: the file is not in the dataset's order (or not its file)")
            true = theirs
        rate = float((noisy != true).double().mean()) if true is not None and len(true) else float("nan")
        return NoisyLabels(noisy=noisy, true=true, nominal_rate=rate)
