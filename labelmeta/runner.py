"""``fit(config) -> Results``: the single training loop every script, notebook and test uses."""
from __future__ import annotations

import dataclasses
import os
import random
import time
import warnings
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import accel, checkpoint, eventlog
from .build import build_learner, splits_for
from .checkpoint import RunState
from .checks import check_config
from .config import Config
from .data import Splits, cycle, dataset_targets, loader
from .distributed import from_environment
from .hooks import Checkpointing, EpochCallback, EventLogHook, Progress, RunHook
from .evidence import meta_evidence
from .label_issues import LabelIssues, find_label_issues, issues_path
from .labels import LabelParameterization
from .learner import Learner
from .metrics import evaluate, label_quality, predict
from .probe import PROBE_SAMPLES
from .records import EpochRecord, Results, ResultsNotWritten
from .run import Run, loader_options
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
                on_epoch: Optional[Callable[[Learner, Splits, EpochRecord], None]] = None,
                hooks: Sequence[RunHook] = ()) -> Tuple[Learner, Results]:
    """:func:`fit`, also returning the trained :class:`~labelmeta.learner.Learner` (model, labels...).

    ``on_epoch(learner, splits, record)`` is called after every epoch's evaluation (analysis,
    logging); ``hooks`` (:class:`~labelmeta.hooks.RunHook`) also see every step, after the user's
    callback. Neither may change the learner if the run is to stay reproducible.
    """
    check_config(config)
    if config.log_dir:  # before any data or training: a missing extra is a set-up error
        eventlog.check_available()
    start = time.perf_counter()
    if splits is None:
        splits = splits_for(config)
    processes = from_environment(config.device)
    if processes.world > 1 and config.device.startswith("cuda"):
        config = config.replace(device=f"cuda:{os.environ.get('LOCAL_RANK', processes.rank)}")
    seed_everything(config.seed)
    if config.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    learner = build_learner(config, splits, labels, processes)
    _check_meta_set(config, splits, learner)
    if learner.meta_enabled and config.warmup_epochs >= config.epochs:
        warnings.warn(f"warmup_epochs={config.warmup_epochs} >= epochs={config.epochs}: no meta step will run and "
                      f"the '{config.strategy}' strategy changes nothing", stacklevel=3)
    _warn_idle_speed_settings(config, splits)
    run = _set_up(config, splits, learner, start)
    hooks = _hooks(run, on_epoch, hooks, main_process=processes.is_main)
    for epoch in range(run.state.epoch, config.epochs):
        seconds = _train_epoch(run, hooks)
        record = _evaluate(run, epoch, seconds)
        run.state.history.append(record)
        run.state.epoch, run.state.step_in_epoch, run.state.losses, run.state.meta_losses = epoch + 1, 0, [], []
        run.state.train_order = run.train_loader.generator.get_state()  # the next epoch's order starts here
        for hook in hooks:
            hook.after_epoch(run, record)
    for hook in hooks:
        hook.close()
    return learner, _results(run, write=processes.is_main)


def _check_meta_set(config: Config, splits: Splits, learner: Learner) -> None:
    """``ValueError`` unless the meta batches can come from where ``config`` says, with every class in them."""
    if config.meta_source == "clean" and splits.meta is None:
        raise ValueError("meta_source='clean' needs a held-out meta split (meta_per_class > 0)")
    if config.meta_source == "clean" and learner.meta_enabled:
        missing = sorted(set(range(splits.num_classes)) - set(dataset_targets(splits.meta).tolist()))
        if missing:
            raise ValueError(f"the meta set has no sample of classes {missing}: the meta loss could never "
                             "ask for them (hold out samples of every class)")


def _set_up(config: Config, splits: Splits, learner: Learner, start: float) -> Run:
    """Loaders, the probe, schedules, and the run state (from the checkpoint when resuming)."""
    device = torch.device(config.device)
    options = loader_options(config, device)
    shard = learner.processes.shard  # under torchrun each process reads only its part of every batch
    train_loader = loader(splits.train, config.batch_size, shuffle=True, seed=config.seed, shard=shard, **options)
    meta_set = splits.meta if config.meta_source == "clean" else splits.train
    meta_batches = cycle(loader(meta_set, config.meta_batch_size, shuffle=True, seed=config.seed + 1, shard=shard,
                                **options))
    if learner.meta_enabled:  # can the strategy differentiate the model? Known now, not after the warm-up
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            first = [accel.to_device(next(iter(loader(data, PROBE_SAMPLES, shuffle=False))), device,
                                     channels_last=config.channels_last) for data in (splits.train, meta_set)]
        learner.probe(*first)  # before the schedules wrap the optimiser's step: the probe copies the optimiser
    schedule = MetaSchedule(steps_per_epoch=len(train_loader), epochs=config.epochs,
                            warmup_epochs=config.warmup_epochs, every=config.meta_every,
                            label_schedule=config.label_schedule)
    schedulers = (lr_scheduler(learner.optimizer, config.schedule, schedule.total_steps),
                  schedule.label_scheduler(learner.label_optimizer))
    run = Run(config, splits, learner, device, train_loader, meta_batches,
              loader(splits.test, 1000, shuffle=False, part=shard, **options), schedule, schedulers,
              RunState(weighed=torch.zeros(len(splits.labels.noisy)), rejected=torch.zeros(len(splits.labels.noisy))),
              start)
    if config.resume and Path(config.checkpoint).exists():
        run.state = checkpoint.restore(checkpoint.load(config.checkpoint, config), learner, schedulers, meta_batches)
    return run


