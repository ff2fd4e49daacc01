"""Loading: ``(x, y, index)`` datasets and seeded loaders whose position can be saved and resumed."""
from __future__ import annotations

import itertools
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from ..distributed import check_shards, shard_bounds


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


class _Batches(Sampler):
    """The index lists of a pass's batches: the next pass first drops ``owner.pending`` of them without
    loading any data (a pass resumed mid-way, in the same order), and each is cut to this process's
    shard (``shard=(rank, world)``) before any sample is read."""

    def __init__(self, inner: BatchSampler, owner: "Loader", shard: Optional[Tuple[int, int]]) -> None:
        self.inner, self.owner, self.shard = inner, owner, shard

    def __iter__(self):
        it = iter(self.inner)
        skip, self.owner.pending = self.owner.pending, 0
        for _ in itertools.islice(it, skip):
            pass
        if self.shard is None:
            yield from it
            return
        for batch in it:
            lo, hi = shard_bounds(len(batch), *self.shard)
            yield batch[lo:hi]

    def __len__(self) -> int:
        return len(self.inner)


def _check_shard(shard: Optional[Tuple[int, int]], size: int, batch_size: int) -> None:
    """``ValueError`` unless ``shard`` is ``(rank, world)`` and every batch of a pass over ``size``
    samples gives each of the ``world`` processes a sample."""
    if shard is None:
        return
    rank, world = shard
    if not (isinstance(world, int) and isinstance(rank, int) and world >= 1 and 0 <= rank < world):
        raise ValueError(f"shard must be (rank, world) with 0 <= rank < world, got {shard!r}")
    check_shards(min(batch_size, size), world, "a batch")
    last = size % batch_size
    if last:
        check_shards(last, world, f"the last batch of each pass over {size} samples (batch size {batch_size})")


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

    Worker processes (``workers > 0``, datasets read sample by sample) draw their augmentations
    from per-worker generators seeded at each pass's start: a run resumed at an epoch's end sees
    the same augmentations (unless the workers are persistent), one resumed mid-epoch the same
    samples in the same order but other augmentations (``fit`` warns).

    ``shard=(rank, world)``: process ``rank`` of ``world`` (``torchrun``) reads only its part of each
    global batch (:func:`labelmeta.distributed.shard_bounds`); the global batches are drawn exactly as
    in one process, so the order, and a resumed position, are the same in every process. Random
    augmentations are then drawn by each process for its own samples. ``part=(rank, world)`` (without
    shuffling; evaluation): process ``rank`` reads its contiguous part of the samples, in order.
    """

    def __init__(self, dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0, *, workers: int = 0,
                 pin_memory: bool = False, persistent_workers: bool = False,
                 shard: Optional[Tuple[int, int]] = None, part: Optional[Tuple[int, int]] = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        _check_shard(shard, len(dataset), batch_size)
        if part is not None and shuffle:
            raise ValueError("part (each process's contiguous samples, for evaluation) needs shuffle=False")
        self.generator = torch.Generator().manual_seed(seed)
        self.pending = 0
        sampler = RandomSampler(dataset, generator=self.generator) if shuffle else SequentialSampler(dataset)
        if part is not None:
            sampler = range(*shard_bounds(len(dataset), *part))
        batches = _Batches(BatchSampler(sampler, batch_size, drop_last=False), self, shard)
        seeds = torch.Generator()  # the DataLoader's base seeds (see the class docstring)
        if getattr(dataset, "batched", False):  # in memory: one indexing call a batch, in this process
            self.data = DataLoader(dataset, sampler=batches, batch_size=None, generator=seeds, pin_memory=pin_memory)
        else:  # read and augmented sample by sample: worth worker processes
            self.data = DataLoader(dataset, batch_sampler=batches, generator=seeds, num_workers=workers,
                                   pin_memory=pin_memory, persistent_workers=persistent_workers and workers > 0)

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


def loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0, **options) -> Loader:
    """A seeded :class:`Loader` of ``(x, y, index)`` batches (``options``: ``workers``, ``pin_memory``,
    ``persistent_workers``; workers serve datasets read sample by sample, e.g. torchvision's; ``shard``:
    this process's part of each batch under ``torchrun``; ``part``: this process's part of the samples)."""
    return Loader(dataset, batch_size, shuffle, seed, **options)


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
