"""Checkpoints: a run killed with SIGKILL at a random step resumes to exactly the uninterrupted result."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from labelmeta import Config, fit

TINY = ["--num-samples", "1000", "--meta-per-class", "5", "--meta-batch-size", "50", "--batch-size", "32",
        "--epochs", "5", "--warmup-epochs", "1", "--no-progress"]


def _train(tmp: Path, name: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    cmd = [sys.executable, "-m", "labelmeta.cli", "--threads", "1", "train", *TINY,
           "--checkpoint", str(tmp / f"{name}.pt"), "--output", str(tmp / f"{name}.json"), *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> None:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]


def _steps_done(path: Path) -> int:
    try:
        return torch.load(path, weights_only=True)["learner"]["num_steps"]
    except Exception:  # not written yet
        return -1


def _comparable(history) -> str:
    """The history without timings, as text (NaN, for "nothing flagged", then equals itself)."""
    return json.dumps([{k: v for k, v in h.items() if k != "seconds"} for h in history])


def test_sigkill_at_a_random_step_then_resume_is_bit_exact(tmp_path):
    reference = _train(tmp_path, "reference")
    _finish(reference)
    total = torch.load(tmp_path / "reference.pt", weights_only=True)["learner"]["num_steps"]
    target = random.Random().randint(3, total - 3)

    victim = _train(tmp_path, "victim", "--checkpoint-every", "3")
    deadline = time.time() + 120
    while _steps_done(tmp_path / "victim.pt") < target and victim.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()  # reap it and close its pipes
    killed_at = _steps_done(tmp_path / "victim.pt")
    assert 0 < killed_at < total, f"the kill must land mid-run (target {target}, checkpoint at {killed_at} of {total})"
    assert not (tmp_path / "victim.json").exists()

    _finish(_train(tmp_path, "victim", "--checkpoint-every", "3", "--resume"))
    ref, res = json.loads((tmp_path / "reference.json").read_text()), json.loads((tmp_path / "victim.json").read_text())
    assert _comparable(res["history"]) == _comparable(ref["history"]), f"killed after step {killed_at}"
    for key in ("best_accuracy", "last_accuracy", "corrected", "clean_broken"):
        assert res[key] == ref[key]
    a = torch.load(tmp_path / "reference.pt", weights_only=True)["learner"]
    b = torch.load(tmp_path / "victim.pt", weights_only=True)["learner"]
    for part in ("labels", "model"):
        for name, value in a[part].items():
            assert torch.equal(value, b[part][name]), f"{part}.{name} differs after resuming from step {killed_at}"


SMALL = Config(num_samples=1000, meta_per_class=5, meta_batch_size=50, batch_size=64, epochs=2, warmup_epochs=1,
               progress=False)


def test_same_seed_same_numbers():
    a, b = fit(SMALL), fit(SMALL)
    assert _comparable(a.history) == _comparable(b.history)
    assert _comparable(fit(SMALL.replace(seed=1)).history) != _comparable(a.history)


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    path = str(tmp_path / "ck.pt")
    first = fit(SMALL.replace(checkpoint=path))
    again = fit(SMALL.replace(checkpoint=path, resume=True))
    assert _comparable(again.history) == _comparable(first.history)


def test_checkpoint_errors_are_explained(tmp_path):
    path = tmp_path / "ck.pt"
    fit(SMALL.replace(checkpoint=str(path)))
    with pytest.raises(ValueError, match=r"written by a different run \(label_lr: 0.5 in the checkpoint, 0.7 now"):
        fit(SMALL.replace(checkpoint=str(path), resume=True, label_lr=0.7))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is corrupt or not a torch file"):
        fit(SMALL.replace(checkpoint=str(path), resume=True))
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="is not a labelmeta checkpoint"):
        fit(SMALL.replace(checkpoint=str(path), resume=True))
    with pytest.raises(ValueError, match="resume=True needs checkpoint"):
        fit(SMALL.replace(resume=True))


def test_resume_without_a_checkpoint_starts_fresh(tmp_path):
    path = tmp_path / "new.pt"
    r = fit(SMALL.replace(checkpoint=str(path), resume=True))
    assert path.exists() and _comparable(r.history) == _comparable(fit(SMALL).history)
