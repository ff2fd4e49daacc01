"""Noisy-label correction: datasets × noise settings × methods × seeds, every method in one runner.

    python benchmarks/noisy_labels.py                      # MNIST-1D + digits, 5 settings, 3 seeds
    python benchmarks/noisy_labels.py --jobs 2             # the same on two processes
    python benchmarks/noisy_labels.py --datasets cifar10 --data-root ~/data --device cuda   # GPU
    python benchmarks/noisy_labels.py --smoke              # seconds; what the test suite runs

Resumable: every finished cell (dataset, setting, method, seed) is stored in
``noisy_labels.json`` as soon as it ends, and a rerun skips the cells whose configuration is
unchanged. Writes ``noisy_labels.{json,md}``, ``noisy_labels_accuracy.png`` (test accuracy vs
noise) and ``noisy_labels_correction.png`` (corrupted labels corrected per epoch) under ``--out``.
Every method is a set of :class:`~labelmeta.Config` overrides run by :func:`labelmeta.fit` on the
same data, noise draw and seed; where ``benchmarks/tuning.py`` chose a row's knob on a validation
split, the value it stored in ``tuning.json`` beside this script's results is applied (``--untuned``:
the rows' own values).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import confident_learning
import correction_curve
import harness
from common import save_figure, smoke
from labelmeta.compare import cell, mean_std
from labelmeta import Config

#: base configuration per dataset (each method overrides a few fields): the defaults, sizes scaled to the data
#: the bases keep the labels of the default before issue 38 (per-sample), so that every row that names no labels
#: (the previous default and its ablations) keeps the configuration its stored cells ran; the rows of today's
#: default (detect-correct) name theirs
_PREVIOUS = dict(labels="per-sample")
DATASETS: Dict[str, Config] = {
    "mnist1d": Config(**_PREVIOUS),
    "digits": Config(dataset="digits", model="mlp", meta_per_class=10, meta_batch_size=100, batch_size=64, **_PREVIOUS),
    # GPU: torchvision CIFAR-10 from --data-root, CIFAR ResNet-18, standard augmentation
    "cifar10": Config(dataset="cifar10", model="resnet18", lr=0.1, epochs=120, batch_size=128,
                      meta_per_class=100, meta_batch_size=200, warmup_epochs=10, **_PREVIOUS),
}

#: noise settings: name -> (kind, nominal rate)
SETTINGS: Dict[str, Tuple[str, float]] = {
    "symmetric-20": ("symmetric", 0.2),
    "symmetric-40": ("symmetric", 0.4),
    "symmetric-60": ("symmetric", 0.6),
    "symmetric-80": ("symmetric", 0.8),
    "asymmetric-40": ("asymmetric", 0.4),
    "small-clean-40": ("symmetric", 0.4),
    # instance-dependent (issue 37): Xia et al. 2020's generator (labelmeta.noise.instance), run apart with
    # --settings instance-20 instance-40 --stem noisy_labels_instance
    "instance-20": ("instance", 0.2),
    "instance-40": ("instance", 0.4),
}
#: the settings a run without --settings covers (the instance-dependent ones have their own store)
DEFAULT_SETTINGS = [s for s in SETTINGS if not s.startswith("instance")]
#: settings that also change the clean set: 10 clean samples a class (digits' base already has 10, so
#: there its cells repeat symmetric-40's configuration)
SMALL_CLEAN: Dict[str, dict] = {"small-clean-40": dict(meta_per_class=10, meta_batch_size=100)}

LEARNED = "learned labels + weights (previous default)"
ELR = "ELR (β 0.7), clean meta set added to training"
#: the default's weights with ELR's loss and targets in place of learned labels (issue 26's lead)
WEIGHTS_ELR = "learned weights + ELR loss (β 0.7)"
SMOOTHING, GCE = "label smoothing", "generalised cross-entropy"
BOOT_SOFT, BOOT_HARD = "bootstrapping, soft", "bootstrapping, hard"
L2RW = "meta-reweighting (L2RW, k=1 unroll)"
CONFIDENT = "confident learning (cleanlab, 5-fold), then cross-entropy + clean meta set"
REFERENCE = "cross-entropy on clean labels (reference)"
CLEAN_LEARNED = "learned labels + weights (previous default) on clean labels"
CORRECTOR = "learned labels: corrector + weights (amortised, MLC-style)"
CLEAN_CORRECTOR = "learned labels: corrector + weights, label lr 0.1, on clean labels"
#: issue 38: the weights detect on the annotations, the rejected samples' labels learn (labelmeta.detect_correct)
DETECT_CORRECT = "detect, then correct (weights on annotations, rejected samples' labels learn), clean set in training"
#: today's default (Config(labels="detect-correct")): the clean set holds the meta batches only
DETECT_CORRECT_ALONE = "detect, then correct (default): clean set not in training"
#: the rows run before the default's weighting became binary (the strategy's proportional weights in the model step)
DETECT_CORRECT_PROPORTIONAL = "detect, then correct, proportional weights: clean set not in training"
_PROPORTIONAL = dict(detect_fraction=0.9, threshold=0.6, weighting="proportional")
#: the ablation of the label hypergradient: the rejected samples' labels are their running predictions alone
DETECT_CORRECT_FIXED = "detect, then correct, running predictions only (label lr 0)"
#: the cheaper run: a meta step every 4 steps, the steps between weighted by the verdict so far
DETECT_CORRECT_EVERY4 = "detect, then correct, clean set in training, a meta step every 4 steps"
CLEAN_DETECT_CORRECT = "detect, then correct, on clean labels"
#: the rows that run once per dataset and seed, without noise
CLEAN = (REFERENCE, CLEAN_LEARNED, CLEAN_CORRECTOR, CLEAN_DETECT_CORRECT)
#: rows that take the default apart (the ablation): each removes one of its components
ABLATION = {
    "ablation: weights only (labels fixed; L2RW by one-step)": "relabelling",
    "learned labels: per-sample (labels only, no weights)": "the weights",
}
#: method name -> Config overrides (the rest is the dataset's base: the defaults). The learned-label
#: rows learn the labels alone (the ``labels`` target) by ``one-step``.
METHODS: Dict[str, dict] = {
    "cross-entropy": dict(labels="one-hot", strategy="none"),
    SMOOTHING: dict(labels="smoothing", strategy="none"),
    "cross-entropy, clean meta set added to training": dict(labels="one-hot", strategy="none", meta_in_train=True),
    BOOT_SOFT: dict(labels="one-hot", strategy="none", loss="bootstrap-soft"),
    BOOT_HARD: dict(labels="one-hot", strategy="none", loss="bootstrap-hard"),
    GCE: dict(labels="one-hot", strategy="none", loss="gce"),
    L2RW: dict(labels="one-hot", strategy="reweight"),
    # the retraining's configuration; the filter before it is confident_learning.fit_cell (RUNNERS)
    CONFIDENT: dict(labels="one-hot", strategy="none", meta_in_train=True),
    "Meta-Weight-Net": dict(labels="one-hot", strategy="meta-weight-net"),
    # early-learning regularisation needs no clean set; it gets the clean meta samples as training data,
    # as the retraining after confident learning does
    ELR: dict(labels="temporal-ensemble", loss="elr", strategy="none", meta_in_train=True),
    LEARNED: dict(),
    WEIGHTS_ELR: dict(labels="temporal-ensemble", loss="elr"),
    "ablation: weights only (labels fixed; L2RW by one-step)": dict(labels="one-hot"),
    "learned labels: per-sample (labels only, no weights)": dict(labels="per-sample", strategy="one-step"),
    "learned labels: per-sample-ensemble (previous default)": dict(labels="per-sample-ensemble", strategy="one-step"),
    "learned labels: per-sample-ensemble + GCE loss": dict(labels="per-sample-ensemble", loss="gce",
                                                           label_options=dict(weight=1.0), strategy="one-step"),
    "learned labels: per-class": dict(labels="per-class", strategy="one-step"),
    "learned labels: class-temperature": dict(labels="class-temperature", strategy="one-step"),
    "self-ensemble only (no meta-learning)": dict(labels="per-sample-ensemble", strategy="none"),
    # issue 26: one network corrects every label (labelmeta.labels.Corrector), with the default's weights;
    # label lr 0.1 is the step an exploration on digits chose (docs/results.md says how), and the
    # last row is the corrector without the weights
    CORRECTOR: dict(labels="corrector"),
    "learned labels: corrector + weights, label lr 0.1": dict(labels="corrector", label_lr=0.1),
    "learned labels: corrector alone (no weights), label lr 0.1": dict(labels="corrector", strategy="one-step",
                                                                       label_lr=0.1),
    REFERENCE: dict(labels="one-hot", strategy="none", noise="none", noise_rate=0.0),
    CLEAN_LEARNED: dict(noise="none", noise_rate=0.0),
    CLEAN_CORRECTOR: dict(labels="corrector", label_lr=0.1, noise="none", noise_rate=0.0),
    # issue 38: detection over the first 90 % of the run, relabelling at probability >= 0.6 (both chosen on
    # seed 0 of the 40 % symmetric columns: benchmarks/detect_correct.py says how)
    DETECT_CORRECT: dict(labels="detect-correct", meta_in_train=True, label_options=_PROPORTIONAL),
    DETECT_CORRECT_ALONE: dict(labels="detect-correct", label_options=dict(detect_fraction=0.9, threshold=0.6)),
    DETECT_CORRECT_PROPORTIONAL: dict(labels="detect-correct", label_options=_PROPORTIONAL),
    # (plain SGD at step 0: the mirror optimiser refuses a step of 0)
    DETECT_CORRECT_FIXED: dict(labels="detect-correct", meta_in_train=True, label_optimizer="sgd", label_lr=0.0,
                               label_options=_PROPORTIONAL),
    DETECT_CORRECT_EVERY4: dict(labels="detect-correct", meta_in_train=True, meta_every=4, label_options=_PROPORTIONAL),
    CLEAN_DETECT_CORRECT: dict(labels="detect-correct", meta_in_train=True, noise="none", noise_rate=0.0,
                               label_options=_PROPORTIONAL),
}


#: named sets of rows for --method-set: "peers" is every published method and the default with its two
#: ablations (the rows the instance-dependent columns run), without the variants of our own labels
#: rows run on issue 38's target columns only (symmetric 20 / 40 %, flips, small clean set), which
#: benchmarks/detect_correct.py reports
PARTIAL = [DETECT_CORRECT_FIXED, DETECT_CORRECT_EVERY4]
METHOD_SETS: Dict[str, List[str]] = {
    "all": [m for m in METHODS if m not in PARTIAL],
    "peers": ["cross-entropy", SMOOTHING, "cross-entropy, clean meta set added to training", BOOT_SOFT, BOOT_HARD, GCE,
              L2RW, CONFIDENT, "Meta-Weight-Net", ELR, DETECT_CORRECT_ALONE, DETECT_CORRECT_PROPORTIONAL, DETECT_CORRECT,
              LEARNED, WEIGHTS_ELR,
              CORRECTOR, *ABLATION],
}


#: methods that are more than one ``fit``: method name -> the harness cell that runs them
RUNNERS = {CONFIDENT: confident_learning.fit_cell, **{m: correction_curve.fit_cell for m in
                                                     (DETECT_CORRECT, DETECT_CORRECT_ALONE,
                                                                       DETECT_CORRECT_PROPORTIONAL, DETECT_CORRECT_FIXED,
                                                                       DETECT_CORRECT_EVERY4, CLEAN_DETECT_CORRECT)}}


# --- each tuned row's knob, as benchmarks/tuning.py searches it, and its choices applied -------------------

#: values searched per method (the same for every method)
BUDGET = 4
#: the columns the search runs on, and which benchmark columns each one's choice serves: the instance-dependent
#: columns take the symmetric search's choice, the same transfer for every method (a search of their own,
#: 208 more validation runs, ~1.6 CPU-hours on MNIST-1D, was not run)
FAMILY = {"symmetric-40": [s for s, (kind, _) in SETTINGS.items() if kind in ("symmetric", "instance")],
          "asymmetric-40": [s for s, (kind, _) in SETTINGS.items() if kind == "asymmetric"]}
#: the model's learning rate, for methods with no knob of their own (every base configuration has 0.05)
LRS = (0.02, 0.05, 0.1, 0.2)
#: a key of the overrides that is not a Config field: options of the row's runner (noisy_labels.RUNNERS)
RUNNER_OPTIONS = "runner_options"


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _knob(name: str, values: tuple, overrides, incumbent: Any) -> Tuple[str, Dict[str, dict], str]:
    assert incumbent in values, "the value the benchmark ran before is one of those searched"
    return name, {_label(v): overrides(v) for v in values}, _label(incumbent)


#: noisy_labels row -> (knob, value label -> the overrides on top of the row's own, the incumbent: the
#: value the row had before, its paper's or our default)
SEARCH: Dict[str, Tuple[str, Dict[str, dict], str]] = {
    "cross-entropy": _knob("lr", LRS, lambda v: dict(lr=v), 0.05),
    SMOOTHING: _knob("ε", (0.05, 0.1, 0.2, 0.4), lambda v: dict(label_options=dict(smoothing=v)), 0.1),
    "cross-entropy, clean meta set added to training": _knob("lr", LRS, lambda v: dict(lr=v), 0.05),
    BOOT_SOFT: _knob("β", (0.6, 0.8, 0.9, 0.95), lambda v: dict(loss_options=dict(beta=v)), 0.95),
    BOOT_HARD: _knob("β", (0.6, 0.7, 0.8, 0.9), lambda v: dict(loss_options=dict(beta=v)), 0.8),
    GCE: _knob("q", (0.3, 0.5, 0.7, 0.9), lambda v: dict(loss_options=dict(q=v)), 0.7),
    L2RW: _knob("lr", LRS, lambda v: dict(lr=v), 0.05),
    CONFIDENT: _knob("filter_by", confident_learning.FILTERS, lambda v: {RUNNER_OPTIONS: dict(filter_by=v)},
                        confident_learning.FILTERS[0]),
    "Meta-Weight-Net": _knob("network lr", (1e-4, 1e-3, 1e-2, 3e-2), lambda v: dict(strategy_options=dict(lr=v)), 1e-3),
    ELR: _knob("λ", (1.0, 3.0, 7.0, 15.0), lambda v: dict(loss_options=dict(lam=v)), 3.0),
    WEIGHTS_ELR: _knob("λ", (1.0, 3.0, 7.0, 15.0), lambda v: dict(loss_options=dict(lam=v)), 3.0),
    LEARNED: _knob("label lr", (0.25, 0.5, 1.0, 2.0), lambda v: dict(label_lr=v), 0.5),
    CORRECTOR: _knob("label lr", (0.05, 0.1, 0.25, 0.5), lambda v: dict(label_lr=v), 0.5),
}
assert all(len(values) == BUDGET for _, values, _ in SEARCH.values()), "every method gets the same budget"


def merge(row: Mapping[str, Any], tuned: Mapping[str, Any]) -> dict:
    """A row's overrides with a tuned value's on top (option dicts merged key by key)."""
    out = dict(row)
    for key, value in tuned.items():
        out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


def split_runner_options(overrides: Mapping[str, Any]) -> Tuple[dict, dict]:
    """``(Config overrides, runner options)`` of a merged row."""
    overrides = dict(overrides)
    return overrides, overrides.pop(RUNNER_OPTIONS, {})


def chosen_overrides(chosen: Mapping, dataset: str, setting: str, method: str) -> Optional[dict]:
    """The overrides the search chose for ``method`` in the benchmark column ``setting`` (``None``: not
    tuned there, no choice stored, or the incumbent chosen: the row's own configuration, so that its
    stored cells stand)."""
    column = next((c for c, served in FAMILY.items() if setting in served), None)
    value = chosen.get(dataset, {}).get(column, {}).get(method) if column else None
    if value is None or method not in SEARCH or value == SEARCH[method][2]:
        return None
    return SEARCH[method][1][value]


def load_chosen(path: Path) -> dict:
    """The choices stored in ``path`` (``{}`` if it does not exist)."""
    return json.loads(path.read_text()).get("chosen", {}) if path.exists() else {}


def cell_key(dataset: str, setting: str, method: str, seed: int) -> str:
    return f"{dataset} | {setting} | {method} | seed {seed}"


def tuned_row(chosen: Optional[Mapping], dataset: str, setting: str, method: str, row: dict) -> Tuple[dict, dict]:
    """``(Config overrides, runner options)`` of ``method`` in a column: its row ``row`` with the value
    ``benchmarks/tuning.py`` chose on a validation split on top, where ``chosen`` holds one."""
    tuned = chosen_overrides(chosen or {}, dataset, setting, method)
    return split_runner_options(merge(row, tuned or {}))


def plan(datasets: List[str], settings: List[str], methods: List[str], seeds: List[int],
         overrides: dict, small: bool = False, table: Dict[str, dict] = METHODS,
         chosen: Optional[Mapping] = None) -> Dict[str, Config]:
    """Every cell to run, keyed by :func:`cell_key`, with its full configuration (``small``: the smoke
    version); ``table`` maps the method names to their Config overrides; ``chosen``: the values
    ``benchmarks/tuning.py`` chose (:func:`load_chosen`), applied where it chose one. The rows in
    ``CLEAN`` run once, on clean labels; a setting named ``"clean"`` runs any method without noise."""
    cells: Dict[str, Config] = {}
    for dataset in datasets:
        base = DATASETS[dataset].replace(progress=False, **overrides)
        base = smoke(base) if small else base
        for seed in seeds:
            for method in methods:
                for setting in settings if method not in CLEAN else ["clean"]:
                    noise = (dict(noise="none", noise_rate=0.0) if setting == "clean"
                             else dict(noise=SETTINGS[setting][0], noise_rate=SETTINGS[setting][1],
                                       **SMALL_CLEAN.get(setting, {})))
                    row, _ = tuned_row(chosen, dataset, setting, method, table[method])
                    cells[cell_key(dataset, setting, method, seed)] = base.replace(seed=seed, **{**noise, **row})
    return cells


def runners_for(cells: Mapping[str, Config], chosen: Optional[Mapping]) -> Dict[str, Callable[[Config], dict]]:
    """The cells of the methods in ``RUNNERS`` -> their runner, with the options chosen for the column."""
    runners = {}
    for key in cells:
        dataset, setting, method, _ = key.split(" | ")
        if method in RUNNERS:
            runners[key] = functools.partial(RUNNERS[method], **tuned_row(chosen, dataset, setting, method, {})[1])
    return runners


def ran_as_planned(runners: Mapping[str, Callable]) -> Callable[[str, dict], bool]:
    """The harness's ``complete``: a stored confident-learning cell ran the cleanlab rule now asked for."""
    def complete(key: str, stored: dict) -> bool:
        wanted = getattr(runners.get(key), "keywords", {}).get("filter_by", confident_learning.FILTERS[0])
        return key not in runners or confident_learning.ran_filter(stored) == wanted
    return complete


