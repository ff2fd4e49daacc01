"""Where and how fast tensors are computed: mixed precision, memory format, host-to-device copies.

The three switches of :class:`~labelmeta.config.Config` that change speed, not the method:

- ``amp``: bfloat16 autocast around every forward a step takes (the inner steps', the meta
  loss's, the forward-mode product's, the model step's) and evaluation. Parameters, optimiser
  states and label parameters stay float32; autocast runs losses and softmaxes in float32.
  bfloat16 has float32's range, so no loss scaling is needed.
- ``channels_last``: the NHWC memory format for image models and their batches (faster
  convolutions on tensor cores); 4-D inputs only.
- ``pin_memory`` (with the loaders' workers): page-locked host batches, copied asynchronously.
"""
from __future__ import annotations

import contextlib
from typing import ContextManager, Tuple

import torch
from torch import Tensor, nn

from .typing import Batch


def autocast(device: torch.device | str, enabled: bool) -> ContextManager:
    """bfloat16 autocast on ``device``'s type when ``enabled``, else nothing."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def to_channels_last(model: nn.Module) -> nn.Module:
    """``model`` with its 4-D weights in the channels-last memory format (in place)."""
    return model.to(memory_format=torch.channels_last)


def to_device(batch: Batch, device: torch.device | str, *, non_blocking: bool = False,
              channels_last: bool = False) -> Tuple[Tensor, ...]:
    """``(x, y, indices)`` on ``device``; images (4-D ``x``) channels-last when asked."""
    x, *rest = (t.to(device, non_blocking=non_blocking) for t in batch)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return (x, *rest)
