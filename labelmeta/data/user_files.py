"""Datasets from a user's own files, labelled by the user: ``arrays`` (``.npz`` / ``.pt``), ``table``
(CSV), ``image-folder`` (a sub-folder per class) and ``path-list`` (Clothing1M / WebVision-style lists
of ``relative/path.jpg label`` lines).

Their labels are annotations, not truth (``RawData.truth_known`` is ``False``): a run finds label
issues in them; it cannot say how many it corrected. The samples a user trusts (a ``trusted`` file,
array or column) become the meta set. Every file option (``path``, ``trusted``, ``test_path``...) that
is relative and not found as given is looked for under ``data_root``. Without a ``test_path``, a
stratified ``test_fraction`` of the untrusted samples is held out, and test accuracy is then accuracy
against the user's annotations.

Where the user also knows the truth, that truth is the dataset's labels and the annotations come in
as the training labels' noise (the ``file`` noise kind), not through these sources.
"""
from __future__ import annotations

import csv
import pickle
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..labels import class_ids
from ..options import check_count, check_range
from ..paths import find_file
from .loading import Indexed, IndexedTensorDataset
from .sources import DATASETS, RawData, stratified_mask

# The help of the options every source here shares, appended to each one's ``Args:`` (its last section)
# before registration reads it: written once, listed by ``labelmeta list`` for each.
_SHARED_ARGS = """
        trusted: file naming the training samples whose labels are trusted (they become the meta
            set): ``.npy`` indices or bool mask, or text with one 0-based index (in the file's order) a
            line, or for images their paths (relative to the folder, or as listed); never held out.
        test_path: the test set, in the same format; none: hold out ``test_fraction``.
        test_fraction: share of each class's untrusted samples held out as the test set when there is
            no ``test_path`` (test accuracy is then against the annotations), in (0, 1); default 0.2.
        data_seed: seed of that hold-out; default 42."""


def _shared_options(factory: Callable[..., RawData]) -> Callable[..., RawData]:
    factory.__doc__ = (factory.__doc__ or "").rstrip() + _SHARED_ARGS
    return factory


# --- files, labels and trusted samples --------------------------------------------------------------

def _find(path: Optional[str], data_root: Optional[str], where: str, option: str) -> Path:
    """``path`` as given, else under ``data_root`` when relative (:func:`~labelmeta.paths.find_file`);
    ``ValueError`` when the option is not given."""
    if not path:
        raise ValueError(f"{where} needs the option {option} (--data-{option.replace('_', '-')})")
    return find_file(path, data_root, f"{where}: {option}")


def _check_range(y: np.ndarray, num_classes: int, where: str, classes: str) -> None:
    """``ValueError`` naming the first label ``>= num_classes`` (``classes`` says where the classes come from)."""
    if len(y) and y.max() >= num_classes:
        i = int(y.argmax())
        raise ValueError(f"{where}: label {int(y[i])} of sample {i} is out of range: {classes} has "
                         f"{num_classes} classes, 0..{num_classes - 1}")


def _trusted_mask(values: Any, n: int, where: str) -> Tensor:
    """A bool mask ``[n]`` or 0-based indices as ``BoolTensor[n]``; ``ValueError`` for an index out of
    range or named twice, or for no sample trusted (:func:`labelmeta.data.make_splits` warns of the
    classes the trusted samples miss)."""
    values = np.asarray(values)
    if values.dtype == bool and values.shape != (n,):
        raise ValueError(f"{where}: a trusted mask needs one flag for each of the {n} samples, got shape {values.shape}")
    mask = torch.from_numpy(values.copy()) if values.dtype == bool else torch.zeros(n, dtype=torch.bool)
    if values.dtype != bool:
        ids = class_ids(values, f"{where} (trusted indices)")
        if len(ids) and ids.max() >= n:
            raise ValueError(f"{where}: trusted index {int(ids.max())} is out of range: there are {n} samples, 0..{n - 1}")
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"{where}: trusted index {int(unique[counts > 1][0])} is named "
                             f"{int(counts[counts > 1][0])} times")
        mask[torch.from_numpy(ids)] = True
    if not bool(mask.any()):
        raise ValueError(f"{where}: no sample is trusted; name at least one of each class")
    return mask


