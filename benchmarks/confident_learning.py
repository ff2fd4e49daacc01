"""Confident learning (Northcutt et al., 2021) as a noisy-label baseline, through ``cleanlab``.

The recipe of cleanlab's own benchmarks, on the same model, loop and data as every other method:

1. out-of-fold probabilities: the training set split into ``FOLDS`` stratified-at-random folds; for
   each, cross-entropy trained on the other folds (plus the clean meta samples, the clean data the
   meta methods get) predicts the held-out fold;
2. ``cleanlab.filter.find_label_issues`` on those probabilities flags the label errors (by default its
   default rule, ``prune_by_noise_rate``; ``FILTERS`` are the rules it offers, the knob
   ``benchmarks/tuning.py`` searches); they are ranked by cleanlab's self-confidence quality score;
3. cross-entropy retrained on the samples it keeps plus the clean meta samples: the reported run.

``cleanlab`` is an optional extra (``pip install -e '.[benchmarks]'``); the core never imports it.
``fit_cell(config)`` is the harness cell (``benchmarks/noisy_labels.py``'s confident-learning row):
``config`` is the retraining's configuration, a cross-entropy run with ``meta_in_train=True``.
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

import torch

from labelmeta import Config, LabelIssues, Results, fit
from labelmeta.build import splits_for
from labelmeta.data import Splits, loader
from labelmeta.metrics import predict
from labelmeta.runner import fit_learner

FOLDS = 5
#: cleanlab's rules for which samples to flag (``find_label_issues(filter_by=...)``); the first is its default
FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning")


def import_cleanlab():
    try:
        import cleanlab.filter
        import cleanlab.rank
    except ImportError as err:
        raise ImportError("the confident-learning baseline needs cleanlab: pip install -e '.[benchmarks]'") from err
    return cleanlab


def fold_of(n: int, folds: int, seed: int) -> torch.Tensor:
    """``LongTensor[n]``: each sample's fold, a seeded random permutation cut into ``folds`` near-equal parts."""
    if not 2 <= folds <= n:
        raise ValueError(f"folds must be in [2, {n}], got {folds}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    fold = torch.empty(n, dtype=torch.long)
    fold[order] = torch.arange(n) % folds
    return fold


def out_of_fold_probabilities(config: Config, splits: Splits, noisy: int, folds: int = FOLDS) -> torch.Tensor:
    """``[noisy, C]``: the probabilities of each of the first ``noisy`` training samples (the annotated
    ones; the clean meta samples follow them and are in every fold's training) from cross-entropy
    trained without its fold."""
    n = len(splits.labels.noisy)
    fold = fold_of(noisy, folds, config.seed)
    probabilities = torch.empty(noisy, splits.num_classes)
    for k in range(folds):
        held_out = torch.zeros(n, dtype=torch.bool)
        held_out[:noisy] = fold == k
        learner, _ = fit_learner(config.replace(output=None, checkpoint=None, log_dir=None), splits.subset(~held_out))
        logits, _ = predict(learner.model, loader(splits.subset(held_out).train, 1000, shuffle=False), config.device)
        probabilities[fold == k] = torch.softmax(logits, 1)
    return probabilities


def confident_learning(config: Config, folds: int = FOLDS, filter_by: str = FILTERS[0]) -> Tuple[Results, LabelIssues]:
    """The recipe of this module's docstring for the retraining configuration ``config``: the
    retrained run's Results (its wall time the whole recipe's, its detection figures those of the
    filter, its effective noise that of the data before the filter) and the filter's label issues on
    the annotated training samples."""
    import time

    cleanlab = import_cleanlab()
    if filter_by not in FILTERS:
        raise ValueError(f"filter_by must be one of {', '.join(FILTERS)}, got {filter_by!r}")
    if not config.meta_in_train or config.meta_per_class == 0:
        raise ValueError("confident learning retrains on the kept samples plus the clean meta samples: "
                         "config needs meta_in_train=True and meta_per_class > 0")
    start = time.perf_counter()
    splits = splits_for(config)
    noisy = len(splits.labels.noisy) - len(splits.meta)
    annotated, true = splits.labels.noisy[:noisy], splits.labels.true[:noisy]
    probabilities = out_of_fold_probabilities(config, splits, noisy, folds)
    labels, pred_probs = annotated.numpy(), probabilities.double().numpy()
    issues = torch.from_numpy(cleanlab.filter.find_label_issues(labels, pred_probs, filter_by=filter_by, n_jobs=1))
    quality = torch.from_numpy(cleanlab.rank.get_label_quality_scores(labels, pred_probs))
    suggestion, suggested = probabilities.double().max(1)
    found = LabelIssues(score=1 - quality, suggested=suggested, suggested_probability=suggestion,
                        annotated=annotated, flagged=issues, true=true)
    keep = torch.cat([~issues, torch.ones(len(splits.labels.noisy) - noisy, dtype=torch.bool)])
    results = fit(config, splits.subset(keep))
    stats = found.stats()
    # the noise of the data the recipe was given (the annotated samples and the clean meta set), not of
    # the filtered set the last run trained on
    results = dataclasses.replace(results, effective_noise=splits.labels.effective_rate,
                                  wall_time=time.perf_counter() - start, detect_precision=stats.precision,
                                  detect_recall=stats.recall, detect_f1=stats.f1,
                                  detect_average_precision=stats.average_precision)
    return results, found


def fit_cell(config: Config, filter_by: str = FILTERS[0]) -> dict:
    """The harness cell: :func:`confident_learning`'s Results as a dict, with the ``"filter_by"`` it
    ran (not a Config field, so a store tells the rules apart by it; see :func:`ran_filter`)."""
    return {**dataclasses.asdict(confident_learning(config, filter_by=filter_by)[0]), "filter_by": filter_by}


def ran_filter(stored: dict) -> str:
    """The cleanlab rule a stored cell ran (cells from before it was recorded ran the default)."""
    return stored.get("filter_by", FILTERS[0])
