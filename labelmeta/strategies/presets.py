"""The methods by their names: strategies kept under the names of the methods they are.

Config files, command lines, checkpoints and stored results name them; each is a pair of
:mod:`.strategy` with the method's options: ``one-step-reweight`` (the default), ``reweight``
(learning to reweight as published) and ``meta-weight-net``.
"""
from __future__ import annotations

from typing import Literal

from .one_step import OneStep
from .strategy import STRATEGIES, Strategy
from .targets import LabelsAndWeights, WeightNet, Weights
from .unrolls import Unrolled


@STRATEGIES.register("one-step-reweight")
def one_step_reweight(*, steps: int = 1, product: Literal["auto", "forward", "reverse"] = "auto",
                      weighting: Literal["proportional", "binary"] = "proportional", refresh: int = 1) -> Strategy:
    """Per-sample weights and the labels from one exact one-step hypergradient (the default): ``one-step:labels+weights``.

    Args:
        steps: inner steps ``k`` (>= 1); the gradients flow through the last one; default 1.
        product: how ``one-step`` computes ``J u``: ``"forward"``, ``"reverse"`` or ``"auto"``; default ``"auto"``.
        weighting: ``"proportional"`` or ``"binary"`` weights of the helpful samples; default ``"proportional"``.
        refresh: recompute the meta loss's gradient every ``refresh`` meta steps, reusing it in between
            (see ``one-step``); default 1 (exact at every step).
    """
    return Strategy(OneStep(steps=steps, product=product, refresh=refresh), LabelsAndWeights(weighting=weighting),
                    "one-step-reweight")


@STRATEGIES.register("reweight")
def reweight(*, steps: int = 1) -> Strategy:
    """Learning to reweight (Ren et al., 2018) as published: ``unrolled:weights`` (the gradient at ``w = 0``).

    Args:
        steps: inner steps ``k`` of the unroll; default 1 (the paper's).
    """
    return Strategy(Unrolled(steps=steps), Weights(at="zero"), "reweight")


@STRATEGIES.register("meta-weight-net")
def meta_weight_net(*, hidden: int = 100, lr: float = 1e-3, weight_decay: float = 1e-4,
                    product: Literal["auto", "forward", "reverse"] = "auto") -> Strategy:
    """Meta-Weight-Net (Shu et al., 2019) through the exact one-step hypergradient: ``one-step:weight-net``.

    Args:
        hidden: width of the network's hidden layer; default 100 (the paper's).
        lr: Adam's learning rate for the network; default 1e-3.
        weight_decay: Adam's weight decay for the network; default 1e-4.
        product: how ``one-step`` computes ``J u``; default ``"auto"``.
    """
    return Strategy(OneStep(product=product), WeightNet(hidden=hidden, lr=lr, weight_decay=weight_decay),
                    "meta-weight-net")


# the presets under the names of the classes they replaced (the public API before targets)
OneStepReweight = one_step_reweight
MetaReweight = reweight
MetaWeightNet = meta_weight_net
