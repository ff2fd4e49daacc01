"""Every benchmark script runs end to end on its --smoke configuration, and what it writes agrees
with itself: the tables' figures are the means of the runs stored in the JSON, ratios are the
stored times divided by the stored reference time, and invariants of the measurements hold."""
from __future__ import annotations

import json
import math
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _smoke(script: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _sections(text: str) -> Dict[str, str]:
    """Markdown text under each heading (heading text without the ``#``s -> body)."""
    out: Dict[str, List[str]] = {"": []}
    current = ""
    for line in text.splitlines():
        if line.startswith("#"):
            current = line.lstrip("#").strip()
            out[current] = []
        else:
            out[current].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def _tables(text: str) -> List[List[List[str]]]:
    """Every markdown table in ``text``: its rows (header first, separator left out) of stripped cells."""
    tables: List[List[List[str]]] = []
    current: Optional[List[List[str]]] = None
    for line in text.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        cells = [c.strip() for c in line.strip()[1:-1].split("|")]
        if current is None:
            current = []
            tables.append(current)
        if not all(re.fullmatch(r"-+", c) for c in cells):
            current.append(cells)
    return tables


def _rows(table: List[List[str]], key_cells: int = 1) -> Dict[str, List[str]]:
    """A table's body rows keyed by their first ``key_cells`` cells (joined by `` | ``); keys are unique."""
    rows = {" | ".join(r[:key_cells]): r[key_cells:] for r in table[1:]}
    assert len(rows) == len(table) - 1, "duplicate rows"
    return rows


def _close(text: str, value: float) -> None:
    """``text``, a number printed at some decimals, is ``value`` rounded to them."""
    number = text.rstrip("×% ").strip()
    decimals = len(number.partition(".")[2])
    assert abs(float(number) - value) <= 0.5 * 10 ** -decimals + 1e-9, (text, value)


def _shows(text: str, values: Iterable[Optional[float]], scale: float = 100.0) -> None:
    """``text`` is ``mean ± std`` (population) of the finite ``values`` times ``scale`` (the value
    alone when there is one), or an en dash when none is finite; recomputed here with ``statistics``."""
    vals = [v * scale for v in values if v is not None and not math.isnan(v)]
    if not vals:
        assert text == "–", (text, vals)
        return
    if " ± " not in text:  # one seed in a table that shows no spread for it: the figure alone
        assert len(vals) == 1, (text, vals)
        _close(text, vals[0])
        return
    mean, _, std = text.partition(" ± ")
    _close(mean, statistics.fmean(vals))
    _close(std, statistics.pstdev(vals))


def _last_and_best_are_the_history(run: dict) -> None:
    accs = [h["test_accuracy"] for h in run["history"]]
    assert run["last_accuracy"] == accs[-1] and run["best_accuracy"] == max(accs)


def test_noisy_labels_smoke_and_resume(tmp_path):
    first = _smoke("noisy_labels.py", tmp_path, "--datasets", "digits")
    assert "0 of 54 cells already done; running 54" in first.stdout
    for name in ("noisy_labels_smoke.md", "noisy_labels_smoke_accuracy.png", "noisy_labels_smoke_correction.png"):
        assert (tmp_path / name).stat().st_size > 0
    text = (tmp_path / "noisy_labels_smoke.md").read_text()
    cells = json.loads((tmp_path / "noisy_labels_smoke.json").read_text())["cells"]
    assert len(cells) == 54
    reference = "cross-entropy on clean labels (reference)"
    added = "cross-entropy, clean meta set added to training"
    clean_default = "learned labels + weights (previous default) on clean labels"
    clean_corrector = "learned labels: corrector + weights, label lr 0.1, on clean labels"
    clean_detect = "detect, then correct, on clean labels"
    runs: Dict[tuple, dict] = {}
    for key, run in cells.items():
        dataset, setting, method, seed = key.split(" | ")
        assert (dataset, seed) == ("digits", "seed 0") and run["config"]["seed"] == 0
        _last_and_best_are_the_history(run)
        runs[setting, method] = run
    settings = ["symmetric-40", "asymmetric-40"]
    methods = sorted({m for _, m in runs} - {reference, clean_default, clean_corrector, clean_detect})
    assert len(methods) == 25
    sections = _sections(text)
    [overview] = _tables(sections["digits"])
    [ablation] = _tables(sections["digits: targets and ablation"])
    assert overview[0] == ["method", *settings]
    overview_rows = _rows(overview)
    assert sorted(overview_rows) == sorted(methods + [reference, clean_default, clean_corrector, clean_detect])
    # the ablation: the default, then each row without one of its components, with the difference
    default = "learned labels + weights (previous default)"
    ablation_rows = _rows(ablation)
    assert list(ablation_rows)[0] == default and len(ablation_rows) == 3
    for method, row in ablation_rows.items():
        for setting, shown in zip(settings, row[1:]):
            _shows(shown.split(" (")[0], [runs[setting, method]["last_accuracy"]])
            if method != default:
                difference = 100 * (runs[setting, method]["last_accuracy"] - runs[setting, default]["last_accuracy"])
                _close(shown.split(" (")[1].rstrip(")"), difference)
    for setting in settings:
        # every method of a setting trained on the same noise draw; the heading gives its rate
        confident = "confident learning (cleanlab, 5-fold), then cross-entropy + clean meta set"
        elr = "ELR (β 0.7), clean meta set added to training"
        [rate] = {runs[setting, m]["effective_noise"] for m in methods
                  if m not in (confident,) and not runs[setting, m]["config"]["meta_in_train"]}
        assert runs[setting, confident]["effective_noise"] == runs[setting, added]["effective_noise"]
        assert runs[setting, elr]["effective_noise"] == runs[setting, added]["effective_noise"]
        # the run that also trains on the 50 clean meta samples has the same corrupted samples among
        # N + 50: its rate is rate * N / (N + 50) for a whole number N
        n = 50 * runs[setting, added]["effective_noise"] / (rate - runs[setting, added]["effective_noise"])
        assert runs[setting, added]["config"]["meta_in_train"] and abs(n - round(n)) < 0.05 and n > 500
        [heading] = [h for h in sections if h.startswith(f"digits, {setting} (effective noise ")]
        _close(heading.split("effective noise ")[1].rstrip(" %)"), 100 * rate)
        [detail] = _tables(sections[heading])
        detail_rows = _rows(detail)
        assert sorted(detail_rows) == methods
        for method in methods:
            run = runs[setting, method]
            best, last, corrected, broken, flags, ap, wall = detail_rows[method]
            _shows(best, [run["best_accuracy"]])
            _shows(last, [run["last_accuracy"]])
            _shows(corrected, [run["corrected"]])
            _shows(broken, [run["clean_broken"]])
            _shows(wall, [run["wall_time"]], 1.0)
            _shows(ap, [run["detect_average_precision"]])
            if flags != "–":  # precision / recall / F1, the F1 recomputed from the two
                precision, recall, f1 = flags.split(" / ")
                _shows(precision, [run["detect_precision"]])
                _shows(recall, [run["detect_recall"]])
                p, r = run["detect_precision"], run["detect_recall"]  # p is nan when nothing was flagged
                _shows(f1, [0.0 if r == 0 or math.isnan(p) else 2 * p * r / (p + r)])
            _shows(overview_rows[method][settings.index(setting)], [run["last_accuracy"]])
        # the clean-label reference ran once; its accuracy is repeated in every column
        _shows(overview_rows[reference][settings.index(setting)], [runs["clean", reference]["last_accuracy"]])
        for clean in (clean_default, clean_corrector, clean_detect):
            _shows(overview_rows[clean][settings.index(setting)], [runs["clean", clean]["last_accuracy"]])
    # confident learning: its retraining is cross-entropy on the kept samples plus the clean meta set,
    # after cleanlab flagged some of the annotated ones (fewer training samples than the added-set row)
    confident = "confident learning (cleanlab, 5-fold), then cross-entropy + clean meta set"
    for setting in settings:
        run = runs[setting, confident]
        assert run["config"]["meta_in_train"] and run["config"]["strategy"] == "none"
        assert 0 < run["detect_recall"] <= 1 and not math.isnan(run["detect_average_precision"])
        assert run["wall_time"] > runs[setting, added]["wall_time"]  # six trainings, not one
    assert "Targets (issue 14" in text and "no cost on clean labels" in text
    # a second run finds every cell done and reproduces the same table
    again = _smoke("noisy_labels.py", tmp_path, "--datasets", "digits")
    assert "54 of 54 cells already done; running 0" in again.stdout
    assert (tmp_path / "noisy_labels_smoke.md").read_text() == text
    # issue 38's report over the same store. Each candidate cell's curve, at the row's threshold (0.6), is the
    # run's own corrected and broken shares: the curve read from the final label table, the shares from the
    # labels' hard labels (two computations of one thing)
    import detect_correct

    assert detect_correct.main(["--out", str(tmp_path), "--stems", "noisy_labels_smoke"]) == 0
    report = (tmp_path / "detect_correct.md").read_text()
    for setting in settings:
        for method in ("detect, then correct (default): clean set not in training",
                       "detect, then correct (weights on annotations, rejected samples' labels learn), clean set in training"):
            run = runs[setting, method]
            [point] = [p for p in run["curve"] if p[0] == 0.6]
            assert point[1:] == pytest.approx([100 * run["corrected"], 100 * run["clean_broken"]], nan_ok=True)
        assert f"## digits, {setting}" in report
    assert "## Issue 38's targets" in report and (tmp_path / "detect_correct_curves.png").stat().st_size > 0


def test_default_candidates_smoke(tmp_path):
    out = _smoke("default_candidates.py", tmp_path)
    text = (tmp_path / "default_candidates_smoke.md").read_text()
    cells = json.loads((tmp_path / "default_candidates_smoke.json").read_text())["cells"]
    # first round: 4 + 5 candidates at one noise setting; second round: 9 + 10 on clean labels;
    # third round: 9 new on digits (its two references are cells of the first round)
    assert len(cells) == 37 and "running 37" in out.stdout
    sections = _sections(text)
    rounds = {"first round": "symmetric-20", "second round": "clean", "third round": "symmetric-20"}
    for key, run in cells.items():
        dataset, setting, name, _ = key.split(" | ")
        found = 0
        for round_, first in rounds.items():
            heading = f"{dataset}, {round_}, seeds [0]"
            if first != setting or heading not in sections:
                continue
            [table] = _tables(sections[heading])
            if name in _rows(table):
                shown = _rows(table)[name][table[0].index(setting) - 1]
                _close(shown.split(" (")[0], 100 * run["last_accuracy"])  # one seed: the number, no spread
                found += 1
        assert found, key


def test_overhead_smoke(tmp_path):
    import overhead

    _smoke("overhead.py", tmp_path)
    data = json.loads((tmp_path / "overhead_smoke.json").read_text())
    text = (tmp_path / "overhead_smoke.md").read_text()
    sections = _sections(text)
    l2rw = [name for name, method in overhead.METHODS.items() if method.group == overhead.L2RW]
    references = [overhead.HANDWRITTEN] + ([overhead.TORCHOPT] if data["torchopt"] else [])
    assert data["torchopt"] == (overhead.torchopt_available() is None)
    assert ("TorchOpt's MetaSGD row is skipped" in text) != data["torchopt"]
    for model in ("cnn1d-bn", "mlp"):
        rows = data["results"][model]
        plain = rows["plain step"]
        # every labelmeta method, the references after labelmeta's L2RW rows, each group in one block
        assert set(rows) == {"plain step", *overhead.METHODS, *references}
        order = list(rows)
        assert order[order.index(l2rw[-1]) + 1:order.index(l2rw[-1]) + 1 + len(references)] == references
        groups = [r["group"] for r in rows.values()]
        assert all(g not in groups[:i] or groups[i - 1] == g for i, g in enumerate(groups))
        [table] = _tables(sections[model])
        assert table[0][:2] == ["group", "step"]
        shown = {r[1]: r for r in table[1:]}
        assert list(shown) == list(rows)
        hand = rows[overhead.HANDWRITTEN]["seconds"]
        previous = None
        for name, r in rows.items():
            assert r["samples"] == 3  # --smoke: 3 timed rounds
            assert math.isclose(r["time_ratio"], r["seconds"] / plain["seconds"], rel_tol=1e-12)
            assert math.isclose(r["memory_ratio"], r["memory"] / plain["memory"], rel_tol=1e-12)
            group, _, ms, ratio, versus, mb, memory_ratio = shown[name]
            assert group == ("" if r["group"] == previous else overhead.GROUPS.get(r["group"], r["group"]))
            previous = r["group"]
            _close(ms, r["seconds"] * 1e3)
            _close(ratio, r["time_ratio"])
            _close(mb, r["memory"] / 2**20)
            _close(memory_ratio, r["memory_ratio"])
            if r["group"] == overhead.L2RW:
                assert math.isclose(r["handwritten_ratio"], r["seconds"] / hand, rel_tol=1e-12)
                _close(versus, r["handwritten_ratio"])
            else:
                assert versus == "–" and "handwritten_ratio" not in r
        # the exact unroll keeps more of a graph than a plain step; head-only far less than the exact one
        assert rows["exact k=1 (torch.func)"]["memory"] > plain["memory"]
        assert rows["head-only k=1"]["memory"] < rows["exact k=1 (torch.func)"]["memory"]
        # the targets: each L2RW row against the hand-written step, the fastest exact k=1 against 4.0x
        body = sections[model]
        for name in l2rw:
            ratio = rows[name]["handwritten_ratio"]
            assert f"`{name}` {ratio:.2f}× — {'met' if ratio <= 1 else '**not met**'}" in body
        fastest = min(overhead.EXACT, key=lambda name: rows[name]["time_ratio"])
        ratio = rows[fastest]["time_ratio"]
        assert (f"fastest exact k=1 here is `{fastest}` at {ratio:.2f}× — "
                f"{'met' if ratio <= overhead.TARGET else '**not met**'}.") in body
    # the label optimiser's steps as a share of the first model's plain step
    [table] = _tables(sections["The label optimiser's step (measured before and after making it row-sparse)"])
    shown = _rows(table)
    assert list(shown) == list(data["label_step_seconds"])
    for name, seconds in data["label_step_seconds"].items():
        _close(shown[name][0], seconds * 1e3)
        _close(shown[name][1], seconds / data["results"]["cnn1d-bn"]["plain step"]["seconds"])
    assert (tmp_path / "overhead_smoke.png").stat().st_size > 0


@pytest.mark.parametrize("model", ["cnn1d-bn", "mlp"])
def test_overhead_references_do_labelmetas_l2rw_step(model):
    """The oracle of the L2RW rows' target: the hand-written torch.func step (and TorchOpt's, when it
    imports) give the per-sample weights of labelmeta's ``reweight`` at every step of a short run
    from the same start (BatchNorm and the momentum buffer included), so they time the same job."""
    import torch

    import overhead

    weights = overhead.l2rw_weights(model, batch_size=16, steps=3)
    assert set(weights) == {"reweight", "hand-written"} | ({"torchopt"} if overhead.torchopt_available() is None else set())
    for name, run in weights.items():
        for expected, actual in zip(weights["reweight"], run):
            torch.testing.assert_close(actual, expected)
    assert all(float(w.sum()) == pytest.approx(1.0, abs=1e-5) for w in weights["reweight"])


def test_unroll_depth_smoke(tmp_path):
    import unroll_depth

    _smoke("unroll_depth.py", tmp_path)
    data = json.loads((tmp_path / "unroll_depth_smoke.json").read_text())
    sections = _sections((tmp_path / "unroll_depth_smoke.md").read_text())
    # quality: every figure is the mean ± std of the stored measurements
    depth_table, implicit_table = _tables(sections["Hypergradient quality against a long-horizon reference"])
    assert depth_table[0][1:] == ["k=1", "k=2"]
    [quality_cell] = [c for k, c in data["cells"].items() if k.startswith("quality | ")]
    assert quality_cell["k_ref"] == 8
    rows = quality_cell["rows"]
    for name, shown in _rows(depth_table).items():
        for k, text in zip((1, 2), shown):
            cosine, norm = text.split(" (")
            _shows(cosine, rows[f"{name}, k={k}"]["cosine"], scale=1.0)
            _shows(norm.rstrip(")"), rows[f"{name}, k={k}"]["norm"], scale=1.0)
            assert all(-1 - 1e-9 <= c <= 1 + 1e-9 for c in rows[f"{name}, k={k}"]["cosine"])
    # k=1: the exact unroll, truncation through the last step and one-step are one quantity
    for measure in ("cosine", "norm"):
        exact = rows["exact, k=1"][measure]
        for other in ("truncated, t=1, k=1", "one-step, k=1"):
            assert all(math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6) for a, b in zip(exact, rows[other][measure]))
        # truncated t=1 and one-step compute the same gradient at every k
        assert all(math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-5)
                   for a, b in zip(rows["truncated, t=1, k=2"][measure], rows["one-step, k=2"][measure]))
    for name, (cosine, norm, taken) in _rows(implicit_table).items():
        _shows(cosine, rows[name]["cosine"], scale=1.0)
        _shows(norm, rows[name]["norm"], scale=1.0)
        assert all(1 <= t <= 2 for t in rows[name]["iterations"])  # CG 2: at most its two products
    # cost: ratios are stored times over the plain step's, slopes and exponents least-squares fits
    plain = data["cost"]["plain"]["seconds"]
    cost_table, implicit_cost = _tables(sections["Cost per training step (cnn1d-bn, batch 16, meta batch the same size)"])
    shown = _rows(cost_table)
    assert list(shown) == list(unroll_depth.DEPTH_ROWS)
    for name in unroll_depth.DEPTH_ROWS:
        row = data["cost"][name]
        ratios = [s / plain for s in row["seconds"]]
        assert all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(row["ratio"], ratios))
        assert math.isclose(row["slope_plain_steps_per_k"], ratios[1] - ratios[0], rel_tol=1e-6, abs_tol=1e-9)
        exponent = math.log(row["memory"][1] / row["memory"][0]) / math.log(2)
        assert math.isclose(row["memory_exponent"], exponent, rel_tol=1e-6, abs_tol=1e-9)
        k1, k2, slope, memory, shown_exponent = shown[name]
        _close(k1, ratios[0])
        _close(k2, ratios[1])
        _close(slope, row["slope_plain_steps_per_k"])
        m1, m2 = memory.split(" → ")
        _close(m1, row["memory"][0] / 2**20)
        _close(m2, row["memory"][1] / 2**20)
        _close(shown_exponent, exponent)
    exact, truncated = data["cost"]["exact"], data["cost"]["truncated, t=1"]
    # the exact unroll's graph grows with k; truncation keeps it (nearly) flat
    assert exact["memory"][1] > exact["memory"][0]
    assert truncated["memory"][1] - truncated["memory"][0] < exact["memory"][1] - exact["memory"][0]
    for name, (ratio, memory) in _rows(implicit_cost).items():
        _close(ratio, data["cost"][name]["seconds"] / plain)
        _close(memory, data["cost"][name]["memory"] / 2**20)
    # accuracy: the harness's runs
    [accuracy] = _tables(sections["Accuracy (digits, 1 seed(s): [0]; mean ± std)"])
    shown = _rows(accuracy, key_cells=2)
    assert list(shown) == list(data["accuracy"])
    runs = _method_runs({k: c for k, c in data["cells"].items() if not k.startswith("quality | ")})
    assert runs["noisy (40 % symmetric) | exact k=2"][0]["config"]["strategy"] == "functional:labels+weights"
    assert runs["noisy (40 % symmetric) | implicit, CG 20 (k=2 inner steps)"][0]["config"]["strategy"] == \
        "implicit:labels+weights"
    for key, r in data["accuracy"].items():
        assert r["best"][0] >= r["last"][0]  # the best epoch's accuracy is at least the last one's
        assert r["last"][0] == pytest.approx(100 * statistics.fmean(run["last_accuracy"] for run in runs[key]))
        for cell, (mean, std), digits in zip(shown[key], [r["last"], r["best"], r["corrected"], r["broken"], r["seconds"]],
                                             (1, 1, 1, 2, 0)):
            if math.isnan(mean):
                assert cell == "–"
            else:
                assert cell == f"{mean:.{digits}f} ± {std:.{digits}f}"
    assert (tmp_path / "unroll_depth_smoke.png").stat().st_size > 0