def _read_trusted(path: Path, n: int, keys: Optional[Sequence[str]] = None) -> Tensor:
    """The trusted samples a file names: ``.npy`` indices or mask, or text with an index (or, given
    ``keys``, a sample's key: an image's relative path) a line; blank and ``#`` lines skipped."""
    where = f"trusted file {str(path)!r}"
    if path.suffix.lower() == ".npy":
        return _trusted_mask(np.load(path, allow_pickle=False), n, where)
    lookup = {key: i for i, key in enumerate(keys)} if keys is not None else None
    ids: List[int] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            ids.append(int(text))
            continue
        except ValueError:
            pass
        key = str(PurePosixPath(text))
        if lookup is None:
            raise ValueError(f"{where}, line {number}: {text!r} is not a sample index (a 0-based integer)")
        if key not in lookup:
            raise ValueError(f"{where}, line {number}: {text!r} is neither a sample index nor the path of a "
                             "training image")
        ids.append(lookup[key])
    return _trusted_mask(np.asarray(ids, dtype=np.int64), n, where)


def _hold_out(y: Tensor, num_classes: int, trusted: Optional[Tensor], fraction: float, seed: int, where: str) -> Tensor:
    """``BoolTensor[N]``: ``fraction`` of each class's untrusted samples, drawn with ``seed``, for testing."""
    check_range(f"{where} test_fraction", fraction, 0.0, 1.0, low_open=True)
    pool = torch.arange(len(y)) if trusted is None else (~trusted).nonzero().squeeze(1)
    held = torch.zeros(len(y), dtype=torch.bool)
    held[pool[stratified_mask(y[pool], num_classes, seed, fraction=fraction)]] = True
    if not held.any() or held.all():
        raise ValueError(f"{where}: test_fraction={fraction} of its {len(pool)} untrusted samples leaves "
                         f"{'no test' if not held.any() else 'no training'} sample; give a test_path or another test_fraction")
    return held


def _in_memory(x: Tensor, y: Tensor, test: Optional[Tuple[Tensor, Tensor]], num_classes: int,
               names: Optional[Tuple[str, ...]], trusted: Optional[Tensor], standardize: bool,
               test_fraction: float, data_seed: int, where: str) -> RawData:
    """The :class:`RawData` of in-memory features ``x`` and annotations ``y`` (the test set held out
    when ``test`` is ``None``)."""
    ids = torch.arange(len(y))  # each sample's place in the file, kept through the hold-out
    if test is None:
        held = _hold_out(y, num_classes, trusted, test_fraction, data_seed, where)
        test, x, y, ids = (x[held], y[held]), x[~held], y[~held], ids[~held]
        trusted = trusted[~held] if trusted is not None else None
    xt, yt = test
    if standardize:  # by the training samples' statistics alone; a constant feature only centred
        mean, std = x.mean(0), x.std(0, unbiased=False)
        std = torch.where(std > 0, std, torch.ones_like(std))
        x, xt = (x - mean) / std, (xt - mean) / std
    return RawData(IndexedTensorDataset(x, y), y, IndexedTensorDataset(xt, yt), num_classes, tuple(x.shape[1:]),
                   class_names=names, truth_known=False, trusted=trusted, ids=ids)


# --- arrays ---------------------------------------------------------------------------------------

