"""The benchmark harness: planned cells -> a resumable store -> runs grouped for the report.

A *cell* is one run of :func:`labelmeta.fit` under a full :class:`~labelmeta.Config`, keyed by a
string whose parts are separated by `` | `` (e.g. ``"mnist1d | sym 40% | default | seed 0"``). The
*store* is a JSON file ``{"cells": {key: Results as a dict}}`` written atomically after every cell,
so an interrupted benchmark loses at most the cells in flight and a rerun does only what is missing
(or whose configuration changed). Scripts plan their cells, call :func:`run_cells`, and read the
results back with :func:`group_runs` and :func:`stat`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Tuple

from labelmeta import Config, Results, fit
from labelmeta.compare import mean_std


def fit_cell(config: Config) -> dict:
    """One cell: :func:`labelmeta.fit` on one torch thread (wall times stay comparable), as a dict."""
    import torch

    torch.set_num_threads(1)
    return dataclasses.asdict(fit(config))


def save_store(path: Path, store: dict) -> None:
    """Write the store atomically, so that an interrupted run loses at most the cells in flight."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(store, f, indent=1)
    os.replace(tmp, path)


def load_store(path: Path) -> dict:
    """The store at ``path``, or an empty one."""
    return json.loads(path.read_text()) if path.exists() else {"cells": {}}


def is_done(store: dict, key: str, config: Config) -> bool:
    """Whether ``store`` holds ``key`` run under ``config`` (a Config field added after the cell ran
    has its default there: defaults keep behaviour)."""
    stored = store["cells"].get(key, {}).get("config")
    defaults = dataclasses.asdict(Config())
    return stored is not None and {**defaults, **stored} == json.loads(json.dumps(dataclasses.asdict(config)))


def run_cells(cells: Dict[str, Config], path: Path, jobs: int,
              run: Callable[[Config], dict] = fit_cell) -> dict:
    """Run the cells not yet in the store at ``path`` (or whose configuration changed), ``jobs`` at a
    time; return the whole store. Progress: a bar on a terminal, a line per cell elsewhere."""
    store = load_store(path)
    todo = {k: c for k, c in cells.items() if not is_done(store, k, c)}
    print(f"{len(cells) - len(todo)} of {len(cells)} cells already done; running {len(todo)} on {jobs} process(es)",
          flush=True)
    from tqdm.auto import tqdm

    with ProcessPoolExecutor(jobs) as pool, tqdm(total=len(todo), desc="cells", disable=not sys.stderr.isatty()) as bar:
        futures = {key: pool.submit(run, config) for key, config in todo.items()}
        for key, future in futures.items():
            store["cells"][key] = future.result()
            save_store(path, store)
            bar.update(1)
            if not sys.stderr.isatty():
                print(f"done: {key}", flush=True)
    return store


def group_runs(store: dict, keys: Iterable[str], parts: int = 3) -> Dict[Tuple[str, ...], List[Results]]:
    """The stored results of ``keys``, grouped by the first ``parts`` parts of their keys (the last
    part is the seed): ``(part, ...) -> [Results per seed]``."""
    out: Dict[Tuple[str, ...], List[Results]] = {}
    for key in keys:
        out.setdefault(tuple(key.split(" | ")[:parts]), []).append(Results.from_dict(store["cells"][key]))
    return out


def stat(runs: List[Results], field: str, scale: float = 100.0) -> tuple:
    """``(mean, std)`` of a field of the runs (times ``scale``; a percentage by default)."""
    return mean_std([getattr(r, field) for r in runs], scale)
