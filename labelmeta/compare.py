"""Run several methods on the same data, noise draw and seeds, and tabulate them.

The demo, the benchmarks and the notebooks all go through :func:`compare`, so every method in a
table ran through the same :func:`~labelmeta.runner.fit` loop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional

import numpy as np

from .build import splits_for
from .config import DATA_FIELDS, Config
from .data import Splits
from .records import Results
from .runner import fit


def compare(base: Config, methods: Mapping[str, Mapping], seeds: Iterable[int] = (0,)) -> Dict[str, List[Results]]:
    """Run every method (``name -> Config overrides``) for every seed.

    Runs that agree on the data fields share one :class:`~labelmeta.data.Splits`, so they see
    exactly the same samples and corrupted labels.
    """
    out: Dict[str, List[Results]] = {name: [] for name in methods}
    for seed in seeds:
        cache: Dict[tuple, Splits] = {}
        for name, overrides in methods.items():
            config = base.replace(seed=seed, **overrides)
            key = _key(config.__dict__)
            if key not in cache:
                cache[key] = splits_for(config)
            out[name].append(fit(config, cache[key]))
    return out


def _key(config: Mapping, fields: Iterable[str] = DATA_FIELDS) -> tuple:
    """The data fields' values, hashable (option dicts as sorted item tuples)."""
    return tuple(tuple(sorted(v.items())) if isinstance(v, dict) else v for v in (config.get(f) for f in fields))


@dataclass
class Row:
    """Mean and standard deviation over seeds of one method's figures (percent, seconds)."""

    method: str
    seeds: int
    best: tuple
    last: tuple
    corrected: tuple
    clean_broken: tuple
    wall_time: tuple
    precision: tuple = (float("nan"), float("nan"))
    recall: tuple = (float("nan"), float("nan"))


def mean_std(values: Iterable[Optional[float]], scale: float = 100.0) -> tuple:
    """``(mean, std)`` of the finite ``values`` times ``scale``; ``(nan, nan)`` if there are none."""
    vals = [v * scale for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return (float("nan"), float("nan"))
    return (float(np.mean(vals)), float(np.std(vals)))


def summarize(results: Mapping[str, List[Results]]) -> List[Row]:
    """One :class:`Row` per method."""
    return [
        Row(name, len(runs),
            mean_std([r.best_accuracy for r in runs]), mean_std([r.last_accuracy for r in runs]),
            mean_std([r.corrected for r in runs]), mean_std([r.clean_broken for r in runs]),
            mean_std([r.wall_time for r in runs], scale=1.0),
            mean_std([r.detect_precision for r in runs]), mean_std([r.detect_recall for r in runs]))
        for name, runs in results.items()
    ]


def cell(ms: tuple, digits: int = 1, spread: bool = True) -> str:
    """``mean ± std`` with ``digits`` decimals (the mean alone without ``spread``: one seed has
    none), or an en dash for a figure a method does not have."""
    if math.isnan(ms[0]):
        return "–"
    return f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}" if spread else f"{ms[0]:.{digits}f}"


def format_table(rows: List[Row], time_relative_to: Optional[str] = None) -> str:
    """A markdown table of :func:`summarize` rows: mean ± std over seeds, or plain figures for a
    method run on one seed; with ``time_relative_to`` (a method's name), a column of each method's
    wall time as a multiple of that one's."""
    base = next((r.wall_time[0] for r in rows if r.method == time_relative_to), None)
    if time_relative_to is not None and base is None:
        raise ValueError(f"time_relative_to={time_relative_to!r} is not one of the methods {[r.method for r in rows]}")
    relative = f" time (× {time_relative_to}) |" if base is not None else ""
    lines = [
        "| method | seeds | test acc best (%) | test acc last (%) | corrupted corrected (%) | clean broken (%) "
        "| flagged: precision / recall (%) | wall time (s) |" + relative,
        "|---|---|---|---|---|---|---|---|" + ("---|" if relative else ""),
    ]
    for r in rows:
        spread = r.seeds > 1
        flags = ("–" if math.isnan(r.precision[0]) and math.isnan(r.recall[0])
                 else f"{cell(r.precision, 0, spread)} / {cell(r.recall, 0, spread)}")
        line = (f"| {r.method} | {r.seeds} | {cell(r.best, 1, spread)} | {cell(r.last, 1, spread)} | "
                f"{cell(r.corrected, 1, spread)} | {cell(r.clean_broken, 2, spread)} | {flags} | "
                f"{cell(r.wall_time, 0, spread)} |")
        if base is not None:
            line += f" {r.wall_time[0] / base:.1f} |" if base > 0 else " – |"
        lines.append(line)
    return "\n".join(lines)


def noise_summary(results: Mapping[str, List[Results]]) -> Optional[str]:
    """``nominal → effective`` noise rate line for a comparison, if any run was noisy.

    Effective rates are averaged over the distinct training sets only: runs that differ in a data
    field other than the seed (e.g. ``meta_in_train``, which adds the clean meta samples) trained on
    another set and are reported apart, after a ``with field=value:``; the runs of one seed on one
    set count once, however many methods trained on it. Several seeds give ``mean ± std`` and the
    per-seed rates.
    """
    fields = [f for f in DATA_FIELDS if f != "seed"]
    groups: Dict[tuple, Dict[int, Results]] = {}
    for runs in results.values():
        for r in runs:
            if r.nominal_noise > 0:
                key = _key(r.config, fields)
                groups.setdefault(key, {}).setdefault(r.config.get("seed"), r)
    if not groups:
        return None
    first = next(iter(groups))
    parts = []
    for key, by_seed in groups.items():
        runs = list(by_seed.values())
        eff = [100 * r.effective_noise for r in runs]
        rate = f"{eff[0]:.1f}% effective"
        if len(eff) > 1:
            rate = (f"{np.mean(eff):.1f} ± {np.std(eff):.1f}% effective "
                    f"({', '.join(f'{e:.1f}' for e in eff)}% per seed)")
        text = f"{runs[0].config['noise']} at {runs[0].nominal_noise:.0%} nominal, {rate}"
        if key != first:
            differ = ", ".join(f"{f}={v}" for f, v, v0 in zip(fields, key, first) if v != v0)
            text = f"with {differ}: {text}"
        parts.append(text)
    return "noise: " + "; ".join(parts)
