"""Splits: a dataset source's data held out into train / meta / test, with the training labels corrupted."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import warnings
from typing import Any, Mapping, Optional, Tuple

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from ..labels import check_targets
from ..noise import NOISE, NoiseKind, NoisyLabels, Samples
from .loading import Indexed, IndexedTensorDataset
from .sources import DATASETS, RawData, stratified_mask


@dataclass
class Splits:
    """Train / meta / test sets ready for the runner.

    Attributes:
        train: yields ``(x, annotated y, i)``, ``i`` in ``[0, N)`` indexing the label table.
        meta: clean held-out samples (``None`` when ``meta_per_class == 0``).
        test: yields ``(x, y, i)``.
        labels: annotated (possibly noisy) and true targets of ``train`` (the truth ``None`` where unknown).
        source_index: ``LongTensor[N]``, each training sample's place in the dataset it came from
            (``RawData.ids``: the row of a user's file; else its place in the dataset's training set).
        meta_source_index: ``LongTensor[M]``, the same for each meta sample (``None`` without a meta set).
    """

    train: Dataset
    meta: Optional[Dataset]
    test: Dataset
    labels: NoisyLabels
    num_classes: int
    input_shape: Tuple[int, ...]
    class_names: Optional[Tuple[str, ...]] = None
    source_index: Optional[Tensor] = None
    meta_source_index: Optional[Tensor] = None

    def subset(self, keep: Tensor) -> "Splits":
        """These splits with only the training samples where ``keep`` (``BoolTensor[N]``) holds,
        re-indexed ``0..M-1`` in their order (their annotations and truth with them); the meta and
        test sets unchanged. For cross-validation and for training on the samples a filter keeps."""
        n = len(self.labels.noisy)
        if keep.dtype != torch.bool or keep.shape != (n,):
            raise ValueError(f"keep must be a BoolTensor[{n}] (one flag per training sample), "
                             f"got {keep.dtype} {tuple(keep.shape)}")
        if not bool(keep.any()):
            raise ValueError("keep selects no training sample")
        idx = keep.nonzero().squeeze(1)
        true = None if self.labels.true is None else self.labels.true[idx]
        trusted = None if self.labels.trusted is None else self.labels.trusted[idx]
        labels = NoisyLabels(self.labels.noisy[idx], true, self.labels.nominal_rate, trusted)
        if isinstance(self.train, IndexedTensorDataset):
            train: Dataset = IndexedTensorDataset(self.train.x[idx], labels.noisy)
        elif isinstance(self.train, Indexed):
            train = Indexed(Subset(self.train.dataset, idx.tolist()), labels.noisy)
        else:
            raise TypeError(f"cannot take a subset of a {type(self.train).__name__} training set")
        source = None if self.source_index is None else self.source_index[idx]
        return dataclasses.replace(self, train=train, labels=labels, source_index=source)



def check_validation_split(validation_per_class: int, meta_per_class: int) -> None:
    """``ValueError`` unless ``validation_per_class`` is 0 or leaves at least one meta sample a class."""
    if validation_per_class and not 0 < validation_per_class < meta_per_class:
        raise ValueError(f"validation_per_class={validation_per_class} must be in [0, meta_per_class="
                         f"{meta_per_class}): the validation samples come out of the clean meta split, and at "
                         "least one a class stays in it")


def make_splits(
    dataset: str = "mnist1d",
    meta_per_class: int = 50,
    noise: str = "none",
    noise_rate: float = 0.0,
    seed: int = 0,
    meta_in_train: bool = False,
    validation_per_class: int = 0,
    noise_options: Optional[Mapping[str, Any]] = None,
    data_root: Optional[str] = None,
    **dataset_options: Any,
) -> Splits:
    """Load ``dataset``, hold out a clean stratified meta split (or the user's trusted samples), then
    draw the rest's annotations.

    Args:
        dataset: a name in ``DATASETS.names()``.
        meta_per_class: clean samples per class held out of the training set for the meta loss
            (0: none, the meta batches then come from the training data). A dataset that names its
            trusted samples (``RawData.trusted``) holds those out instead, and this is not used.
        noise, noise_rate, noise_options: the noise kind (a name in :data:`labelmeta.noise.NOISE`), the
            nominal rate of the kinds that take one, and the kind's declared options (built, and so any
            file it names read and checked, before the dataset is loaded); asymmetric noise uses the
            dataset's class-flip map (CIFAR-10's standard one, Patrini et al.'s for MNIST), else the
            fixed permutation ``i → i + 1 mod C``.
        seed: seeds the meta split and the noise draw.
        meta_in_train: also train on the clean meta samples (appended after the noisy ones, with
            their true labels) — the fair baseline for methods that use the meta set.
        validation_per_class: hold out this many of each class's ``meta_per_class`` clean samples as a
            validation set that takes the test set's place (``Splits.test``), for choosing
            hyper-parameters off the test set; the meta split keeps the rest (and ``meta_in_train``
            adds only those). The run then never reads the test set. 0: the test set, as usual.
        data_root: the user's data folder, handed to the dataset source.
        **dataset_options: the dataset's declared options (e.g. ``num_samples`` for ``mnist1d``);
            an option it does not declare is an error.
    """
    if meta_per_class < 0:
        raise ValueError(f"meta_per_class must be >= 0, got {meta_per_class}")
    check_validation_split(validation_per_class, meta_per_class)
    kind = NOISE.build(noise, data_root, options=noise_options)  # reads its files before the data
    raw = DATASETS.build(dataset, data_root, options=dataset_options)
    check_targets(raw.train_targets, raw.num_classes, "dataset targets")
    if len(raw.train_targets) != len(raw.train):
        raise ValueError(f"dataset has {len(raw.train)} samples but {len(raw.train_targets)} targets")
    check_own_labels(raw, dataset, noise, kind)
    if raw.trusted is not None:
        meta_mask = trusted_mask(raw, dataset)
    elif meta_per_class:
        meta_mask = stratified_mask(raw.train_targets, raw.num_classes, seed, per_class=meta_per_class)
    else:
        meta_mask = torch.zeros(len(raw.train_targets), dtype=torch.bool)
    meta_size = int(meta_mask.sum())
    train_idx, meta_idx = (~meta_mask).nonzero().squeeze(1), meta_mask.nonzero().squeeze(1)
    validation_idx = None
    if validation_per_class:  # drawn inside the meta split, so the training set and its noise are unchanged
        held = stratified_mask(raw.train_targets[meta_idx], raw.num_classes, seed + 1, per_class=validation_per_class)
        meta_idx, validation_idx = meta_idx[~held], meta_idx[held]
    samples = Samples(raw.train_targets[train_idx], raw.num_classes, noise_rate, torch.Generator().manual_seed(seed),
                      indices=train_idx, dataset_size=len(raw.train_targets), truth_known=raw.truth_known,
                      flips=raw.flips, read_inputs=lambda: read_inputs(raw, train_idx))
    labels = kind(samples)
    if not raw.truth_known and not kind.gives_truth:  # the dataset's labels are the user's, not the truth
        labels = NoisyLabels(labels.noisy, None, float("nan"))
    if meta_in_train:
        clean = raw.train_targets[meta_idx]
        true = None if labels.true is None else torch.cat([labels.true, clean])
        trusted = torch.cat([torch.zeros(len(labels.noisy), dtype=torch.bool), torch.ones(len(clean), dtype=torch.bool)])
        labels = NoisyLabels(torch.cat([labels.noisy, clean]), true, labels.nominal_rate, trusted)
        train_idx = torch.cat([train_idx, meta_idx])

    meta_source = raw.meta if raw.meta is not None else raw.train
    if isinstance(raw.train, IndexedTensorDataset):
        train: Dataset = IndexedTensorDataset(raw.train.x[train_idx], labels.noisy)
        meta = IndexedTensorDataset(raw.train.x[meta_idx], raw.train_targets[meta_idx]) if meta_size else None
        test = raw.test if validation_idx is None else \
            IndexedTensorDataset(raw.train.x[validation_idx], raw.train_targets[validation_idx])
    else:
        train = Indexed(Subset(raw.train, train_idx.tolist()), labels.noisy)
        meta = Indexed(Subset(meta_source, meta_idx.tolist()), raw.train_targets[meta_idx]) if meta_size else None
        # the validation samples are read as the test set is (no training augmentation)
        test = raw.test if validation_idx is None else \
            Indexed(Subset(meta_source, validation_idx.tolist()), raw.train_targets[validation_idx])
    source = train_idx if raw.ids is None else raw.ids[train_idx]
    # the meta set's places in its dataset: the user's rows where it came from the training file
    meta_ids = meta_idx if raw.ids is None or raw.meta is not None else raw.ids[meta_idx]
    return Splits(train, meta, test, labels, raw.num_classes, raw.input_shape, raw.class_names, source,
                  meta_ids if meta_size else None)


def trusted_mask(raw: RawData, dataset: str) -> Tensor:
    """The dataset's trusted samples as the meta set's mask (``ValueError`` for a malformed one; a
    warning naming the classes it misses, whose labels the meta loss then never sees)."""
    trusted, n = raw.trusted, len(raw.train_targets)
    if trusted.dtype != torch.bool or trusted.shape != (n,):
        raise ValueError(f"dataset {dataset!r}'s trusted samples must be a BoolTensor[{n}], "
                         f"got {trusted.dtype} {tuple(trusted.shape)}")
    if not bool(trusted.any()):
        raise ValueError(f"dataset {dataset!r} names no trusted sample: the meta set would be empty")
    if bool(trusted.all()):
        raise ValueError(f"dataset {dataset!r} trusts every sample: none is left to train on and correct")
    missing = sorted(set(range(raw.num_classes)) - set(raw.train_targets[trusted].tolist()))
    if missing:
        warnings.warn(f"dataset {dataset!r}'s trusted samples hold no sample of classes {missing}: the meta loss "
                      "never sees those classes, so their labels are learned from the others' alone", stacklevel=3)
    return trusted.clone()


def check_own_labels(raw: RawData, dataset: str, noise: str, kind: NoiseKind) -> None:
    """``ValueError`` if synthetic noise would be drawn over a user's own labels: they are not the truth,
    so the run would train on a corruption of annotations whose corruption it could never measure."""
    if not raw.truth_known and kind.synthetic:
        raise ValueError(f"dataset {dataset!r} holds your own labels, whose truth is unknown; noise {noise!r} "
                         "would corrupt them further: set noise='none' (--noise none) to train on them as they are")


def read_inputs(raw: RawData, indices: Tensor) -> Tensor:
    """The training samples ``indices`` as the noise kinds that read the samples see them (``float [N, ...]``):
    an in-memory dataset's tensor; a torchvision dataset's raw pixels (its ``data`` array: 50 000 CIFAR
    images in a second, where decoding each through its transform takes a minute); else each sample read
    through the evaluation transform."""
    if isinstance(raw.train, IndexedTensorDataset):
        return raw.train.x[indices].float()
    source = raw.meta if raw.meta is not None else raw.train
    pixels = getattr(source, "data", None)
    if pixels is not None and len(pixels) == len(raw.train_targets):
        return torch.as_tensor(pixels)[indices].float()
    return torch.stack([torch.as_tensor(source[int(i)][0]).float() for i in indices])
