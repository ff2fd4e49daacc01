"""``fit(config) -> Results``: the single training loop every script, notebook and test uses."""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import os
import random
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from .data import Splits, cycle, dataset_targets, loader, make_splits
from .distributed import Distributed, from_environment
from .labels import LABELS, LabelParameterization, make_labels
from .losses import LOSSES, make_loss
from . import checkpoint
from .checkpoint import RunState
from .learner import Learner
from .metrics import evaluate, label_correction, noise_detection
from .models import make_model
from .noise import load_matrix
from .optim import LABEL_OPTIMIZERS, make_label_optimizer
from .strategies import STRATEGIES, make_strategy


@dataclass
class Config:
    """Everything a run needs; converted to and from CLI flags by :func:`add_config_arguments`.

    The defaults are the recommended recipe for MNIST-1D with 40 % symmetric noise
    (``benchmarks/noisy_recipe.py`` measures it).
    """

    # data
    dataset: str = "mnist1d"            #: a name in ``labelmeta.data.DATASETS``
    data_root: Optional[str] = None     #: folder with torchvision files / the MNIST-1D cache
    num_samples: int = 10000            #: MNIST-1D samples generated (80 % train, 20 % test)
    meta_per_class: int = 50            #: clean samples per class held out for the meta loss
    meta_source: str = "clean"          #: meta batches from "clean" (held-out) or "train" data
    meta_in_train: bool = False         #: also train on the clean meta samples (a fair baseline)
    noise: str = "symmetric"            #: "none", "symmetric", "asymmetric" or "matrix"
    noise_rate: float = 0.4             #: nominal noise rate in [0, 1) (symmetric, asymmetric)
    noise_matrix: Optional[str] = None  #: file (.npy, .csv, .json) of a C x C transition matrix (matrix)
    # model and its optimiser
    model: str = "cnn1d-bn"              #: a name in ``labelmeta.models.MODELS``
    optimizer: str = "sgd"              #: "sgd" (with momentum), "adam" or "adamw"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"            #: "cosine" or "constant"
    epochs: int = 40
    batch_size: int = 128
    # labels and how they are learned
    labels: str = "per-sample-ensemble" #: a name in ``labelmeta.labels.LABELS``
    label_scale: float = 4.0            #: initial logit of the annotated class
    ensemble_weight: float = 2.0        #: weight of the model's log-predictions (per-sample-ensemble)
    ensemble_momentum: float = 0.7      #: their moving average's momentum per visit (per-sample-ensemble)
    smoothing: float = 0.1              #: epsilon of the fixed label-smoothing baseline
    loss: str = "ce"                    #: training loss, a name in ``labelmeta.losses.LOSSES``
    gce_q: float = 0.7                  #: q of the generalised cross-entropy loss
    bootstrap_beta: Optional[float] = None  #: beta of bootstrapping (None: 0.95 soft, 0.8 hard)
    distill_temperature: float = 4.0    #: T of the distillation loss (labelmeta.distill)
    distill_alpha: float = 0.9          #: weight of its KL term
    strategy: str = "unrolled"          #: a name in ``STRATEGIES`` or "none"
    unroll_steps: int = 1               #: k, inner steps of the unroll
    unroll_through: int = 1             #: t, steps differentiated by the "truncated" strategy
    meta_every: int = 1                 #: meta step every m training steps (amortisation)
    head_module: Optional[str] = None   #: the head the "head-only" strategy unrolls (default: guessed)
    fd_scale: float = 0.01              #: finite-difference radius of "finite-difference", in units of |v|
    label_optimizer: str = "mirror"     #: a name in ``labelmeta.optim.LABEL_OPTIMIZERS``
    label_lr: float = 0.5               #: label step length (times the parameterisation's ``lr_scale``)
    label_schedule: str = "cosine"      #: label lr "cosine" (follows the model's schedule) or "constant"
    label_normalize: str = "batch"      #: MirrorDescent's normalisation
    warmup_epochs: int = 2              #: epochs of plain training before label updates
    meta_batch_size: int = 500
    # run
    seed: int = 0
    device: str = "cpu"
    deterministic: bool = False         #: deterministic algorithms only (slower on GPU; CPU runs are already)
    output: Optional[str] = None        #: write results as JSON here
    progress: bool = True               #: show a tqdm progress bar
    checkpoint: Optional[str] = None    #: checkpoint file, written at the end of every epoch
    checkpoint_every: int = 0           #: also every N training steps (0: epoch ends only)
    resume: bool = False                #: continue from ``checkpoint`` if it exists

    def replace(self, **changes: Any) -> "Config":
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


