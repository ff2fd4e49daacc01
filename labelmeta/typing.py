"""Domain aliases used across the public API.

Shapes are written in the docstrings that use these names: ``B`` is the batch size, ``N`` the
number of training samples, ``C`` the number of classes.
"""
from __future__ import annotations

from typing import Tuple

from torch import Tensor

#: ``(inputs [B, ...], targets LongTensor[B], indices LongTensor[B])`` as every labelmeta dataset yields.
Batch = Tuple[Tensor, Tensor, Tensor]
#: ``LongTensor[B]`` positions of the samples in the training set (rows of a per-sample table).
Indices = Tensor
#: ``LongTensor[B]`` (possibly noisy) annotated class ids.
Targets = Tensor
#: ``FloatTensor[B, C]`` rows that are probability distributions over the ``C`` classes.
SoftTargets = Tensor
#: ``FloatTensor[B, C]`` unnormalised model outputs.
Logits = Tensor

__all__ = ["Batch", "Indices", "Targets", "SoftTargets", "Logits"]
