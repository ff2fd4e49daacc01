"""What the docs' figures are made of: the stores (``benchmarks/results/*.json``), read as the reports
read them, and the figures formatted as the reports format them.

Every public name here (and in ``figure_tables``) may be called by an expression of ``benchmarks/figures.py``
in README.md or docs/results.md. A store's figure over seeds is a :class:`Stat` (mean and population
standard deviation, ``labelmeta.compare.mean_std``'s arithmetic); a difference of two rows is the
difference of their means, rounded once; negative numbers take the minus sign U+2212, as the prose does.
JSON and numpy only: no torch.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
MINUS = "−"


# --- the stores ----------------------------------------------------------------------------------

@lru_cache(maxsize=None)


def store(name: str) -> dict:
    """``benchmarks/results/NAME.json``."""
    return json.loads((RESULTS / f"{name}.json").read_text())


@lru_cache(maxsize=None)


def _by_key(name: str) -> Dict[str, List[dict]]:
    """Store ``name``'s cells grouped by their key without the seed, in the store's order."""
    groups: Dict[str, List[dict]] = {}
    for key, cell in store(name)["cells"].items():
        head, _, last = key.rpartition(" | ")
        if last.startswith("seed "):
            groups.setdefault(head, []).append(cell)
        elif not head and key.startswith("seed "):
            groups.setdefault("", []).append(cell)
    return groups


def seeds_of(name: str, key: str) -> List[dict]:
    """The stored cells ``KEY | seed S`` of store ``name``, in the store's order (one per seed)."""
    found = _by_key(name).get(key)
    if not found:
        raise KeyError(f"{name}.json has no cells '{key} | seed S'")
    return found


@dataclass(frozen=True)


class Stat:
    """A figure over seeds: its mean and population standard deviation (``mean_std``'s)."""

    m: float
    s: float

    def __sub__(self, other):
        return self.m - (other.m if isinstance(other, Stat) else other)

    def __rsub__(self, other):
        return other - self.m

    def __truediv__(self, other):
        return self.m / (other.m if isinstance(other, Stat) else other)