@dataclass
class Results:
    """What :func:`fit` measured. ``history`` holds one dict per epoch."""

    config: Dict[str, Any]
    history: List[Dict[str, Any]] = field(default_factory=list)
    best_accuracy: float = float("nan")
    last_accuracy: float = float("nan")
    best_epoch: int = -1
    ece: float = float("nan")  #: expected calibration error on the test set, last epoch
    corrected: float = float("nan")
    clean_broken: float = float("nan")
    detect_precision: float = float("nan")  #: of the method's "corrupted" flags, see ``noise_detection``
    detect_recall: float = float("nan")
    nominal_noise: float = 0.0
    effective_noise: float = 0.0
    wall_time: float = 0.0

    def to_json(self, path: str | Path) -> None:
        """Write the results (and the config that produced them) as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1, allow_nan=True))


class ResultsNotWritten(OSError):
    """Writing a finished run's results failed; ``.results`` holds them all the same."""

    def __init__(self, message: str, results: Results) -> None:
        super().__init__(message)
        self.results = results


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


#: ``Config.optimizer`` -> the model's optimiser, built from the Config's settings
MODEL_OPTIMIZERS: Dict[str, Callable[[Config, Any], torch.optim.Optimizer]] = {
    "sgd": lambda c, params: torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay),
    "adam": lambda c, params: torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay),
    "adamw": lambda c, params: torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay),
}


def _check_optimizer_name(name: str) -> None:
    if name not in MODEL_OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; available: {', '.join(MODEL_OPTIMIZERS)}")


#: constructor argument of a component -> the Config field that sets it, per kind of component
LABEL_OPTIONS = {"scale": "label_scale", "weight": "ensemble_weight", "momentum": "ensemble_momentum",
                 "smoothing": "smoothing"}
LOSS_OPTIONS = {"q": "gce_q", "beta": "bootstrap_beta", "temperature": "distill_temperature",
                "alpha": "distill_alpha"}
LABEL_OPTIMIZER_OPTIONS = {"normalize": "label_normalize"}
STRATEGY_OPTIONS = {"steps": "unroll_steps", "through": "unroll_through", "every": "meta_every",
                    "head": "head_module", "scale": "fd_scale"}


def options_for(factory: Callable, config: Config, mapping: Dict[str, str]) -> Dict[str, Any]:
    """The keyword arguments ``factory`` takes from ``config`` (``None`` fields keep its defaults)."""
    accepted = inspect.signature(factory).parameters
    return {arg: getattr(config, name) for arg, name in mapping.items()
            if arg in accepted and getattr(config, name) is not None}


def label_options(config: Config) -> Dict[str, Any]:
    """The Config fields that the parameterisation ``config.labels`` takes, as keyword arguments."""
    return options_for(LABELS.get(config.labels), config, LABEL_OPTIONS)


