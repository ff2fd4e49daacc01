"""A benchmark cell that also records the corrected-vs-broken trade-off of a run's learned labels.

:func:`fit_cell` is :func:`labelmeta.fit` plus ``"curve"``: for each confidence threshold ``t`` of
:data:`THRESHOLDS`, the corrupted labels corrected and the clean labels broken (%) had the run relabelled
exactly the samples it flags whose learned label's top class has probability ``>= t`` (the others keep
their annotation). For ``detect-correct`` labels the flags are the rejected samples and the run's own
operating point is its ``threshold`` option; for other learnable labels, every sample whose label left its
annotation. It is read from the run's final labels, so one run gives the whole curve.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List

import torch

from labelmeta import Config
from labelmeta.metrics import label_correction
from labelmeta.runner import fit_learner

#: the confidence thresholds of the curve
THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def curve(table: torch.Tensor, flagged: torch.Tensor, annotated: torch.Tensor, true: torch.Tensor) -> List[List[float]]:
    """``[[t, corrected %, broken %], ...]`` over :data:`THRESHOLDS` (see the module docstring)."""
    probability, top = table.max(1)
    points = []
    for t in THRESHOLDS:
        hard = torch.where(flagged & (probability >= t), top, annotated)
        stats = label_correction(hard, annotated, true)
        points.append([t, 100 * stats.corrected, 100 * stats.clean_broken])
    return points


def fit_cell(config: Config) -> Dict:
    """The harness cell: the run's Results as a dict, with its ``"curve"`` (learnable labels and known truth)."""
    seen = {}
    learner, results = fit_learner(config, on_epoch=lambda learner, splits, record: seen.update(splits=splits))
    out = dataclasses.asdict(results)
    labels, truth = learner.labels, seen["splits"].labels
    if labels.learnable and truth.truth_known:
        table = labels.table().cpu()
        rejected = getattr(labels, "rejected", None)
        flagged = rejected().cpu() if rejected is not None else table.argmax(1) != truth.noisy
        judged = truth.judged  # the clean set added to training is not counted (labelmeta.metrics.label_quality)
        out["curve"] = curve(table[judged], flagged[judged], truth.noisy[judged], truth.true[judged])
    return out
