"""Two CPU processes under torchrun (gloo) against one process with the same global batch."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("ddp_fit.py")


def _run(args, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]


def _distributed_pairs():
    """Every backend:target pair that declares it runs in several processes, each with a label kind
    (per-class labels, whose gradient every process adds to, and per-sample ones, in turn)."""
    from labelmeta.strategies import BACKENDS, TARGETS, make_strategy

    pairs = [f"{b}:{t}" for b in BACKENDS.names() for t in TARGETS.names()
             if make_strategy(f"{b}:{t}").supports_distributed]
    return [("per-class" if i % 2 == 0 else "per-sample-ensemble", pair) for i, pair in enumerate(pairs)]


def test_the_distributed_pairs_are_the_label_learning_ones():
    assert [pair for _, pair in _distributed_pairs()] == [
        "functional:labels", "head-only:labels", "one-step:labels", "truncated:labels", "unrolled:labels"]


@pytest.mark.parametrize("labels, strategy", _distributed_pairs())
def test_two_processes_match_one(labels, strategy, tmp_path):
    _run([str(SCRIPT), str(tmp_path / "one.pt"), labels, strategy], tmp_path)
    _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT),
          str(tmp_path / "two.pt"), labels, strategy], tmp_path)
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert one["steps"] == two["steps"] > 20
    for name, value in one["labels"].items():
        torch.testing.assert_close(two["labels"][name], value, rtol=1e-4, atol=1e-5, msg=f"labels {name}")
    for name, value in one["model"].items():
        torch.testing.assert_close(two["model"][name], value, rtol=1e-4, atol=1e-5, msg=f"model {name}")
    # the labels were learned: some logit left the initial values (0 and the scale, 4)
    logits = one["labels"]["logits"]
    assert ((logits != 0) & (logits != 4)).any()