def build_learner(config: Config, splits: Splits, labels: Optional[LabelParameterization] = None,
                  distributed: Optional[Distributed] = None) -> Learner:
    """Model, optimiser, labels, strategy and label optimiser as ``config`` describes.

    ``labels`` replaces the parameterisation ``config.labels`` names (e.g. a teacher's, which a
    name cannot describe); it must have been built for ``splits``' training set.
    """
    model = make_model(config.model, splits.input_shape, splits.num_classes).to(config.device)
    _check_optimizer_name(config.optimizer)
    optimizer = MODEL_OPTIMIZERS[config.optimizer](config, model.parameters())
    if labels is None:
        labels = make_labels(config.labels, splits.labels.noisy, splits.num_classes, **label_options(config))
    elif labels.num_samples != len(splits.labels.noisy) or labels.num_classes != splits.num_classes:
        raise ValueError(f"labels were built for {labels.num_samples} samples of {labels.num_classes} classes, "
                         f"the training set has {len(splits.labels.noisy)} of {splits.num_classes}")
    labels = labels.to(config.device)
    loss = make_loss(config.loss, **options_for(LOSSES.get(config.loss), config, LOSS_OPTIONS))
    strategy = None
    if config.strategy != "none":
        strategy = make_strategy(config.strategy,
                                 **options_for(STRATEGIES.get(config.strategy), config, STRATEGY_OPTIONS))
    label_opt = None
    if strategy is not None and labels.learnable:
        label_opt = make_label_optimizer(
            config.label_optimizer, labels.parameters(), config.label_lr * labels.lr_scale,
            **options_for(LABEL_OPTIMIZERS.get(config.label_optimizer), config, LABEL_OPTIMIZER_OPTIONS))
    return Learner(model, optimizer, labels, strategy, label_opt, loss=loss, distributed=distributed)


def _check_config(config: Config) -> None:
    if config.meta_source not in ("clean", "train"):
        raise ValueError(f"meta_source must be 'clean' or 'train', got {config.meta_source!r}")
    for name in ("schedule", "label_schedule"):
        if getattr(config, name) not in ("cosine", "constant"):
            raise ValueError(f"{name} must be 'cosine' or 'constant', got {getattr(config, name)!r}")
    for name in ("epochs", "batch_size", "meta_batch_size"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    if config.warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be >= 0, got {config.warmup_epochs}")
    if config.checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0, got {config.checkpoint_every}")
    if config.resume and not config.checkpoint:
        raise ValueError("resume=True needs checkpoint, the file to resume from")
    _check_optimizer_name(config.optimizer)
    _check_device(config.device)
    for name in ("output", "checkpoint"):
        if getattr(config, name):
            check_writable(getattr(config, name), name)


def _check_device(device: str) -> None:
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


def make_schedulers(config: Config, learner: Learner, model_steps: int, label_steps: int):
    """Cosine schedules (stepped once per step) for the model's and the label optimiser's learning rates.

    The label schedule spans the steps that update labels (after warm-up): once the labels have
    settled, further label steps mostly break clean labels (in the single-seed recipe search behind
    the defaults, a constant label learning rate kept raising the share of broken clean labels until
    the last epoch; with the decay it levels off).
    Returns ``(model_scheduler, label_scheduler)``, either ``None`` for a constant rate.
    """
    def cosine(opt, kind, steps):
        if opt is None or kind != "cosine" or steps < 1:
            return None
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)

    return (cosine(learner.optimizer, config.schedule, model_steps),
            cosine(learner.label_optimizer, config.label_schedule, label_steps))


def splits_for(config: Config) -> Splits:
    """The train / meta / test data ``config`` describes (the meta split only for ``meta_source="clean"``)."""
    return make_splits(config.dataset, meta_per_class=config.meta_per_class if config.meta_source == "clean" else 0,
                       noise=config.noise, noise_rate=config.noise_rate, seed=config.seed,
                       noise_matrix=load_matrix(config.noise_matrix) if config.noise_matrix else None,
                       meta_in_train=config.meta_in_train, data_root=config.data_root,
                       num_samples=config.num_samples)


def fit(config: Config, splits: Optional[Splits] = None, labels: Optional[LabelParameterization] = None) -> Results:
    """Train as ``config`` says and evaluate on the test set after every epoch.

    Args:
        config: the run's settings.
        splits: pre-built data (e.g. shared by several runs); default built from ``config``.
        labels: a parameterisation to use instead of ``config.labels`` (see :func:`build_learner`).
    """
    return fit_learner(config, splits, labels)[1]