# ---------------------------------------------------------------------------------------------
# Tables and plots.

def targets_report(runs, dataset: str, settings: List[str]) -> List[str]:
    """Issue 14's targets, checked against the measured means of ``dataset``."""
    lines = []

    def stat(setting, method, field="last_accuracy", scale=100.0):
        key = (dataset, setting, method)
        return harness.stat(runs[key], field, scale)[0] if key in runs else math.nan

    def check(ok: bool) -> str:
        return "met" if ok else "**missed**"

    others = [m for m in METHODS if m not in (LEARNED, *CLEAN, *ABLATION)]
    for setting in settings:
        best = max(((stat(setting, m), m) for m in others if (dataset, setting, m) in runs), default=(math.nan, ""))
        mine = stat(setting, LEARNED)
        lines.append(f"- {setting}: the default ≥ every other method (last epoch): {mine:.1f} vs {best[0]:.1f} "
                     f"({best[1]}) → {check(mine >= best[0])} ({mine - best[0]:+.1f})")
    if dataset == "mnist1d" and "symmetric-40" in settings:
        l40, ref = stat("symmetric-40", LEARNED), stat("clean", REFERENCE)
        corr, broken = stat("symmetric-40", LEARNED, "corrected"), stat("symmetric-40", LEARNED, "clean_broken")
        lines += [
            f"- 40 % symmetric, within 3 points of clean-label training: {l40:.1f} vs {ref:.1f} → "
            f"{check(l40 >= ref - 3)} ({l40 - ref:+.1f})",
            f"- 40 % symmetric, ≥ 90 % of corrupted labels corrected: {corr:.1f} → {check(corr >= 90)}",
            f"- 40 % symmetric, ≤ 1 % of clean labels broken: {broken:.2f} → {check(broken <= 1)}",
        ]
    clean, ref = stat("clean", CLEAN_LEARNED), stat("clean", REFERENCE)
    if not math.isnan(clean):
        lines.append(f"- no cost on clean labels: the default {clean:.1f} vs one-hot {ref:.1f} → {check(clean >= ref)} "
                     f"({clean - ref:+.1f})")
    times = [(stat(s, LEARNED, "wall_time", 1.0), stat(s, L2RW, "wall_time", 1.0)) for s in settings]
    if times and not any(math.isnan(t) for pair in times for t in pair):
        mine, theirs = sum(t for t, _ in times), sum(t for _, t in times)
        lines.append(f"- whole-run time ≤ L2RW's (sum over the settings, mean over seeds): {mine:.0f} s vs {theirs:.0f} s "
                     f"→ {check(mine <= theirs)} ({mine / theirs:.2f}×)")
    return lines


