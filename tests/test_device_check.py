"""``benchmarks/device_check.py`` on a machine without CUDA: it says so and runs nothing (exit status 2),
and ``--dry-run`` lists its three parts. (Its run on a GPU is the check itself.)"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _device_check(*args: str, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no CUDA device, whatever this machine has
    return subprocess.run([sys.executable, "benchmarks/device_check.py", *args, "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_without_cuda_it_says_so_and_runs_nothing(tmp_path):
    done = _device_check(out=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "device_check: no CUDA device here (torch.cuda.is_available() is False): nothing was run." in done.stderr
    assert done.stdout == "" and not any(tmp_path.iterdir())


def test_dry_run_lists_the_three_parts(tmp_path):
    done = _device_check("--dry-run", out=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"device_check: three parts, within 455 s, figures under {tmp_path.resolve()}"
    parts = {line.split(" (limit")[0].split(":")[0]: line for line in lines[1:] if line[:1].isdigit()}
    assert list(parts) == ["1. tests", "2. overhead, float32", "2. overhead, bf16", "3. cifar epoch"]
    assert parts["1. tests"].endswith("-m pytest -m cuda -q -p no:cacheprovider")
    assert "benchmarks/overhead.py --device cuda --models resnet18 wrn " in parts["2. overhead, float32"]
    # with bf16 where overhead.py has the option, else said why not
    bf16 = parts["2. overhead, bf16"]
    assert (" --amp --out " in bf16) != bf16.endswith("skipped: benchmarks/overhead.py has no --amp option "
                                                     "(a --amp flag is needed there)")
    assert f"benchmarks/cifar_epoch.py --device cuda --compare-workers --out {tmp_path.resolve()}" in parts["3. cifar epoch"]
    assert lines[-1] == "(no CUDA device here: a run without --dry-run would exit with status 2)"
    assert not any(tmp_path.iterdir())
