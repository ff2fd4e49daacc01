"""``fit(config) -> Results``: the single training loop every script, notebook and test uses."""
from __future__ import annotations

import dataclasses
import os
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np
import torch

from . import accel, checkpoint, eventlog
from .build import build_learner, splits_for
from .checkpoint import RunState
from .config import Config, check_config
from .data import Splits, cycle, dataset_targets, loader
from .distributed import from_environment
from .labels import LabelParameterization
from .learner import Learner
from .metrics import evaluate, label_quality
from .probe import PROBE_SAMPLES
from .records import EpochRecord, Results, ResultsNotWritten
from .schedule import MetaSchedule, lr_scheduler


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit(config: Config, splits: Optional[Splits] = None, labels: Optional[LabelParameterization] = None) -> Results:
    """Train as ``config`` says and evaluate on the test set after every epoch.

    Args:
        config: the run's settings.
        splits: pre-built data (e.g. shared by several runs); default built from ``config``.
        labels: a parameterisation to use instead of ``config.labels`` (see :func:`build_learner`).
    """
    return fit_learner(config, splits, labels)[1]


def fit_learner(config: Config, splits: Optional[Splits] = None, labels: Optional[LabelParameterization] = None,
                on_epoch: Optional[Callable[[Learner, Splits, EpochRecord], None]] = None) -> Tuple[Learner, Results]:
    """:func:`fit`, also returning the trained :class:`~labelmeta.learner.Learner` (model, labels...).

    ``on_epoch(learner, splits, record)`` is called after every epoch's evaluation (analysis,
    logging); it must not change the learner if the run is to stay reproducible.
    """
    check_config(config)
    if config.log_dir:  # before any data or training: a missing extra is a set-up error
        eventlog.check_available()
    start = time.perf_counter()
    if splits is None:
        splits = splits_for(config)
    if config.meta_source == "clean" and splits.meta is None:
        raise ValueError("meta_source='clean' needs a held-out meta split (meta_per_class > 0)")
    if config.meta_source == "clean" and config.strategy != "none":
        missing = sorted(set(range(splits.num_classes)) - set(dataset_targets(splits.meta).tolist()))
        if missing:
            raise ValueError(f"the meta set has no sample of classes {missing}: the meta loss could never "
                             "ask for them (hold out samples of every class)")
    distributed = from_environment(config.device)
    if distributed is not None and config.device.startswith("cuda"):
        config = config.replace(device=f"cuda:{os.environ.get('LOCAL_RANK', distributed.rank)}")
    main_process = distributed is None or distributed.is_main
    seed_everything(config.seed)
    if config.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    learner = build_learner(config, splits, labels, distributed)
    if learner.meta_enabled and config.warmup_epochs >= config.epochs:
        warnings.warn(f"warmup_epochs={config.warmup_epochs} >= epochs={config.epochs}: no meta step will run and "
                      f"the '{config.strategy}' strategy changes nothing", stacklevel=3)
    device = torch.device(config.device)
    _warn_idle_speed_settings(config, splits)
    pinned = config.pin_memory and device.type == "cuda"
    workers = dict(workers=config.workers, pin_memory=pinned, persistent_workers=config.persistent_workers)
    train_loader = loader(splits.train, config.batch_size, shuffle=True, seed=config.seed, **workers)
    meta_set = splits.meta if config.meta_source == "clean" else splits.train
    meta_batches = cycle(loader(meta_set, config.meta_batch_size, shuffle=True, seed=config.seed + 1, **workers))
    test_loader = loader(splits.test, 1000, shuffle=False, **workers)

    def to_device(batch):
        return accel.to_device(batch, device, non_blocking=pinned, channels_last=config.channels_last)

    if learner.meta_enabled:  # can the strategy differentiate the model? Known now, not after the warm-up
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            first = [to_device(next(iter(loader(data, PROBE_SAMPLES, shuffle=False)))) for data in (splits.train, meta_set)]
        learner.probe(*first)
    steps_per_epoch = len(train_loader)
    schedule = MetaSchedule(steps_per_epoch=steps_per_epoch, epochs=config.epochs, warmup_epochs=config.warmup_epochs,
                            every=config.meta_every, label_schedule=config.label_schedule)
    total_steps = schedule.total_steps
    model_scheduler = lr_scheduler(learner.optimizer, config.schedule, total_steps)
    label_scheduler = schedule.label_scheduler(learner.label_optimizer)
    state = RunState(last_weight=torch.ones(len(splits.labels.noisy)))
    schedulers = (model_scheduler, label_scheduler)
    if config.resume and Path(config.checkpoint).exists():
        state = checkpoint.restore(checkpoint.load(config.checkpoint, config), learner, schedulers, meta_batches)

    def save() -> None:
        if config.checkpoint and main_process:
            checkpoint.save(config.checkpoint, config, learner, schedulers, meta_batches, state,
                            state_elapsed + time.perf_counter() - start)

    state_elapsed = state.elapsed
    events = (eventlog.EventLog(config.log_dir, purge_step=learner.num_steps if learner.num_steps else None)
              if config.log_dir and main_process else None)
    progress = _progress(total_steps, config.replace(progress=config.progress and main_process),
                         initial=state.epoch * steps_per_epoch + state.step_in_epoch)
    for epoch in range(state.epoch, config.epochs):
        epoch_start = time.perf_counter()
        # Each epoch's order is drawn from state.train_order (recorded at the previous epoch's end,
        # and checkpointed), not from wherever the loader's generator is: after a resume, a freshly
        # seeded loader would redraw epoch 1's order. Resuming mid-epoch skips the batches trained on.
        if state.train_order is None:  # a fresh run, at its first epoch's start
            state.train_order = train_loader.generator.get_state()
        train_loader.generator.set_state(state.train_order)
        train_loader.skip(state.step_in_epoch)
        for batch in train_loader:
            batch = to_device(batch)
            due = learner.meta_enabled and schedule.due(learner.num_steps)
            meta_batch = to_device(next(meta_batches)) if due else None
            stats = learner.step(batch, meta_batch)
            if stats.sample_weights is not None:  # relative to uniform: 1 is an average sample
                state.last_weight[batch[2].cpu()] = stats.sample_weights.cpu().float() * len(batch[2])
            if model_scheduler is not None:
                model_scheduler.step()
            if label_scheduler is not None and stats.meta_loss is not None:
                label_scheduler.step()
            state.losses.append(stats.loss)
            if stats.meta_loss is not None:
                state.meta_losses.append(stats.meta_loss)
            state.step_in_epoch += 1
            if events is not None:
                events.step(learner.num_steps, stats.loss, stats.meta_loss, stats.sample_weights, learner.labels)
            progress.update(1)
            if config.checkpoint_every and learner.num_steps % config.checkpoint_every == 0:
                save()
        seconds = time.perf_counter() - epoch_start
        with accel.autocast(device, config.amp):
            test = evaluate(learner.model, test_loader, device)
            # the train-test gap, once: a pass over the training set every epoch would cost as much as
            # a tenth of an epoch's training on a large set
            train_accuracy = (evaluate(learner.model, loader(splits.train, 1000, shuffle=False, **workers), device)
                              ["accuracy"] if epoch + 1 == config.epochs else None)
        record = EpochRecord(epoch=epoch + 1, train_loss=float(np.mean(state.losses)),
                             meta_loss=float(np.mean(state.meta_losses)) if state.meta_losses else None,
                             seconds=seconds, test_accuracy=test["accuracy"], test_ece=test["ece"],
                             train_accuracy=train_accuracy,
                             **_label_quality(learner, splits, state.last_weight))
        state.history.append(record)
        state.epoch, state.step_in_epoch, state.losses, state.meta_losses = epoch + 1, 0, [], []
        state.train_order = train_loader.generator.get_state()  # the next epoch's order starts here
        if events is not None:
            events.epoch(learner.num_steps, record, learner.labels, learner.learns_labels)
        if on_epoch is not None:
            on_epoch(learner, splits, record)
        save()
        progress.set_postfix(acc=f"{record.test_accuracy:.3f}", refresh=False)
    progress.close()
    if events is not None:
        events.close()
    results = Results.from_history(dataclasses.asdict(config), state.history,
                                   nominal_noise=splits.labels.nominal_rate,
                                   effective_noise=splits.labels.effective_rate,
                                   wall_time=state_elapsed + time.perf_counter() - start,
                                   label_matrix=_label_matrix(learner.labels))
    if config.output and main_process:
        try:
            results.to_json(config.output)
        except OSError as err:  # the run is done: hand its results over with the error, never lose them
            raise ResultsNotWritten(f"cannot write the results to {config.output!r}: {err}", results) from err
    return learner, results


