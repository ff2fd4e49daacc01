"""The checks made before any data is read or any training step is taken: :func:`check_config`.

Everything that can be known from a :class:`~labelmeta.config.Config` is checked here and named with
its value (``ValueError``/``OSError``); a setting the run would ignore warns (:func:`warn_ignored_settings`).
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import typing
import warnings
from pathlib import Path
from typing import Dict, Literal

import torch

from .config import COMPONENTS, Config, component_options
from .data.splits import check_validation_split
from .losses import LOSSES
from .model_optimizers import MODEL_OPTIMIZERS
from .noise import NOISE, check_rate
from .options import check_range
from .registry import Registry

#: Config fields that name an entry of a registry whose entries declare no options (so no options
#: field; their settings are Config fields: ``lr``, ``momentum``, ``weight_decay``): checked by name in
#: :func:`check_config`, listed by ``labelmeta list``
NAMED_FIELDS: Dict[str, Registry] = {"optimizer": MODEL_OPTIMIZERS}


def check_config(config: Config) -> None:
    """Every check that can be made before any data is loaded; ``ValueError``/``OSError`` naming the value,
    then a ``UserWarning`` for each setting the run would ignore (:func:`warn_ignored_settings`)."""
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        if typing.get_origin(hints[f.name]) is Literal and getattr(config, f.name) not in typing.get_args(hints[f.name]):
            choices = ", ".join(repr(c) for c in typing.get_args(hints[f.name]))
            raise ValueError(f"{f.name} must be one of {choices}, got {getattr(config, f.name)!r}")
    for name, registry in NAMED_FIELDS.items():
        registry.get(getattr(config, name))  # an unknown name lists the registered ones
    for component in COMPONENTS:
        component_options(config, component)
    expected = getattr(LOSSES.get(config.loss), "expects_labels", None)
    if expected is not None and config.labels != expected:  # e.g. elr: its term would push away from other labels
        raise ValueError(f"loss {config.loss!r} reads the soft targets of labels {expected!r}, got labels {config.labels!r}")
    for name in ("epochs", "batch_size", "meta_batch_size", "meta_every"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    if config.workers < 0:
        raise ValueError(f"workers must be >= 0, got {config.workers}")
    if config.validation_per_class and config.meta_source != "clean":
        raise ValueError(f"validation_per_class={config.validation_per_class} needs a clean meta split: set it "
                         f"with meta_source='clean' (got {config.meta_source!r})")
    check_validation_split(config.validation_per_class, config.meta_per_class)
    if config.persistent_workers and config.workers == 0:
        raise ValueError("persistent_workers=True needs workers > 0 (worker processes to keep)")
    if config.warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be >= 0, got {config.warmup_epochs}")
    if config.checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0, got {config.checkpoint_every}")
    if config.evidence < 0:
        raise ValueError(f"evidence must be >= 0 (clean samples a flagged annotation), got {config.evidence}")
    # lr == 0 is legal (a meta strategy then warns, in the Learner); below 0 the optimisers ascend
    for name in ("lr", "weight_decay", "label_lr"):
        check_range(name, getattr(config, name), 0.0)
    check_range("momentum", config.momentum, 0.0, 1.0)
    check_rate(config.noise_rate)  # the noise kinds' own check, before any data is loaded
    # the kind built: its options checked and any file it reads read, naming the file and the problem
    NOISE.build(config.noise, config.data_root, options=config.noise_options)
    if config.resume and not config.checkpoint:
        raise ValueError("resume=True needs checkpoint, the file to resume from")
    check_device(config.device)
    check_distinct_files(config)
    for name in ("output", "checkpoint"):
        if getattr(config, name):
            check_writable(getattr(config, name), name)
    if config.log_dir:
        if Path(config.log_dir).is_file():
            raise NotADirectoryError(f"log_dir {config.log_dir!r} is a file; give a folder")
        check_writable(Path(config.log_dir) / "epochs.csv", "log_dir")
    warn_ignored_settings(config)


def check_distinct_files(config: Config) -> None:
    """``ValueError`` naming both if two of the files a run writes (``output``, ``checkpoint``,
    ``log_dir``'s ``epochs.csv``) are one file: the later write would replace the earlier one's
    contents. Paths are compared resolved, so ``./a.json`` and ``a.json`` (or a link) are one."""
    files = {"output": config.output, "checkpoint": config.checkpoint,
             "log_dir's epochs.csv": str(Path(config.log_dir) / "epochs.csv") if config.log_dir else None}
    seen: Dict[Path, str] = {}
    for name, path in files.items():
        if not path:
            continue
        resolved = Path(path).resolve()
        if resolved in seen:
            first = seen[resolved]
            raise ValueError(f"{first} {files[first]!r} and {name} {path!r} are the same file {str(resolved)!r}: "
                             "one would overwrite the other; give them different paths")
        seen[resolved] = name


def warn_ignored_settings(config: Config) -> None:
    """A ``UserWarning`` for each setting the run will ignore, so that a run that differs from what
    was asked for says so before it trains (the run itself is legal)."""
    ignored = []
    if config.noise == "none" and config.noise_rate != 0:
        ignored.append(f"noise_rate={config.noise_rate} is ignored: noise is 'none', no annotation is corrupted "
                       "(set noise_rate=0)")
    if config.meta_source == "train":  # build.splits_for holds out nothing: every sample is trained on
        if config.meta_per_class > 0:
            ignored.append(f"meta_per_class={config.meta_per_class} is ignored with meta_source='train': no clean "
                           "samples are held out, and the meta batches are drawn from the training set with its "
                           "annotated (possibly noisy) labels (set meta_per_class=0)")
        if config.meta_in_train:
            ignored.append("meta_in_train=True is ignored with meta_source='train': no samples are held out, so "
                           "every training sample is trained on already")
    for message in ignored:
        # stacklevel: this function, check_config, fit_learner, fit -> the caller of fit
        warnings.warn(message, stacklevel=5)


def check_device(device: str) -> None:
    """``ValueError`` unless ``device`` names a device torch can use here."""
    try:
        kind = torch.device(device).type
    except RuntimeError as err:
        raise ValueError(f"device {device!r} is not a torch device ({err})") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch {torch.__version__} sees no CUDA device here "
                         "(use --device cpu)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} asked for, but MPS is not available here (use --device cpu)")


def check_writable(path: str | Path, what: str) -> None:
    """``OSError`` naming ``what`` unless a file can be written at ``path`` (its folder is created).

    Tried by writing (and removing) a scratch file beside it, which also catches read-only file
    systems and a user without permission, where ``os.access`` can be wrong (e.g. for root).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {str(path)!r} is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(f"no permission to write {str(path)!r}")
    except OSError as err:
        raise type(err)(f"cannot write {what} {str(path)!r}: {err}") from None