def test_strategies_smoke(tmp_path):
    _smoke("strategies.py", tmp_path)
    data = json.loads((tmp_path / "strategies_smoke.json").read_text())
    report = (tmp_path / "strategies_smoke.md").read_text()
    runs, rows = _method_runs(data["cells"]), data["rows"]
    assert [r["method"] for r in rows] == list(runs) and rows[0]["method"] == "cross-entropy"
    ce_time = statistics.fmean(r["wall_time"] for r in runs["cross-entropy"])
    ce_last = statistics.fmean(100 * r["last_accuracy"] for r in runs["cross-entropy"])
    [table] = _tables(report)
    shown = _rows(table, key_cells=2)
    for row in rows:
        rs = runs[row["method"]]
        for run in rs:
            _last_and_best_are_the_history(run)
        last = statistics.fmean(100 * r["last_accuracy"] for r in rs)
        assert math.isclose(row["last"][0], last, rel_tol=1e-9)
        assert math.isclose(row["time_ratio"], statistics.fmean(r["wall_time"] for r in rs) / ce_time, rel_tol=1e-9)
        labels, _, strategy = row["method"].partition(" | ")
        exact = runs.get(f"{labels} | exact k=1 (unrolled, higher)")
        gain = math.nan
        if exact is not None and row["method"] != "cross-entropy":
            exact_gain = statistics.fmean(100 * r["last_accuracy"] for r in exact) - ce_last
            gain = (last - ce_last) / exact_gain if exact_gain > 0 else math.nan
        assert (math.isnan(gain) and math.isnan(row["gain_kept"])) or math.isclose(row["gain_kept"], gain, rel_tol=1e-9)
        last_cell, best_cell, corrected, broken, wall, ratio, gain_cell = shown[f"{labels} | {strategy or '–'}"]
        _shows(last_cell, [r["last_accuracy"] for r in rs])
        _shows(best_cell, [r["best_accuracy"] for r in rs])
        _shows(corrected, [r["corrected"] for r in rs])
        _shows(broken, [r["clean_broken"] for r in rs])
        _shows(wall, [r["wall_time"] for r in rs], 1.0)
        _close(ratio, row["time_ratio"])
        if math.isnan(gain):
            assert gain_cell == "–"
        else:
            _close(gain_cell, 100 * gain)
    cheap = [r["method"] for r in rows if r["time_ratio"] <= 1.5 and r["gain_kept"] >= 0.9]
    assert ("Strategies within 1.5× cross-entropy's time that keep ≥ 90 % of the exact gain: "
            + (", ".join(cheap) if cheap else "none.")) in report
    # every row trained on the same noise draw, the rate the report states
    [rate] = {r["effective_noise"] for rs in runs.values() for r in rs}
    assert f"noise: symmetric at 40% nominal, {100 * rate:.1f}% effective." in report
    assert (tmp_path / "strategies_smoke.png").stat().st_size > 0


