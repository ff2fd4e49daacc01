"""Two CPU processes under torchrun (gloo), each reading only its shard of every batch, against one
process with the same global batches: every strategy, and a run killed and resumed under two processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labelmeta.strategies import BACKENDS, TARGETS

SCRIPT = Path(__file__).with_name("ddp_fit.py")
KILLER = Path(__file__).with_name("killed_fit.py")
TWO = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]

#: every backend with the labels target (per-class labels, whose gradient every process adds to, and
#: per-sample ones, in turn), every target, and the presets: the default, L2RW, Meta-Weight-Net; the
#: label corrector
RUNS = {
    "labels": ["per-class/unrolled", "per-sample-ensemble/functional", "per-class/truncated",
               "per-sample-ensemble/head-only", "per-class/one-step", "per-sample-ensemble/finite-difference",
               "per-class/implicit"],
    "weights": ["per-sample/one-step-reweight", "one-hot/reweight", "one-hot/meta-weight-net",
                "one-hot/functional:weights", "per-class/unrolled:labels+weights", "one-hot/one-step:weight-net",
                # the label-correction network, its parameters a network's that every process trains
                "corrector/one-step-reweight"],
}


def _run(args, cwd, expect=0):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, env=env, cwd=cwd)
    if expect is not None:
        assert proc.returncode == expect, proc.stderr[-4000:]
    return proc


def test_every_backend_and_target_runs_in_several_processes():
    covered = [spec.split("/", 1)[1] for group in RUNS.values() for spec in group]
    from labelmeta.strategies import make_strategy

    pairs = [make_strategy(name) for name in covered]
    assert all(s.supports_distributed for s in pairs)
    assert {type(s.backend) for s in pairs} == {type(BACKENDS.build(b)) for b in BACKENDS.names()}
    assert {type(s.target) for s in pairs} == {type(TARGETS.build(t)) for t in TARGETS.names()}


@pytest.mark.parametrize("group", list(RUNS))
def test_two_processes_match_one(group, tmp_path):
    _run([str(SCRIPT), str(tmp_path / "one.pt"), *RUNS[group]], tmp_path)
    _run([*TWO, str(SCRIPT), str(tmp_path / "two.pt"), *RUNS[group]], tmp_path)
    ones, twos = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    for spec in RUNS[group]:
        one, two = ones[spec], twos[spec]
        assert one["steps"] == two["steps"] == 22, spec
        # a central difference divides the round-off of the two processes' sums by its radius (float32
        # eps / scale 0.01 ~ 1e-5 a step, relative): its labels agree to 2e-4 of their range, not 1e-5
        atol = 1e-3 if spec.endswith("finite-difference") else 1e-5
        for part in ("labels", "model"):
            for name, value in one[part].items():
                torch.testing.assert_close(two[part][name], value, rtol=1e-4, atol=atol, msg=f"{spec}: {part} {name}")
        # what every epoch reports (losses, meta loss, accuracy, label quality) is the global batch's
        for a, b in zip(one["history"], two["history"]):
            for key, value in a.items():
                if key != "seconds" and isinstance(value, float):
                    assert b[key] == pytest.approx(value, rel=1e-4, abs=1e-5, nan_ok=True), f"{spec}: {key}"
        if spec.startswith("per-class/") and "weights" not in spec:  # the labels were learned
            logits = one["labels"]["logits"]
            assert ((logits != 0) & (logits != 4)).any(), spec


TINY = ["--dataset", "digits", "--model", "mlp", "--meta-per-class", "10", "--meta-batch-size", "45",
        "--batch-size", "61", "--epochs", "2", "--warmup-epochs", "1", "--no-progress"]


def test_killed_and_resumed_under_two_processes_is_bit_exact(tmp_path):
    """The default strategy (weights normalised over the global batch, per-sample labels), killed with
    SIGKILL right after a mid-epoch checkpoint and resumed, both under two processes, ends exactly
    where the uninterrupted two-process run does."""
    def train(name, *extra, program=("-m", "labelmeta.cli")):
        return _run([*TWO, *program, "--threads", "1", "train", *TINY, "--checkpoint", str(tmp_path / f"{name}.pt"),
                     "--checkpoint-every", "5", "--output", str(tmp_path / f"{name}.json"), *extra], tmp_path,
                    expect=None)

    reference = train("reference")
    assert reference.returncode == 0, reference.stderr[-4000:]
    victim = train("victim", program=(str(KILLER), "1", "8"))  # right after the checkpoint at step 30
    assert victim.returncode != 0 and not (tmp_path / "victim.json").exists(), victim.stderr[-4000:]
    saved = torch.load(tmp_path / "victim.pt", weights_only=True)["state"]
    assert (saved["epoch"], saved["step_in_epoch"]) == (1, 8)
    resumed = train("victim", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-4000:]

    ref, res = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("reference", "victim"))
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in ref["history"]]
    assert json.dumps([{k: v for k, v in h.items() if k != "seconds"} for h in res["history"]]) == json.dumps(strip)
    a, b = (torch.load(tmp_path / f"{name}.pt", weights_only=True) for name in ("reference", "victim"))
    for part in ("labels", "model"):
        for key, value in a["learner"][part].items():
            assert torch.equal(value, b["learner"][part][key]), f"{part}.{key} differs"
    for key in ("weighed", "rejected"):  # the weight history, of the global batches
        assert torch.equal(a["state"][key], b["state"][key]), key
    assert (tmp_path / "victim.issues.csv").read_text() == (tmp_path / "reference.issues.csv").read_text()


MISUSE = '''
import os, sys, torch
from labelmeta import Learner, make_labels, make_label_optimizer
from labelmeta.distributed import from_environment
group = from_environment("cpu")
torch.manual_seed(0)
model = torch.nn.Linear(4, 3)
labels = make_labels("per-class", torch.arange(12) % 3, 3)
learner = Learner(model, torch.optim.SGD(model.parameters(), lr=0.1), labels, "one-step",
                  make_label_optimizer("mirror", labels.parameters(), 0.5), distributed=group)
batch = (torch.randn(12, 4), torch.arange(12) % 3, torch.arange(12))
shard = group.shard_batch(batch)  # each process's part: accepted
learner.step(shard, shard)
try:
    learner.step(batch, batch)  # the whole batch on every process: refused
except ValueError as err:
    print(f"refused: {err}", file=sys.stderr, flush=True)
    os._exit(3)
os._exit(0)
'''


def test_the_same_batch_on_every_process_is_refused(tmp_path):
    script = tmp_path / "misuse.py"
    script.write_text(MISUSE)
    proc = _run([*TWO, str(script)], tmp_path, expect=None)
    assert proc.returncode != 0
    assert proc.stderr.count("refused: every one of the 2 processes was handed the same batch (of 12 samples") == 2, \
        proc.stderr[-3000:]