def ablation_report(runs, dataset: str, settings: List[str]) -> List[str]:
    """The default against itself without each of its components (last-epoch accuracy, same seeds)."""
    rows = [(LEARNED, "–")] + [(m, removed) for m, removed in ABLATION.items()]
    if any((dataset, s, m) not in runs for m, _ in rows for s in settings):
        return []
    lines = ["| variant | removes | " + " | ".join(settings) + " |", "|---|---|" + "---|" * len(settings)]
    base = {s: harness.stat(runs[(dataset, s, LEARNED)], "last_accuracy")[0] for s in settings}
    for method, removed in rows:
        cells = []
        for s in settings:
            value = harness.stat(runs[(dataset, s, method)], "last_accuracy")
            cells.append(cell(value) + ("" if method == LEARNED else f" ({value[0] - base[s]:+.1f})"))
        lines.append(f"| {method} | {removed} | " + " | ".join(cells) + " |")
    return lines


def f1_score(precision: float, recall: float) -> float:
    """The flags' F1 from their precision and recall (0 when neither finds anything; ``nan`` if undefined)."""
    if math.isnan(recall):
        return math.nan
    precision = 0.0 if math.isnan(precision) else precision  # nothing flagged: nothing found
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def tuning_report(chosen: Mapping, dataset: str, methods: List[str], settings: List[str]) -> Dict[str, str]:
    """The values ``benchmarks/tuning.py`` chose for ``dataset``'s rows: tuned method -> a line saying them
    and the columns of ``settings`` each serves."""
    lines = {}
    served = {c: [s for s in FAMILY[c] if s in settings] for c in FAMILY}
    for method in methods:
        picks = [(column, chosen.get(dataset, {}).get(column, {}).get(method)) for column in FAMILY if served[column]]
        if method in SEARCH and any(v is not None for _, v in picks):
            lines[method] = f"- {method}: {SEARCH[method][0]} " + ", ".join(
                f"{v} ({', '.join(served[c])})" for c, v in picks if v is not None)
    return lines


