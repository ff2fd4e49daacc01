"""Several processes (``torchrun``): sharded batches, exact label gradients, labels kept in sync.

Every process draws the same global batches (same seed, same order) and reads only its shard of
each: :func:`labelmeta.data.loader` with ``shard=(rank, world)`` cuts each global batch of indices
before any sample is loaded or transformed (:func:`shard_bounds`; :meth:`Distributed.shard_batch` cuts a
batch already loaded). The learner is handed the shards and learns the global batch's sizes with one
small all-gather a step (:meth:`Distributed.shares`). A training loss on a shard is scaled by
``world * n_local / n_global``, so that averaging the gradients over processes gives the gradient of
the global batch mean even for uneven shards.

- The model step: the model is wrapped in ``DistributedDataParallel``, which averages gradients.
- The unroll runs on the local module; each inner gradient is averaged over processes with a
  differentiable all-reduce, so every process unrolls the same global step and the meta-gradient
  flows back to every process's labels. The meta batch is sharded the same way.
- Label gradients are summed over processes before the label optimiser steps, identically on
  every process: a per-class row gets the contributions of all processes, a per-sample row
  those of the process that trained on the sample. Label buffers updated by ``observe`` see the
  whole global batch (its outputs are gathered), so every process holds the same labels.
- Per-sample weights (learning to reweight, the default's, Meta-Weight-Net's) belong to the global
  batch: they are normalised by their sum over every process (for Meta-Weight-Net differentiably,
  so its network's gradient, summed over processes, is the global one), and a weighted loss on a
  shard is scaled by ``world`` so that the processes' average is the global weighted sum. The step's
  weights, its losses and its meta loss are reported for the global batch on every process.

With BatchNorm, batch statistics are those of each shard (as with plain DDP); use an equivalent
single-process batch only for models without BatchNorm when comparing bit for bit.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from .typing import Batch


def shard_bounds(n: int, rank: int, world: int) -> Tuple[int, int]:
    """``(lo, hi)``: the part ``[lo, hi)`` of a global batch of ``n`` samples that process ``rank`` of
    ``world`` trains on (contiguous, sizes differing by at most one)."""
    lo, hi = (round(n * r / world) for r in (rank, rank + 1))
    return lo, hi


def check_shards(n: int, world: int, what: str = "a batch") -> None:
    """``ValueError`` unless a global batch of ``n`` samples gives every one of ``world`` processes a sample."""
    if n < world:
        raise ValueError(f"{what} of {n} samples cannot be shared by {world} processes: use batches "
                         f"of at least {world}")


@dataclass
class Shares:
    """One step's global batch sizes, as every process learns them (:meth:`Distributed.shares`)."""

    sizes: List[int]                    #: each process's training shard size
    meta_sizes: Optional[List[int]]     #: each process's meta shard size (``None``: no meta batch this step)

    def scale(self, rank: int) -> float:
        """The factor on this process's training loss (a batch mean) that makes the processes' average
        the global batch mean."""
        return len(self.sizes) * self.sizes[rank] / sum(self.sizes)

    def meta_scale(self, rank: int) -> float:
        """The factor on this process's meta loss (a batch mean) that makes the processes' sum the
        global meta batch mean."""
        assert self.meta_sizes is not None
        return self.meta_sizes[rank] / sum(self.meta_sizes)


class Processes:
    """The processes that take each step together, as labelmeta uses them: here one, alone, whose
    collectives are the identity. :class:`Distributed` is several under ``torchrun``; the learner and the
    strategies call the same methods either way, so neither branches on how many there are.
    """

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes outputs, checkpoints and progress."""
        return self.rank == 0

    @property
    def shard(self) -> Optional[Tuple[int, int]]:
        """``(rank, world)``, the part of every global batch this process reads; ``None`` in one process."""
        return None

    def shares(self, batch: Batch, meta_batch: Optional[Batch]) -> Shares:
        """Every process's shard sizes of this step's batches."""
        return Shares([len(batch[2])], None if meta_batch is None else [len(meta_batch[2])])

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the real model step runs: the model itself (several processes: in DDP)."""
        return model

    def mean_differentiable(self, grads: Sequence[Optional[Tensor]]) -> Sequence[Optional[Tensor]]:
        """Gradients averaged over processes, keeping the graph (the unroll's inner gradients)."""
        return grads

    def share(self, grads: Sequence[Optional[Tensor]]) -> Sequence[Optional[Tensor]]:
        """This process's part of a derivative of an average over processes (each process's term is
        divided by their number): ``grads`` here, ``grads / world`` in several."""
        return grads

    def sum(self, grads: Sequence[Optional[Tensor]], like: Sequence[Tensor]) -> Sequence[Optional[Tensor]]:
        """Each process's part of a gradient made whole (summed over processes; zeros for ``None`` first,
        shaped as ``like``, where there are several): ``grads`` as they are here."""
        return grads

    def total(self, value: Tensor) -> Tensor:
        """``value`` summed over processes, keeping the graph; as it is here."""
        return value

    def sum_(self, tensors: Sequence[Optional[Tensor]]) -> None:
        """Sum over processes, in place (label gradients); nothing to do here."""

    def gather(self, tensor: Tensor, sizes: Optional[Sequence[int]] = None) -> Tensor:
        """Every process's ``tensor`` concatenated along dim 0 in rank order (the global batch's order)."""
        return tensor

    def broadcast_(self, tensors: Sequence[Tensor]) -> None:
        """Rank 0's values of ``tensors``, in place, on every process; nothing to do here."""

    def step_figures(self, shares: Shares, loss: float, meta_loss: Optional[float], weights: Optional[Tensor],
                     indices: Tensor) -> Tuple[float, Optional[float], Optional[Tensor], Tensor]:
        """A step's figures for the global batch: its loss and meta loss, and its samples' weights and indices."""
        return loss, meta_loss, weights, indices


#: the one process of a run without ``torchrun``
ONE_PROCESS = Processes()


class Distributed(Processes):
    """Several processes under ``torchrun``: rank, world size and the few collectives needed."""

    def __init__(self, rank: int, world: int) -> None:
        self.rank, self.world = rank, world

    @property
    def shard(self) -> Optional[Tuple[int, int]]:
        return self.rank, self.world

    def shard_batch(self, batch: Batch) -> Batch:
        """This process's part of a global batch already loaded (the loaders of a run load only the
        part: :func:`labelmeta.data.loader`'s ``shard``)."""
        n = len(batch[0])
        check_shards(n, self.world)
        lo, hi = shard_bounds(n, self.rank, self.world)
        return tuple(t[lo:hi] for t in batch)

    def shares(self, batch: Batch, meta_batch: Optional[Batch]) -> Shares:
        """Every process's shard sizes of this step's batches (one all-gather of a few integers).

        ``ValueError`` if every process holds the same batch: each must be handed its own shard.
        """
        device = batch[2].device
        mine = torch.tensor([len(batch[2]), int(batch[2][0]), -1 if meta_batch is None else len(meta_batch[2])],
                            device=device)
        parts = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(parts, mine)
        rows = torch.stack(parts).tolist()
        if self.world > 1 and all(row[:2] == rows[0][:2] for row in rows):
            raise ValueError(f"every one of the {self.world} processes was handed the same batch (of {rows[0][0]} "
                             f"samples, starting with sample {rows[0][1]}): under torchrun each process steps on its "
                             "shard of the global batch (labelmeta.data.loader(..., shard=(rank, world)), or "
                             "Distributed.shard_batch(global_batch))")
        if len({row[2] < 0 for row in rows}) > 1:
            raise ValueError("some processes were handed a meta batch and some not: they must follow one schedule")
        return Shares([row[0] for row in rows], None if rows[0][2] < 0 else [row[2] for row in rows])

    def wrap(self, model: nn.Module) -> nn.Module:
        # the real step goes through DDP (gradient averaging); the unroll uses the local module
        return DistributedDataParallel(model)

    def mean_differentiable(self, grads: Sequence[Optional[Tensor]]) -> List[Optional[Tensor]]:
        return [None if g is None else self.total(g) / self.world for g in grads]

    def share(self, grads: Sequence[Optional[Tensor]]) -> List[Optional[Tensor]]:
        return [None if g is None else g / self.world for g in grads]

    def sum(self, grads: Sequence[Optional[Tensor]], like: Sequence[Tensor]) -> List[Tensor]:
        out = [torch.zeros_like(p) if g is None else g for p, g in zip(like, grads)]
        self.sum_(out)
        return out

    def total(self, value: Tensor) -> Tensor:
        """``value`` summed over processes, keeping the graph: the backward of the sum hands every
        process the gradients of all of them (normalising per-sample weights over the global batch)."""
        # torch's functional collectives carry an autograd rule (the backward of a sum is a sum)
        return funcol.wait_tensor(funcol.all_reduce(value, "sum", dist.group.WORLD))

    @torch.no_grad()
    def sum_(self, tensors: Sequence[Optional[Tensor]]) -> None:
        for t in tensors:
            if t is not None:
                dist.all_reduce(t)

    @torch.no_grad()
    def gather(self, tensor: Tensor, sizes: Optional[Sequence[int]] = None) -> Tensor:
        """Concatenate every process's ``tensor`` along dim 0, in rank order (the global batch's order).

        ``sizes``: every process's length, when known (:class:`Shares`); else gathered first.
        """
        if sizes is None:
            parts = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(self.world)]
            dist.all_gather(parts, torch.tensor([len(tensor)], device=tensor.device))
            sizes = [int(s.item()) for s in parts]
        longest = max(sizes)
        padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
        padded[: len(tensor)] = tensor
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    @torch.no_grad()
    def broadcast_(self, tensors: Sequence[Tensor]) -> None:
        for t in tensors:
            dist.broadcast(t, 0)

    def step_figures(self, shares: Shares, loss: float, meta_loss: Optional[float], weights: Optional[Tensor],
                     indices: Tensor) -> Tuple[float, Optional[float], Optional[Tensor], Tensor]:
        """Losses summed over processes (each process's is its share), the weights and indices of every
        process in the global batch's order: the same on every process."""
        figures = torch.tensor([loss / self.world, meta_loss or 0.0], dtype=torch.float64, device=indices.device)
        self.sum_([figures])
        if weights is not None:
            weights, indices = self.gather(weights, shares.sizes), self.gather(indices, shares.sizes)
        return figures[0].item(), (None if meta_loss is None else figures[1].item()), weights, indices


def from_environment(device: str) -> Processes:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1), else :data:`ONE_PROCESS`.

    Backend: gloo on the CPU, NCCL on CUDA devices (each process on ``cuda:LOCAL_RANK``).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return ONE_PROCESS
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size())


def shutdown() -> None:
    """Leave the process group, if one is joined: a barrier first, so no process tears down its
    connections while another is still in a collective, then ``destroy_process_group``."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