def _load_arrays(path: Path) -> Dict[str, np.ndarray]:
    """The named arrays of a ``.npz`` file or of a ``.pt`` file holding a dict (loaded weights-only)."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as file:
                return {key: file[key] for key in file.files}
        except ValueError as err:  # object arrays, or not an npz at all
            raise ValueError(f"array file {str(path)!r} cannot be read without pickle: {err}") from None
    if suffix in (".pt", ".pth"):
        try:
            content = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
            raise ValueError(f"array file {str(path)!r} cannot be read as a dict of tensors: {err}") from None
        if not isinstance(content, dict):
            raise ValueError(f"array file {str(path)!r} holds a {type(content).__name__}, not a dict such as "
                             "{'x': features, 'y': labels}")
        return {str(k): v.numpy() if isinstance(v, Tensor) else np.asarray(v) for k, v in content.items()}
    raise ValueError(f"array file {str(path)!r}: unknown suffix {path.suffix!r}; arrays reads .npz and .pt files")


def _features_and_labels(path: Path) -> Tuple[Tensor, np.ndarray, Dict[str, np.ndarray]]:
    """``x`` as ``FloatTensor[N, ...]``, ``y`` as class ids, and every array of an array file."""
    where = f"array file {str(path)!r}"
    arrays = _load_arrays(path)
    for key in ("x", "y"):
        if key not in arrays:
            raise ValueError(f"{where} has no array {key!r}; its arrays: {', '.join(arrays) or 'none'}")
    x, y = arrays["x"], class_ids(arrays["y"], where)
    if x.dtype != bool and not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{where}: x must be numeric features, got dtype {x.dtype}")
    if x.ndim == 0 or len(x) != len(y):
        raise ValueError(f"{where}: x has {len(x) if x.ndim else 0} samples but y has {len(y)}")
    if len(y) == 0:
        raise ValueError(f"{where} holds no samples")
    x = torch.as_tensor(x.astype(np.float32).reshape(len(y), 1) if x.ndim == 1 else x.astype(np.float32))
    finite = torch.isfinite(x.reshape(len(x), -1)).all(1)
    if not finite.all():
        raise ValueError(f"{where}: sample {int((~finite).nonzero()[0])} of x is not finite (NaN or infinite)")
    return x, y, arrays


@DATASETS.register("arrays")
@_shared_options
def arrays(data_root: Optional[str] = None, *, path: Optional[str] = None, standardize: bool = True,
           trusted: Optional[str] = None, test_path: Optional[str] = None, test_fraction: float = 0.2,
           data_seed: int = 42) -> RawData:
    """Features and labels from a ``.npz`` or ``.pt`` file: ``x`` (numbers, ``[N, ...]``), ``y`` (class
    ids ``[N]``), optional ``trusted`` (bool mask or indices) and ``classes`` (a name per class).

    Args:
        path: the ``.npz`` (``numpy.savez``) or ``.pt`` (``torch.save`` of a dict) file; a relative
            path not found as given is looked for under data_root (so are the other files).
        standardize: standardise each feature by the training samples' mean and deviation; default True.
    """
    source = _find(path, data_root, "dataset 'arrays'", "path")
    where = f"array file {str(source)!r}"
    x, y, content = _features_and_labels(source)
    names = tuple(str(n) for n in content["classes"].reshape(-1)) if "classes" in content else None
    num_classes = len(names) if names is not None else int(y.max()) + 1
    _check_range(y, num_classes, where, "its 'classes' array" if names is not None else "the file")
    mask = None
    if "trusted" in content and trusted:
        raise ValueError(f"{where} holds a 'trusted' array and the option trusted={trusted!r} names a file too: give one")
    if "trusted" in content:
        mask = _trusted_mask(content["trusted"], len(y), f"{where} ('trusted')")
    elif trusted:
        mask = _read_trusted(_find(trusted, data_root, where, "trusted"), len(y))
    test = None
    if test_path:
        test_file = _find(test_path, data_root, where, "test_path")
        xt, yt, _ = _features_and_labels(test_file)
        if xt.shape[1:] != x.shape[1:]:
            raise ValueError(f"test file {str(test_file)!r}: its samples have shape {tuple(xt.shape[1:])}, the "
                             f"training file's {tuple(x.shape[1:])}")
        _check_range(yt, num_classes, f"test file {str(test_file)!r}", f"the training file {str(source)!r}")
        test = (xt, torch.from_numpy(yt))
    return _in_memory(x, torch.from_numpy(y), test, num_classes, names, mask, standardize, test_fraction,
                      data_seed, where)


# --- table ----------------------------------------------------------------------------------------

def _read_csv(path: Path, delimiter: str) -> Tuple[List[str], List[List[str]], List[int]]:
    """The header, the data rows and each row's line number; ``ValueError`` for an empty file, a header
    naming a column twice, or a row with another number of fields."""
    with open(path, newline="", encoding="utf-8-sig") as file:  # utf-8-sig: a spreadsheet's byte-order mark
        reader = csv.reader(file, delimiter=delimiter)
        header = next(reader, None)
        if not header:
            raise ValueError(f"table {str(path)!r} is empty: no header row")
        header = [name.strip() for name in header]
        twice = sorted({name for name in header if header.count(name) > 1})
        if twice:
            raise ValueError(f"table {str(path)!r}: the header names column {twice[0]!r} twice")
        rows, lines = [], []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ValueError(f"table {str(path)!r}, line {reader.line_num}: {len(row)} fields, the header "
                                 f"has {len(header)} (is the delimiter {delimiter!r} right?)")
            rows.append(row)
            lines.append(reader.line_num)
    if not rows:
        raise ValueError(f"table {str(path)!r} has a header but no data rows")
    return header, rows, lines


def _column(header: List[str], name: str, where: str, option: str) -> int:
    if name not in header:
        raise ValueError(f"{where} has no column {name!r} ({option}); its columns: {', '.join(header)}")
    return header.index(name)


def _as_int(text: str) -> Optional[int]:
    try:
        return int(text)
    except ValueError:
        return None


def _table_labels(cells: List[str], lines: List[int], where: str,
                  classes: Optional[Tuple[Optional[Tuple[str, ...]], int]] = None) -> Tuple[np.ndarray, Optional[Tuple[str, ...]]]:
    """Class ids from a label column and the class names: integer ids as they are (no names), else the
    names mapped to their rank among the sorted names. ``classes``: the training table's ``(names,
    num_classes)``, which a test table's labels must fall within."""
    texts = [cell.strip() for cell in cells]
    for text, line in zip(texts, lines):
        if not text:
            raise ValueError(f"{where}, line {line}: the label is empty")
    ints = [_as_int(text) for text in texts]
    names = classes[0] if classes is not None else None
    if classes is None:
        is_int = [v is not None for v in ints]
        if all(is_int):
            names = None
        elif any(is_int):
            i, j = is_int.index(True), is_int.index(False)
            raise ValueError(f"{where}: the label column mixes class ids ({texts[i]!r}, line {lines[i]}) and "
                             f"names ({texts[j]!r}, line {lines[j]}); use one or the other")
        else:
            names = tuple(sorted(set(texts)))
    if names is not None:
        index = {name: c for c, name in enumerate(names)}
        for text, line in zip(texts, lines):
            if text not in index:
                raise ValueError(f"{where}, line {line}: label {text!r} is not a class of the training table "
                                 f"({', '.join(names[:10])}{' ...' if len(names) > 10 else ''})")
        return np.asarray([index[text] for text in texts], dtype=np.int64), names
    for text, value, line in zip(texts, ints, lines):
        if value is None or value < 0:
            raise ValueError(f"{where}, line {line}: label {text!r} is not a class id (an integer >= 0), as the "
                             "training table's labels are")
        if classes is not None and value >= classes[1]:
            raise ValueError(f"{where}, line {line}: label {value} is out of range: the training table has "
                             f"{classes[1]} classes, 0..{classes[1] - 1}")
    return np.asarray(ints, dtype=np.int64), None