def report(store: dict, cells: Dict[str, Config], datasets, settings, methods, seeds, command: str, jobs: int,
           chosen: Optional[Mapping] = None) -> str:
    runs = harness.group_runs(store, cells)
    chosen = chosen or {}
    lines = [
        "# Noisy-label benchmark",
        "",
        f"Command: `{command}`; seeds {seeds}; {harness.where(jobs, [store['cells'][key] for key in cells])}. "
        "Mean ± std over seeds; *last* is the final epoch, *best* the best epoch "
        "(on the test set, so an optimistic figure). *Flagged*: samples a method marks as mislabelled "
        "(`labelmeta.label_issues`' rule: a learned hard label that differs from the annotation, or, for a "
        "method that learns weights, a weight that was zero at most of the sample's visits; for "
        "confident learning, cleanlab's label issues; for methods that learn neither, the model's own "
        "disagreement with the annotation at the end), precision / recall / F1 against the truth; *AP*: "
        "the average precision of the method's ranking of the samples by suspicion "
        "(`labelmeta.label_issues`; – for cells run before it was recorded). **†**: the row's knob was chosen "
        "on a validation split carved out of the clean set, with the same search budget for every tuned row "
        "(`benchmarks/tuning.py`, `tuning.md`); the values are listed under each dataset. Rows without † keep "
        "their papers' (or our defaults') values."
        + (" The instance-dependent columns (Xia et al. 2020's generator, `labelmeta.noise.instance`) take the "
           "values the search chose at 40 % symmetric noise: no search ran on them, the same transfer for every "
           "tuned row." if any(SETTINGS[s][0] == "instance" for s in settings) else ""),
        "",
    ]
    for dataset in datasets:
        tuned = tuning_report(chosen, dataset, methods, settings)
        lines += [f"## {dataset}", "", "Last-epoch test accuracy (%):", ""]
        header = "| method | " + " | ".join(settings) + " |"
        lines += [header, "|---" * (len(settings) + 1) + "|"]
        for method in methods:
            if method in CLEAN:
                continue
            row = [cell(harness.stat(runs[(dataset, s, method)], "last_accuracy")) for s in settings]
            lines.append(f"| {method}{' †' if method in tuned else ''} | " + " | ".join(row) + " |")
        for method in CLEAN:
            if method in methods:
                clean = cell(harness.stat(runs[(dataset, "clean", method)], "last_accuracy"))
                lines.append(f"| {method} | " + " | ".join([clean] * len(settings)) + " |")
        for setting in settings:
            effective = mean_std([r.effective_noise for r in runs[(dataset, setting, methods[0])]])
            lines += ["", f"### {dataset}, {setting} (effective noise {effective[0]:.1f} %)", "",
                      "| method | test acc best (%) | test acc last (%) | corrupted corrected (%) | clean broken (%) "
                      "| flagged: precision / recall / F1 (%) | AP (%) | wall time (s) |",
                      "|---|---|---|---|---|---|---|---|"]
            for method in methods:
                if method in CLEAN:
                    continue
                rs = runs[(dataset, setting, method)]
                prec, rec = harness.stat(rs, "detect_precision"), harness.stat(rs, "detect_recall")
                f1 = mean_std([f1_score(r.detect_precision, r.detect_recall) for r in rs])
                flags = ("–" if math.isnan(prec[0]) and math.isnan(rec[0])
                         else f"{cell(prec, 0)} / {cell(rec, 0)} / {cell(f1, 0)}")
                ap = harness.stat(rs, "detect_average_precision")
                lines.append(f"| {method} | {cell(harness.stat(rs, 'best_accuracy'))} | {cell(harness.stat(rs, 'last_accuracy'))} | "
                             f"{cell(harness.stat(rs, 'corrected'))} | {cell(harness.stat(rs, 'clean_broken'), 2)} | {flags} | "
                             f"{'–' if math.isnan(ap[0]) else cell(ap, 0)} | "
                             f"{cell(harness.stat(rs, 'wall_time', 1.0), 0)} |")
        if tuned:
            lines += ["", "† Values chosen on the validation split (the columns each serves):", ""] + list(tuned.values())
        lines += ["", f"### {dataset}: targets and ablation", "", "Targets (issue 14, means of the seeds above):",
                  ""] + targets_report(runs, dataset, settings)
        ablation = ablation_report(runs, dataset, settings)
        if ablation:
            lines += ["", "Ablation: the default without each of its components (last epoch; in brackets, the "
                      "change from the default):", ""] + ablation
        lines.append("")
    lines += ["Base configurations (each method overrides a few fields, see `METHODS` in the script):", ""]
    for dataset in datasets:
        base = {k: v for k, v in dataclasses.asdict(DATASETS[dataset]).items() if k not in ("progress", "output", "seed")}
        lines += [f"- `{dataset}`: `{json.dumps(base)}`"]
    return "\n".join(lines) + "\n"


