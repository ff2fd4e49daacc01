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


@pytest.mark.parametrize("normalize", ["batch", "row"])
@pytest.mark.parametrize("shape", [(3, 4), (4,)])
def test_subnormal_gradients_take_the_step_of_any_other_scale(normalize, shape):
    """float32 hypergradients of saturated labels can be subnormal (their squares underflow to 0):
    the normalised step is scale-free, so it must equal the step of the same gradient times 2^100
    (exact in binary floating point), not NaN."""
    g = torch.Generator().manual_seed(1)
    if len(shape) == 2:  # saturated rows (softmax one-hot to float32), a gradient on the saturated entry only
        start = torch.randn(shape, generator=g) + 90 * torch.eye(*shape)
        tiny = torch.eye(*shape) * torch.randn(shape[0], 1, generator=g).sign() * 4e-45
    else:  # a temperature-like vector
        start = torch.randn(shape, generator=g)
        tiny = torch.randn(shape, generator=g) * 1e-43
    assert (tiny.pow(2) == 0).all() and (tiny != 0).any()  # subnormal: the squares underflow
    steps = []
    for grad in (tiny, tiny * 2.0 ** 100):
        p = torch.nn.Parameter(start.clone())
        p.grad = grad.clone()
        MirrorDescent([p], lr=0.5, normalize=normalize).step()
        steps.append(p.detach() - start)
    assert torch.isfinite(steps[0]).all()
    torch.testing.assert_close(steps[0], steps[1], rtol=1e-5, atol=1e-6)
    assert steps[1].abs().max() > 0.1  # a real step, not a vanished one


def test_bad_options_and_registry():
    p = [torch.nn.Parameter(torch.zeros(2, 2))]
    with pytest.raises(ValueError, match="lr must be > 0, got -1"):
        MirrorDescent(p, lr=-1)
    with pytest.raises(ValueError, match="normalize must be"):
        MirrorDescent(p, lr=1, normalize="layer")
    assert {"sgd", "adam", "mirror"} <= set(LABEL_OPTIMIZERS.names())
    assert isinstance(make_label_optimizer("mirror", p, 1.0), MirrorDescent)


def test_a_networks_group_takes_the_plain_normalised_step(float64):
    """A group marked ``"tables": False`` (a label network's weights) is not a table of label logits:
    its 2-D parameters take ``-lr * g / rms(g)`` over their nonzero entries, not the simplex step."""
    g = torch.Generator().manual_seed(2)
    w, b = torch.randn(4, 3, generator=g), torch.randn(4, generator=g)
    gw, gb = torch.randn(4, 3, generator=g), torch.randn(4, generator=g)
    gw[1] = 0  # entries without a gradient stay
    pw, pb = torch.nn.Parameter(w.clone()), torch.nn.Parameter(b.clone())
    pw.grad, pb.grad = gw.clone(), gb.clone()
    make_label_optimizer("mirror", [{"params": [pw, pb], "tables": False}], 0.5).step()
    for p, start, grad in ((pw, w, gw), (pb, b, gb)):
        rms = grad[grad != 0].pow(2).mean().sqrt()
        torch.testing.assert_close(p.detach(), start - 0.5 * grad / rms, rtol=1e-12, atol=1e-12)
    assert torch.equal(pw.detach()[1], w[1])
