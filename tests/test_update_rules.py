"""The differentiable update rules against the real ``torch.optim`` step (float64, 1e-12).

Oracle: ``torch.optim.SGD`` / ``Adam`` / ``AdamW`` themselves, stepped on the same gradients, from
a fresh optimiser (no state: Adam's bias correction from step 0) and from a warm one, for every
combination of the options the rules model, with two parameter groups. The rules reach ``higher``
through ``register_optim``; the same comparison runs through ``higher``'s differentiable optimiser.
"""
from __future__ import annotations

import itertools

import higher
import pytest
import torch

from labelmeta import update_rules
from labelmeta.update_rules import MODELLED, rule_for, supported_optimizers

SGD_CASES = [dict(momentum=m, dampening=d, nesterov=n, weight_decay=wd, maximize=mx)
             for m, d, n, wd, mx in itertools.product([0.0, 0.9], [0.0, 0.3], [False, True], [0.0, 0.01], [False, True])
             if not n or (m > 0 and d == 0)]
ADAM_CASES = [dict(amsgrad=a, weight_decay=wd, maximize=mx, eps=eps, betas=betas)
              for a, wd, mx, eps, betas in itertools.product([False, True], [0.0, 0.1], [False, True], [1e-8, 1e-3],
                                                              [(0.9, 0.999), (0.5, 0.9)])]
CASES = ([(torch.optim.SGD, dict(lr=0.1, **c)) for c in SGD_CASES]
         + [(kind, dict(lr=0.01, **c)) for kind in (torch.optim.Adam, torch.optim.AdamW) for c in ADAM_CASES])


def _id(case) -> str:
    kind, options = case
    return kind.__name__ + "-" + ",".join(f"{k}={v}" for k, v in options.items() if k != "lr")


def _problem(kind, options, seed=0):
    """Two parameters in two groups (the second with half the learning rate) and 5 gradients.

    One gradient entry is exactly 0 in every step (an unused weight: Adam's second moment stays 0
    there), one is 0 in the first step only.
    """
    g = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(4, 3, generator=g)), torch.nn.Parameter(torch.randn(5, generator=g))]
    opt = kind([{"params": [params[0]]}, {"params": [params[1]], "lr": options["lr"] / 2}], **options)
    grads = [[torch.randn(4, 3, generator=g), torch.randn(5, generator=g)] for _ in range(5)]
    for step in grads:
        step[0][0, 0] = 0.0
    grads[0][1][2] = 0.0
    return params, opt, grads


@pytest.mark.parametrize("warm", [False, True], ids=["fresh", "warm"])
@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_rule_is_the_torch_optim_step(case, warm, float64):
    kind, options = case
    params, opt, grads = _problem(kind, options)
    warm_steps = 2 if warm else 0
    for step in grads[:warm_steps]:
        for p, gr in zip(params, step):
            p.grad = gr.clone()
        opt.step()
    rule = rule_for(opt)
    groups = [opt.param_groups[0], opt.param_groups[1]]
    fast = [p.detach().clone() for p in params]
    states = [dict(opt.state.get(p, {})) for p in params]
    for step in grads[warm_steps:]:
        for i, gr in enumerate(step):
            fast[i], states[i] = rule(fast[i], gr, states[i], groups[i])
        for p, gr in zip(params, step):
            p.grad = gr.clone()
        opt.step()
    for f, p in zip(fast, params):
        assert (f - p.detach()).abs().max().item() <= 1e-12


@pytest.mark.parametrize("case", [c for c in CASES if c[1].get("eps", 1e-3) == 1e-3 and c[1].get("weight_decay") != 0],
                         ids=_id)
def test_higher_steps_with_the_same_rule(case, float64):
    """``higher.innerloop_ctx`` on a warm optimiser takes exactly the torch.optim steps too."""
    kind, options = case
    model = torch.nn.Linear(3, 2)
    opt = kind(model.parameters(), **options)
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(3))
    for _ in range(2):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    with higher.innerloop_ctx(model, opt, copy_initial_weights=True) as (fmodel, diffopt):
        assert type(diffopt).__module__ == update_rules.__name__
        for _ in range(2):
            diffopt.step(fmodel(x).pow(2).mean())
        fast = [p.detach() for p in fmodel.parameters()]
    for _ in range(2):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    for f, p in zip(fast, model.parameters()):
        assert (f - p.detach()).abs().max().item() <= 1e-12


def test_an_optimizer_without_a_rule_is_refused():
    p = [torch.nn.Parameter(torch.zeros(2))]
    assert supported_optimizers() == ["Adam", "AdamW", "SGD"]
    with pytest.raises(ValueError, match="no differentiable RMSprop .*; use one of: Adam, AdamW, SGD"):
        rule_for(torch.optim.RMSprop(p))

    class MySGD(torch.optim.SGD):  # a subclass may change the arithmetic: no rule is assumed
        pass

    with pytest.raises(ValueError, match="no differentiable MySGD"):
        rule_for(MySGD(p, lr=0.1))


def test_an_option_the_rule_does_not_model_is_refused(monkeypatch):
    """A constructor option outside the rule's model is refused when it differs from its default,
    and ignored at its default; implementation switches and scheduler keys never matter."""
    p = [torch.nn.Parameter(torch.zeros(2))]
    monkeypatch.setitem(MODELLED, torch.optim.SGD, MODELLED[torch.optim.SGD] - {"nesterov"})
    rule_for(torch.optim.SGD(p, lr=0.1, momentum=0.9, foreach=False))
    with pytest.raises(ValueError, match=r"SGD\(nesterov=True\) in parameter group 1 is not reproduced"):
        rule_for(torch.optim.SGD([{"params": p[:1]}, {"params": [torch.nn.Parameter(torch.zeros(1))], "nesterov": True}],
                                 lr=0.1, momentum=0.9))
    opt = torch.optim.SGD(p, lr=0.1)
    torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=3)  # adds initial_lr to the group
    rule_for(opt)
