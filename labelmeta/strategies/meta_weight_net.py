"""Meta-Weight-Net (Shu et al., 2019): a small network maps each sample's training loss to its weight.

The network is meta-learned through the one-step look-ahead: the inner step trains on the batch
with the weights it gives, and the meta loss of the updated model is back-propagated into its
parameters (by :meth:`OneStep.hypergradient`, exactly, without a second-order graph). After its
update the network weights the real model step. Unlike learning to reweight, which scores every
sample afresh at every step, one curve ``loss -> weight`` is shared by all samples and learned
from all of them.
"""
from __future__ import annotations

from typing import Any, Dict, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import STRATEGIES, MetaProblem, MetaStats, normalised
from .one_step import OneStep
from .unroll import FunctionalUnroll


@STRATEGIES.register("meta-weight-net")
class MetaWeightNet(OneStep):
    """Per-sample weights from a meta-learned ``loss -> weight`` network (the reference meta-reweighting method).

    The network is the paper's: ``Linear(1, hidden) - ReLU - Linear(hidden, 1) - sigmoid``, fed each
    sample's training loss (cross-entropy against its current soft target, detached); its weights
    are normalised to sum to one over the batch (the paper's first version; the step length of a
    plain batch mean). It is trained with Adam (the paper's ``lr=1e-3``, ``weight_decay=1e-4``)
    on the one-step hypergradient; the labels are used as they are (``one-hot`` for the method).
    Its parameters and optimiser state are part of a checkpoint (:meth:`state_dict`).

    Args:
        hidden: width of the hidden layer; default 100 (the paper's).
        lr: Adam's learning rate for the network; default 1e-3.
        weight_decay: Adam's weight decay for the network; default 1e-4.
        product: how ``J u`` is computed (see :class:`OneStep`); default ``"auto"``.
    """

    learns_weights = True
    learns_labels = False
    supports_distributed = False  # its weights are normalised over the local batch

    def __init__(self, *, hidden: int = 100, lr: float = 1e-3, weight_decay: float = 1e-4,
                 product: Literal["auto", "forward", "reverse"] = "auto") -> None:
        super().__init__(steps=1, product=product)
        if int(hidden) != hidden or hidden < 1:
            raise ValueError(f"hidden must be a positive integer, got {hidden}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.net = nn.Sequential(nn.Linear(1, int(hidden)), nn.ReLU(), nn.Linear(int(hidden), 1), nn.Sigmoid())
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=weight_decay)

    def weights(self, losses: Tensor) -> Tensor:
        """``[B]`` weights of samples with training losses ``losses [B]``, summing to one (or all zero)."""
        return normalised(self.net(losses.detach().unsqueeze(1).to(next(self.net.parameters()).dtype)).squeeze(1))

    def compute(self, problem: MetaProblem) -> MetaStats:
        x = problem.batch[0]
        self.net.to(x.device)
        with torch.no_grad():
            if problem.logits is not None:
                logits = problem.logits.detach()
            else:  # the current weights on cloned buffers: BatchNorm's running statistics stay as they are
                unroll = FunctionalUnroll(problem.model, problem.optimizer)
                logits = unroll(unroll.start()[0], x)
            losses = F.cross_entropy(logits, problem.soft_targets(), reduction="none")  # soft_cross_entropy's, per sample
        params = list(self.net.parameters())
        with torch.enable_grad():
            meta_loss, grads = self.hypergradient(problem, params, weights=self.weights(losses))
        self.optimizer.zero_grad(set_to_none=True)
        for p, g in zip(params, grads):
            p.grad = g
        self.optimizer.step()
        with torch.no_grad():  # the updated network weights the real step
            weights = self.weights(losses)
        return MetaStats(meta_loss=meta_loss, sample_weights=weights.to(logits.dtype))

    def state_dict(self) -> Dict[str, Any]:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