def fit_learner(config: Config, splits: Optional[Splits] = None, labels: Optional[LabelParameterization] = None,
                on_epoch: Optional[Callable[[Learner, Splits, Dict[str, Any]], None]] = None) -> Tuple[Learner, Results]:
    """:func:`fit`, also returning the trained :class:`~labelmeta.learner.Learner` (model, labels...).

    ``on_epoch(learner, splits, record)`` is called after every epoch's evaluation (analysis,
    logging); it must not change the learner if the run is to stay reproducible.
    """
    _check_config(config)
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
    train_loader = loader(splits.train, config.batch_size, shuffle=True, seed=config.seed)
    meta_set = splits.meta if config.meta_source == "clean" else splits.train
    meta_batches = cycle(loader(meta_set, config.meta_batch_size, shuffle=True, seed=config.seed + 1))
    test_loader = loader(splits.test, 1000, shuffle=False)
    steps_per_epoch = len(train_loader)
    total_steps = config.epochs * steps_per_epoch
    every = learner.strategy.every if learner.strategy is not None else 1
    first = min(config.warmup_epochs, config.epochs) * steps_per_epoch
    label_steps = len(range(-(-first // every) * every, total_steps, every))  # meta steps after warm-up
    model_scheduler, label_scheduler = make_schedulers(config, learner, total_steps, label_steps)

    results = Results(config=dataclasses.asdict(config), nominal_noise=splits.labels.nominal_rate,
                      effective_noise=splits.labels.effective_rate)
    state = RunState(last_weight=torch.ones(len(splits.labels.noisy)))
    schedulers = (model_scheduler, label_scheduler)
    if config.resume and Path(config.checkpoint).exists():
        state = checkpoint.restore(checkpoint.load(config.checkpoint, config), learner, schedulers, meta_batches)

    def save() -> None:
        if config.checkpoint and main_process:
            checkpoint.save(config.checkpoint, config, learner, schedulers, meta_batches, state,
                            state_elapsed + time.perf_counter() - start)

    state_elapsed = state.elapsed
    progress = _progress(total_steps, config.replace(progress=config.progress and main_process),
                         initial=state.epoch * steps_per_epoch + state.step_in_epoch)
    for epoch in range(state.epoch, config.epochs):
        epoch_start = time.perf_counter()
        learn_labels = learner.meta_enabled and epoch >= config.warmup_epochs
        # Each epoch's order is drawn from state.train_order (recorded at the previous epoch's end,
        # and checkpointed), not from wherever the loader's generator is: after a resume, a freshly
        # seeded loader would redraw epoch 1's order. Resuming mid-epoch skips the batches trained on.
        if state.train_order is None:  # a fresh run, at its first epoch's start
            state.train_order = train_loader.generator.get_state()
        train_loader.generator.set_state(state.train_order)
        train_loader.skip(state.step_in_epoch)
        for batch in train_loader:
            batch = tuple(t.to(device) for t in batch)
            meta_batch = tuple(t.to(device) for t in next(meta_batches)) if learn_labels and learner.meta_due() else None
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
            progress.update(1)
            if config.checkpoint_every and learner.num_steps % config.checkpoint_every == 0:
                save()
        record: Dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": float(np.mean(state.losses)),
            "meta_loss": float(np.mean(state.meta_losses)) if state.meta_losses else None,
            "seconds": time.perf_counter() - epoch_start,
        }
        test = evaluate(learner.model, test_loader, device)
        record.update(test_accuracy=test["accuracy"], test_ece=test["ece"])
        record.update(_label_quality(learner, splits, state.last_weight))
        state.history.append(record)
        state.epoch, state.step_in_epoch, state.losses, state.meta_losses = epoch + 1, 0, [], []
        state.train_order = train_loader.generator.get_state()  # the next epoch's order starts here
        if on_epoch is not None:
            on_epoch(learner, splits, record)
        save()
        progress.set_postfix(acc=f"{record['test_accuracy']:.3f}", refresh=False)
    progress.close()
    results.history = state.history

    accs = [h["test_accuracy"] for h in results.history]
    results.best_epoch = int(np.argmax(accs)) + 1
    results.best_accuracy, results.last_accuracy = max(accs), accs[-1]
    results.ece = results.history[-1]["test_ece"]
    for name in ("corrected", "clean_broken", "detect_precision", "detect_recall"):
        if name in results.history[-1]:
            setattr(results, name, results.history[-1][name])
    results.wall_time = state_elapsed + time.perf_counter() - start
    if config.output and main_process:
        try:
            results.to_json(config.output)
        except OSError as err:  # the run is done: hand its results over with the error, never lose them
            raise ResultsNotWritten(f"cannot write the results to {config.output!r}: {err}", results) from err
    return learner, results


def _label_quality(learner: Learner, splits: Splits, last_weight: torch.Tensor) -> Dict[str, float]:
    """What a method says about the annotations: corrections (learned labels) and which samples
    it flags as corrupted (a changed hard label, or a zero weight at the last visit)."""
    noisy, true = splits.labels.noisy, splits.labels.true
    out: Dict[str, float] = {}
    if learner.labels.learnable:
        hard = learner.labels.hard_labels().cpu()
        quality = label_correction(hard, noisy, true)
        out.update(corrected=quality.corrected, clean_broken=quality.clean_broken)
        flagged = hard != noisy
    elif learner.strategy is not None and learner.strategy.learns_weights:
        flagged = last_weight == 0
    else:
        return out
    detection = noise_detection(flagged, noisy, true)
    out.update(detect_precision=detection.precision, detect_recall=detection.recall)
    return out


def _progress(total: int, config: Config, initial: int = 0):
    from tqdm.auto import tqdm

    desc = f"{config.labels}/{config.strategy if config.strategy != 'none' else 'plain'} seed {config.seed}"
    return tqdm(total=total, initial=initial, desc=desc, disable=not config.progress, leave=False, dynamic_ncols=True)


# ---------------------------------------------------------------------------------------------
# Config <-> command-line flags, in one place.

def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per :class:`Config` field (``snake_case`` → ``--kebab-case``).

    Flags that are not given stay out of the parsed namespace, so that :func:`config_from_args`
    can apply them on top of any base configuration (a preset, or ``Config()``'s defaults).
    """
    defaults = Config()
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)  # annotations are strings here (``from __future__ import annotations``)
        help_text = f"default: {getattr(defaults, f.name)}"
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            parse = {"int": int, "float": float}.get(kind.removeprefix("Optional[").removesuffix("]"), str)
            parser.add_argument(flag, type=_optional(parse) if kind.startswith("Optional") else parse,
                                default=argparse.SUPPRESS, metavar=parse.__name__.upper(), help=help_text)


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse``, with ``none`` meaning ``None`` (for ``Optional`` fields)."""
    def convert(text: str) -> Any:
        return None if text.lower() == "none" else parse(text)
    convert.__name__ = parse.__name__
    return convert


def config_from_args(args: argparse.Namespace, base: Optional[Config] = None) -> Config:
    """``base`` (default ``Config()``) with the fields given as flags replaced."""
    base = base if base is not None else Config()
    return base.replace(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if hasattr(args, f.name)})


#: named starting points for ``labelmeta train --preset NAME`` (any flag still overrides them)
PRESETS: Dict[str, Config] = {
    # CIFAR: torchvision data from --data-root, CIFAR ResNet-18 (3x3 stem, no max-pool), random crop +
    # horizontal flip, SGD 0.1 with cosine decay; clean labels, per-class labels meta-learned on
    # training batches (no held-out split needed when the labels are clean). Meant for a GPU.
    "cifar10": Config(dataset="cifar10", model="resnet18", lr=0.1, weight_decay=5e-4, epochs=200, batch_size=128,
                      noise="none", noise_rate=0.0, labels="per-class", label_lr=2.0, meta_source="train",
                      meta_per_class=0, meta_batch_size=128, warmup_epochs=5, device="cuda"),
    "cifar100": Config(dataset="cifar100", model="resnet18", lr=0.1, weight_decay=5e-4, epochs=200, batch_size=128,
                       noise="none", noise_rate=0.0, labels="per-class", label_lr=2.0, meta_source="train",
                       meta_per_class=0, meta_batch_size=128, warmup_epochs=5, device="cuda"),
}
