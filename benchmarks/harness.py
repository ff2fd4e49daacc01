"""The benchmark harness: planned cells -> a resumable store -> runs grouped for the report.

A *cell* is one run of :func:`labelmeta.fit` under a full :class:`~labelmeta.Config`, keyed by a
string whose parts are separated by `` | `` (e.g. ``"mnist1d | sym 40% | default | seed 0"``). The
*store* is a JSON file ``{"cells": {key: Results as a dict}}`` written atomically after every cell,
so an interrupted benchmark loses at most the cells in flight and a rerun does only what is missing
(or whose configuration changed). Scripts plan their cells, call :func:`run_cells`, and read the
results back with :func:`group_runs` and :func:`stat`; a table of methods × seeds on one base
configuration is :func:`compare` (``labelmeta.compare.compare``'s resumable, multi-process form).
A script's store is its ``.json`` output: the report's own keys sit beside ``"cells"``. Every cell
run since issue 36 also holds ``"machine"``, the :func:`common.machine_record` of the process that ran
it: a stored figure is exact for that machine (:func:`where`; ``benchmarks/machine_variation.py``
measures how far figures move between CPU kernels).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from common import describe_machine, machine_record
from labelmeta import Config, Results, fit
from labelmeta.config import upgrade
from labelmeta.compare import mean_std

#: the key under which a cell records the machine that ran it (cells run before issue 36 lack it)
MACHINE = "machine"


def fit_cell(config: Config) -> dict:
    """One cell: :func:`labelmeta.fit`, its Results as a dict (which holds ``"config"``)."""
    return dataclasses.asdict(fit(config))


def _recorded(run: Callable[[Config], dict], config: Config) -> dict:
    """``run(config)`` (a cell of any runner) with the machine that ran it (``"machine"``:
    :func:`common.machine_record`), unless the runner recorded it itself."""
    out = run(config)
    return out if MACHINE in out else {**out, MACHINE: machine_record()}


def results_of(cell: Mapping) -> Results:
    """A stored cell as :class:`~labelmeta.Results` (what its runner added beside them, such as the machine
    or confident learning's rule, left out)."""
    fields = {f.name for f in dataclasses.fields(Results)}
    return Results.from_dict({k: v for k, v in cell.items() if k in fields})


def save_store(path: Path, store: dict) -> None:
    """Write the store atomically, so that an interrupted run loses at most the cells in flight."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(store, f, indent=1)
    os.replace(tmp, path)


def load_store(path: Path) -> dict:
    """The store at ``path``, or an empty one. A file without ``"cells"`` (written by a script's older,
    storeless version) is refused rather than overwritten: its runs are results someone may want."""
    if not path.exists():
        return {"cells": {}}
    store = json.loads(path.read_text())
    if not isinstance(store, dict) or not isinstance(store.get("cells"), dict):
        raise ValueError(f"{path} is not a cell store (it has no 'cells'): an older layout of this script's "
                         "results. Move it away (git keeps it) to run the cells afresh")
    return store


def is_done(store: dict, key: str, config: Config) -> bool:
    """Whether ``store`` holds ``key`` run under ``config`` (a Config field added after the cell ran
    has its default there: defaults keep behaviour)."""
    stored = store["cells"].get(key, {}).get("config")
    defaults = dataclasses.asdict(Config())
    return stored is not None and {**defaults, **upgrade(stored)} == json.loads(json.dumps(dataclasses.asdict(config)))


def _start_worker(warm_up: Optional[Config]) -> None:
    """A worker's first act: one torch thread (wall times stay comparable across cells and jobs), and
    one throw-away run, so that no stored cell pays torch's start-up costs."""
    import torch

    torch.set_num_threads(1)
    if warm_up is not None:
        fit(warm_up)


def run_cells(cells: Dict[str, Config], path: Path, jobs: int, run: Callable[[Config], dict] = fit_cell,
              warm_up: Optional[Config] = None, complete: Optional[Callable[[str, dict], bool]] = None,
              runners: Optional[Mapping[str, Callable[[Config], dict]]] = None) -> dict:
    """Run the cells not yet in the store at ``path`` (or whose configuration changed), ``jobs`` at a
    time, each in a worker process on one torch thread; return the whole store.

    ``run(config)`` returns the cell as a JSON-able dict holding ``"config"`` (default: the Results of
    :func:`labelmeta.fit`); ``runners``: a cell key -> its own ``run``, for a method that is more than one
    ``fit`` (a module-level function: it runs in a worker process). ``warm_up``: a (small) configuration each worker runs first and throws
    away, where the cells' wall times are figures. ``complete(key, stored)``: whether the stored cell
    ``key`` of an unchanged configuration also holds everything the script now asks of it (default: yes).
    Progress: a bar on a terminal, a line per cell elsewhere."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    store = load_store(path)
    todo = {k: c for k, c in cells.items()
            if not (is_done(store, k, c) and (complete is None or complete(k, store["cells"][k])))}
    print(f"{len(cells) - len(todo)} of {len(cells)} cells already done; running {len(todo)} on {jobs} process(es)",
          flush=True)
    if not todo:
        return store
    from tqdm.auto import tqdm

    with ProcessPoolExecutor(jobs, initializer=_start_worker, initargs=(warm_up,)) as pool, \
            tqdm(total=len(todo), desc="cells", disable=not sys.stderr.isatty()) as bar:
        futures = {key: pool.submit(_recorded, (runners or {}).get(key, run), config) for key, config in todo.items()}
        for key, future in futures.items():
            store["cells"][key] = future.result()
            save_store(path, store)
            bar.update(1)
            if not sys.stderr.isatty():
                print(f"done: {key}", flush=True)
    return store


def method_cells(base: Config, methods: Mapping[str, Mapping], seeds: Iterable[int]) -> Dict[str, Config]:
    """One cell per method (``name -> Config overrides`` of ``base``) and seed, keyed ``"name | seed S"``."""
    return {f"{name} | seed {seed}": base.replace(seed=seed, **overrides)
            for name, overrides in methods.items() for seed in seeds}


def compare(base: Config, methods: Mapping[str, Mapping], seeds: Iterable[int], path: Path, jobs: int = 1,
            warm_up: Optional[Config] = None) -> Tuple[dict, Dict[str, List[Results]]]:
    """Every method for every seed through the store at ``path``: ``(store, name -> [Results per seed])``.

    The same runs as :func:`labelmeta.compare.compare` (each cell builds the same data and noise
    draw from its seed), resumable and on ``jobs`` processes."""
    seeds = list(seeds)
    store = run_cells(method_cells(base, methods, seeds), path, jobs, warm_up=warm_up)
    return store, {name: [results_of(store["cells"][f"{name} | seed {seed}"]) for seed in seeds]
                   for name in methods}


def where(jobs: int, cells: Optional[Iterable[Mapping]] = None) -> str:
    """Where the cells ran, for a report's first line: this machine (:func:`common.machine_record`), or,
    given the stored ``cells`` the report shows, the machines they recorded, with how many cells ran on
    each and how many ran before cells recorded it."""
    how = f"1 torch thread per cell, {jobs} cell(s) at a time"
    if cells is None:
        return f"{describe_machine({**machine_record(), 'threads': 1})}; {how}"
    counts: Dict[str, int] = {}
    for c in cells:
        name = describe_machine(c[MACHINE]) if MACHINE in c else ""
        counts[name] = counts.get(name, 0) + 1
    machines = [f"{n} cell(s) on {name}" for name, n in counts.items() if name]
    if "" in counts:
        machines.append(f"{counts['']} cell(s) run before the machine was recorded")
    return f"{how}; {'; '.join(machines)}"


def add_jobs_argument(parser) -> None:
    """``--jobs``: cells run at a time, one process and one torch thread each."""
    parser.add_argument("--jobs", type=int, default=1, help="cells run at a time, one process (one torch thread) each")


def group_runs(store: dict, keys: Iterable[str], parts: int = 3) -> Dict[Tuple[str, ...], List[Results]]:
    """The stored results of ``keys``, grouped by the first ``parts`` parts of their keys (the last
    part is the seed): ``(part, ...) -> [Results per seed]``."""
    out: Dict[Tuple[str, ...], List[Results]] = {}
    for key in keys:
        out.setdefault(tuple(key.split(" | ")[:parts]), []).append(results_of(store["cells"][key]))
    return out


def stat(runs: List[Results], field: str, scale: float = 100.0) -> tuple:
    """``(mean, std)`` of a field of the runs (times ``scale``; a percentage by default)."""
    return mean_std([getattr(r, field) for r in runs], scale)
