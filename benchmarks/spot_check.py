"""Did a refactor change what a run computes? Histories of a spot-check list, saved and compared bit for bit.

    python benchmarks/spot_check.py save BEFORE.pt      # on the code before the change
    python benchmarks/spot_check.py compare BEFORE.pt   # on the code after it: exit 1 at the first difference

The list: the default, learning to reweight on both unroll backends (``reweight``: ``higher``;
``functional:weights``), Meta-Weight-Net, per-class labels, a run stopped after a mid-epoch checkpoint
and resumed, and a two-process run under ``torchrun`` (gloo). Each is a short run on small data; what is
compared is every epoch record but its seconds, the weights of the model and of the labels, the step
count. Figures are exact per machine (:mod:`labelmeta.records`): save and compare on the same one.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
from typing import Dict

import torch

from labelmeta import Config
from labelmeta.hooks import RunHook
from labelmeta.runner import fit_learner

BASE = Config(dataset_options=dict(num_samples=1500), meta_per_class=10, meta_batch_size=60, batch_size=64,
              epochs=3, warmup_epochs=1, progress=False, labels="per-sample")  # the default it was written for
#: name -> the changes to BASE
RUNS: Dict[str, dict] = {
    "default": {},
    "L2RW (higher)": dict(labels="one-hot", strategy="reweight"),
    "L2RW (torch.func)": dict(labels="one-hot", strategy="functional:weights"),
    "Meta-Weight-Net": dict(labels="one-hot", strategy="meta-weight-net"),
    "per-class, unrolled k=2": dict(labels="per-class", strategy="unrolled", strategy_options=dict(steps=2),
                                    model="mlp"),
    "plain cross-entropy": dict(labels="one-hot", strategy="none"),
}
RESUMED = "default, stopped at step 40 and resumed"
TWO_PROCESSES = "default on digits, two processes"
STOP_AT = 40


class _Stop(RunHook):
    """Stops the run (as a kill would) a few steps after the checkpoint of step ``STOP_AT``."""

    def after_step(self, run, stats) -> None:
        if run.learner.num_steps == STOP_AT + 3:
            raise KeyboardInterrupt


def _record(learner, results) -> dict:
    history = [{k: v for k, v in dataclasses.asdict(r).items() if k != "seconds"} for r in results.history]
    return {"history": history, "steps": learner.num_steps,
            "model": {k: v.clone() for k, v in learner.model.state_dict().items()},
            "labels": {k: v.clone() for k, v in learner.labels.state_dict().items()}}


def _resumed(folder: str) -> dict:
    config = BASE.replace(checkpoint=os.path.join(folder, "run.pt"), checkpoint_every=STOP_AT)
    try:
        fit_learner(config, hooks=[_Stop()])
    except KeyboardInterrupt:
        pass
    return _record(*fit_learner(config.replace(resume=True)))


def _two_processes(folder: str) -> dict:
    out = os.path.join(folder, "two.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    __file__, "_worker", out], check=True, env=env)
    return torch.load(out)


def _worker(out: str) -> None:
    """One process of the two-process run; rank 0 saves."""
    torch.set_num_threads(1)
    config = Config(dataset="digits", model="mlp", meta_per_class=10, meta_batch_size=45, batch_size=61, epochs=2,
                    warmup_epochs=0, progress=False, labels="per-sample")
    record = _record(*fit_learner(config))
    if torch.distributed.get_rank() == 0:
        torch.save(record, out)
    torch.distributed.barrier()
    sys.stdout.flush()
    os._exit(0)  # as tests/ddp_fit.py: no gloo teardown at exit


def collect() -> Dict[str, dict]:
    torch.set_num_threads(1)
    runs = {name: _record(*fit_learner(BASE.replace(**changes))) for name, changes in RUNS.items()}
    with tempfile.TemporaryDirectory() as folder:
        runs[RESUMED] = _resumed(folder)
        runs[TWO_PROCESSES] = _two_processes(folder)
    return runs


def differences(before: dict, after: dict, where: str = "") -> list:
    """Where ``after`` differs from ``before`` (tensors bit for bit, floats exactly)."""
    if isinstance(before, torch.Tensor):
        return [] if isinstance(after, torch.Tensor) and torch.equal(before, after) else [where]
    if isinstance(before, dict):
        if not isinstance(after, dict) or set(before) != set(after):
            return [f"{where}: keys"]
        return [d for k in before for d in differences(before[k], after[k], f"{where}/{k}")]
    if isinstance(before, list):
        if not isinstance(after, list) or len(before) != len(after):
            return [f"{where}: length"]
        return [d for i, (a, b) in enumerate(zip(before, after)) for d in differences(a, b, f"{where}[{i}]")]
    return [] if before == after or (before != before and after != after) else [f"{where}: {before!r} -> {after!r}"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["save", "compare", "_worker"])
    parser.add_argument("path")
    args = parser.parse_args(argv)
    if args.action == "_worker":
        _worker(args.path)
        return 0
    runs = collect()
    if args.action == "save":
        torch.save(runs, args.path)
        print(f"saved {len(runs)} runs to {args.path}")
        return 0
    before = torch.load(args.path)
    status = 0
    for name in before:
        found = differences(before[name], runs.get(name, {}), name)
        print(f"{'same' if not found else 'DIFFERENT'}: {name}" + ("".join(f"\n    {d}" for d in found[:5])))
        status |= bool(found)
    return status


if __name__ == "__main__":
    sys.exit(main())
