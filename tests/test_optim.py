"""MirrorDescent against its closed form: the exponentiated-gradient update on the simplex."""
from __future__ import annotations

import pytest
import torch

from labelmeta import LABEL_OPTIMIZERS, MirrorDescent, make_label_optimizer


def _logit_grad(z: torch.Tensor, grad_p: torch.Tensor) -> torch.Tensor:
    """The gradient a logit table receives when the loss has gradient ``grad_p`` w.r.t. softmax(z)."""
    z = z.clone().requires_grad_()
    (torch.softmax(z, 1) * grad_p).sum().backward()
    return z.grad


def test_exponentiated_gradient_closed_form(float64):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 4, generator=g) * 3
    grad_p = torch.randn(5, 4, generator=g)
    param = torch.nn.Parameter(z.clone())
    param.grad = _logit_grad(z, grad_p)
    MirrorDescent([param], lr=0.7, normalize="none").step()
    expected = torch.softmax(z, 1) * torch.exp(-0.7 * grad_p)
    expected /= expected.sum(1, keepdim=True)
    torch.testing.assert_close(torch.softmax(param, 1), expected, rtol=1e-10, atol=1e-12)


def test_rows_without_gradient_stay_and_normalisation(float64):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(6, 3, generator=g)
    grad_p = torch.randn(6, 3, generator=g) * 1e-7  # hypergradients are tiny
    grad_p[[1, 4]] = 0
    for normalize in ("row", "batch"):
        param = torch.nn.Parameter(z.clone())
        param.grad = _logit_grad(z, grad_p)
        MirrorDescent([param], lr=0.5, normalize=normalize).step()
        step = (param - z).detach()
        assert torch.equal(step[[1, 4]], torch.zeros(2, 3))
        norms = step[[0, 2, 3, 5]].norm(dim=1)
        if normalize == "row":
            torch.testing.assert_close(norms, torch.full((4,), 0.5))
        else:
            torch.testing.assert_close(norms.pow(2).mean().sqrt(), torch.tensor(0.5))


def test_bad_options_and_registry():
    p = [torch.nn.Parameter(torch.zeros(2, 2))]
    with pytest.raises(ValueError, match="lr must be > 0, got -1"):
        MirrorDescent(p, lr=-1)
    with pytest.raises(ValueError, match="normalize must be"):
        MirrorDescent(p, lr=1, normalize="layer")
    assert {"sgd", "adam", "mirror"} <= set(LABEL_OPTIMIZERS.names())
    assert isinstance(make_label_optimizer("mirror", p, 1.0), MirrorDescent)