def _hooks(run: Run, on_epoch: Optional[Callable[[Learner, Splits, EpochRecord], None]],
           extra: Sequence[RunHook], main_process: bool) -> List[RunHook]:
    """The run's hooks, in the order they are called: event log, the user's callback and hooks,
    checkpoints, progress."""
    config, hooks = run.config, []  # type: ignore[var-annotated]
    if config.log_dir and main_process:
        hooks.append(EventLogHook(config.log_dir, run))
    if on_epoch is not None:
        hooks.append(EpochCallback(on_epoch))
    hooks.extend(extra)
    if config.checkpoint and main_process:
        hooks.append(Checkpointing(config.checkpoint, config.checkpoint_every))
    desc = f"{config.labels}/{config.strategy} seed {config.seed}"
    hooks.append(Progress(run.schedule.total_steps, run.state.epoch * len(run.train_loader) + run.state.step_in_epoch,
                          desc, enabled=config.progress and main_process))
    return hooks


def _train_epoch(run: Run, hooks: List[RunHook]) -> float:
    """Train on the rest of the current epoch (all of it, unless resumed mid-epoch); its seconds."""
    epoch_start = time.perf_counter()
    learner, state, (model_scheduler, label_scheduler) = run.learner, run.state, run.schedulers
    # Each epoch's order is drawn from state.train_order (recorded at the previous epoch's end, and
    # checkpointed), not from wherever the loader's generator is: after a resume, a freshly seeded
    # loader would redraw epoch 1's order. Resuming mid-epoch skips the batches trained on.
    if state.train_order is None:  # a fresh run, at its first epoch's start
        state.train_order = run.train_loader.generator.get_state()
    run.train_loader.generator.set_state(state.train_order)
    run.train_loader.skip(state.step_in_epoch)
    for batch in run.train_loader:
        batch = run.to_device(batch)
        due = learner.meta_enabled and run.schedule.due(learner.num_steps)
        stats = learner.step(batch, run.to_device(next(run.meta_batches)) if due else None)
        if stats.sample_weights is not None:
            state.record_weights(stats.indices, stats.sample_weights)
        if model_scheduler is not None:
            model_scheduler.step()
        if label_scheduler is not None and stats.meta_loss is not None:
            label_scheduler.step()
        state.losses.append(stats.loss)
        if stats.meta_loss is not None:
            state.meta_losses.append(stats.meta_loss)
        state.step_in_epoch += 1
        for hook in hooks:
            hook.after_step(run, stats)
    return time.perf_counter() - epoch_start


def _evaluate(run: Run, epoch: int, seconds: float) -> EpochRecord:
    """The record of epoch ``epoch`` (0-based): test accuracy and calibration, label quality, and at the
    last epoch the training accuracy."""
    config, learner, state = run.config, run.learner, run.state
    train_accuracy = None
    # every process evaluates its part of the test set, with rank 0's BatchNorm statistics (DDP hands
    # them to every process at its next forward anyway), and every process gets the whole figures
    learner.processes.broadcast_(list(learner.model.buffers()))
    with accel.autocast(run.device, config.amp):
        test = evaluate(learner.model, run.test_loader, run.device, learner.processes)
        # the train-test gap, once: a pass over the training set every epoch would cost as much as
        # a tenth of an epoch's training on a large set
        if epoch + 1 == config.epochs:
            run.train_probabilities = _train_probabilities(run)
            annotated = run.splits.labels.noisy
            train_accuracy = (run.train_probabilities.argmax(1) == annotated).double().mean().item()
    return EpochRecord(epoch=epoch + 1, train_loss=float(np.mean(state.losses)),
                       meta_loss=float(np.mean(state.meta_losses)) if state.meta_losses else None,
                       seconds=seconds, test_accuracy=test["accuracy"], test_ece=test["ece"],
                       train_accuracy=train_accuracy, **_label_quality(learner, run.splits, state))