def plot(store: dict, cells: Dict[str, Config], datasets, settings, methods, out: Path, stem: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = harness.group_runs(store, cells)
    symmetric = [s for s in settings if s.startswith("symmetric")]
    fig, axes = plt.subplots(1, len(datasets), figsize=(7 * len(datasets), 4.8), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        palette = plt.get_cmap("tab20").colors
        for i, method in enumerate(m for m in methods if m not in CLEAN):
            color = palette[(2 * i) % 20 + (2 * i) // 20]  # the saturated tab20 colours first
            style = "-" if method.startswith(("learned", "ablation")) or "meta" in method.lower() else "--"
            if symmetric:
                rates = [SETTINGS[s][1] * 100 for s in symmetric]
                acc = [harness.stat(runs[(dataset, s, method)], "last_accuracy") for s in symmetric]
                mine = method == LEARNED  # the default, drawn so that it can be found among the rest
                ax.errorbar(rates, [a[0] for a in acc], yerr=[a[1] for a in acc], color="k" if mine else color, ls=style,
                            lw=2.5 if mine else 1.5, marker="o", ms=4, capsize=2, label=method, zorder=3 if mine else 2)
            if "asymmetric-40" in settings:
                a = harness.stat(runs[(dataset, "asymmetric-40", method)], "last_accuracy")
                ax.errorbar([42 + i * 0.4], [a[0]], yerr=[a[1]], color="k" if method == LEARNED else color, marker="s",
                            ms=5, capsize=2)
            if "small-clean-40" in settings:
                a = harness.stat(runs[(dataset, "small-clean-40", method)], "last_accuracy")
                ax.errorbar([30 + i * 0.4], [a[0]], yerr=[a[1]], color="k" if method == LEARNED else color, marker="^",
                            ms=5, capsize=2)
            instance = [s for s in settings if SETTINGS[s][0] == "instance"]
            if instance:  # diamonds, joined, at their rates
                acc = [harness.stat(runs[(dataset, s, method)], "last_accuracy") for s in instance]
                ax.errorbar([SETTINGS[s][1] * 100 + i * 0.2 for s in instance], [a[0] for a in acc],
                            yerr=[a[1] for a in acc], color="k" if method == LEARNED else color, ls=style, marker="D",
                            ms=4, capsize=2, label=None if symmetric else method)
        if REFERENCE in methods:
            ax.axhline(harness.stat(runs[(dataset, "clean", REFERENCE)], "last_accuracy")[0], c="k", ls=":", label="clean labels")
        marks = [text for present, text in ((symmetric, "circles: symmetric"),
                                            ("asymmetric-40" in settings, "squares: 40 % asymmetric"),
                                            ("small-clean-40" in settings, "triangles: 40 % symmetric, 10 clean a class"),
                                            (any(SETTINGS[s][0] == "instance" for s in settings),
                                             "diamonds: instance-dependent")) if present]
        ax.set(xlabel=f"noise rate (%)   [{'; '.join(marks)}]", ylabel="last-epoch test accuracy (%)",
               title=f"{dataset}: accuracy vs noise (mean ± std over seeds)")
        ax.legend(fontsize=6, loc="lower left")
    save_figure(fig, out / f"{stem}_accuracy.png")

    learned = [m for m in methods if m.startswith(("learned labels", "self-ensemble")) and m not in CLEAN]
    shown = [s for s in ("symmetric-40", "asymmetric-40", "symmetric-80", "instance-40") if s in settings]
    if not learned or not shown:
        return
    fig, axes = plt.subplots(len(datasets), len(shown), figsize=(5 * len(shown), 3.8 * len(datasets)), squeeze=False)
    for row, dataset in enumerate(datasets):
        for ax, setting in zip(axes[row], shown):
            for i, method in enumerate(learned):
                rs = runs[(dataset, setting, method)]
                corr = np.array([[h.corrected * 100 for h in r.history] for r in rs]).mean(0)
                broken = np.array([[h.clean_broken * 100 for h in r.history] for r in rs]).mean(0)
                epochs = np.arange(1, len(corr) + 1)
                ax.plot(epochs, corr, color=f"C{i}", label=method)
                ax.plot(epochs, broken, color=f"C{i}", ls="--")
            ax.set(xlabel="epoch", ylabel="% of samples", title=f"{dataset}, {setting}: corrected (—), clean broken (--)")
            ax.legend(fontsize=6)
    save_figure(fig, out / f"{stem}_correction.png")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["mnist1d", "digits"], choices=list(DATASETS))
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, choices=list(SETTINGS))
    parser.add_argument("--methods", nargs="+", default=None, choices=list(METHODS), metavar="METHOD",
                        help="the rows to run (default: --method-set's)")
    parser.add_argument("--method-set", default="all", choices=list(METHOD_SETS),
                        help="a named set of rows: all, or peers (the published methods, the default, its ablations)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="override every dataset's epochs")
    parser.add_argument("--data-root", default=None, help="torchvision data (cifar10)")
    parser.add_argument("--device", default="cpu")
    harness.add_jobs_argument(parser)
    parser.add_argument("--smoke", action="store_true", help="tiny data, 2 epochs, 1 seed, 2 settings")
    parser.add_argument("--untuned", action="store_true",
                        help="the rows' own (papers') values, not those tuning.py chose on a validation split")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--stem", default="noisy_labels",
                        help="name of the store, report and plots under --out (noisy_labels_instance: the "
                             "instance-dependent columns)")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the report and plots from the stored cells, running none (an error names "
                             "the cells missing or stored under another configuration)")
    args = parser.parse_args(argv)
    args.methods = args.methods or METHOD_SETS[args.method_set]

    overrides = dict(device=args.device)
    if args.data_root:
        overrides["data_root"] = args.data_root
    if args.epochs:
        overrides["epochs"] = args.epochs
    settings, seeds = args.settings, args.seeds
    if args.smoke:
        settings, seeds = [s for s in settings if s in ("symmetric-40", "asymmetric-40")] or settings[:1], seeds[:1]
    stem = f"{args.stem}_smoke" if args.smoke else args.stem
    out = Path(args.out)
    if any(method in RUNNERS for method in args.methods) and not args.report_only:
        confident_learning.import_cleanlab()  # a missing extra is an error now, not after hours of cells
    chosen = {} if args.untuned else load_chosen(out / f"{'tuning_smoke' if args.smoke else 'tuning'}.json")
    cells = plan(args.datasets, settings, args.methods, seeds, overrides, small=args.smoke, chosen=chosen)
    runners = runners_for(cells, chosen)
    start = time.time()
    if args.report_only:
        store = harness.load_store(out / f"{stem}.json")
        complete = ran_as_planned(runners)
        missing = [k for k, c in cells.items() if not (harness.is_done(store, k, c) and complete(k, store["cells"][k]))]
        if missing:
            raise SystemExit(f"--report-only: {len(missing)} cell(s) not stored as planned, e.g. {missing[:3]}")
    else:
        store = harness.run_cells(cells, out / f"{stem}.json", args.jobs, runners=runners,
                                  complete=ran_as_planned(runners))
    words = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--report-only"]
    command = "python benchmarks/noisy_labels.py " + shlex.join(words)
    text = report(store, cells, args.datasets, settings, args.methods, seeds, command.strip(), args.jobs, chosen)
    (out / f"{stem}.md").write_text(text)
    plot(store, cells, args.datasets, settings, args.methods, out, stem)
    print(text)
    print(f"({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
