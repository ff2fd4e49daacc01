"""Meta targets: what a meta step trains, and how the model step uses it.

A target names the meta parameters a backend differentiates (:meth:`Target.parameters`: label
parameters, per-sample weights, a weight network's parameters, together with the per-sample
weights of the inner loss they give) and turns the backend's gradient into an update
(:meth:`Target.update`): a gradient on the label parameters (which the learner's label optimiser
steps), per-sample weights for the model step, or a step of its own network. A target owns what it
learns and its ``state_dict``; any target runs on any backend (:mod:`.strategy` pairs them).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..options import check_count
from ..registry import Registry
from .functional_model import FunctionalModel
from .inner_loop import normalised, summed_across_processes
from .problem import MetaProblem, MetaStats, accumulate_label_grads, trainable

#: the meta targets by name
TARGETS: Registry["Target"] = Registry("meta target")


@dataclass
class MetaParameters:
    """The meta parameters of one step, as a target hands them to a backend.

    Attributes:
        inputs: the tensors the hypergradient is taken for (leaves: label parameters, weights, a network's).
        weights: the inner loss's ``[B]`` per-sample weights as a function of the inputs' current values
            (``None``: the plain batch mean); differentiable in ``inputs``.
        context: what the target computed for this step and needs again in :meth:`Target.update`.
    """

    inputs: List[Tensor]
    weights: Callable[[], Optional[Tensor]] = lambda: None
    context: Dict[str, Any] = field(default_factory=dict)


class Target(abc.ABC):
    """Base class: the meta parameters of a step, and what their gradient updates.

    Options are keyword-only constructor arguments with a type and a default.
    """

    #: whether it gives the label parameters gradients (then the labels must be learnable to learn anything)
    learns_labels: bool = False
    #: whether it returns per-sample weights for the model step
    learns_weights: bool = False
    #: whether it can run in several processes (:mod:`labelmeta.distributed`)
    supports_distributed: bool = True

    @abc.abstractmethod
    def parameters(self, problem: MetaProblem) -> MetaParameters:
        """The meta parameters of ``problem``'s step (leaves requiring grad) and the inner loss's weights."""

    @abc.abstractmethod
    def update(self, problem: MetaProblem, meta: MetaParameters, meta_loss: float,
               grads: Sequence[Optional[Tensor]]) -> MetaStats:
        """Use the gradient ``grads`` of the meta loss (one per ``meta.inputs``, ``None`` where it
        does not reach one) and say what the step measured."""

    def state_dict(self) -> Dict[str, Any]:
        """What the target learns itself (a network, its optimiser), for checkpoints; none by default."""
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, got {sorted(state)}")


@TARGETS.register("labels")
class Labels(Target):
    """The label parameters (the paper's target): their gradient goes to ``.grad``, for the learner's label optimiser."""

    learns_labels = True

    def parameters(self, problem: MetaProblem) -> MetaParameters:
        return MetaParameters(trainable(problem.labels))

    def update(self, problem: MetaProblem, meta: MetaParameters, meta_loss: float,
               grads: Sequence[Optional[Tensor]]) -> MetaStats:
        accumulate_label_grads(problem.labels, grads)
        return MetaStats(meta_loss=meta_loss)


def _weight_dtype(problem: MetaProblem) -> torch.dtype:
    """The dtype per-sample weights take: the model's (its first floating-point parameter's), as the loss
    they weight is; not the inputs', which may be token ids."""
    for p in problem.model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def _weighting(weighting: str) -> str:
    if weighting not in ("proportional", "binary"):
        raise ValueError(f"weighting must be 'proportional' or 'binary', got {weighting!r}")
    return weighting


@TARGETS.register("weights")
class Weights(Target):
    """Per-sample weights of the model step, learning to reweight (Ren et al., 2018).

    Every training sample enters the inner loss with a weight ``w_i``; the gradient of the meta loss
    with respect to the weights says which samples help the meta batch, and the model step uses
    ``max(-dL/dw, 0)``, normalised to sum to one (all zero when no sample helps: the step is
    skipped). The labels are used as they are (``one-hot`` for the method).

    Args:
        at: where the gradient is taken: ``"zero"`` (``w = 0``, the paper's: the look-ahead from the
            current weights) or ``"mean"`` (``w = 1/B``: after the ordinary inner step); default ``"zero"``.
        weighting: ``"proportional"`` (each helpful sample weighted by how much it helps) or
            ``"binary"`` (every helpful sample the same weight); default ``"proportional"``.
    """

    learns_weights = True

    def __init__(self, *, at: Literal["zero", "mean"] = "zero",
                 weighting: Literal["proportional", "binary"] = "proportional") -> None:
        if at not in ("zero", "mean"):
            raise ValueError(f"at must be 'zero' or 'mean', got {at!r}")
        self.at, self.weighting = at, _weighting(weighting)

    def _leaf(self, problem: MetaProblem) -> Tensor:
        # the weights of this process's samples in the global batch (the mean: 1 / its size)
        value = 0.0 if self.at == "zero" else 1.0 / problem.batch_size
        return torch.full((len(problem.batch[0]),), value, dtype=_weight_dtype(problem), device=problem.batch[0].device,
                          requires_grad=True)

    def parameters(self, problem: MetaProblem) -> MetaParameters:
        w = self._leaf(problem)
        return MetaParameters([w], lambda: w)

    def weights_from(self, grad: Optional[Tensor], like: Tensor, problem: Optional[MetaProblem] = None) -> Tensor:
        """The model step's weights from the meta loss's gradient ``grad [B]`` with respect to the inner
        weights, normalised over ``problem``'s global batch (``None``: over ``grad``'s samples)."""
        helps = torch.zeros_like(like).detach() if grad is None else (-grad).clamp_min(0)
        with torch.no_grad():
            return normalised(helps if self.weighting == "proportional" else helps.gt(0).to(helps.dtype), problem)

    def update(self, problem: MetaProblem, meta: MetaParameters, meta_loss: float,
               grads: Sequence[Optional[Tensor]]) -> MetaStats:
        return MetaStats(meta_loss=meta_loss, sample_weights=self.weights_from(grads[0], meta.inputs[0], problem))


@TARGETS.register("labels+weights")
class LabelsAndWeights(Weights):
    """Per-sample weights and, with learnable labels, the labels, from one hypergradient (the default's target).

    The gradient is taken at ``w = 1/B`` (the ordinary mean), with respect to the weights and to the
    label parameters: the labels take their usual step, and the model step uses the weights of
    :class:`Weights`. A sample whose annotation hurts the meta batch is down-weighted now and
    relabelled over time, and its weight returns once its label helps.

    Args:
        weighting: ``"proportional"`` or ``"binary"`` (see :class:`Weights`); default ``"proportional"``.
    """

    learns_labels = True

    def __init__(self, *, weighting: Literal["proportional", "binary"] = "proportional") -> None:
        super().__init__(at="mean", weighting=weighting)

    def parameters(self, problem: MetaProblem) -> MetaParameters:
        w = self._leaf(problem)
        return MetaParameters([w, *(trainable(problem.labels) if problem.labels.learnable else [])], lambda: w)

    def update(self, problem: MetaProblem, meta: MetaParameters, meta_loss: float,
               grads: Sequence[Optional[Tensor]]) -> MetaStats:
        accumulate_label_grads(problem.labels, grads[1:])
        return super().update(problem, meta, meta_loss, grads)


@TARGETS.register("weight-net")
class WeightNet(Target):
    """Meta-Weight-Net (Shu et al., 2019): a small network maps each sample's training loss to its weight.

    The network is the paper's: ``Linear(1, hidden) - ReLU - Linear(hidden, 1) - sigmoid``, fed each
    sample's training loss (cross-entropy against its current soft target, detached, with the model as
    it is before the step); its weights are normalised to sum to one over the batch. The inner step
    trains with these weights, the meta gradient reaches the network's parameters through them, and
    the network takes an Adam step (the paper's ``lr=1e-3``, ``weight_decay=1e-4``); the updated
    network then weights the real model step. Unlike learning to reweight, which scores every sample
    afresh at every step, one curve ``loss -> weight`` is shared by all samples and learned from all
    of them. Its parameters and optimiser state are part of a checkpoint (:meth:`state_dict`).

    Args:
        hidden: width of the hidden layer; default 100 (the paper's).
        lr: Adam's learning rate for the network; default 1e-3.
        weight_decay: Adam's weight decay for the network; default 1e-4.
    """

    learns_weights = True

    def __init__(self, *, hidden: int = 100, lr: float = 1e-3, weight_decay: float = 1e-4) -> None:
        hidden = check_count("hidden", hidden)
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Sigmoid())
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=weight_decay)

    def weights(self, losses: Tensor, problem: Optional[MetaProblem] = None) -> Tensor:
        """``[B]`` weights of samples with training losses ``losses [B]``, summing to one (or all zero)
        over ``problem``'s global batch (``None``: over these samples)."""
        return normalised(self.net(losses.detach().unsqueeze(1).to(next(self.net.parameters()).dtype)).squeeze(1),
                          problem)

    def parameters(self, problem: MetaProblem) -> MetaParameters:
        x = problem.batch[0]
        self.net.to(x.device)
        with torch.no_grad():
            if problem.logits is not None:
                logits = problem.logits.detach()
            else:  # the current weights on cloned buffers: BatchNorm's running statistics stay as they are
                engine = FunctionalModel(problem.model, problem.optimizer)
                logits = engine(engine.start().fast, x)
            losses = F.cross_entropy(logits, problem.soft_targets(), reduction="none")  # soft_cross_entropy's, per sample
        return MetaParameters(list(self.net.parameters()), lambda: self.weights(losses, problem),
                              {"losses": losses, "dtype": logits.dtype})

    def update(self, problem: MetaProblem, meta: MetaParameters, meta_loss: float,
               grads: Sequence[Optional[Tensor]]) -> MetaStats:
        self.optimizer.zero_grad(set_to_none=True)
        grads = summed_across_processes(problem, grads, meta.inputs)  # each process's samples' part, made whole
        for p, g in zip(meta.inputs, grads):
            p.grad = g
        self.optimizer.step()
        with torch.no_grad():  # the updated network weights the real step
            weights = self.weights(meta.context["losses"], problem)
        return MetaStats(meta_loss=meta_loss, sample_weights=weights.to(meta.context["dtype"]))

    def state_dict(self) -> Dict[str, Any]:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