def _warn_idle_speed_settings(config: Config, splits: Splits) -> None:
    """Warn about speed settings that do nothing here, and about what workers do to a resume
    (``pin_memory`` off a GPU is simply not applied: the presets set it for the GPU they are meant for)."""
    in_memory = getattr(splits.train, "batched", False)
    if config.workers and in_memory:
        warnings.warn(f"workers={config.workers} has no effect: the {config.dataset} data are in memory and sliced "
                      "in the main process (workers serve datasets read sample by sample, e.g. CIFAR)", stacklevel=4)
    if config.channels_last and len(splits.input_shape) != 3:
        warnings.warn(f"channels_last has no effect: the inputs are {tuple(splits.input_shape)}, not images "
                      "(channels, height, width)", stacklevel=4)
    if config.workers and not in_memory and config.checkpoint:
        warnings.warn("with workers > 0 a resumed run sees the same samples in the same order, but augmentations drawn "
                      "in the workers are restored only at epoch ends, and not with persistent_workers", stacklevel=4)


def _label_matrix(labels: LabelParameterization):
    """The learned ``C x C`` label matrix as nested lists, for a parameterisation that has one."""
    similarity = getattr(labels, "similarity", None)
    return None if similarity is None else similarity().detach().double().cpu().tolist()


def _label_quality(learner: Learner, splits: Splits, last_weight: torch.Tensor):
    """The label-quality fields of an epoch's record (none for a method without such figures)."""
    return label_quality(learner.labels, splits.labels, last_weight if learner.strategy is not None
                         and learner.strategy.learns_weights else None)


def _progress(total: int, config: Config, initial: int = 0):
    """A tqdm bar on a terminal; elsewhere (a log file, CI) one plain line per epoch, since a bar's
    carriage-return redraws pile up into one unreadable line there."""
    if not config.progress:  # tqdm.auto is not imported: in a notebook without ipywidgets it warns on import
        from tqdm import tqdm as silent

        return silent(total=total, initial=initial, disable=True)
    desc = f"{config.labels}/{config.strategy if config.strategy != 'none' else 'plain'} seed {config.seed}"
    if not _is_terminal(sys.stderr):
        return _EpochLines(total, initial, desc)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


class _EpochLines:
    """The progress bar's interface (``update``, ``set_postfix``, ``close``), printing one line per
    epoch to stderr: steps done, the test accuracy, time so far."""

    def __init__(self, total: int, initial: int, desc: str) -> None:
        self.total, self.n, self.desc, self.start = total, initial, desc, time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, refresh: bool = False, **values: str) -> None:
        shown = ", ".join(f"{k} {v}" for k, v in values.items())
        print(f"{self.desc}: step {self.n}/{self.total} ({100 * self.n / max(self.total, 1):.0f}%), {shown}, "
              f"{time.perf_counter() - self.start:.0f} s", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass
