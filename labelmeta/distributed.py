"""Several processes (``torchrun``): sharded batches, exact label gradients, labels kept in sync.

Every process reads the same global batch (same seed, same order) and keeps its shard. A
training loss on a shard is scaled by ``world * n_local / n_global``, so that averaging the
gradients over processes gives the gradient of the global batch mean even for uneven shards.

- The model step: the model is wrapped in ``DistributedDataParallel``, which averages gradients.
- The unroll runs on the local module; each inner gradient is averaged over processes with a
  differentiable all-reduce, so every process unrolls the same global step and the meta-gradient
  flows back to every process's labels. The meta batch is sharded the same way.
- Label gradients are summed over processes before the label optimiser steps, identically on
  every process: a per-class row gets the contributions of all processes, a per-sample row
  those of the process that trained on the sample. Label buffers updated by ``observe`` see the
  whole global batch (its outputs are gathered), so every process holds the same labels.

With BatchNorm, batch statistics are those of each shard (as with plain DDP); use an equivalent
single-process batch only for models without BatchNorm when comparing bit for bit.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor

from .typing import Batch


class Distributed:
    """The process group as labelmeta uses it: rank, world size and the few collectives needed."""

    def __init__(self, rank: int, world: int) -> None:
        self.rank, self.world = rank, world

    @property
    def is_main(self) -> bool:
        """Whether this process writes outputs, checkpoints and progress."""
        return self.rank == 0

    def shard(self, batch: Batch) -> Tuple[Batch, float]:
        """This process's part of a global batch, and the loss scale that makes shards add up."""
        n = len(batch[0])
        bounds = torch.linspace(0, n, self.world + 1).round().long().tolist()
        lo, hi = bounds[self.rank], bounds[self.rank + 1]
        if hi <= lo:
            raise ValueError(f"a batch of {n} samples cannot be shared by {self.world} processes: use batches "
                             f"of at least {self.world}")
        return tuple(t[lo:hi] for t in batch), self.world * (hi - lo) / n

    def mean_differentiable(self, grads: Sequence[Optional[Tensor]]) -> List[Optional[Tensor]]:
        """Average over processes, keeping the graph (the unroll's inner gradients)."""
        # torch's functional collectives carry an autograd rule (the backward of a sum is a sum)
        import torch.distributed._functional_collectives as funcol

        group = dist.group.WORLD
        return [None if g is None else funcol.wait_tensor(funcol.all_reduce(g, "sum", group)) / self.world
                for g in grads]

    @torch.no_grad()
    def sum_(self, tensors: Sequence[Optional[Tensor]]) -> None:
        """Sum over processes, in place (label gradients)."""
        for t in tensors:
            if t is not None:
                dist.all_reduce(t)

    @torch.no_grad()
    def gather(self, tensor: Tensor) -> Tensor:
        """Concatenate every process's ``tensor`` (shards may differ in length) along dim 0."""
        sizes = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(self.world)]
        dist.all_gather(sizes, torch.tensor([len(tensor)], device=tensor.device))
        longest = int(max(s.item() for s in sizes))
        padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
        padded[: len(tensor)] = tensor
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)])


def from_environment(device: str) -> Optional[Distributed]:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1), else ``None``.

    Backend: gloo on the CPU, NCCL on CUDA devices (each process on ``cuda:LOCAL_RANK``).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size())


def shutdown() -> None:
    """Leave the process group, if one is joined: a barrier first, so no process tears down its
    connections while another is still in a collective, then ``destroy_process_group``."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