def _table_features(header: List[str], rows: List[List[str]], lines: List[int], columns: List[int], where: str) -> Tensor:
    """``FloatTensor[N, len(columns)]``; ``ValueError`` naming the line and column of the first cell
    that is not a finite number."""
    block = [[row[j] for j in columns] for row in rows]
    try:  # one conversion of the whole block; cell by cell (to name the culprit) only when it fails
        values = np.asarray(block, dtype=np.str_).astype(np.float64)
        if np.isfinite(values).all():
            return torch.as_tensor(values, dtype=torch.float32)
    except ValueError:
        pass
    values = np.empty((len(rows), len(columns)))
    for r, cells in enumerate(block):
        for k, cell in enumerate(cells):
            try:
                values[r, k] = float(cell)
            except ValueError:
                raise ValueError(f"{where}, line {lines[r]}, column {header[columns[k]]!r}: {cell!r} is not a number") from None
            if not np.isfinite(values[r, k]):
                raise ValueError(f"{where}, line {lines[r]}, column {header[columns[k]]!r}: {cell!r} is not a finite number")
    return torch.as_tensor(values, dtype=torch.float32)


def _parse_table(path: Path, label_column: str, feature_columns: Optional[List[str]], trusted_column: Optional[str],
                 delimiter: str, classes: Optional[Tuple[Optional[Tuple[str, ...]], int]] = None
                 ) -> Tuple[Tensor, np.ndarray, Optional[Tuple[str, ...]], Optional[Tensor], List[str]]:
    """A table's features, labels, class names, trusted flags (or ``None``) and feature column names
    (``classes``: as in :func:`_table_labels`)."""
    where = f"table {str(path)!r}"
    header, rows, lines = _read_csv(path, delimiter)
    label = _column(header, label_column, where, "label_column")
    flag = _column(header, trusted_column, where, "trusted_column") if trusted_column else None
    if feature_columns is None:
        columns = [j for j in range(len(header)) if j not in (label, flag)]
    else:
        columns = [_column(header, name, where, "feature_columns") for name in feature_columns]
    if not columns:
        raise ValueError(f"{where} has no feature column: its columns are {', '.join(header)}")
    x = _table_features(header, rows, lines, columns, where)
    y, names = _table_labels([row[label] for row in rows], lines, where, classes)
    flags = None
    if flag is not None:
        truth = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
        cells = [row[flag].strip().lower() for row in rows]
        for cell, line in zip(cells, lines):
            if cell not in truth:
                raise ValueError(f"{where}, line {line}, column {trusted_column!r}: {cell!r} is not one of 0, 1, "
                                 "true, false, yes, no")
        flags = _trusted_mask(np.asarray([truth[cell] for cell in cells]), len(rows), f"{where}, column {trusted_column!r}")
    return x, y, names, flags, [header[j] for j in columns]


