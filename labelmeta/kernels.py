"""Kernels a hypergradient can differentiate: what the meta step runs on, leaving the model step alone.

The fastest kernels of some layers have a first derivative only. Scaled-dot-product attention
(``F.scaled_dot_product_attention``, which ``nn.MultiheadAttention`` and the ``nn.Transformer*``
layers call) dispatches by default to fused kernels, flash attention on the CPU and flash,
memory-efficient or cuDNN attention on GPUs, whose backward has no derivative of its own (the exact
unrolls back-propagate through an inner backward) and which have no forward-mode formula
(``one-step``'s forward product). cuDNN's recurrent kernels on a GPU lack both as well.

:func:`differentiable_kernels` selects, for the block it opens, the math attention kernel (composed
of ordinary operations, so every derivative exists) and, for a model with recurrent layers on a GPU,
PyTorch's own recurrent kernels instead of cuDNN's. The :class:`~labelmeta.learner.Learner` opens it
around the meta step only: the model step keeps the fast kernels. The numbers are the same up to
round-off: the kernels compute one function.
"""
from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any, Callable, ContextManager, TypeVar

import torch
from torch import nn

T = TypeVar("T")
_NOTHING = contextlib.nullcontext()
#: this thread's innermost open block: ``model`` the model it was opened for (absent: none is open)
_open = threading.local()


def differentiable_kernels(model: nn.Module) -> ContextManager[None]:
    """Within the block, attention and ``model``'s recurrent layers run on kernels with every derivative.

    Free when nested in a block for the same model (a strategy's ``compute`` opens one, and each of its
    backend's methods again: nothing is done but a look at this thread's open block); about 10 µs on
    entry otherwise.

    Args:
        model: the model the block differentiates (its recurrent layers on a GPU decide whether
            cuDNN is switched off: it would otherwise also slow down the convolutions of models without them).
    """
    if getattr(_open, "model", None) is model:
        return _NOTHING
    return _kernels(model)


#: the attention kernels' switches, as torch.nn.attention.sdpa_kernel reads and sets them: (get, set, is math)
_SDPA_SWITCHES = tuple((getattr(torch._C, f"_get_{name}_sdp_enabled"), getattr(torch._C, f"_set_sdp_use_{name}"),
                        name == "math") for name in ("cudnn", "flash", "mem_efficient", "math", "overrideable"))


class _kernels:
    """The block of :func:`differentiable_kernels`: the math attention kernel alone (what
    ``sdpa_kernel(SDPBackend.MATH)`` does, with its switches looked up once instead of by name at every
    entry), and no cuDNN for a model with recurrent layers on a GPU. A class, not a generator: it is
    entered at every meta step."""

    __slots__ = ("model", "attention", "previous", "outer")

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> None:
        self.attention = [get() for get, _, _ in _SDPA_SWITCHES] if _fused_attention_enabled() else None
        self.previous, self.outer = torch.backends.cudnn.enabled, getattr(_open, "model", None)
        if self.attention is not None:
            for _, set_, math in _SDPA_SWITCHES:
                set_(math)
        if torch.backends.cudnn.enabled and _recurrent_on_gpu(self.model):
            torch.backends.cudnn.enabled = False  # only this switch: cudnn.flags() would also reset others
        _open.model = self.model

    def __exit__(self, *exc: Any) -> None:
        _open.model = self.outer
        torch.backends.cudnn.enabled = self.previous
        if self.attention is not None:
            for (_, set_, _), enabled in zip(_SDPA_SWITCHES, self.attention):
                set_(enabled)


def on_differentiable_kernels(method: Callable[..., T]) -> Callable[..., T]:
    """Decorate a strategy's ``method(self, problem, ...)`` to run under :func:`differentiable_kernels`
    for ``problem.model``: a strategy called outside a learner differentiates what it does inside one."""
    @functools.wraps(method)
    def wrapped(self: Any, problem: Any, *args: Any, **kwargs: Any) -> T:
        with differentiable_kernels(problem.model):
            return method(self, problem, *args, **kwargs)

    return wrapped


def _fused_attention_enabled() -> bool:
    cuda = torch.backends.cuda
    return not cuda.math_sdp_enabled() or any(
        (cuda.flash_sdp_enabled(), cuda.mem_efficient_sdp_enabled(), cuda.cudnn_sdp_enabled()))


def _recurrent_on_gpu(model: nn.Module) -> bool:
    first = next(model.parameters(), None)
    if first is None or not first.is_cuda:  # the common case, without walking the modules
        return False
    return any(isinstance(m, nn.RNNBase) for m in model.modules())
