"""The layers researchers use, on every exact backend; and the probe that finds, before training,
a model a strategy cannot differentiate.

Oracle: central differences of the meta loss after real ``torch.optim`` steps, float64
(:mod:`labelmeta.gradcheck`), with the default kernels: PyTorch's fused attention kernel on the CPU
has no double backward and no forward-mode formula, so before :mod:`labelmeta.kernels` every exact
backend failed on a transformer.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import layer_support
from helpers import C, D, Activation, NoDoubleBackward, NoForwardMode, make_data, make_learnable_labels
from labelmeta import MODELS, Config, Learner, MetaProblem, fit, make_label_optimizer, make_labels
from labelmeta.gradcheck import relative_error
from labelmeta.strategies import STRATEGIES, OneStep

COLUMNS = [*layer_support.COLUMNS, layer_support.LEARNER]
#: what each refusal says (a refusal before any step is the right answer there; any other cell must be exact)
REFUSED = {
    "would draw other dropout masks": lambda layer, column, optimizer: (
        "dropout" in layer.lower() and column == "one-step:labels forward product"),
    "finite-difference needs SGD": lambda layer, column, optimizer: (
        column.startswith("finite-difference") and optimizer != "sgd"),
    "AdamW's decoupled decay has another fixed point": lambda layer, column, optimizer: (
        column.startswith("implicit") and optimizer == "adamw"),
}


def _check(layer: str, column: str, optimizer: str) -> None:
    cell = layer_support.cell(layer, column, optimizer)
    expected = [m for m, applies in REFUSED.items() if applies(layer, column, optimizer)]
    if expected:
        assert expected[0] in cell.get("refused", ""), cell
    else:
        assert "error" in cell and cell["error"] <= layer_support.tolerance(column, optimizer), cell


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("layer", list(layer_support.LAYERS))
def test_every_strategy_on_every_layer(layer, column):
    """The docs' layer table (SGD): every backend with every target, every preset, the unroll at k = 2 and
    one-step's two products, each after a first meta step on the same model (what a backend keeps between
    steps, as ``higher``'s patched copy, is in play: ``reweight`` on the transformer encoder was 2.6-8.8 %
    off once its copy was kept), against central differences after real ``torch.optim`` steps."""
    _check(layer, column, "sgd")


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("layer", layer_support.SMOKE_LAYERS)
def test_adam_and_adamw(layer, column, optimizer):
    """The same with Adam and AdamW on two of the layers (``python benchmarks/layer_support.py``: all of them)."""
    _check(layer, column, optimizer)


# ---------------------------------------------------------------------------------------------
# The probe: a model the chosen backend cannot differentiate is found before training.

def _model(function, norm: bool = False) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Linear(D, 7)] + ([nn.BatchNorm1d(7)] if norm else []) + [Activation(function), nn.Linear(7, C)]
    return nn.Sequential(*layers)


def _labels(name, targets):
    return make_labels(name, targets, C) if name == "one-hot" else make_learnable_labels(name, targets)


def _learner(model, strategy="one-step", labels_name="per-sample"):
    targets, batch, meta = make_data()
    labels = _labels(labels_name, targets)
    opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    label_opt = make_label_optimizer("mirror", labels.parameters(), 0.5) if labels.learnable else None
    return Learner(model, opt, labels, strategy, label_opt), batch, meta


@pytest.mark.parametrize("strategy", ["one-step", "functional", "unrolled"])
def test_probe_names_the_module_and_the_strategies_that_work(strategy):
    learner, batch, meta = _learner(_model(NoDoubleBackward), strategy)
    # one-step tried both products: the message says why each failed
    other = r"; its forward mode is missing \(NotImplementedError: .*\)" if strategy == "one-step" else ""
    with pytest.raises(ValueError, match=rf"the '{strategy}' strategy cannot differentiate this model: module '1' "
                                         r"\(Activation\): its double backward is wrong \(off by 100% against central "
                                         rf"differences\){other}; strategies that can: 'finite-difference', 'head-only'$"):
        learner.probe(batch, meta)


def test_without_the_probe_the_gradient_would_be_silently_wrong(float64):
    """Why the probe checks values, not only that the step runs: a backward that cannot itself be
    differentiated is skipped by autograd without an error, and the hypergradient loses its part."""
    from labelmeta.gradcheck import label_gradient
    from labelmeta.strategies import Functional

    learner, batch, meta = _learner(_model(NoDoubleBackward).double())
    batch, meta = (batch[0].double(), *batch[1:]), (meta[0].double(), *meta[1:])
    learner.labels.double()
    parts = (learner.model, learner.optimizer, learner.labels)
    grads = label_gradient(Functional(steps=1), *parts, batch, meta)  # runs, no error
    assert relative_error(grads, *parts, batch, meta) > 0.1


def test_probe_runs_before_training(tmp_path):
    """Through ``fit``: the error comes before the first epoch (no checkpoint is written), not after the warm-up."""
    MODELS.register("no-double-backward")(lambda input_shape, num_classes: nn.Sequential(
        nn.Linear(input_shape[0], 7), Activation(NoDoubleBackward), nn.Linear(7, num_classes)))
    try:
        config = Config(dataset_options=dict(num_samples=1000), meta_per_class=5, meta_batch_size=20, epochs=3,
                        warmup_epochs=2, progress=False, model="no-double-backward", strategy="functional",
                        checkpoint=str(tmp_path / "ck.pt"))
        with pytest.raises(ValueError, match=r"module '1' \(Activation\): its double backward is wrong"):
            fit(config)
        assert not (tmp_path / "ck.pt").exists()
    finally:
        MODELS.unregister("no-double-backward")


def test_auto_product_takes_the_one_the_model_has(float64):
    """BatchNorm makes ``auto`` prefer forward mode; the model has no forward-mode formula, so the probe
    keeps reverse mode, and the gradient is exact."""
    learner, batch, meta = _learner(_model(NoForwardMode, norm=True).double())
    batch, meta = (batch[0].double(), *batch[1:]), (meta[0].double(), *meta[1:])
    learner.labels.double()
    assert learner.strategy.product_for(learner.model) == "forward"
    model, opt, labels = copy.deepcopy((learner.model, learner.optimizer, learner.labels))
    learner.label_optimizer = torch.optim.SGD(learner.labels.parameters(), lr=0.0)  # read the gradient only
    learner.step(batch, meta)
    assert learner.plan.strategy.product == "reverse"
    grads = [p.grad for p in learner.labels.parameters()]
    assert relative_error(grads, model, opt, labels, batch, meta) <= 1e-7


def test_fused_attention_keeps_the_model_step_on_its_kernel():
    """Attention without dropout runs on the fused kernel, whose backward has no derivative: the probe
    gives ``one-step`` a forward of its own (math kernel) instead of the model step's."""
    torch.manual_seed(0)
    model = layer_support.LAYERS["TransformerEncoderLayer"][0]()
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, C, (12,), generator=g)
    batch = (torch.randn(6, 5, generator=g), targets[:6], torch.arange(6))
    meta = (torch.randn(8, 5, generator=g), torch.randint(0, C, (8,), generator=g), torch.arange(8))
    learner, _, _ = _learner(model)
    learner.labels = make_learnable_labels("per-sample", targets)
    learner.label_optimizer = make_label_optimizer("mirror", learner.labels.parameters(), 0.5)
    assert learner.strategy.shares_forward and learner.plan is None
    learner.step(batch, meta)
    assert not learner.plan.share_forward


