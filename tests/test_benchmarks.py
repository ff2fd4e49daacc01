"""Every benchmark script runs end to end on its --smoke configuration and writes its outputs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _smoke(script: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_noisy_recipe_smoke(tmp_path):
    _smoke("noisy_recipe.py", tmp_path)
    assert (tmp_path / "noisy_recipe_smoke.png").stat().st_size > 0
    results = json.loads((tmp_path / "noisy_recipe_smoke.json").read_text())
    assert set(results) >= {"cross-entropy", "learned labels (default: per-sample-ensemble, k=1 unroll)"}
    assert "| cross-entropy | 1 |" in (tmp_path / "noisy_recipe_smoke.md").read_text()


def test_noisy_labels_smoke_and_resume(tmp_path):
    first = _smoke("noisy_labels.py", tmp_path, "--datasets", "digits")
    assert "0 of 25 cells already done; running 25" in first.stdout
    for name in ("noisy_labels_smoke.md", "noisy_labels_smoke_accuracy.png", "noisy_labels_smoke_correction.png"):
        assert (tmp_path / name).stat().st_size > 0
    table = (tmp_path / "noisy_labels_smoke.md").read_text()
    assert "| meta-reweighting (L2RW, k=1 unroll) |" in table and "### digits, asymmetric-40" in table
    store = json.loads((tmp_path / "noisy_labels_smoke.json").read_text())
    assert len(store["cells"]) == 25
    # a second run finds every cell done and reproduces the same table
    again = _smoke("noisy_labels.py", tmp_path, "--datasets", "digits")
    assert "25 of 25 cells already done; running 0" in again.stdout
    assert (tmp_path / "noisy_labels_smoke.md").read_text() == table


def test_overhead_smoke(tmp_path):
    out = _smoke("overhead.py", tmp_path).stdout
    assert "| exact k=1 (torch.func) |" in out and "| head-only k=1 |" in out
    data = json.loads((tmp_path / "overhead_smoke.json").read_text())
    for model in ("cnn1d-bn", "mlp"):
        rows = data["results"][model]
        assert rows["plain step"]["time_ratio"] == 1.0
        # the exact unroll keeps more of a graph than a plain step; head-only far less than the exact one
        assert rows["exact k=1 (torch.func)"]["memory"] > rows["plain step"]["memory"]
        assert rows["head-only k=1"]["memory"] < rows["exact k=1 (torch.func)"]["memory"]
    assert (tmp_path / "overhead_smoke.png").stat().st_size > 0


def test_unroll_depth_smoke(tmp_path):
    out = _smoke("unroll_depth.py", tmp_path).stdout
    assert "| truncated, t=1 |" in out and "| clean | exact k=2 |" in out
    data = json.loads((tmp_path / "unroll_depth_smoke.json").read_text())
    exact, truncated = data["cost"]["exact (torch.func)"], data["cost"]["truncated, t=1"]
    # the exact unroll's graph grows with k; truncation keeps it (nearly) flat
    assert exact["memory"][1] > exact["memory"][0]
    assert truncated["memory"][1] - truncated["memory"][0] < exact["memory"][1] - exact["memory"][0]
    assert (tmp_path / "unroll_depth_smoke.png").stat().st_size > 0


def test_strategies_smoke(tmp_path):
    out = _smoke("strategies.py", tmp_path).stdout
    assert "| per-sample-ensemble | head-only k=1 |" in out and "| class-temperature | exact k=1 (unrolled, higher) |" in out
    rows = json.loads((tmp_path / "strategies_smoke.json").read_text())["rows"]
    assert rows[0]["method"] == "cross-entropy" and rows[0]["time_ratio"] == 1.0
    assert (tmp_path / "strategies_smoke.png").stat().st_size > 0


def test_clean_labels_smoke(tmp_path):
    out = _smoke("clean_labels.py", tmp_path, "--datasets", "digits").stdout
    assert "(best smoothing)" in out and "| learned per-class, held-out meta split |" in out
    assert "Best learned labels (last epoch):" in out
    assert (tmp_path / "clean_labels_smoke.png").stat().st_size > 0


def test_class_semantics_smoke(tmp_path):
    out = _smoke("class_semantics.py", tmp_path).stdout
    assert "| mean ± std |" in out
    data = json.loads((tmp_path / "class_semantics_smoke.json").read_text())
    assert len(data["twins_similarity"]) == 20 and len(data["mnist1d_similarity"]) == 10
    assert (tmp_path / "class_semantics_smoke.png").stat().st_size > 0


def test_distillation_smoke(tmp_path):
    out = _smoke("distillation.py", tmp_path).stdout
    assert "| learned-label teacher (per-class), T = 2 |" in out and "| student alone (cross-entropy) | – |" in out


def test_label_signal_smoke(tmp_path):
    out = _smoke("label_signal.py", tmp_path).stdout
    assert "| signal prefers the true class (% of corrupted) |" in out and "| model, beta +1: corrected |" in out
