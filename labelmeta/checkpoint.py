"""Checkpoints that let a run resume exactly where it stopped.

A checkpoint holds everything the next step depends on: model, optimiser, label parameters (and
their buffers), label optimiser, learning-rate schedules, the random states (torch, numpy,
python), the position in the data order, the epoch's running losses, the history so far and the
elapsed time. It is written to a temporary file and renamed, so a run killed while writing leaves
the previous checkpoint intact. Files load with ``torch.load(weights_only=True)``.

The position in the data order is the order generator's state at the start of the epoch in
progress (at an epoch's end: of the next epoch, the state the finished epoch left it in) and the
batches of it already trained on; the same for the meta stream's pass. A resumed run sets the
generator to that state and skips those batches, so it draws the same orders as an uninterrupted
run from any checkpoint, mid-epoch or at an epoch's end. Starting passes draws nothing from the
global torch generator (see :class:`~labelmeta.data.Loader`), so a resumed run, which starts a
pass where the uninterrupted one did not, leaves the random state of augmentation or dropout
where the uninterrupted run has it.
"""
from __future__ import annotations

import dataclasses
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from .config import RESUMABLE_FIELDS, Config, upgrade
from .records import EpochRecord

#: format 2: ``train_order`` at an epoch's end is the next epoch's start (in format 1, the finished one's);
#: format 3: component options in per-component dicts of the Config, typed epoch records
FORMAT = "labelmeta-checkpoint-4"


@dataclass
class RunState:
    """Where a run is, besides the learner: what :func:`~labelmeta.runner.fit` loops over."""

    epoch: int = 0                       #: epochs finished
    step_in_epoch: int = 0               #: batches of the current epoch already trained on
    #: the training order's generator state at the start of the epoch in progress, or of the next
    #: one after an epoch's end (None: not drawn yet, the loader's seeded state)
    train_order: Optional[torch.Tensor] = None
    losses: List[float] = field(default_factory=list)       #: this epoch's training losses so far
    meta_losses: List[float] = field(default_factory=list)  #: this epoch's meta losses so far
    history: List[EpochRecord] = field(default_factory=list)
    #: per training sample, for a strategy that learns weights: the visits at which it got a weight,
    #: and those at which the weight was zero (:meth:`kept`)
    weighed: Optional[torch.Tensor] = None
    rejected: Optional[torch.Tensor] = None
    elapsed: float = 0.0                 #: seconds spent before this process took over

    def record_weights(self, indices: torch.Tensor, weights: torch.Tensor) -> None:
        """Count a step's ``[B]`` weights of the samples ``indices`` (a visit; a rejection where zero)."""
        indices = indices.cpu()
        self.weighed[indices] += 1
        self.rejected[indices] += (weights.detach().cpu() == 0).to(self.rejected.dtype)

    def kept(self) -> torch.Tensor:
        """``[N]``: the share of each sample's weighed visits at which its weight was positive (1 if never weighed)."""
        return 1 - self.rejected / self.weighed.clamp_min(1)


def _rng_state() -> Dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _state_dict(obj) -> Optional[Dict[str, Any]]:
    return None if obj is None else obj.state_dict()


def save(path: str | Path, config, learner, schedulers, meta_stream, state: RunState, elapsed: float) -> None:
    """Write a checkpoint of the run atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "format": FORMAT,
        "config": dataclasses.asdict(config),
        "learner": learner.state_dict(),
        "schedulers": [_state_dict(s) for s in schedulers],
        "meta_stream": meta_stream.state_dict(),
        "rng": _rng_state(),
        "state": {**dataclasses.asdict(state), "elapsed": elapsed},
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load(path: str | Path, config) -> Dict[str, Any]:
    """Read and check a checkpoint written for ``config``; ``ValueError`` says what is wrong."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises several types for a damaged file
        raise ValueError(f"checkpoint {str(path)!r} is corrupt or not a torch file ({type(err).__name__}: {err})") from None
    written = checkpoint.get("format") if isinstance(checkpoint, dict) else None
    if isinstance(written, str) and written.startswith("labelmeta-checkpoint-") and written != FORMAT:
        raise ValueError(f"checkpoint {str(path)!r} has format {written!r}, which this version of labelmeta "
                         f"cannot resume exactly (it reads {FORMAT!r}); start the run afresh")
    if written != FORMAT:
        raise ValueError(f"{str(path)!r} is not a labelmeta checkpoint (expected format {FORMAT!r})")
    # a checkpoint of an earlier version: its fields in today's names, those added since at their defaults
    mine = dataclasses.asdict(config)
    theirs = {**dataclasses.asdict(Config()), **upgrade(checkpoint["config"])}
    differ = sorted(k for k in mine.keys() | theirs.keys()
                    if k not in RESUMABLE_FIELDS and mine.get(k) != theirs.get(k))
    if differ:
        detail = ", ".join(f"{k}: {theirs.get(k)!r} in the checkpoint, {mine.get(k)!r} now" for k in differ)
        raise ValueError(f"checkpoint {str(path)!r} was written by a different run ({detail})")
    return checkpoint


def restore(checkpoint: Dict[str, Any], learner, schedulers, meta_stream) -> RunState:
    """Put the learner, schedules, meta stream and random states back; return the run's state."""
    learner.load_state_dict(checkpoint["learner"])
    for scheduler, saved in zip(schedulers, checkpoint["schedulers"]):
        if scheduler is not None:
            scheduler.load_state_dict(saved)
    meta_stream.load_state_dict(checkpoint["meta_stream"])
    _set_rng_state(checkpoint["rng"])
    state = RunState(**checkpoint["state"])
    state.history = [EpochRecord(**h) for h in state.history]
    return state
