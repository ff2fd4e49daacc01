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
from typing import Any, Callable, ContextManager, Iterator, TypeVar

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

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


@contextlib.contextmanager
def _kernels(model: nn.Module) -> Iterator[None]:
    fused = _fused_attention_enabled()
    recurrent = torch.backends.cudnn.enabled and _recurrent_on_gpu(model)
    previous, outer = torch.backends.cudnn.enabled, getattr(_open, "model", None)
    with sdpa_kernel(SDPBackend.MATH) if fused else _NOTHING:
        if recurrent:  # only this switch: cudnn.flags() would reset benchmark and deterministic as well
            torch.backends.cudnn.enabled = False
        _open.model = model
        try:
            yield
        finally:
            _open.model = outer
            torch.backends.cudnn.enabled = previous


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