def mean_std(values: Iterable[Optional[float]], scale: float = 100.0) -> Stat:
    """:func:`labelmeta.compare.mean_std` (the reports' arithmetic, so that the rounding agrees)."""
    vals = [v * scale for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return Stat(math.nan, math.nan)
    return Stat(float(np.mean(vals)), float(np.std(vals)))


def f1_score(precision: float, recall: float) -> float:
    """``noisy_labels.f1_score``: the flags' F1 from their precision and recall."""
    if math.isnan(recall):
        return math.nan
    precision = 0.0 if math.isnan(precision) else precision
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _field(cells: Sequence[dict], field: str, scale: float) -> Stat:
    if field == "f1":  # as noisy_labels' report: from each run's precision and recall
        return mean_std([f1_score(c["detect_precision"], c["detect_recall"]) for c in cells], scale)
    return mean_std([c[field] for c in cells], scale)


@lru_cache(maxsize=None)


def stat(name: str, key: str, field: str = "last_accuracy", scale: float = 100.0) -> Stat:
    """``field`` of the cells ``KEY | seed S`` of store ``name`` over their seeds (times ``scale``)."""
    return _field(seeds_of(name, key), field, scale)


# --- formatting: the reports' --------------------------------------------------------------------

def f(x, d: int = 1) -> str:
    """``x`` (a number or a :class:`Stat`'s mean) with ``d`` decimals, U+2212 for a negative one (a
    number that rounds to zero has no sign)."""
    x = x.m if isinstance(x, Stat) else x
    text = f"{x:.{d}f}"
    if float(text) == 0:
        return text.lstrip("-")
    return MINUS + text[1:] if text.startswith("-") else text


def sg(x, d: int = 1) -> str:
    """``x`` with its sign: ``+1.5``, ``−0.5`` (``0.0`` where it rounds to zero)."""
    text = f(x, d)
    return text if text.startswith(MINUS) or float(text) == 0 else "+" + text


def pm(x: Stat, d: int = 1) -> str:
    """``mean ± std`` (``labelmeta.compare.cell``), an en dash for a figure a row does not have."""
    return "–" if math.isnan(x.m) else f"{f(x.m, d)} ± {f(x.s, d)}"


def sl(xs: Iterable, d: int = 1, fmt: Callable = f) -> str:
    """``a / b / c``: one figure per column."""
    return " / ".join(fmt(x, d) for x in xs)


def rng(xs: Iterable, d: int = 1) -> str:
    """``lo–hi`` of the figures (``−a to +b`` where the smallest is negative)."""
    vals = [x.m if isinstance(x, Stat) else x for x in xs]
    vals = [v for v in vals if not math.isnan(v)]
    lo, hi = min(vals), max(vals)
    if f(lo, d) == f(hi, d):
        return f(lo, d)
    return f"{sg(lo, d)} to {sg(hi, d)}" if float(f"{lo:.{d}f}") < 0 else f"{f(lo, d)}–{f(hi, d)}"


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th`` ... ``11th``, ``21st``."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def span(values: Iterable[str]) -> str:
    """``lo–hi`` of values as written (``"0.05"``, ``"0.1"``), ordered as numbers."""
    ordered = sorted(set(values), key=float)
    return ordered[0] if len(ordered) == 1 else f"{ordered[0]}–{ordered[-1]}"


def count(xs: Iterable) -> str:
    """How many are true."""
    return str(sum(bool(x) for x in xs))


def times(x: float) -> str:
    """A ratio as the tables write it: ``4.5×`` (``1×`` for the reference)."""
    return "1×" if x == 1 else f"{f(x)}×"


def mib(nbytes: float, d: int = 1) -> str:
    """Bytes in MB as the reports write them (2^20 bytes)."""
    return f(nbytes / 2 ** 20, d)


def sci(x: float, d: int = 1) -> str:
    """``2.2e-9``: a small number as the prose writes it."""
    mantissa, _, exponent = f"{x:.{d}e}".partition("e")
    return f"{mantissa}e{int(exponent)}".replace("-", MINUS) if x < 0 else f"{mantissa}e{int(exponent)}"


# --- noisy_labels.json: dataset | setting | method | seed ----------------------------------------

#: the default until issue 38 (per-sample labels and weights from one hypergradient)
DEFAULT = "learned labels + weights (previous default)"
#: issue 38's rows: today's default (detect-correct), with the clean set also in training, its ablations
DETECT = "detect, then correct (default): clean set not in training"
DETECT_META = "detect, then correct (weights on annotations, rejected samples' labels learn), clean set in training"
#: the default's rows as first run, with the strategy's proportional weights in the model step (the others of issue 38
#: ran so too: DETECT_META, DETECT_FIXED, DETECT_EVERY4, CLEAN_DETECT)
DETECT_PROP = "detect, then correct, proportional weights: clean set not in training"
DETECT_FIXED = "detect, then correct, running predictions only (label lr 0)"
DETECT_EVERY4 = "detect, then correct, clean set in training, a meta step every 4 steps"
CLEAN_DETECT = "detect, then correct, on clean labels"
#: the columns of issue 38's correction target
CORRECTION_COLUMNS = ["symmetric-20", "symmetric-40", "asymmetric-40"]
CE = "cross-entropy"
CE_META = "cross-entropy, clean meta set added to training"
GCE = "generalised cross-entropy"
BOOT_HARD = "bootstrapping, hard"
BOOT_SOFT = "bootstrapping, soft"
SMOOTHING = "label smoothing"
ELR = "ELR (β 0.7), clean meta set added to training"
L2RW = "meta-reweighting (L2RW, k=1 unroll)"
MWN = "Meta-Weight-Net"
CONFIDENT = "confident learning (cleanlab, 5-fold), then cross-entropy + clean meta set"
WEIGHTS_ELR = "learned weights + ELR loss (β 0.7)"
CORRECTOR = "learned labels: corrector + weights (amortised, MLC-style)"
CORRECTOR_01 = "learned labels: corrector + weights, label lr 0.1"
CORRECTOR_ALONE = "learned labels: corrector alone (no weights), label lr 0.1"
ENSEMBLE_GCE = "learned labels: per-sample-ensemble + GCE loss"
PREVIOUS = "learned labels: per-sample-ensemble (previous default)"
WEIGHTS_ONLY = "ablation: weights only (labels fixed; L2RW by one-step)"
LABELS_ONLY = "learned labels: per-sample (labels only, no weights)"
REFERENCE = "cross-entropy on clean labels (reference)"
CLEAN_DEFAULT = "learned labels + weights (previous default) on clean labels"
CLEAN_CORRECTOR = "learned labels: corrector + weights, label lr 0.1, on clean labels"
SYMMETRIC = ["symmetric-20", "symmetric-40", "symmetric-60", "symmetric-80"]
#: the benchmark's columns, in its order
SETTINGS_5 = SYMMETRIC + ["asymmetric-40"]
COLUMNS = SETTINGS_5 + ["small-clean-40"]
DATASETS = ["mnist1d", "digits"]
#: the rows of docs/results.md's table (the report has them all), in its order
TABLE_ROWS = [CE, CE_META, GCE, BOOT_HARD, SMOOTHING, ELR, L2RW, MWN, CONFIDENT, DETECT, DETECT_PROP, DETECT_META, DEFAULT,
              WEIGHTS_ELR, CORRECTOR, ENSEMBLE_GCE]
#: the rows that run on clean labels only
CLEAN_ROWS = (REFERENCE, CLEAN_DEFAULT, CLEAN_CORRECTOR, CLEAN_DETECT)
#: short names of the columns
ALIASES = {"sym20": "symmetric-20", "sym40": "symmetric-40", "sym60": "symmetric-60", "sym80": "symmetric-80",
           "flip40": "asymmetric-40", "small40": "small-clean-40"}


def nl(dataset: str, setting: str, method: str, field: str = "last_accuracy", scale: float = 100.0) -> Stat:
    """A figure of ``noisy_labels.json`` over seeds (``setting`` or its :data:`ALIASES` name; a clean-label
    row: its ``clean`` cells, whatever ``setting``; ``field="f1"``: the flags' F1; ``wall_time`` wants
    ``scale=1``)."""
    setting = "clean" if method in CLEAN_ROWS else ALIASES.get(setting, setting)
    return stat("noisy_labels", f"{dataset} | {setting} | {method}", field, scale)


def curve_at(dataset: str, setting: str, method: str, threshold: float, field: str = "corrected") -> Stat:
    """A point of a row's corrected-vs-broken curve (``benchmarks/correction_curve.py``, stored in each of its
    cells): the corrupted labels ``"corrected"`` or the clean ones ``"broken"`` (%) had the run relabelled its
    flagged samples whose learned label reaches ``threshold``, over seeds."""
    cells = seeds_of("noisy_labels", f"{dataset} | {ALIASES.get(setting, setting)} | {method}")
    column = {"corrected": 1, "broken": 2}[field]
    return mean_std([next(p[column] for p in c["curve"] if p[0] == threshold) for c in cells], 1.0)


def timing(dataset: str, method: str, setting: str = "symmetric-40") -> float:
    """A row's whole-run time over cross-entropy's, both from ``detect_correct_timing.json`` (one run of the two on the
    same processes; means over seeds)."""
    time = lambda m: stat("detect_correct_timing", f"{dataset} | {setting} | {m}", "wall_time", 1.0).m  # noqa: E731
    return time(method) / time(CE)


def nl_all(dataset: str, method: str, settings: Sequence[str] = SETTINGS_5, **kw) -> List[Stat]:
    """:func:`nl` in each of ``settings``."""
    return [nl(dataset, s, method, **kw) for s in settings]


#: the instance-dependent columns (``noisy_labels_instance.json``, issue 37), and the rows run on them
INSTANCE = ["instance-20", "instance-40"]
INSTANCE_ROWS = [CE, CE_META, GCE, BOOT_HARD, SMOOTHING, ELR, L2RW, MWN, CONFIDENT, DETECT, DETECT_PROP, DETECT_META,
                 DEFAULT,
                 WEIGHTS_ELR, CORRECTOR, WEIGHTS_ONLY, LABELS_ONLY]


def nli(dataset: str, setting: str, method: str, field: str = "last_accuracy", scale: float = 100.0) -> Stat:
    """A figure of ``noisy_labels_instance.json`` over seeds (``setting``: ``inst20`` / ``inst40`` or the
    column's name; ``field="f1"``: the flags' F1)."""
    setting = {"inst20": "instance-20", "inst40": "instance-40"}.get(setting, setting)
    return stat("noisy_labels_instance", f"{dataset} | {setting} | {method}", field, scale)


def best_instance_row(dataset: str, setting: str, rows: Sequence[str] = INSTANCE_ROWS) -> str:
    """The row with the highest mean last-epoch accuracy in an instance-dependent column."""
    return max(rows, key=lambda r: nli(dataset, setting, r).m)


def rank(dataset: str, setting: str, method: str, rows: Sequence[str] = INSTANCE_ROWS,
         figure: Callable[..., "Stat"] = nl) -> int:
    """A row's place (1: the best) by mean last-epoch accuracy among ``rows`` in a column of the store
    ``figure`` reads (:func:`nl` or :func:`nli`)."""
    means = sorted((figure(dataset, setting, r).m for r in rows), reverse=True)
    return means.index(figure(dataset, setting, method).m) + 1


def best_row(dataset: str, setting: str, rows: Sequence[str] = TABLE_ROWS) -> str:
    """The row of ``rows`` with the highest mean last-epoch accuracy in a column."""
    return max(rows, key=lambda r: nl(dataset, setting, r).m)


def behind(dataset: str, setting: str, method: str = DEFAULT, rows: Sequence[str] = TABLE_ROWS) -> float:
    """How far a row's mean last-epoch accuracy is below the best row's in a column (points)."""
    return nl(dataset, setting, best_row(dataset, setting, rows)) - nl(dataset, setting, method)


def wall(dataset: str, method: str, settings: Sequence[str] = COLUMNS) -> float:
    """A row's whole-run time summed over ``settings`` (mean over seeds, seconds)."""
    return sum(nl(dataset, s, method, field="wall_time", scale=1.0).m for s in settings)


# --- tuning.json: dataset | column | method @ knob value | seed ----------------------------------

def picks(method: str) -> List[str]:
    """The values ``tuning.py`` chose for a row: MNIST-1D symmetric, flips, digits symmetric, flips."""
    chosen = store("tuning")["chosen"]
    return [chosen[d][c][method] for d in DATASETS for c in ("symmetric-40", "asymmetric-40")]


def chosen(dataset: str, method: str) -> str:
    """The values ``tuning.py`` chose for a row on a dataset: ``symmetric / flips``."""
    values = store("tuning")["chosen"][dataset]
    return f"{values['symmetric-40'][method]} / {values['asymmetric-40'][method]}"


def tuned(dataset: str, column: str, method: str) -> Dict[str, Stat]:
    """A tuned row's validation accuracy per value searched (``value -> Stat``), over the tuning seeds."""
    column = ALIASES.get(column, column)
    values: Dict[str, List[dict]] = {}
    for key, c in store("tuning")["cells"].items():
        d, col, name, _ = key.split(" | ")
        tuned_row, _, value = name.partition(" @ ")
        if (d, col, tuned_row) == (dataset, column, method):
            values.setdefault(value.split(" ")[-1], []).append(c)
    return {v: _field(cs, "last_accuracy", 100.0) for v, cs in values.items()}


def tv(dataset: str, column: str, method: str, value: str) -> Stat:
    """A tuned row's validation accuracy at one value."""
    return tuned(dataset, column, method)[value]


def ties(dataset: str, column: str) -> Tuple[int, float]:
    """``(how many rows, score)``: the best validation score most rows top out at in a column."""
    tops = [max(v.m for v in tuned(dataset, column, r).values()) for r in tuned_rows(dataset)]
    score = max(set(tops), key=tops.count)
    return tops.count(score), score


def tuned_rows(dataset: str) -> List[str]:
    """The rows ``tuning.py`` tuned on ``dataset``."""
    return list(store("tuning")["chosen"][dataset]["symmetric-40"])


# --- the other benchmarks of noisy labels: meta_weight_net, weight_history, default_candidates ---

def mwn(dataset: str, setting: str, lr: str) -> Stat:
    """``meta_weight_net.json``: Meta-Weight-Net's last-epoch accuracy at a network learning rate."""
    return stat("meta_weight_net", f"{dataset} | {ALIASES.get(setting, setting)} | Meta-Weight-Net, network lr {lr}")


def wh(setting: str, method: str, rule: str, measure: str = "f1") -> Stat:
    """``weight_history.json``: a rule's detection figure (``precision``, ``recall``, ``f1``, ``average
    precision``) from a method's weights on MNIST-1D, over seeds (%)."""
    cells = seeds_of("weight_history", f"mnist1d | {ALIASES.get(setting, setting)} | {method}")
    return mean_std([c["rules"][rule][measure] for c in cells])


def dc(dataset: str, setting: str, candidate: str, field: str = "last_accuracy", scale: float = 100.0) -> Stat:
    """A figure of ``default_candidates.json`` (its candidates' runs: one seed on MNIST-1D, three on digits)."""
    return stat("default_candidates", f"{dataset} | {ALIASES.get(setting, setting)} | {candidate}", field, scale)


#: default_candidates.json's name of the default
DC_DEFAULT = "weights + per-sample labels (the default)"


def dc_columns(dataset: str, candidate: str, clean: bool = False) -> List[str]:
    """The noise settings ``default_candidates.json`` ran a candidate in (``clean``: with the clean column)."""
    found = []
    for key in store("default_candidates")["cells"]:
        d, setting, name, _ = key.split(" | ")
        if (d, name) == (dataset, candidate) and setting not in found and (clean or setting != "clean"):
            found.append(setting)
    return found


def dc_gain(dataset: str, candidate: str, clean: bool = False, field: str = "last_accuracy") -> List[float]:
    """A candidate's figure minus the default's in each setting it ran (the default of the same store)."""
    return [dc(dataset, s, candidate, field) - dc(dataset, s, DC_DEFAULT, field)
            for s in dc_columns(dataset, candidate, clean)]


def dc_all(dataset: str, candidate: str, field: str = "last_accuracy", clean: bool = False) -> List[Stat]:
    """A candidate's figure in each noise setting it ran."""
    return [dc(dataset, s, candidate, field) for s in dc_columns(dataset, candidate, clean)]


# --- default_recipe{,_asymmetric}.json, strategies.json (rows of one run each), overhead.json ----

RECIPE_DEFAULT = "one-step, every step, meta batch 500 (the default)"
RECIPE_EXACT = "exact: unrolled (higher), every step, meta batch 500"


def row(name: str, method: str) -> dict:
    """The row ``method`` of a store's ``"rows"`` (``default_recipe``, ``default_recipe_asymmetric``,
    ``strategies``)."""
    rows = [r for r in store(name)["rows"] if r["method"] == method]
    if not rows:
        raise KeyError(f"{name}.json has no row {method!r}")
    return rows[0]


def rs(name: str, method: str, field: str = "last") -> Stat:
    """A ``(mean, std)`` field of a row (``last``, ``best``, ``corrected``, ``broken``, ``seconds``)."""
    return Stat(*row(name, method)[field])


def recipe(noise: str) -> str:
    """The store of ``default_recipe.py`` for ``"symmetric"`` or ``"asymmetric"`` noise."""
    return "default_recipe" if noise == "symmetric" else "default_recipe_asymmetric"


#: short names of default_recipe.py's rows
RECIPE = {"ce": "cross-entropy", "exact": RECIPE_EXACT, "default": RECIPE_DEFAULT,
          "mb128": "one-step, every step, meta batch 128", "every2": "one-step, every 2 steps",
          "every2x2": "one-step, every 2 steps, label lr ×2", "every4": "one-step, every 4 steps",
          "every8": "one-step, every 8 steps", "every8mb128": "one-step, every 8 steps, meta batch 128",
          **{f"refresh{r}": f"one-step, every step, meta gradient every {r}" for r in (2, 4, 8)}}


def rr(noise: str, name: str, field: str = "last"):
    """A row of ``default_recipe.py`` by its short name (:data:`RECIPE`): a ``(mean, std)`` field as a
    :class:`Stat`, or ``time_ratio`` (to cross-entropy's whole run) / ``gain_kept`` (%)."""
    r = row(recipe(noise), RECIPE[name])
    if field == "gain_kept":
        return 100 * r[field]
    return r[field] if field == "time_ratio" else Stat(*r[field])


def step(method: str, model: str = "cnn1d-bn", field: str = "time_ratio") -> float:
    """``overhead.json``: a method's full step against a plain step (``time_ratio``, ``memory_ratio``),
    its ``seconds``, or, for the L2RW rows, ``handwritten_ratio``."""
    return store("overhead")["results"][model][method][field]


#: strategies.json's rows (learned per-sample-ensemble labels) by the names the tables give them
STRATEGY = {name: f"per-sample-ensemble | {row}" for name, row in {
    "one-step": "exact k=1 (one-step, forward product)", "unrolled": "exact k=1 (unrolled, higher)",
    "functional": "exact k=1 (functional, torch.func)", "truncated": "truncated k=2, t=1",
    "finite-difference": "finite-difference k=1", "head-only": "head-only k=1",
    "functional, every 4": "functional, every 4 steps",
    "finite-difference, every 8": "finite-difference, every 8 steps, meta batch 128"}.items()}
STRATEGY["cross-entropy"] = "cross-entropy"
#: overhead.json's rows by the same names
OVERHEAD = {"one-step": "exact k=1 (one-step, forward-mode)", "unrolled": "exact k=1 (higher)",
            "functional": "exact k=1 (torch.func)", "truncated": "truncated k=4, t=1",
            "finite-difference": "finite-difference k=1", "head-only": "head-only k=1", "cross-entropy": "plain step"}


# --- unroll_depth.json: hypergradient quality, cost and accuracy against depth -------------------

def udq(row: str, measure: str = "cosine") -> Stat:
    """The hypergradient's ``cosine`` / ``norm`` (relative to the reference) / CG ``iterations`` of a row."""
    return Stat(*store("unroll_depth")["quality"][row][measure])


def ud_values(row: str, measure: str = "norm") -> List[float]:
    """Every snapshot's and batch's value of a quality measure (the cells', over seeds)."""
    cells = [c for k, c in store("unroll_depth")["cells"].items() if k.startswith("quality | ")]
    return [v for c in cells for v in c["rows"][row][measure]]


def udc(row: str) -> dict:
    """A row's cost: ``ratio`` (to a plain step), ``memory`` (bytes), per ``k`` where it has several."""
    return store("unroll_depth")["cost"][row]


def uda(row: str, field: str = "last") -> Stat:
    """A row of the depth study's accuracy runs (``"noisy (40 % symmetric) | exact k=1"``, ``"clean | ..."``)."""
    return Stat(*store("unroll_depth")["accuracy"][row][field])


# --- layer_support.json: optimiser -> layer -> column -> the hypergradient's relative error ------

def layer_errors(optimizers: Sequence[str] = ("sgd", "adam", "adamw"), finite_difference: Optional[bool] = None,
                 ) -> List[float]:
    """Every measured relative error of the layer table (float64, against central differences); of the
    ``finite-difference`` columns alone (``True``), of the others (``False``), or of all (``None``)."""
    d = store("layer_support")
    return [cell["error"] for o in optimizers for layer in d[o].values() for column, cell in layer.items()
            if isinstance(cell, dict) and cell.get("error") is not None
            and finite_difference in (None, column.startswith("finite-difference"))]


# --- clean_labels.json: regime | method | seed ---------------------------------------------------

#: the clean-label regimes reported, by short name
REGIMES = {"twins": "digits-twins, MLP, no weight decay, 80 epochs", "mlp4k": "MNIST-1D, MLP, 4 000 train, no weight decay",
           "cnn": "MNIST-1D, CNN, 8 000 train (current)", "digits": "digits, MLP (current)"}
PARAMETERISATIONS = ("per-class", "class-temperature", "per-sample", "per-sample-ensemble", "ensemble-trust")
META_SOURCES = {"training batches": "meta from training batches", "held-out": "held-out meta split"}
#: the learned-label configurations: parameterisation x meta source
LEARNED_CONFIGS = [f"learned {p}, {m}" for p in PARAMETERISATIONS for m in META_SOURCES.values()]
SMOOTHINGS = [f"label smoothing {e}" for e in ("0.05", "0.1", "0.2", "0.3")]


def cl(regime: str, method: str, field: str = "last_accuracy", scale: float = 100.0) -> Stat:
    """A figure of ``clean_labels.json`` over its seeds (``regime``: a :data:`REGIMES` short name or full)."""
    return stat("clean_labels", f"{REGIMES.get(regime, regime)} | {method}", field, scale)


def cl_best(regime: str, methods: Sequence[str]) -> str:
    """The method of ``methods`` with the best mean last-epoch accuracy in a regime."""
    return max(methods, key=lambda m: cl(regime, m).m)


def cl_gain(regime: str, method: str) -> float:
    """A method's mean last-epoch accuracy minus one-hot's (points)."""
    return cl(regime, method) - cl(regime, "one-hot")


def cl_choice(regime: str, key: str):
    """Stage 1's figure of a candidate regime: ``gap`` (train minus test, points), ``gain`` (the best
    soft-target baseline's over one-hot), ``best_baseline``."""
    return store("clean_labels")["choice"]["figures"][REGIMES.get(regime, regime)][key]


def short_config(method: str) -> str:
    """``learned per-class, held-out meta split`` -> ``per-class, held-out``."""
    name, _, source = method[len("learned "):].partition(", ")
    return f"{name}, {next(k for k, v in META_SOURCES.items() if v == source)}"


# --- class_semantics.json, distillation.json -----------------------------------------------------

def twins(field: str, scale: float = 100.0) -> Stat:
    """``class_semantics.json``: a per-seed figure of the learned digits-twins matrix (``top1``: the share of
    classes whose largest off-diagonal entry is the twin, ``mean_rank``: the twin's rank), over seeds."""
    return mean_std([t[field] for t in store("class_semantics")["twins"]], scale)


#: distillation.py's teacher families
FAMILIES = {"one-hot": ["one-hot"], "label smoothing": [f"label smoothing {e}" for e in ("0.05", "0.1", "0.2", "0.3")],
            "learned labels": ["learned per-class", "learned class-temperature", "learned per-sample"]}
ALONE = "student alone (cross-entropy)"


def teacher(name: str, field: str = "last_accuracy") -> Stat:
    """A distillation teacher's figure over seeds (``ALONE``: the student trained alone)."""
    return _field([c["teacher"] for c in seeds_of("distillation", name)], field, 100.0)


def student(name: str, grid: Optional[str] = None, field: str = "last_accuracy") -> Stat:
    """A teacher's student at ``grid`` (``"T=8 alpha=1"``; default: its best T and α) over seeds."""
    return _field([c["students"][grid or best_grid(name)] for c in seeds_of("distillation", name)], field, 100.0)


def best_grid(name: str) -> str:
    """The T and α at which a teacher's student has the best mean last-epoch accuracy."""
    grid = seeds_of("distillation", name)[0]["students"]
    return max(grid, key=lambda g: student(name, g).m)


def best_teacher(family: str) -> str:
    """A family's teacher whose student (at its best T and α) is the best."""
    return max(FAMILIES[family], key=lambda n: student(n).m)


def t_alpha(grid: str) -> Tuple[str, str]:
    """``"T=8 alpha=1"`` -> ``("8", "1")``."""
    t, a = (part.split("=")[1] for part in grid.split(" "))
    return t, a


# --- machine_variation.json: the same cells under two sets of CPU kernels ------------------------

def mv(key: str, dataset: Optional[str] = None, method: Optional[str] = None) -> List:
    """A figure of ``machine_variation.json``'s summary (``max_accuracy``, ``mean_accuracy``,
    ``max_corrected``, ``max_suggested_differ``, ``max_flags_differ``, ``identical``, ``cells``) for each
    dataset and method (or those named), ``None`` where a method has no such figure left out."""
    out = []
    for group, figures in store("machine_variation")["summary"].items():
        d, m = group.split(" | ")
        if dataset in (None, d) and method in (None, m) and figures[key] is not None:
            out.append(figures[key])
    return out


def mv_control() -> Tuple[int, int]:
    """``(bit-identical, cells)`` of the control: the machine's own kernels run twice."""
    control = store("machine_variation")["control"]
    return sum(c["identical"] for c in control.values()), len(control)
