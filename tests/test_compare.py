"""The comparison's noise line: effective rates averaged over distinct training sets only."""
from __future__ import annotations

import dataclasses

from labelmeta import Config
from labelmeta.compare import noise_summary
from labelmeta.records import Results


def run(effective: float, seed: int, **config) -> Results:
    base = Config(seed=seed).replace(**config)
    return Results(config=dataclasses.asdict(base), nominal_noise=base.noise_rate, effective_noise=effective)


def test_noise_summary_counts_each_training_set_once_and_reports_other_sets_apart():
    """Three methods on the seeds' shared sets (35.3, 35.9, 35.9 %) and one on the sets with the
    meta samples added (33.1, 33.7, 33.7 %): the headline is 35.7 %, not the 35.1 % of all runs."""
    shared = [0.353, 0.359, 0.359]
    added = [0.331, 0.337, 0.337]
    results = {
        "a": [run(e, s) for s, e in enumerate(shared)],
        "b": [run(e, s) for s, e in enumerate(shared)],
        "c": [run(e, s) for s, e in enumerate(shared)],
        "meta added": [run(e, s, meta_in_train=True) for s, e in enumerate(added)],
        "clean": [run(0.0, s, noise="none", noise_rate=0.0) for s in range(3)],
    }
    assert noise_summary(results) == (
        "noise: symmetric at 40% nominal, 35.7 ± 0.3% effective (35.3, 35.9, 35.9% per seed); "
        "with meta_in_train=True: symmetric at 40% nominal, 33.5 ± 0.3% effective (33.1, 33.7, 33.7% per seed)")


def test_noise_summary_of_one_seed_and_of_clean_runs():
    assert noise_summary({"a": [run(0.359, 0)], "b": [run(0.359, 0)]}) == \
        "noise: symmetric at 40% nominal, 35.9% effective"
    assert noise_summary({"a": [run(0.0, 0, noise="none", noise_rate=0.0)]}) is None
    # another nominal rate is another training set, with its own rate
    assert noise_summary({"a": [run(0.18, 0, noise_rate=0.2)], "b": [run(0.36, 0)]}) == \
        "noise: symmetric at 20% nominal, 18.0% effective; with noise_rate=0.4: symmetric at 40% nominal, 36.0% effective"
