"""Evidence for a label issue: the clean samples whose meta-gradient argues most against an annotation.

The hypergradient of learning to reweight decomposes over the meta batch. One model step of length
``η`` with sample ``i`` weighted by ``w_i`` moves the meta loss by

    dL_meta / dw_i = −η ⟨∇θ L_meta, ∇θ ℓ(x_i, y_i)⟩ = −(η / M) Σ_j ⟨g_j, g_i⟩,

``g_i`` the gradient of the annotation's loss, ``g_j`` that of clean sample ``j``'s. A clean sample with
``⟨g_j, g_i⟩ < 0`` is one whose loss a step on the annotation would raise: it argues against it. The
evidence of a flagged sample is its ``k`` clean samples with the most negative products, at the end of
training (the model in evaluation mode). They are what a reviewer compares the sample with: typically
clean samples of the annotated class that the annotation's gradient would pull away from their class,
or of the class the sample truly is.

The gradients are the whole model's where ``M × P`` (meta samples × parameters) fits in
:data:`MAX_FLOATS`, else those of the last module with parameters (the classifier's head: the usual
restriction of gradient-similarity methods to large networks, said by :func:`meta_evidence`).
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

#: the most floats the meta set's per-sample gradients may take (``M × P``: 2**27 is 512 MiB in float32)
MAX_FLOATS = 2 ** 27


def evidence_parameters(model: nn.Module, meta_size: int) -> Tuple[List[str], bool]:
    """``(names, whole)``: the parameters whose gradients are compared, and whether they are all of the
    model's (else the last module with parameters', where ``meta_size × P`` exceeds :data:`MAX_FLOATS`)."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters: no gradient can argue for or against a label")
    if meta_size * sum(p.numel() for _, p in trainable) <= MAX_FLOATS:
        return [name for name, _ in trainable], True
    last = [m for m in model.modules() if any(p.requires_grad for p in m.parameters(recurse=False))][-1]
    ids = {id(p) for p in last.parameters(recurse=False)}
    return [name for name, p in trainable if id(p) in ids], False


def per_sample_gradients(model: nn.Module, names: List[str], x: Tensor, y: Tensor) -> Tensor:
    """``[B, P]``: the gradient of each sample's cross-entropy against ``y`` with respect to the parameters
    ``names`` (flattened, in that order), the model as it is (call it in evaluation mode)."""
    params = dict(model.named_parameters())
    chosen = {name: params[name].detach() for name in names}
    fixed = {name: p.detach() for name, p in params.items() if name not in chosen}
    buffers = dict(model.named_buffers())

    def loss(p: Dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        out = functional_call(model, ({**fixed, **p}, buffers), (xi[None],))
        return F.cross_entropy(out, yi[None])

    grads = vmap(grad(loss), in_dims=(None, 0, 0))(chosen, x, y)
    return torch.cat([grads[name].reshape(len(x), -1) for name in names], dim=1)


@torch.no_grad()
def meta_evidence(model: nn.Module, samples: Iterable[Tuple[Tensor, Tensor, Tensor]],
                  meta: Iterable[Tuple[Tensor, Tensor, Tensor]], k: int = 3,
                  device: torch.device | str = "cpu") -> Tuple[Tensor, Tensor, Tensor, bool]:
    """The evidence of the module docstring.

    Args:
        model: the trained model.
        samples: batches ``(x, annotated y, index)`` of the samples to explain.
        meta: batches ``(x, y, position)`` of the clean meta set (all of it is compared).
        k: clean samples per explained sample.

    Returns:
        ``(indices [n], positions [n, k], products [n, k], whole)``: the explained samples' indices; for each,
        the meta-set positions of its ``k`` most opposed clean samples (most opposed first; ``-1`` past the
        number that oppose it at all) and their products ``⟨g_j, g_i⟩``; whether the whole model's gradients
        were compared.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    was_training = model.training
    model.eval()
    try:
        meta = [tuple(t.to(device) for t in batch) for batch in meta]
        meta_size = sum(len(b[0]) for b in meta)
        names, whole = evidence_parameters(model, meta_size)
        with torch.enable_grad():
            g_meta = torch.cat([per_sample_gradients(model, names, x, y) for x, y, _ in meta])
        order = torch.cat([pos for _, _, pos in meta]).to(device)
        found, positions, products = [], [], []
        for x, y, idx in samples:
            if not len(idx):
                continue
            with torch.enable_grad():
                g = per_sample_gradients(model, names, x.to(device), y.to(device))
            dots = g @ g_meta.T  # [b, M]
            top = torch.topk(dots, min(k, meta_size), dim=1, largest=False)
            pos = torch.where(top.values < 0, order[top.indices], torch.full_like(top.indices, -1))
            found.append(idx.cpu())
            positions.append(pos.cpu())
            products.append(top.values.cpu())
    finally:
        model.train(was_training)
    if not found:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, k, dtype=torch.long), torch.zeros(0, k), whole
    return torch.cat(found), torch.cat(positions), torch.cat(products), whole