def test_probe_changes_nothing():
    """Copies only: parameters, buffers, optimiser state, labels, a strategy's own network and the random state."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, 7), nn.BatchNorm1d(7), nn.Dropout(0.2), nn.Linear(7, C))
    learner, batch, meta = _learner(model, STRATEGIES.build("meta-weight-net"), "one-hot")
    learner.optimizer.zero_grad()
    F.cross_entropy(model(batch[0]), batch[1]).backward()
    learner.optimizer.step()  # momentum to keep

    def state():
        return copy.deepcopy((model.state_dict(), learner.optimizer.state_dict(), learner.labels.state_dict(),
                              learner.strategy.state_dict(), torch.random.get_rng_state()))

    before = state()
    learner.probe(batch, meta)
    after = state()
    flat = [(a, b) for x, y in zip(before[:4], after[:4]) for a, b in zip(_tensors(x), _tensors(y))]
    assert flat and all(torch.equal(a, b) for a, b in flat)
    assert torch.equal(before[4], after[4])


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for key in sorted(tree, key=str) for t in _tensors(tree[key])]
    if isinstance(tree, (list, tuple)):
        return [t for v in tree for t in _tensors(v)]
    return []


# ---------------------------------------------------------------------------------------------
# Refused when the learner is built, or named when it happens.

def test_forward_product_with_dropout_is_refused_when_the_learner_is_built():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, 7), nn.Dropout(0.3), nn.Linear(7, C)).eval()  # trained in training mode
    with pytest.raises(ValueError, match=r"would draw other dropout masks \(in '1'\)"):
        _learner(model, OneStep(product="forward"))


class _FunctionalDropout(nn.Module):
    """BatchNorm (``auto`` prefers the forward product for it) and dropout written as a function call."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.norm, self.b = nn.Linear(D, 7), nn.BatchNorm1d(7), nn.Linear(7, C)

    def forward(self, x):
        return self.b(F.dropout(torch.tanh(self.norm(self.a(x))), 0.3, self.training))