@DATASETS.register("table")
@_shared_options
def table(data_root: Optional[str] = None, *, path: Optional[str] = None, label_column: Optional[str] = None,
          feature_columns: Optional[str] = None, trusted_column: Optional[str] = None, delimiter: str = ",",
          standardize: bool = True, trusted: Optional[str] = None, test_path: Optional[str] = None,
          test_fraction: float = 0.2, data_seed: int = 42) -> RawData:
    """A CSV table with a header row: a label column (class ids 0, 1, ... or class names, taken in sorted
    order) and numeric feature columns.

    Args:
        path: the CSV file; a relative path not found as given is looked for under data_root (so
            are the other files).
        label_column: the column of the labels (required).
        feature_columns: the feature columns, comma-separated; none: every column but the label and
            trusted ones.
        trusted_column: a column marking the trusted rows (1 / 0, true / false, yes / no).
        delimiter: the field separator, one character or "tab"; default ",".
        standardize: standardise each feature by the training rows' mean and deviation; default True.
    """
    source = _find(path, data_root, "dataset 'table'", "path")
    where = f"table {str(source)!r}"
    if not label_column:
        raise ValueError(f"dataset 'table' needs the option label_column (--data-label-column), the name of "
                         f"the label column of {str(source)!r}")
    if trusted_column and trusted:
        raise ValueError(f"{where}: give the trusted rows once, as trusted_column={trusted_column!r} or as the "
                         f"file trusted={trusted!r}")
    delimiter = "\t" if delimiter.lower() in ("tab", "\\t") else delimiter
    if len(delimiter) != 1:
        raise ValueError(f"{where}: delimiter must be one character (or 'tab'), got {delimiter!r}")
    features = [name.strip() for name in feature_columns.split(",")] if feature_columns else None
    x, y, names, mask, columns = _parse_table(source, label_column, features, trusted_column, delimiter)
    num_classes = len(names) if names is not None else int(y.max()) + 1
    if trusted:
        mask = _read_trusted(_find(trusted, data_root, where, "trusted"), len(y))
    test = None
    if test_path:
        xt, yt, _, _, _ = _parse_table(_find(test_path, data_root, where, "test_path"), label_column, columns,
                                       None, delimiter, classes=(names, num_classes))
        test = (xt, torch.from_numpy(yt))
    return _in_memory(x, torch.from_numpy(y), test, num_classes, names, mask, standardize, test_fraction,
                      data_seed, where)


# --- images ---------------------------------------------------------------------------------------