def _results(run: Run, write: bool) -> Results:
    """The run's :class:`Results` (with its label issues' figures), written to ``config.output`` and
    its label issues beside it when ``write`` (``ResultsNotWritten`` if they cannot be)."""
    config, splits = run.config, run.splits
    if run.train_probabilities is None:  # resumed after the last epoch
        with accel.autocast(run.device, config.amp):
            run.train_probabilities = _train_probabilities(run)  # (every process takes part)
    issues = _label_issues(run) if write else None
    if issues is not None and config.output and config.evidence:
        issues = _with_evidence(run, issues)
    detection = {}
    if issues is not None and splits.labels.truth_known and bool(splits.labels.corrupted.any()):
        stats = issues.subset(splits.labels.judged).stats()  # the trusted samples are no one's to judge
        detection = dict(detect_precision=stats.precision, detect_recall=stats.recall, detect_f1=stats.f1,
                         detect_average_precision=stats.average_precision,
                         detect_missed_at_budget=stats.false_negative_rate_at_budget)
    results = Results.from_history(dataclasses.asdict(config), run.state.history,
                                   nominal_noise=splits.labels.nominal_rate,
                                   effective_noise=splits.labels.effective_rate,
                                   wall_time=run.elapsed(), label_matrix=_label_matrix(run.learner.labels),
                                   num_classes=splits.num_classes,
                                   class_names=None if splits.class_names is None else list(splits.class_names))
    results = dataclasses.replace(results, **detection)
    if config.output and write:
        try:
            results.to_json(config.output)
            issues.to_csv(issues_path(config.output), splits.class_names)
        except OSError as err:  # the run is done: hand its results over with the error, never lose them
            raise ResultsNotWritten(f"cannot write the results to {config.output!r}: {err}", results) from err
    return results


def _train_probabilities(run: Run) -> torch.Tensor:
    """The model's ``[N, C]`` probabilities (eval mode) on the training samples, row ``i`` for sample ``i``
    (an unshuffled pass serves the samples in index order)."""
    processes = run.learner.processes
    logits, _ = predict(run.learner.model, loader(run.splits.train, 1000, shuffle=False, part=processes.shard,
                                                  **run.loader_options), run.device, processes)
    return torch.softmax(logits, 1)


def _label_issues(run: Run) -> LabelIssues:
    """The run's label issues (:mod:`labelmeta.label_issues`): its learned labels, or the model's
    predictions, and its sample weights if it learns them."""
    learner, labels = run.learner, run.splits.labels
    learned = learner.labels.learnable
    distribution = learner.labels.table() if learned else run.train_probabilities
    return find_label_issues(labels.noisy, distribution, _weight_shares(learner, run.state), labels.true,
                             run.splits.source_index, probabilities=run.train_probabilities if learned else None)


def _with_evidence(run: Run, issues: LabelIssues) -> LabelIssues:
    """``issues`` with the evidence of every flagged sample (:mod:`labelmeta.evidence`), where there is a meta set."""
    splits, flagged = run.splits, issues.flagged
    if splits.meta is None or not bool(flagged.any()):
        return issues
    options = run.loader_options
    with accel.autocast(run.device, False):  # gradients compared in the model's own precision
        samples = ((x[m], y[m], i[m]) for x, y, i in loader(splits.train, 1000, shuffle=False, **options)
                   for m in [flagged[i]] if bool(m.any()))
        meta = ((x, y, i) for x, y, i in loader(splits.meta, 1000, shuffle=False, **options))
        found, positions, _, _ = meta_evidence(run.learner.model, samples, meta, k=run.config.evidence,
                                                device=run.device)
    table = torch.full((len(issues), positions.shape[1]), -1, dtype=torch.long)
    source = splits.meta_source_index
    table[found] = torch.where(positions >= 0, source[positions.clamp_min(0)], positions)
    return dataclasses.replace(issues, evidence=table)


def _weight_shares(learner: Learner, state: RunState) -> Optional[torch.Tensor]:
    """Each sample's share of visits with a positive weight, for a strategy that learns weights; else ``None``."""
    if not learner.strategy.learns_weights:
        return None
    own = learner.labels.kept()  # labels that count the weights on their annotations only
    return state.kept() if own is None else own


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


def _label_quality(learner: Learner, splits: Splits, state: RunState):
    """The label-quality fields of an epoch's record (none for a method without such figures)."""
    return label_quality(learner.labels, splits.labels, _weight_shares(learner, state))
