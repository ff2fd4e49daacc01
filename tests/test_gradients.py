"""The k-step label hypergradient against independent oracles (float64).

1. central finite differences of the meta loss, for every learnable parameterisation,
   k in {1, 2, 3}, and models with BatchNorm and with an unused parameter;
2. a second backend: the same unroll written by hand with ``torch.func.functional_call``;
3. a closed form for a linear softmax model and one plain SGD step;
4. for SGD (maximize, Nesterov), Adam, AMSGrad and AdamW, fresh and warm: central differences of
   the meta loss after k *real* ``torch.optim`` steps, so that an unroll whose step is not
   torch's (e.g. eps before Adam's bias correction) fails even though it is self-consistent.

``one-step`` (a forward-mode product, no second-order graph) is checked against 1 and 4 at k = 1,
and against the double-backward unroll (``functional``, ``truncated``) for every training loss,
sample weights, and k > 1.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from helpers import C, assert_close, devices, float32_exactly, make_data, make_learnable_labels, make_model
from labelmeta import LABELS, LOSSES, Unrolled, make_labels, make_loss, soft_cross_entropy
from labelmeta.strategies import Functional, MetaProblem, MetaReweight, OneStep, Strategy, Truncated, as_strategy

LEARNABLE = [n for n in LABELS.names() if LABELS.get(n)(torch.zeros(2, dtype=torch.long), 2).learnable]


def _setup(model_kind: str, labels_name: str, optimizer: str = "sgd"):
    targets, batch, meta = make_data()
    model = make_model(model_kind).double()
    batch = (batch[0].double(), batch[1], batch[2])
    meta = (meta[0].double(), meta[1], meta[2])
    labels = (make_labels(labels_name, targets, C) if labels_name == "one-hot"
              else make_learnable_labels(labels_name, targets)).double()
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9, weight_decay=0.01)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=0.05, weight_decay=0.01)
    # one real step so that the optimiser carries state (momentum buffers, Adam moments)
    opt.zero_grad()
    F.cross_entropy(model(batch[0]), batch[1]).backward()
    opt.step()
    return model, opt, labels, batch, meta


def _loss_at(strategy, model, opt, labels, batch, meta, direction, eps) -> float:
    """The meta loss with the label parameters moved by ``eps * direction`` (then restored)."""
    params = list(labels.parameters())
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.add_(eps * d)
    try:
        return strategy.meta_loss(MetaProblem(model, opt, labels, batch, meta)).item()
    finally:
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.sub_(eps * d)


def _label_grads(strategy, model, opt, labels, batch, meta):
    as_strategy(strategy).compute(MetaProblem(model, opt, labels, batch, meta))
    return [p.grad.clone() for p in labels.parameters()]


def _forward(steps: int = 1) -> OneStep:
    return OneStep(steps=steps, product="forward")


def _reverse(steps: int = 1) -> OneStep:
    return OneStep(steps=steps, product="reverse")


#: the k = 1 strategies checked against finite differences beside the unroll
ONE_STEP = {"one-step": _forward, "one-step-reverse": _reverse}


@pytest.mark.parametrize("k, backend", [(1, "unrolled"), (2, "unrolled"), (3, "unrolled"),
                                        (1, "one-step"), (1, "one-step-reverse")])
@pytest.mark.parametrize("model_kind", ["mlp", "bn", "unused"])
@pytest.mark.parametrize("labels_name", LEARNABLE)
def test_finite_differences(labels_name, model_kind, k, backend, float64):
    model, opt, labels, batch, meta = _setup(model_kind, labels_name)
    strategy = Unrolled(steps=k)  # its meta loss is the function the differences are taken of
    grads = _label_grads(ONE_STEP.get(backend, Unrolled)(steps=k), model, opt, labels, batch, meta)
    params = list(labels.parameters())
    g = torch.Generator().manual_seed(7)
    eps = 1e-5
    # the gradient direction itself plus random directions
    directions = [grads] + [[torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params] for _ in range(3)]
    for v in directions:
        plus = _loss_at(strategy, model, opt, labels, batch, meta, v, eps)
        minus = _loss_at(strategy, model, opt, labels, batch, meta, v, -eps)
        numeric = (plus - minus) / (2 * eps)
        analytic = sum((gr * d).sum() for gr, d in zip(grads, v)).item()
        scale = (sum(gr.pow(2).sum() for gr in grads).sqrt() * sum(d.pow(2).sum() for d in v).sqrt()).item()
        assert scale > 0, "the label gradient is identically zero"
        assert abs(numeric - analytic) <= 1e-6 * scale, (numeric, analytic, scale)


def _manual_meta_loss(model, opt, labels, batch, meta, k):
    """The k-step SGD-with-momentum unroll written out with torch.func (no higher)."""
    group = opt.param_groups[0]
    names = [n for n, _ in model.named_parameters()]
    ref = dict(model.named_parameters())
    params = {n: p.detach().requires_grad_() for n, p in ref.items()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    momentum = {n: opt.state[ref[n]]["momentum_buffer"] for n in names if "momentum_buffer" in opt.state[ref[n]]}
    x, y, idx = batch
    for _ in range(k):
        loss = soft_cross_entropy(functional_call(model, (params, buffers), (x,)), labels(idx, y))
        grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=True, allow_unused=True)
        for n, grad in zip(names, grads):
            if grad is None:
                continue
            grad = grad + group["weight_decay"] * params[n]
            momentum[n] = group["momentum"] * momentum[n] + grad if n in momentum else grad
            params[n] = params[n] - group["lr"] * momentum[n]
    xm, ym, _ = meta
    return F.cross_entropy(functional_call(model, (params, buffers), (xm,)), ym)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("model_kind", ["mlp", "bn", "unused"])
@pytest.mark.parametrize("labels_name", LEARNABLE)
def test_matches_handwritten_unroll(labels_name, model_kind, k, float64):
    model, opt, labels, batch, meta = _setup(model_kind, labels_name)
    strategy = Unrolled(steps=k)
    assert_close(strategy.meta_loss(MetaProblem(model, opt, labels, batch, meta)),
                 _manual_meta_loss(model, opt, labels, batch, meta, k), 1e-12, "meta loss")
    grads = _label_grads(strategy, model, opt, labels, batch, meta)
    manual = torch.autograd.grad(_manual_meta_loss(model, opt, labels, batch, meta, k), list(labels.parameters()))
    for a, b in zip(grads, manual):
        assert_close(a, b, 1e-10, f"{labels_name} k={k}")


#: optimisers beyond plain SGD with momentum: name -> factory (each is exact only if its rule is torch's)
OPTIMIZERS = {
    "sgd-maximize": lambda p: torch.optim.SGD(p, lr=0.3, momentum=0.9, maximize=True),
    "sgd-nesterov-wd": lambda p: torch.optim.SGD(p, lr=0.3, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam-eps1e-8": lambda p: torch.optim.Adam(p, lr=0.05, weight_decay=0.01),
    "adam-eps1e-3": lambda p: torch.optim.Adam(p, lr=0.05, eps=1e-3),
    "adam-amsgrad-eps1e-3": lambda p: torch.optim.Adam(p, lr=0.05, eps=1e-3, amsgrad=True),
    "adamw-eps1e-8": lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.1),
    "adamw-eps1e-3": lambda p: torch.optim.AdamW(p, lr=0.05, eps=1e-3, weight_decay=0.1),
}


def _torch_meta_loss(model, opt, labels, batch, meta, k, direction, eps) -> float:
    """The meta loss after ``k`` real ``torch.optim`` steps of a copy of ``model`` and ``opt``
    against the labels moved by ``eps * direction``: the oracle knows nothing of the unroll."""
    twin = copy.deepcopy(model)
    twin_opt = type(opt)(twin.parameters(), lr=opt.defaults["lr"])  # the rest comes with the state dict
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # state_dict() shares the state tensors
    with torch.no_grad():
        moved = copy.deepcopy(labels)
        for p, d in zip(moved.parameters(), direction):
            p.add_(eps * d)
        x, y, idx = batch
        targets = moved(idx, y)
    for _ in range(k):
        twin_opt.zero_grad()
        soft_cross_entropy(twin(x), targets).backward()
        twin_opt.step()
    with torch.no_grad():
        return F.cross_entropy(twin(meta[0]), meta[1]).item()


@pytest.mark.parametrize("backend, k", [(Unrolled, 1), (Unrolled, 2), (Functional, 1), (Functional, 2),
                                        (_forward, 1), (_reverse, 1)],
                         ids=["unrolled-1", "unrolled-2", "functional-1", "functional-2", "one-step", "one-step-reverse"])
@pytest.mark.parametrize("warm", [False, True], ids=["fresh", "warm"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_finite_differences_every_optimizer(backend, optimizer, warm, k, float64):
    """The hypergradient through SGD (maximize, Nesterov), Adam, AMSGrad and AdamW steps, from a
    fresh optimiser (no state: Adam's first step, whose eps term dominates the derivative) and a
    warm one, against central differences of the meta loss after k *real* torch.optim steps."""
    targets, batch, meta = make_data()
    model = make_model("bn").double()
    batch, meta = (batch[0].double(), *batch[1:]), (meta[0].double(), *meta[1:])
    labels = make_learnable_labels("per-sample", targets).double()
    opt = OPTIMIZERS[optimizer](model.parameters())
    if warm:
        opt.zero_grad()
        F.cross_entropy(model(batch[0]), batch[1]).backward()
        opt.step()
    strategy = backend(steps=k)
    grads = _label_grads(strategy, model, opt, labels, batch, meta)
    g = torch.Generator().manual_seed(7)
    norm = sum(gr.pow(2).sum() for gr in grads).sqrt().item()
    assert norm > 0, "the label gradient is identically zero"
    # Adam's first step is nearly sign(g): its derivative, and the curvature the difference
    # quotient must resolve, scale as 1/eps; Richardson extrapolation of two central differences
    # (error O(h^4)) reaches 1e-5 there and 1e-7 everywhere else (an eps placed before the bias
    # correction is off by 2e-6 (warm) to a factor 31 (fresh))
    rtol = 1e-5 if not warm and "eps1e-8" in optimizer else 1e-7
    for v in [grads] + [[torch.randn(p.shape, generator=g, dtype=p.dtype) for p in labels.parameters()]]:
        length = sum(d.pow(2).sum() for d in v).sqrt().item()

        def difference(h: float) -> float:
            return (_torch_meta_loss(model, opt, labels, batch, meta, k, v, h)
                    - _torch_meta_loss(model, opt, labels, batch, meta, k, v, -h)) / (2 * h)

        h = 1e-4 / length  # a step of 1e-4 in label-logit space
        numeric = (4 * difference(h / 2) - difference(h)) / 3
        analytic = sum((gr * d).sum() for gr, d in zip(grads, v)).item()
        assert abs(numeric - analytic) <= rtol * norm * length, (numeric, analytic, norm * length)


def test_closed_form_linear_one_step(float64):
    """Linear softmax model, one plain SGD step: the hypergradient written out by hand.

    With ``theta' = W - (a/B) sum_i grad_W l_i`` and ``l_i = -sum_c p_ic log q_ic``,
    ``dL/dp_ic = (a/B) <grad_W L(theta'), grad_W log q_ic(W)>`` and
    ``grad_W log q_ic = (e_c - q_i) x_i^T``; ``grad_W L = (1/M) sum_m (q'_m - e_ym) x_m^T``.
    """
    targets, batch, meta = make_data()
    x, y, idx = (batch[0].double(), batch[1], batch[2])
    xm, ym = meta[0].double(), meta[1]
    model = torch.nn.Linear(x.shape[1], C, bias=False).double()
    lr = 0.5
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    labels = make_learnable_labels("per-sample", targets).double()
    grads = _label_grads(Unrolled(steps=1), model, opt, labels, (x, y, idx), (xm, ym, meta[2]))

    W = model.weight.detach()
    p = labels(idx)
    q = torch.softmax(x @ W.T, dim=1)
    B, M = len(x), len(xm)
    grad_W_inner = ((q - p).T @ x) / B                                   # d/dW of mean soft CE
    W1 = W - lr * grad_W_inner
    q1 = torch.softmax(xm @ W1.T, dim=1)
    G = ((q1 - F.one_hot(ym, C)).T @ xm) / M                             # grad_W L(theta')
    eye = torch.eye(C, dtype=x.dtype)
    dL_dp = torch.stack([torch.stack([(lr / B) * (G * torch.outer(eye[c] - q[i], x[i])).sum()
                                      for c in range(C)]) for i in range(B)])
    # chain through the softmax of the label logits: dz = p * (dp - <p, dp>)
    dL_dz = p * (dL_dp - (p * dL_dp).sum(1, keepdim=True))
    expected = torch.zeros_like(labels.logits).index_add_(0, idx, dL_dz)
    assert_close(grads[0], expected, 1e-12, "closed form")


def test_unroll_leaves_batchnorm_statistics_alone():
    targets, batch, meta = make_data()
    model = make_model("bn")
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    labels = make_learnable_labels("per-sample", targets)
    before = {n: b.clone() for n, b in model.named_buffers()}
    Strategy(Unrolled(steps=3)).compute(MetaProblem(model, opt, labels, batch, meta))
    for n, b in model.named_buffers():
        assert torch.equal(b, before[n]), n


@pytest.mark.parametrize("backend", [Unrolled, Functional], ids=["unrolled", "functional"])
def test_unsupported_optimizer_is_named(backend):
    targets, batch, meta = make_data()
    model = make_model("mlp")
    labels = make_learnable_labels("per-sample", targets)
    with pytest.raises(ValueError, match="no differentiable RMSprop .*; use one of: Adam, AdamW, SGD"):
        Strategy(backend(steps=1)).compute(MetaProblem(model, torch.optim.RMSprop(model.parameters()), labels, batch, meta))


def test_bad_unroll_steps():
    with pytest.raises(ValueError, match="0"):
        Unrolled(steps=0)


# ---------------------------------------------------------------------------------------------
# Learning to reweight: the gradient with respect to per-sample weights through the same unroll.

@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("model_kind", ["mlp", "bn"])
def test_reweight_finite_differences(model_kind, k, float64):
    model, opt, labels, batch, meta = _setup(model_kind, "one-hot")
    strategy = MetaReweight(steps=k)
    eps = torch.zeros(len(batch[0]), requires_grad=True)
    (grad,) = torch.autograd.grad(strategy.meta_loss(MetaProblem(model, opt, labels, batch, meta), eps), eps)
    h = 1e-6
    numeric = torch.stack([
        (strategy.meta_loss(MetaProblem(model, opt, labels, batch, meta), h * e).detach()
         - strategy.meta_loss(MetaProblem(model, opt, labels, batch, meta), -h * e).detach()) / (2 * h)
        for e in torch.eye(len(eps), dtype=torch.float64)])
    assert_close(grad, numeric, 1e-6, f"reweight {model_kind} k={k}")


def test_reweight_closed_form_plain_sgd(float64):
    """One plain SGD step from eps = 0: ``dL/deps_i = -lr <grad L_meta(theta), grad l_i(theta)>``."""
    model, _, labels, batch, meta = _setup("mlp", "one-hot")
    lr = 0.3
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    stats = MetaReweight(steps=1).compute(MetaProblem(model, opt, labels, batch, meta))
    params = list(model.parameters())
    meta_grad = torch.autograd.grad(F.cross_entropy(model(meta[0]), meta[1]), params)
    x, y, _ = batch
    per_sample = [torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), params) for i in range(len(x))]
    grad = torch.stack([-lr * sum((a * b).sum() for a, b in zip(meta_grad, g)) for g in per_sample])
    expected = (-grad).clamp_min(0)
    expected = expected / expected.sum()
    assert_close(stats.sample_weights, expected, 1e-10, "L2RW weights")
    assert stats.sample_weights.sum().item() == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# one-step: the forward-mode product against the double-backward unroll, case by case.

@pytest.mark.parametrize("product", ["forward", "reverse"])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("loss", sorted(set(LOSSES.names()) - {"distillation"}))
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("model_kind", ["bn", "unused"])
def test_one_step_matches_the_unroll(model_kind, optimizer, loss, k, product, float64):
    """Every training loss (none needs to be linear in the targets), with and without per-sample
    weights, SGD and Adam; k > 1 is the truncated unroll's last step (``through=1``)."""
    reference = Functional(steps=1) if k == 1 else Truncated(steps=k, through=1)
    model, opt, labels, batch, meta = _setup(model_kind, "per-sample", optimizer)
    weights = torch.rand(len(batch[0]), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for w in (None, weights):
        # elr reads its targets as constants (the running predictions): only the weights have a hypergradient
        names = (["labels"] if loss != "elr" else []) + (["weights"] if w is not None else [])
        if not names:
            continue
        problem = MetaProblem(model, opt, labels, batch, meta, make_loss(loss))
        params = list(labels.parameters()) if "labels" in names else []
        inputs = params + ([w.requires_grad_()] if w is not None else [])
        expected = torch.autograd.grad(reference.meta_loss(problem, w), inputs)
        value, grads = OneStep(steps=k, product=product).hypergradient(problem, inputs, w)
        assert value == pytest.approx(reference.meta_loss(problem, w).item(), rel=1e-12)
        for a, b, name in zip(grads, expected, names):
            assert_close(a, b, 1e-10, f"{loss} {optimizer} k={k} {name}")


@pytest.mark.parametrize("product", ["forward", "reverse"])
@pytest.mark.parametrize("model_kind", ["bn", "mlp"])
def test_one_step_learner_shares_the_forward(model_kind, product, float64):
    """Through the Learner, which hands one-step the model step's own forward: the labels, the
    weights and BatchNorm's running statistics after three steps are those of ``functional``."""
    from labelmeta import Learner, make_label_optimizer

    states = {}
    for name, strategy in [("functional", Functional(steps=1)), ("one-step", OneStep(product=product))]:
        model, opt, labels, batch, meta = _setup(model_kind, "per-sample-ensemble")
        learner = Learner(model, opt, labels, strategy, make_label_optimizer("mirror", labels.parameters(), 0.5))
        assert strategy.shares_forward == (name == "one-step")
        for _ in range(3):
            learner.step(batch, meta)
        states[name] = {**{"labels." + k: v for k, v in labels.state_dict().items()}, **model.state_dict()}
    for key, value in states["functional"].items():
        if value.is_floating_point():
            assert_close(states["one-step"][key], value, 1e-10, key)
        else:  # BatchNorm's batch count: the shared forward counts once, as the plain step does
            assert torch.equal(states["one-step"][key], value), key


@pytest.mark.cuda
@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("product", ["forward", "reverse"])
def test_one_step_matches_the_unroll_in_float32(product, device):
    """The check above in float32 on each device (on a GPU, its kernels' forward-mode formula and
    double backward of BatchNorm): labels and sample weights, SGD with momentum and weight decay."""
    targets, batch, meta = make_data()
    batch, meta = [tuple(t.to(device) for t in b) for b in (batch, meta)]
    model = make_model("bn").to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9, weight_decay=0.01)
    F.cross_entropy(model(batch[0]), batch[1]).backward()
    opt.step()
    labels = make_learnable_labels("per-sample", targets).to(device)
    w = torch.rand(len(batch[0]), generator=torch.Generator().manual_seed(3)).to(device).requires_grad_()
    problem = MetaProblem(model, opt, labels, batch, meta)
    inputs = list(labels.parameters()) + [w]
    with float32_exactly(device):
        expected = torch.autograd.grad(Functional(steps=1).meta_loss(problem, w), inputs)
        _, grads = OneStep(product=product).hypergradient(problem, inputs, w)
    for a, b, name in zip(grads, expected, ("labels", "weights")):
        assert_close(a, b, 1e-5, name)  # measured 1e-7 on the CPU


def test_one_step_bad_options():
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        OneStep(steps=0)
    with pytest.raises(ValueError, match="product must be 'auto', 'forward' or 'reverse', got 'sideways'"):
        OneStep(product="sideways")


def test_one_step_picks_its_product_by_the_model():
    assert OneStep().product_for(make_model("bn")) == "forward"  # BatchNorm: its double backward is dear
    assert OneStep().product_for(make_model("mlp")) == "reverse"
    assert OneStep(product="forward").product_for(make_model("mlp")) == "forward"


def test_one_step_with_dropout_uses_the_inner_steps_masks(float64):
    """Dropout: the product must belong to the network the inner step ran (its masks). ``auto``
    takes reverse-mode, through the inner backward's graph, and matches the unroll drawing the same
    masks in the same order; forward-mode, which would run the model again, is refused."""
    targets, batch, meta = make_data()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(batch[0].shape[1], 16), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                                torch.nn.Linear(16, C)).double()
    batch, meta = (batch[0].double(), *batch[1:]), (meta[0].double(), *meta[1:])
    opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    labels = make_learnable_labels("per-sample", targets).double()
    problem = MetaProblem(model, opt, labels, batch, meta)
    params = list(labels.parameters())
    torch.manual_seed(5)
    expected = torch.autograd.grad(Functional(steps=1).meta_loss(problem), params)
    torch.manual_seed(5)
    _, grads = OneStep().hypergradient(problem, params)
    for a, b in zip(grads, expected):
        assert_close(a, b, 1e-10, "dropout")
    with pytest.raises(ValueError, match=r"would draw other dropout masks \(in '2'\)"):
        OneStep(product="forward").hypergradient(problem, params)