#: the candidate regimes the smoke test runs (the fast ones; one of the earlier settings among them)
SMOKE_REGIMES = ["digits, MLP (current)", "digits-twins, MLP", "digits-twins, MLP, no weight decay, 80 epochs"]


def test_clean_labels_smoke(tmp_path):
    _smoke("clean_labels.py", tmp_path, "--regimes", *SMOKE_REGIMES)
    data = json.loads((tmp_path / "clean_labels_smoke.json").read_text())
    text = (tmp_path / "clean_labels_smoke.md").read_text()
    cells = data["cells"]
    runs: Dict[tuple, list] = {}
    for key, run in cells.items():
        regime, method, _ = key.split(" | ")
        runs.setdefault((regime, method), []).append(run)
        _last_and_best_are_the_history(run)
        assert run["train_accuracy"] == run["history"][-1]["train_accuracy"] is not None
    mean = {k: statistics.fmean(100 * r["last_accuracy"] for r in rs) for k, rs in runs.items()}
    baselines = [m for (r, m) in runs if r == SMOKE_REGIMES[0] and not m.startswith(("learned", "one-hot, matched"))]
    assert baselines[0] == "one-hot" and {"online label smoothing (α 0.5)", "PS-KD (α 0.8)"} <= set(baselines)
    # the rule, recomputed from the stored one-hot and baseline runs of every candidate
    gap = {r: statistics.fmean(100 * (x["train_accuracy"] - x["last_accuracy"]) for x in runs[r, "one-hot"])
           for r in SMOKE_REGIMES}
    gain = {r: max(mean[r, m] for m in baselines[1:]) - mean[r, "one-hot"] for r in SMOKE_REGIMES}
    eligible = sorted((r for r in SMOKE_REGIMES if gain[r] >= 0.5), key=lambda r: -gap[r])[:2]
    rest = sorted((r for r in SMOKE_REGIMES if r not in eligible), key=lambda r: -gain[r])
    chosen = (eligible + rest)[:2]
    assert data["choice"]["chosen"] == chosen
    stage1 = _rows(_tables(_sections(text)["Stage 1: the candidate regimes (baselines only, before any learned label ran)"])[0])
    for regime in SMOKE_REGIMES:
        _close(stage1[regime][2], gap[regime])
        _close(stage1[regime][4], gain[regime])
        assert (stage1[regime][5] == "**yes**") == (regime in chosen)
    # learned labels ran only where they are reported: the chosen regimes and the earlier setting
    reported = chosen + [r for r in ["digits, MLP (current)"] if r not in chosen]
    assert {r for (r, m) in runs if m.startswith("learned")} == set(reported)
    for regime in reported:
        tag = " (chosen)" if regime in chosen else " (earlier setting)"
        shown = _rows(_tables(_sections(text)[regime + tag])[0])
        for (r, method), rs in runs.items():
            if r != regime:
                continue
            name = method
            if method == "one-hot, matched wall time":
                [epochs] = {x["config"]["epochs"] for x in rs}
                name = f"{method} ({epochs} epochs)"
            last, best, train, ece, wall = shown[name]
            _shows(last, [x["last_accuracy"] for x in rs])
            _shows(train, [x["train_accuracy"] for x in rs])
            _shows(ece, [x["ece"] for x in rs])
            _shows(wall, [x["wall_time"] for x in rs], 1.0)
            held_out = [x["config"]["meta_per_class"] for x in rs]
            assert all(h > 0 for h in held_out) == method.endswith("held-out meta split")
    trace = data["evolution"]
    assert trace["regime"] == max(chosen, key=gap.get) and len(trace["annotated"]) == len(trace["epoch"]) == 2
    for name in ("clean_labels_smoke.png", "clean_labels_smoke_evolution.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_class_semantics_smoke(tmp_path):
    _smoke("class_semantics.py", tmp_path)
    data = json.loads((tmp_path / "class_semantics_smoke.json").read_text())
    text = (tmp_path / "class_semantics_smoke.md").read_text()
    twins, mnist1d = data["twins_similarity"], data["mnist1d_similarity"]
    assert len(twins) == 20 and len(mnist1d) == 10
    for matrix in (twins, mnist1d):  # learned labels: each row a distribution over the classes
        assert all(len(row) == len(matrix) and math.isclose(sum(row), 1.0, rel_tol=1e-5) for row in matrix)
    # the twin statistics of seed 0 (the matrix stored), recounted here
    ranks, mass = [], []
    for c, row in enumerate(twins):
        twin = (c + 10) % 20
        ranks.append(1 + sum(1 for j, v in enumerate(row) if j not in (c, twin) and v > row[twin]))
        mass.append(row[twin])
    [seed0] = data["twins"]
    assert seed0["seed"] == 0
    assert math.isclose(seed0["top1"], sum(r == 1 for r in ranks) / 20, abs_tol=1e-12)
    assert math.isclose(seed0["mean_rank"], statistics.fmean(ranks), abs_tol=1e-12)
    assert math.isclose(seed0["twin_mass"], statistics.fmean(mass), rel_tol=1e-5)
    [table] = _tables(text)
    shown = _rows(table)
    top1, mean_rank, twin_mass, accuracy = shown["0"]
    _close(top1, 100 * seed0["top1"])
    _close(mean_rank, seed0["mean_rank"])
    _close(twin_mass, seed0["twin_mass"])
    _close(accuracy, 100 * seed0["accuracy"])
    _shows(shown["mean ± std"][0], [seed0["top1"]])
    assert (tmp_path / "class_semantics_smoke.png").stat().st_size > 0


def test_distillation_smoke(tmp_path):
    _smoke("distillation.py", tmp_path)
    data = json.loads((tmp_path / "distillation_smoke.json").read_text())["cells"]
    text = (tmp_path / "distillation_smoke.md").read_text()
    grid = [(t, a) for t in (1.0, 2.0) for a in (0.9, 1.0)]  # --smoke: two temperatures, two alphas
    teachers = {key.split(" | ")[0] for key in data if not key.startswith("student alone")}
    assert teachers == {"one-hot", "label smoothing 0.1", "learned per-class"}

    def students(name, t, a):
        return [data[f"{name} | seed 0"]["students"][f"T={t:g} alpha={a:g}"]]

    best = {}
    for name in teachers:
        for t, a in grid:  # each student trained as its key says, by distillation, as the MLP
            [run] = students(name, t, a)
            assert (run["config"]["loss_options"], run["config"]["loss"], run["config"]["model"]) == \
                (dict(temperature=t, alpha=a), "distillation", "mlp")
        best[name] = max(grid, key=lambda g: students(name, *g)[0]["last_accuracy"])
    best_table, every_table, grid_table = _tables(text)
    rows = _rows(every_table)
    for name in teachers:
        teacher_acc, teacher_ece, t, a, last, best_acc, ece = rows[name]
        assert (float(t), float(a)) == best[name]
        _shows(teacher_acc, [data[f"{name} | seed 0"]["teacher"]["last_accuracy"]])
        _shows(last, [r["last_accuracy"] for r in students(name, *best[name])])
        _shows(ece, [r["ece"] for r in students(name, *best[name])])
    family = _rows(best_table)
    assert set(family) <= teachers | {"student alone (cross-entropy)"} and len(family) == 4
    learned = students("learned per-class", *best["learned per-class"])[0]["last_accuracy"]
    others = [students(n, *best[n])[0]["last_accuracy"] for n in ("one-hot", "label smoothing 0.1")]
    verdict = "met" if all(learned >= o for o in others) else "missed"
    assert f"each at its own best T and α: **{verdict}**" in text
    cells = _rows(grid_table)
    for name in teachers:
        for t in (1.0, 2.0):
            for a, shown in zip((0.9, 1.0), cells[f"{name}, T = {t:g}"]):
                _shows(shown, [r["last_accuracy"] for r in students(name, t, a)])
    assert (tmp_path / "distillation_smoke.png").stat().st_size > 0


def test_label_signal_smoke(tmp_path):
    _smoke("label_signal.py", tmp_path)
    data = json.loads((tmp_path / "label_signal_smoke.json").read_text())["epochs"]
    [table] = _tables((tmp_path / "label_signal_smoke.md").read_text())
    assert table[0] == ["measure", "epoch 1", "epoch 2"] and list(data) == ["1", "2"]
    shown = _rows(table)
    for column, epoch in enumerate(data):
        [row] = data[epoch]  # one seed
        assert list(shown) == list(row)
        for measure, value in row.items():
            assert 0.0 <= value <= 1.0
            _shows(shown[measure][column], [value])
        # a larger bonus beta for the annotation only moves hard labels onto the annotation: fewer
        # corrupted labels corrected and fewer clean ones broken, never more
        for source, betas in (("learned table", ("-1", "+0")), ("model", ("+0", "+1", "+2"))):
            for what in ("corrected", "clean broken"):
                values = [row[f"{source}, beta {b}: {what}"] for b in betas]
                assert values == sorted(values, reverse=True), (source, what, values)


def _check_profile(data: dict, sections: Dict[str, str]) -> None:
    """The profile's figures against its JSON, and the structure of where the time goes."""
    import profile_step

    for key, result in data["results"].items():
        method, model = key.split(" | ")
        table, wall = result["families_by_phase"], result["wall_by_phase"]
        families, phase_table = _tables(sections[f"{method} on {model}"])
        phases = [c for c in families[0][1:-2]]
        rows = _rows(families)
        total = sum(sum(row.values()) for row in table.values())
        # every operator's time is in one family and one phase: rows, columns and shares add up
        assert list(rows) == [name for name, row in table.items() if sum(row.values()) > 0] + ["**all operators**"]
        for name, row in table.items():
            if name in rows:
                _close(rows[name][-2], sum(row.values()))
                _close(rows[name][-1], 100 * sum(row.values()) / total)
        _close(rows["**all operators**"][-2], total)
        assert abs(sum(float(r[-1]) for n, r in rows.items() if n != "**all operators**") - 100.0) <= 0.05 * len(rows)
        assert len(phases) == len({p for row in table.values() for p in row} | set(wall))
        # the phases' wall times: each the range's less those inside it; the operators' time the column's
        walls = _rows(phase_table)
        assert list(walls)[:-1] == phases and list(walls)[-1] == "**step**"
        by_phase = {p: sum(row.get(p, 0.0) for row in table.values()) for p in wall}
        for p in wall:
            shown = walls[profile_step._short(p)]
            _close(shown[0], wall[p])
            _close(shown[1], by_phase[p])
            _close(shown[2], wall[p] - by_phase[p])
            assert wall[p] >= 0
        _close(walls["**step**"][0], sum(wall.values()))
        _close(walls["**step**"][1], total)
        doubles = ("batch norm: double backward", "convolution: double backward")
        if method == profile_step.HANDWRITTEN:
            # one backward through everything: the double backwards in the gradient to the weights only
            if model == "cnn1d-bn":
                for name in doubles:
                    assert set(table[name]) == {"hand-written: gradient to the weights"}
            assert set(table["optimiser steps (SGD, label step)"]) <= {"hand-written: model step"}
            continue
        forward_mode = "one-step: forward-mode product J u" in wall
        if "one-step" in method:
            # forward-mode: no graph through the inner backward, so no double backward anywhere,
            # and the forwards run in the shared forward, the meta loss and the product
            if forward_mode:
                assert all(sum(table[name].values()) == 0 for name in doubles)
            elif model == "cnn1d-bn":  # reverse-mode: the double backward is the product, and only there
                for name in doubles:
                    assert set(table[name]) == {"one-step: reverse-mode product J u"}
            if model == "cnn1d-bn" and forward_mode:
                forward = table["convolution: forward"]
                assert set(forward) == {"labelmeta: model forward (shared)", "one-step: meta loss and its gradient",
                                        "one-step: forward-mode product J u"}
        elif model == "cnn1d-bn":  # the exact unroll's double backwards, in its second-order backward only
            for name in doubles:
                assert set(table[name]) == {"labelmeta: meta step"} and table[name]["labelmeta: meta step"] > 0
            # its forwards in the unroll's inner step and meta forward
            assert set(table["convolution: forward"]) <= {"unroll: inner step", "unroll: meta forward",
                                                          "labelmeta: model step"}
        # nothing but the label optimiser and the model step's own run the optimiser family
        assert set(table["optimiser steps (SGD, label step)"]) <= {"labelmeta: label step", "labelmeta: model step",
                                                                   "outside the ranges (label forward, checks, observe)"}


def test_profile_step_smoke(tmp_path):
    _smoke("profile_step.py", tmp_path)
    data = json.loads((tmp_path / "profile_step_smoke.json").read_text())
    sections = _sections((tmp_path / "profile_step_smoke.md").read_text())
    assert len(data["results"]) == 6  # three methods on two models
    _check_profile(data, sections)


def test_profile_l2rw_smoke(tmp_path):
    """``--l2rw``: labelmeta's L2RW rows and the default against the hand-written step, whose
    unprofiled times are timed together: the summary's ratios are the stored times' ratios."""
    import profile_step

    _smoke("profile_step.py", tmp_path, "--l2rw")
    data = json.loads((tmp_path / "profile_l2rw_smoke.json").read_text())
    sections = _sections((tmp_path / "profile_l2rw_smoke.md").read_text())
    assert [key.split(" | ")[0] for key in data["results"]] == profile_step.L2RW_METHODS * 2
    _check_profile(data, sections)
    for model in ("cnn1d-bn", "mlp"):
        [summary] = _tables(sections[f"Summary on {model}"])
        shown = _rows(summary)
        assert list(shown) == profile_step.L2RW_METHODS
        hand = data["results"][f"{profile_step.HANDWRITTEN} | {model}"]["step_seconds_unprofiled"]
        for method, (ms, ratio, versus) in shown.items():
            times = data["results"][f"{method} | {model}"]["step_seconds_unprofiled"]
            assert times["plain step"] == hand["plain step"] and times[profile_step.HANDWRITTEN] == hand[profile_step.HANDWRITTEN]
            _close(ms, times[method] * 1e3)
            _close(ratio, times[method] / times["plain step"])
            _close(versus, times[method] / times[profile_step.HANDWRITTEN])


def _method_runs(cells: dict) -> dict:
    """A harness.compare store's cells (``"METHOD | seed S"``) as ``METHOD -> [results per seed]``."""
    runs: dict = {}
    for key, result in cells.items():
        runs.setdefault(key.rsplit(" | seed ", 1)[0], []).append(result)
    return runs


def test_default_recipe_smoke(tmp_path):
    """Every figure of the table recomputed from the runs; the qualifying rule and the choice too."""
    _smoke("default_recipe.py", tmp_path)
    data = json.loads((tmp_path / "default_recipe_smoke.json").read_text())
    report = (tmp_path / "default_recipe_smoke.md").read_text()
    runs, rows = _method_runs(data["cells"]), data["rows"]
    assert [r["method"] for r in rows] == list(runs)
    ce, reference = runs["cross-entropy"], runs["exact: unrolled (higher), every step, meta batch 500"]
    assert reference[0]["config"]["strategy"] == "unrolled:labels+weights"
    ce_last = statistics.fmean(100 * r["last_accuracy"] for r in ce)
    ce_time = statistics.fmean(r["wall_time"] for r in ce)
    ref_last = [100 * r["last_accuracy"] for r in reference]
    shown = _rows(_tables(report)[0])
    for row in rows:
        rs = runs[row["method"]]
        last = statistics.fmean(100 * r["last_accuracy"] for r in rs)
        assert math.isclose(row["time_ratio"], statistics.fmean(r["wall_time"] for r in rs) / ce_time, rel_tol=1e-9)
        last_cell, best_cell, corrected, broken, wall, ratio, gain_cell, qualifies = shown[row["method"]]
        _shows(last_cell, [r["last_accuracy"] for r in rs])
        _shows(best_cell, [r["best_accuracy"] for r in rs])
        _shows(wall, [r["wall_time"] for r in rs], 1.0)
        _close(ratio, row["time_ratio"])
        if row["method"] == "cross-entropy":
            assert gain_cell == qualifies == "–"
            continue
        gain = (last - ce_last) / (statistics.fmean(ref_last) - ce_last)
        _close(gain_cell, 100 * gain)
        expected = (row["method"] in data["candidates"] and gain >= 0.95
                    and last >= statistics.fmean(ref_last) - statistics.pstdev(ref_last))
        assert row["qualifies"] == expected and qualifies == ("yes" if expected else "no" if row["method"] in data["candidates"] else "–")
    qualifying = sorted((r for r in rows if r["qualifies"]), key=lambda r: r["time_ratio"])
    assert (f"Fastest qualifying candidate: **{qualifying[0]['method']}**" in report) if qualifying \
        else "No candidate qualifies." in report


def test_cifar_epoch_smoke(tmp_path):
    """One epoch of the cifar10 preset on synthetic files in torchvision's format, each row (the cifar10n
    preset's on a synthetic CIFAR-10_human.pt, with its clean meta split held out of the images trained on)."""
    import cifar_epoch

    _smoke("cifar_epoch.py", tmp_path, "--data-root", str(tmp_path / "data"))
    data = json.loads((tmp_path / "cifar_epoch_smoke.json").read_text())
    assert (tmp_path / "data" / "cifar-10-batches-py" / "data_batch_5").exists()
    shown = _rows(_tables((tmp_path / "cifar_epoch_smoke.md").read_text())[0])
    plain = data["results"]["cross-entropy"]["seconds"]
    for name, r in data["results"].items():
        seconds, per_second, ratio, memory = shown[name]
        _close(seconds, r["seconds"])
        _close(per_second, r["images"] / r["seconds"])
        _close(ratio, r["seconds"] / plain)
        assert memory == "–"  # measured on a GPU only
    assert (tmp_path / "data" / "CIFAR-10_human.pt").exists()
    assert data["results"][cifar_epoch.CIFAR10N]["images"] == data["images"] - 20  # 2 clean images a class held out


def test_layer_support_smoke(tmp_path):
    _smoke("layer_support.py", tmp_path)
    data = json.loads((tmp_path / "layer_support_smoke.json").read_text())
    import layer_support

    [table] = _tables(_sections((tmp_path / "layer_support_smoke.md").read_text())["sgd"])
    layers = ["TransformerEncoderLayer"]
    assert table[0] == ["strategy", *layers] and list(data["sgd"]) == layers
    shown = _rows(table)
    assert list(shown) == list(data["sgd"][layers[0]]) == [*layer_support.COLUMNS, layer_support.LEARNER]
    for column, texts in shown.items():
        for layer, text in zip(layers, texts):
            cell = data["sgd"][layer][column]
            assert text.startswith("✓ ") and cell["error"] <= layer_support.tolerance(column, "sgd")
            assert text.split()[1] == f"{cell['error']:.0e}"


def test_harness_refuses_a_results_file_of_an_older_layout(tmp_path):
    """A results file without "cells" (a script's storeless layout) is refused, named, and left as it was."""
    import harness

    path = tmp_path / "old.json"
    path.write_text(json.dumps({"rows": [1, 2]}))
    with pytest.raises(ValueError, match=re.escape(str(path))):
        harness.run_cells({}, path, jobs=1)
    assert json.loads(path.read_text()) == {"rows": [1, 2]}
    assert harness.load_store(tmp_path / "absent.json") == {"cells": {}}


def test_the_small_clean_set_column_changes_only_the_clean_set():
    """``small-clean-40``: 40 % symmetric noise with 10 clean samples a class; the rest of a cell's
    configuration is symmetric-40's (digits' base already holds 10 a class: there the two are one)."""
    import noisy_labels as nl

    for dataset in ("mnist1d", "digits"):
        small, usual = (next(iter(nl.plan([dataset], [s], [nl.LEARNED], [0], {}).values()))
                        for s in ("small-clean-40", "symmetric-40"))
        assert (small.meta_per_class, small.meta_batch_size, small.noise, small.noise_rate) == (10, 100, "symmetric", 0.4)
        assert small.replace(meta_per_class=usual.meta_per_class, meta_batch_size=usual.meta_batch_size) == usual
    assert next(iter(nl.plan(["mnist1d"], ["symmetric-40"], [nl.LEARNED], [0], {}).values())).meta_per_class == 50


def test_meta_weight_net_smoke(tmp_path):
    out = _smoke("meta_weight_net.py", tmp_path)
    assert "running 4" in out.stdout
    cells = json.loads((tmp_path / "meta_weight_net_smoke.json").read_text())["cells"]
    [table] = _tables(_sections((tmp_path / "meta_weight_net_smoke.md").read_text())["digits"])
    rows = _rows(table)
    for key, run in cells.items():
        _, setting, name, _ = key.split(" | ")
        assert run["config"]["strategy"] == "meta-weight-net"
        assert f"network lr {run['config']['strategy_options']['lr']:g}" in name
        _close(rows[name][0], 100 * run["last_accuracy"])
    # no noisy_labels store beside it: the reference rows say so instead of inventing figures
    assert rows["meta-reweighting (L2RW, k=1 unroll) (stored)"] == ["–"]


def test_tuning_smoke_chooses_on_the_validation_split(tmp_path):
    """``tuning.py``: every method gets the same budget of values, every run validates on half of the
    clean set it would otherwise get (never the test set), and the chosen value is the best mean."""
    import noisy_labels as nl

    _smoke("tuning.py", tmp_path, "--jobs", "2")
    store = json.loads((tmp_path / "tuning_smoke.json").read_text())
    [table] = _tables(_sections((tmp_path / "tuning_smoke.md").read_text())["digits"])
    rows = _rows(table)
    assert sorted(rows) == sorted(nl.SEARCH)
    per_method: Dict[str, Dict[str, float]] = {}
    for key, run in store["cells"].items():
        dataset, setting, name, seed = key.split(" | ")
        method, value = name.split(" @ ")
        config = run["config"]
        assert (dataset, setting, seed) == ("digits", "symmetric-40", "seed 10")
        assert config["validation_per_class"] == config["meta_per_class"] // 2 > 0
        per_method.setdefault(method, {})[value.rsplit(" ", 1)[1]] = run["last_accuracy"]
        if method == nl.CONFIDENT:  # the rule is not a Config field: the cell records it
            assert run["filter_by"] == value.rsplit(" ", 1)[1]
    for method, found in per_method.items():
        assert list(found) == list(nl.SEARCH[method][1]) and len(found) == nl.BUDGET
        best, incumbent = max(found.values()), nl.SEARCH[method][2]
        pick = store["chosen"]["digits"]["symmetric-40"][method]
        # the best; of equal ones the incumbent (the value the benchmark ran before), else the first
        assert pick == (incumbent if found[incumbent] == best else next(v for v in found if found[v] == best))
        shown = rows[method][1].split("<br>")
        assert [part.startswith("**") for part in shown] == [v == pick for v in found]
        for part, (value, accuracy) in zip(shown, found.items()):
            assert part.strip("*").startswith(value + ("°: " if value == incumbent else ": "))
            _shows(part.strip("*").split(": ")[1], [accuracy])


def test_noisy_labels_applies_the_chosen_values_per_family():
    """A value chosen on symmetric-40 serves every symmetric column (small-clean-40 too), one chosen on
    asymmetric-40 the flips; untuned rows and datasets without a choice keep their own values."""
    import noisy_labels as nl

    chosen = {"mnist1d": {"symmetric-40": {nl.ELR: "7", nl.CONFIDENT: "both"},
                          "asymmetric-40": {nl.ELR: "1", nl.LEARNED: "2"}}}
    settings = ["symmetric-20", "small-clean-40", "asymmetric-40"]
    cells = nl.plan(["mnist1d", "digits"], settings, [nl.ELR, nl.LEARNED, nl.CONFIDENT], [0], {}, chosen=chosen)
    plain = nl.plan(["mnist1d", "digits"], settings, [nl.ELR, nl.LEARNED, nl.CONFIDENT], [0], {})
    lam = {k: c.loss_options.get("lam") for k, c in cells.items() if nl.ELR in k}
    assert lam == {nl.cell_key("mnist1d", "symmetric-20", nl.ELR, 0): 7.0, nl.cell_key("mnist1d", "small-clean-40", nl.ELR, 0): 7.0,
                   nl.cell_key("mnist1d", "asymmetric-40", nl.ELR, 0): 1.0, nl.cell_key("digits", "symmetric-20", nl.ELR, 0): None,
                   nl.cell_key("digits", "small-clean-40", nl.ELR, 0): None, nl.cell_key("digits", "asymmetric-40", nl.ELR, 0): None}
    for key, config in cells.items():
        changed = {f for f in config.__dataclass_fields__ if getattr(config, f) != getattr(plain[key], f)}
        expected = {nl.ELR: {"loss_options"}, nl.LEARNED: {"label_lr"}}.get(key.split(" | ")[2], set())
        assert changed == (expected if key.startswith("mnist1d") and (nl.ELR in key or "asymmetric" in key) else set())
    assert cells[nl.cell_key("mnist1d", "asymmetric-40", nl.LEARNED, 0)].label_lr == 2.0
    runners = nl.runners_for(cells, chosen)
    assert {k: r.keywords for k, r in runners.items()} == {
        nl.cell_key(d, s, nl.CONFIDENT, 0): ({"filter_by": "both"} if d == "mnist1d" and s != "asymmetric-40" else {})
        for d in ("mnist1d", "digits") for s in settings}
    complete = nl.ran_as_planned(runners)
    symmetric, flips = (nl.cell_key("mnist1d", s, nl.CONFIDENT, 0) for s in ("symmetric-20", "asymmetric-40"))
    assert not complete(symmetric, {}) and complete(symmetric, {"filter_by": "both"})
    assert complete(flips, {}) and not complete(flips, {"filter_by": "both"})  # stored before the rule was kept
    assert nl.chosen_overrides(chosen, "mnist1d", "symmetric-80", nl.L2RW) is None


def test_weight_history_rules_closed_form():
    from types import SimpleNamespace

    import torch
    import weight_history

    from labelmeta.checkpoint import RunState

    history = weight_history.WeightHistory()
    run = SimpleNamespace(splits=SimpleNamespace(labels=SimpleNamespace(noisy=torch.zeros(4))),
                          state=RunState(weighed=torch.zeros(4), rejected=torch.zeros(4)))
    # sample 0: weights 2, 0, 0 (relative to uniform); sample 1: 1, 1, 0; sample 2: 0 then 0.5; sample 3: never weighed
    for indices, weights in (([0, 1], [2.0, 1.0]), ([0, 1, 2], [0.0, 1.0, 0.0]), ([0, 1, 2], [0.0, 0.0, 0.5])):
        index, w = torch.tensor(indices), torch.tensor(weights) / len(indices)
        run.state.record_weights(index, w)  # the run counts the visits before its hooks see the step
        history.after_step(run, SimpleNamespace(indices=index, sample_weights=w))
    history.after_step(run, SimpleNamespace(indices=torch.tensor([3]), sample_weights=None))  # a plain step
    assert history.visits.tolist() == [3, 3, 2, 0] and history.zeros.tolist() == [2, 1, 1, 0]
    assert torch.allclose(history.total, torch.tensor([2.0, 2.0, 0.5, 0.0], dtype=torch.float64))
    score, flag = weight_history.RULES["zero fraction"](history)
    assert torch.allclose(score, torch.tensor([2 / 3, 1 / 3, 0.5, 0.0])) and flag.tolist() == [True, False, False, False]
    score, flag = weight_history.RULES["mean weight"](history)
    assert torch.allclose(score, torch.tensor([1 / 3, 1 / 3, 0.75, 1.0], dtype=torch.float64))
    assert flag.tolist() == [False, False, True, False]
    score, flag = weight_history.RULES["last weight"](history)
    assert torch.allclose(score, torch.tensor([1.0, 1.0, 0.5, 0.0], dtype=torch.float64))
    assert flag.tolist() == [True, True, False, False]


def test_weight_history_smoke(tmp_path):
    import weight_history

    _smoke("weight_history.py", tmp_path)
    cells = json.loads((tmp_path / "weight_history_smoke.json").read_text())["cells"]
    [table] = _tables((tmp_path / "weight_history_smoke.md").read_text())
    shown = _rows(table, key_cells=3)
    assert len(shown) == len(weight_history.METHODS) * len(weight_history.RULES)
    for key, row in shown.items():
        setting, method, rule = key.split(" | ")
        [stored] = [c for k, c in cells.items() if k.startswith(f"mnist1d | {setting} | {method} | ")]
        _shows(row[0], [stored["last_accuracy"]])
        for value, field in zip(row[1:], ("precision", "recall", "f1", "average precision")):
            figure = stored["rules"][rule][field]
            assert math.isnan(figure) or 0.0 <= figure <= 1.0
            _shows(value, [figure])


def test_machine_record_names_the_cpu_its_kernels_and_the_torch_build():
    import torch

    from common import VECTOR_FLAGS, describe_machine, machine_record

    record = machine_record()
    assert record["capability"] == torch.backends.cpu.get_cpu_capability()
    assert (record["torch"], record["threads"]) == (torch.__version__, torch.get_num_threads())
    assert record["build"] == (f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only")
    assert set(record["flags"]) <= set(VECTOR_FLAGS) and record["cpu"]
    assert json.loads(json.dumps(record)) == record  # a cell can store it
    line = describe_machine(record)
    assert all(str(record[k]) in line for k in ("cpu", "arch", "capability", "torch", "build"))


def _config_cell(config) -> dict:
    """A harness runner that runs nothing: the cell is its configuration."""
    import dataclasses

    return {"config": dataclasses.asdict(config)}


def test_harness_records_the_machine_in_each_new_cell(tmp_path):
    """run_cells stores the worker's machine beside each new cell, whatever its runner; a stored cell with
    or without one loads as Results and counts as done; where() says how many cells ran where."""
    import dataclasses

    import torch

    import harness
    from common import describe_machine
    from labelmeta import Config, Results

    path = tmp_path / "store.json"
    cells = {"a | seed 0": Config(seed=0), "a | seed 1": Config(seed=1)}
    store = harness.run_cells(cells, path, jobs=1, run=_config_cell)
    machines = [store["cells"][k][harness.MACHINE] for k in cells]
    assert all(m["capability"] == torch.backends.cpu.get_cpu_capability() and m["threads"] == 1 for m in machines)
    assert all(harness.is_done(store, k, c) for k, c in cells.items())
    old = {**dataclasses.asdict(Results(config=dataclasses.asdict(Config()))), "filter_by": "both"}
    assert harness.results_of(old) == harness.results_of({**old, harness.MACHINE: machines[0]})
    text = harness.where(2, [store["cells"]["a | seed 0"], store["cells"]["a | seed 1"], old])
    assert text == (f"1 torch thread per cell, 2 cell(s) at a time; 2 cell(s) on {describe_machine(machines[0])}; "
                    "1 cell(s) run before the machine was recorded")


def test_machine_variation_smoke(tmp_path):
    """The same cells under torch's portable kernels and the machine's own: each subprocess ran the
    kernels asked for, the control (the machine's own kernels again) repeats every cell bit for bit, and
    the differences, the summary and the report are the stored runs' own."""
    import os

    import torch

    _smoke("machine_variation.py", tmp_path)
    data = json.loads((tmp_path / "machine_variation_smoke.json").read_text())
    text = (tmp_path / "machine_variation_smoke.md").read_text()
    assert data["machines"]["default"]["capability"] == "DEFAULT"
    if "ATEN_CPU_CAPABILITY" not in os.environ:
        assert data["machines"]["native"]["capability"] == torch.backends.cpu.get_cpu_capability()
    assert data["control"] and all(c["identical"] for c in data["control"].values())
    same_kernels = data["machines"]["native"]["capability"] == "DEFAULT"
    for key, cell in data["cells"].items():
        d = cell["difference"]
        assert d["accuracy"] == pytest.approx(100 * (cell["native"]["last_accuracy"] - cell["default"]["last_accuracy"]))
        if same_kernels:
            assert d["identical"]
        if d["identical"]:
            assert d["accuracy"] == d["suggested_differ"] == d["flags_differ"] == 0
    summary = _tables(text)[0]
    rows = _rows(summary, key_cells=2)
    for group, s in data["summary"].items():
        shown = rows[group]
        diffs = [c["difference"] for k, c in data["cells"].items() if k.startswith(group + " | ")]
        assert shown[0] == f"{sum(d['identical'] for d in diffs)} of {len(diffs)}"
        _close(shown[1], max(abs(d["accuracy"]) for d in diffs))
        assert s["max_accuracy"] == max(abs(d["accuracy"]) for d in diffs)