def test_dropout_as_a_function_call_keeps_the_reverse_product(float64):
    """No layer says that this model draws random numbers: the probe finds it (two passes differ), so
    ``auto`` keeps the reverse product, whose gradient is exact (the forward product's would belong to
    a network with other masks); ``product="forward"`` asked for is refused, naming why."""
    torch.manual_seed(0)
    learner, batch, meta = _learner(_FunctionalDropout().double())
    batch, meta = (batch[0].double(), *batch[1:]), (meta[0].double(), *meta[1:])
    learner.labels.double()
    assert learner.strategy.product_for(learner.model) == "forward"  # by its layers alone
    model, opt, labels = copy.deepcopy((learner.model, learner.optimizer, learner.labels))
    learner.label_optimizer = torch.optim.SGD(learner.labels.parameters(), lr=0.0)  # read the gradient only
    torch.manual_seed(3)
    learner.step(batch, meta)
    assert learner.plan.strategy.product == "reverse"
    grads = [p.grad for p in learner.labels.parameters()]
    assert relative_error(grads, model, opt, labels, batch, meta, seed=3) <= 1e-7
    forward, _, _ = _learner(_FunctionalDropout().double(), OneStep(product="forward"))
    forward.labels.double()
    with pytest.raises(ValueError, match=r"^the 'one-step' strategy cannot differentiate this model: its forward pass "
                                         r"is random in training mode \(two passes on the same batch differ: dropout "
                                         r"written as a function call, F.dropout\?\)"):
        forward.step(batch, meta)


def test_a_meta_batch_that_does_not_fit_the_model_is_named():
    learner, batch, (xm, ym, im) = _learner(nn.Sequential(nn.Linear(D, 7), nn.Tanh(), nn.Linear(7, C)))
    wrong = (torch.randn(len(xm), D + 2), ym, im)
    with pytest.raises(ValueError, match=rf"the meta_batch's inputs \(samples of shape \[{D + 2}\]\) do not fit the model: "):
        learner.step(batch, wrong)  # the probe, before the first meta step
    learner.step(batch, (xm, ym, im))
    with pytest.raises(ValueError, match=rf"the meta_batch's inputs \(samples of shape \[{D + 2}\]\) do not fit the model: "):
        learner.step(batch, wrong)  # a later meta step


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategies_outside_a_learner_check_their_optimizer_as_the_learner_does(name):
    """``compute`` called directly refuses the optimisers a ``Learner`` refuses, with the same message."""
    targets, batch, meta = make_data()
    for make in (lambda p: torch.optim.RMSprop(p), lambda p: torch.optim.Adam(p)):
        model = nn.Sequential(nn.Linear(D, 7), nn.Tanh(), nn.Linear(7, C))
        opt = make(model.parameters())
        labels = _labels("per-sample" if STRATEGIES.build(name).learns_labels else "one-hot", targets)
        try:
            STRATEGIES.build(name).check(opt)
        except ValueError as err:
            expected = str(err)
        else:
            continue  # the learner accepts it: nothing to refuse
        label_opt = torch.optim.SGD(labels.parameters(), lr=0.1) if labels.learnable else None
        with pytest.raises(ValueError) as learner_error:
            Learner(model, opt, labels, STRATEGIES.build(name), label_opt)
        with pytest.raises(ValueError) as direct:
            STRATEGIES.build(name).compute(MetaProblem(model, opt, labels, batch, meta))
        assert str(learner_error.value) == str(direct.value) == expected


def test_meta_problem_loss_by_name_or_callable():
    targets, batch, meta = make_data()
    model = nn.Linear(D, C)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    labels = make_learnable_labels("per-sample", targets)
    by_name = MetaProblem(model, opt, labels, batch, meta, loss="gce")
    assert by_name.inner_loss(model(batch[0]), by_name.soft_targets()).item() > 0
    with pytest.raises(ValueError, match="unknown training loss 'nope'; available: "):
        MetaProblem(model, opt, labels, batch, meta, loss="nope")
    with pytest.raises(TypeError, match=r"MetaProblem.loss must be a training loss name \(.*ce.*\) or a callable"):
        MetaProblem(model, opt, labels, batch, meta, loss=3)