class ImageList(Dataset):
    """``(transform(image), label)`` samples read from image files (PIL, RGB: torchvision's default loader).

    Args:
        samples: ``(file path, class id)`` pairs.
        transform: from a PIL image to a tensor.
    """

    def __init__(self, samples: Sequence[Tuple[str, int]], transform: Callable[[Any], Tensor]) -> None:
        from torchvision.datasets.folder import default_loader

        self.samples, self.transform, self.load = list(samples), transform, default_loader
        self.targets = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Tuple[Tensor, int]:
        path, label = self.samples[i]
        return self.transform(self.load(path)), label


def _image_data(samples: List[Tuple[str, int]], keys: List[str], test: Optional[List[Tuple[str, int]]],
                num_classes: int, names: Optional[Tuple[str, ...]], image_size: int, augment: bool,
                trusted_file: Optional[Path], test_fraction: float, data_seed: int, where: str) -> RawData:
    """The :class:`RawData` of labelled image files (``keys``: the names a trusted file may use for them)."""
    from torchvision import transforms

    size = check_count(f"{where} image_size", image_size)
    y = torch.as_tensor([label for _, label in samples], dtype=torch.long)
    trusted = _read_trusted(trusted_file, len(samples), keys) if trusted_file is not None else None
    ids = torch.arange(len(y))  # each sample's place in the folder's or list's order, kept through the hold-out
    if test is None:
        held = _hold_out(y, num_classes, trusted, test_fraction, data_seed, where)
        test = [s for s, h in zip(samples, held.tolist()) if h]
        samples, y, ids = [s for s, h in zip(samples, held.tolist()) if not h], y[~held], ids[~held]
        trusted = trusted[~held] if trusted is not None else None
    # a fixed square size (batches need one shape) and [-1, 1] inputs: what a small CNN trained from scratch expects
    evaluate = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                                   transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    train = evaluate
    if augment:
        train = transforms.Compose([transforms.Resize((size, size)), transforms.RandomCrop(size, padding=size // 8),
                                    transforms.RandomHorizontalFlip(), *evaluate.transforms[1:]])
    return RawData(ImageList(samples, train), y, Indexed(ImageList(test, evaluate)), num_classes, (3, size, size),
                   meta=ImageList(samples, evaluate) if augment else None, class_names=names, truth_known=False,
                   trusted=trusted, ids=ids)


def _folder_samples(folder: Path, where: str, classes: Optional[Tuple[str, ...]] = None
                    ) -> Tuple[List[Tuple[str, int]], List[str], Tuple[str, ...]]:
    """The ``(path, class id)`` images of a folder with a sub-folder per class (torchvision's
    ``ImageFolder`` order), their paths relative to ``folder``, and the class names (``classes``: the
    training folder's, which a test folder's sub-folders must be among)."""
    from torchvision.datasets import ImageFolder

    if not folder.is_dir():
        raise NotADirectoryError(f"{where} is not a folder (of a sub-folder of images per class)")
    try:
        found = ImageFolder(str(folder))
    except FileNotFoundError as err:  # no class folder, or one without an image: torchvision's words, our file's name
        raise FileNotFoundError(f"{where}: {err}") from None
    if classes is not None:
        unknown = sorted(set(found.classes) - set(classes))
        if unknown:
            raise ValueError(f"{where}: class folder {unknown[0]!r} is not a class of the training folder "
                             f"({', '.join(classes[:10])}{' ...' if len(classes) > 10 else ''})")
        ids = [classes.index(found.classes[label]) for _, label in found.samples]
        found.samples = [(p, c) for (p, _), c in zip(found.samples, ids)]
    keys = [Path(p).relative_to(folder).as_posix() for p, _ in found.samples]
    return found.samples, keys, tuple(classes if classes is not None else found.classes)


@DATASETS.register("image-folder")
@_shared_options
def image_folder(data_root: Optional[str] = None, *, path: Optional[str] = None, image_size: int = 32,
                 augment: bool = False, trusted: Optional[str] = None, test_path: Optional[str] = None,
                 test_fraction: float = 0.2, data_seed: int = 42) -> RawData:
    """Images in a folder with a sub-folder per class (torchvision's ``ImageFolder``: the class names
    are the sub-folders', in sorted order), resized to a square and scaled to [-1, 1].

    Args:
        path: the folder; a relative path not found as given is looked for under data_root (so are
            the other files).
        image_size: side of the square the images are resized to; default 32.
        augment: random crops (padding image_size / 8) and horizontal flips of the training images; default False.
    """
    folder = _find(path, data_root, "dataset 'image-folder'", "path")
    where = f"image folder {str(folder)!r}"
    samples, keys, names = _folder_samples(folder, where)
    test = None
    if test_path:
        test_folder = _find(test_path, data_root, where, "test_path")
        test, _, _ = _folder_samples(test_folder, f"test folder {str(test_folder)!r}", names)
    trusted_file = _find(trusted, data_root, where, "trusted") if trusted else None
    return _image_data(samples, keys, test, len(names), names, image_size, augment, trusted_file, test_fraction,
                       data_seed, where)


def _read_path_list(path: Path, root: Path) -> Tuple[List[Tuple[str, int]], List[str]]:
    """The ``(image path under root, label)`` samples of a list of ``relative/path label`` lines and the
    paths as written; ``ValueError`` naming the line of a malformed one, or the images missing."""
    where = f"path list {str(path)!r}"
    samples, keys, missing = [], [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().rsplit(None, 1)  # from the right: a path may hold spaces
        label = _as_int(parts[-1]) if len(parts) == 2 else None
        if label is None or label < 0:
            raise ValueError(f"{where}, line {number}: expected 'relative/path.jpg label' with a class id "
                             f"(an integer >= 0), got {line.strip()!r}")
        image = root / parts[0]
        if not image.is_file():
            missing.append(f"{parts[0]!r} (line {number})")
        samples.append((str(image), label))
        keys.append(str(PurePosixPath(parts[0])))
    if missing:
        raise FileNotFoundError(f"{where}: {len(missing)} image(s) not found under {str(root)!r}: "
                                f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if not samples:
        raise ValueError(f"{where} is empty")
    return samples, keys


@DATASETS.register("path-list")
@_shared_options
def path_list(data_root: Optional[str] = None, *, path: Optional[str] = None, image_root: Optional[str] = None,
              classes: Optional[str] = None, image_size: int = 32, augment: bool = False,
              trusted: Optional[str] = None, test_path: Optional[str] = None, test_fraction: float = 0.2,
              data_seed: int = 42) -> RawData:
    """Images named by a text list of ``relative/path.jpg label`` lines (Clothing1M's, WebVision's), read
    under a root folder, resized to a square and scaled to [-1, 1].

    Args:
        path: the list file; a relative path not found as given is looked for under data_root (so
            are the other files).
        image_root: the folder the listed paths are relative to; none: the list file's folder.
        classes: a text file with a class name a line (line i names class i); none: classes
            0..largest label, unnamed.
        image_size: side of the square the images are resized to; default 32.
        augment: random crops (padding image_size / 8) and horizontal flips of the training images; default False.
    """
    listing = _find(path, data_root, "dataset 'path-list'", "path")
    where = f"path list {str(listing)!r}"
    base = _find(image_root, data_root, where, "image_root") if image_root else listing.parent
    samples, keys = _read_path_list(listing, base)
    names = None
    if classes:
        names = tuple(line.strip() for line in _find(classes, data_root, where, "classes").read_text().splitlines()
                      if line.strip())
    labels = np.asarray([label for _, label in samples], dtype=np.int64)
    num_classes = len(names) if names is not None else int(labels.max()) + 1
    _check_range(labels, num_classes, where, f"the classes file {classes!r}" if names is not None else "the list")
    test = None
    if test_path:
        test_listing = _find(test_path, data_root, where, "test_path")
        test, _ = _read_path_list(test_listing, base)
        _check_range(np.asarray([label for _, label in test], dtype=np.int64), num_classes,
                     f"test list {str(test_listing)!r}", f"the training list {str(listing)!r}")
    trusted_file = _find(trusted, data_root, where, "trusted") if trusted else None
    return _image_data(samples, keys, test, num_classes, names, image_size, augment, trusted_file, test_fraction,
                       data_seed, where)


__all__ = ["ImageList", "arrays", "image_folder", "path_list", "table"]
