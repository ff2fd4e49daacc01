"""Checkpoints: a run killed with SIGKILL right after a checkpoint (at an epoch's end, or mid-epoch)
resumes to exactly the uninterrupted result."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import write_cifar10
from labelmeta import Config, fit

#: 750 training samples in 24 batches an epoch
TINY = ["--data-num-samples", "1000", "--meta-per-class", "5", "--meta-batch-size", "50", "--batch-size", "32",
        "--epochs", "5", "--warmup-epochs", "1", "--no-progress"]
#: CIFAR-10's file format with augmentation (random crops and flips, drawn from the global torch
#: generator), 180 training samples in 12 batches an epoch; the meta stream starts a pass every meta step
AUGMENTED = ["--dataset", "cifar10", "--model", "mlp", "--meta-per-class", "2", "--meta-batch-size", "20",
             "--batch-size", "16", "--epochs", "3", "--warmup-epochs", "1", "--no-progress"]
KILLER = str(Path(__file__).with_name("killed_fit.py"))
SELF_DISTILLED = ("online-smoothing", "ps-kd")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``runs(name, data, *flags, kill_after=None)`` runs ``labelmeta train`` on ``data`` ("tiny" or
    "augmented") in a process; ``runs.reference(data)`` is the uninterrupted run, made once a module."""
    base = tmp_path_factory.mktemp("resume")
    cifar = base / "cifar"
    write_cifar10(cifar, n_train_per_batch=40, n_test=20)
    flags = {"tiny": TINY, "augmented": [*AUGMENTED, "--data-root", str(cifar)],
             # labels that change at epoch ends, from buffers their observe() fills (a count, sums, predictions)
             **{f"tiny-{name}": [*TINY, "--labels", name, "--strategy", "none"] for name in SELF_DISTILLED}}
    env = {**os.environ, "PYTHONHASHSEED": "0", "LABELMETA_CACHE": str(tmp_path_factory.getbasetemp() / "cache")}

    def run(name, data, *extra, kill_after=None):
        """``kill_after=(epochs, steps)``: SIGKILL right after that checkpoint (tests/killed_fit.py)."""
        program = ["-m", "labelmeta.cli"] if kill_after is None else [KILLER, *map(str, kill_after)]
        cmd = [sys.executable, *program, "--threads", "1", "train", *flags[data],
               "--checkpoint", str(base / f"{name}.pt"), "--output", str(base / f"{name}.json"), *extra]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300), base / name

    references = {}

    def reference(data):
        if data not in references:
            proc, references[data] = run(f"reference-{data}", data)
            assert proc.returncode == 0, proc.stderr[-3000:]
        return references[data]

    run.reference = reference
    return run


def _comparable(history) -> str:
    """The history without timings, as text (NaN, for "nothing flagged", then equals itself)."""
    records = [h if isinstance(h, dict) else dataclasses.asdict(h) for h in history]  # JSON or EpochRecords
    return json.dumps([{k: v for k, v in h.items() if k != "seconds"} for h in records])


@pytest.mark.parametrize("data, kill_after, every", [
    ("tiny", (2, 0), None),      # right after the checkpoint at the end of epoch 2 of 5
    ("tiny", (2, 7), "5"),       # right after the one at step 55, the 7th of epoch 3
    # right after step 16, the 4th of epoch 2: the resumed run starts passes (training, meta) where
    # the uninterrupted one did not, and augmentation draws from the global RNG after them
    ("augmented", (1, 4), "4"),
    *[(f"tiny-{name}", (2, 7), "5") for name in SELF_DISTILLED],
], ids=["epoch-end", "mid-epoch", "augmented-mid-epoch", *[f"{name}-mid-epoch" for name in SELF_DISTILLED]])
def test_sigkill_after_a_checkpoint_then_resume_is_bit_exact(runs, data, kill_after, every):
    reference = runs.reference(data)
    name = f"victim-{data}-{kill_after[0]}-{kill_after[1]}"
    extra = ["--checkpoint-every", every] if every else []
    proc, victim = runs(name, data, *extra, kill_after=kill_after)
    assert proc.returncode == -signal.SIGKILL, f"not killed (status {proc.returncode}): {proc.stderr[-3000:]}"
    assert not victim.with_suffix(".json").exists()
    saved = torch.load(victim.with_suffix(".pt"), weights_only=True)["state"]
    assert (saved["epoch"], saved["step_in_epoch"]) == kill_after

    proc, _ = runs(name, data, *extra, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref, res = (json.loads(path.with_suffix(".json").read_text()) for path in (reference, victim))
    assert _comparable(res["history"]) == _comparable(ref["history"])
    for key in ("best_accuracy", "last_accuracy", "corrected", "clean_broken"):
        assert json.dumps(res[key]) == json.dumps(ref[key])  # NaN (no such figure) equals itself
    a, b = (torch.load(path.with_suffix(".pt"), weights_only=True)["learner"] for path in (reference, victim))
    for part in ("labels", "model"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key} differs"


SMALL = Config(dataset_options=dict(num_samples=1000), meta_per_class=5, meta_batch_size=50, batch_size=64, epochs=2, warmup_epochs=1,
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
    torch.save({"format": "labelmeta-checkpoint-1"}, path)  # an epoch-end one would resume in another order
    with pytest.raises(ValueError, match="has format 'labelmeta-checkpoint-1', which this version of labelmeta "
                                         "cannot resume exactly"):
        fit(SMALL.replace(checkpoint=str(path), resume=True))
    with pytest.raises(ValueError, match="resume=True needs checkpoint"):
        fit(SMALL.replace(resume=True))


def test_resume_without_a_checkpoint_starts_fresh(tmp_path):
    path = tmp_path / "new.pt"
    r = fit(SMALL.replace(checkpoint=str(path), resume=True))
    assert path.exists() and _comparable(r.history) == _comparable(fit(SMALL).history)
