"""``Config``: everything a run needs, the named presets, and the checks made before any training.

Each component a run assembles (dataset, model, labels, training loss, strategy, label
optimiser) is named by one field and configured by one dict of its declared options
(:data:`COMPONENTS`); the options are checked against the component's own declaration, so a new
component brings its settings with it and no field here has to know about it. The noise kind and
the model's optimiser are named the same way, from registries whose entries declare no options
(:data:`NAMED_FIELDS`: :data:`~labelmeta.noise.NOISE`, :data:`MODEL_OPTIMIZERS`, which read the
fields here: ``noise_rate``, ``lr``, ``momentum``, ``weight_decay``). Each field says in
its metadata what it is: ``data`` (changes the samples or annotations a run sees: runs that agree
on these share one split) and ``resumable`` (may differ between the run that wrote a checkpoint
and the one resuming it).
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Literal, Optional, Tuple

import torch

from .data import DATASETS
from .data.splits import check_validation_split
from .labels import LABELS
from .losses import LOSSES
from .models import MODELS
from .noise import NOISE, check_rate
from .optim import LABEL_OPTIMIZERS
from .options import check_range
from .registry import Registry
from .strategies import DEFAULT_STRATEGY, STRATEGIES

_DATA = {"data": True}
_RESUMABLE = {"resumable": True}


def _options() -> Any:
    return field(default_factory=dict)


@dataclass
class Config:
    """Everything a run needs. The defaults are the recommended recipe for noisy labels: per-sample
    learned labels and per-sample weights from one exact one-step hypergradient at every step
    (``benchmarks/noisy_labels.py`` compares it with every method and takes it apart;
    ``benchmarks/default_recipe.py`` chose the meta step's cost); a component's options default
    to its own declared defaults (``labelmeta list NAME`` shows them)."""

    # data
    dataset: str = field(default="mnist1d", metadata=_DATA)            #: a name in ``DATASETS``
    dataset_options: Dict[str, Any] = field(default_factory=dict, metadata=_DATA)  #: e.g. ``num_samples``
    #: folder with torchvision files / the MNIST-1D cache
    data_root: Optional[str] = field(default=None, metadata={**_DATA, **_RESUMABLE})
    meta_per_class: int = field(default=50, metadata=_DATA)            #: clean samples per class held out for the meta loss
    #: meta batches from "clean" (the held-out samples) or "train" data
    meta_source: Literal["clean", "train"] = field(default="clean", metadata=_DATA)
    meta_in_train: bool = field(default=False, metadata=_DATA)         #: also train on the clean meta samples
    #: hold out this many of the meta_per_class clean samples a class as a validation set that replaces the
    #: test set in every figure the run reports (for choosing hyper-parameters off the test set; 0: off)
    validation_per_class: int = field(default=0, metadata=_DATA)
    noise: str = field(default="symmetric", metadata=_DATA)           #: a name in ``NOISE`` (none, symmetric, ...)
    noise_rate: float = field(default=0.4, metadata=_DATA)             #: nominal rate in [0, 1) (symmetric, asymmetric)
    noise_matrix: Optional[str] = field(default=None, metadata=_DATA)  #: .npy/.csv/.json C x C transition matrix (matrix)
    seed: int = field(default=0, metadata=_DATA)                       #: seeds the split, the noise and training
    # model and its optimiser
    model: str = "cnn1d-bn"                                            #: a name in ``MODELS``
    model_options: Dict[str, Any] = _options()
    optimizer: str = "sgd"                                             #: a name in ``MODEL_OPTIMIZERS`` (sgd, adam, adamw)
    lr: float = 0.05
    momentum: float = 0.9                                              #: SGD's momentum, in [0, 1)
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "constant"] = "cosine"                 #: the model's learning-rate schedule
    epochs: int = 40
    batch_size: int = 128
    # labels and how they are learned
    labels: str = "per-sample"                                         #: a name in ``LABELS``
    label_options: Dict[str, Any] = _options()
    loss: str = "ce"                                                   #: training loss, a name in ``LOSSES``
    loss_options: Dict[str, Any] = _options()
    #: a name in ``STRATEGIES`` or "none"; the default learns per-sample weights and the labels from one
    #: exact one-step hypergradient without a second-order graph (benchmarks/noisy_labels.py chose it)
    strategy: str = DEFAULT_STRATEGY
    strategy_options: Dict[str, Any] = _options()
    label_optimizer: str = "mirror"                                    #: a name in ``LABEL_OPTIMIZERS``
    label_optimizer_options: Dict[str, Any] = _options()
    label_lr: float = 0.5                      #: label step length (times the parameterisation's ``lr_scale``)
    #: the label lr over the meta steps after warm-up: "cosine" (decays to 0) or "constant"
    label_schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: int = 2                     #: epochs of plain training before label updates
    meta_every: int = 1                        #: a meta step every m training steps (amortisation)
    meta_batch_size: int = 500
    # run
    device: str = field(default="cpu", metadata=_RESUMABLE)
    deterministic: bool = False                #: deterministic algorithms only (slower on GPU; CPU runs are already)
    amp: bool = False                          #: bfloat16 autocast through the inner, meta and model steps (labelmeta.accel)
    channels_last: bool = False                #: channels-last memory format for image models and batches
    workers: int = 0                           #: DataLoader worker processes for datasets read sample by sample (images)
    pin_memory: bool = False                   #: page-locked host batches, copied to the GPU asynchronously
    persistent_workers: bool = False           #: keep the workers alive between epochs (needs workers > 0)
    output: Optional[str] = field(default=None, metadata=_RESUMABLE)   #: write results as JSON here
    progress: bool = field(default=True, metadata=_RESUMABLE)          #: show a tqdm progress bar
    #: TensorBoard event files (and epochs.csv) here: ``pip install 'labelmeta[tensorboard]'``
    log_dir: Optional[str] = field(default=None, metadata=_RESUMABLE)
    #: checkpoint file, written at the end of every epoch
    checkpoint: Optional[str] = field(default=None, metadata=_RESUMABLE)
    checkpoint_every: int = field(default=0, metadata=_RESUMABLE)      #: also every N training steps (0: epoch ends only)
    resume: bool = field(default=False, metadata=_RESUMABLE)           #: continue from ``checkpoint`` if it exists

    def replace(self, **changes: Any) -> "Config":
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


#: the model's optimiser by name (``Config.optimizer``): ``factory(params, config)`` builds it from the
#: Config's ``lr``, ``momentum`` and ``weight_decay``; no options of its own
MODEL_OPTIMIZERS: Registry[torch.optim.Optimizer] = Registry("model optimiser")


@MODEL_OPTIMIZERS.register("sgd")
def sgd(params: Any, config: Config) -> torch.optim.Optimizer:
    """SGD with momentum (``torch.optim.SGD``) from ``lr``, ``momentum`` and ``weight_decay``."""
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


@MODEL_OPTIMIZERS.register("adam")
def adam(params: Any, config: Config) -> torch.optim.Optimizer:
    """Adam (``torch.optim.Adam``) from ``lr`` and ``weight_decay`` (``momentum`` is not used)."""
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


@MODEL_OPTIMIZERS.register("adamw")
def adamw(params: Any, config: Config) -> torch.optim.Optimizer:
    """AdamW (``torch.optim.AdamW``) from ``lr`` and ``weight_decay`` (``momentum`` is not used)."""
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


#: Config fields that name an entry of a registry whose entries declare no options (so no options
#: field): checked by name in :func:`check_config`, listed by ``labelmeta list``
NAMED_FIELDS: Dict[str, Registry] = {"noise": NOISE, "optimizer": MODEL_OPTIMIZERS}


@dataclass(frozen=True)
class Component:
    """A kind of component a run assembles: its registry, the Config fields that name and
    configure it, and the prefix of its options' command-line flags."""

    registry: Registry
    name_field: str
    options_field: str
    flag_prefix: str


#: every kind of component a Config assembles
COMPONENTS: Tuple[Component, ...] = (
    Component(DATASETS, "dataset", "dataset_options", "data"),
    Component(MODELS, "model", "model_options", "model"),
    Component(LABELS, "labels", "label_options", "label"),
    Component(LOSSES, "loss", "loss_options", "loss"),
    Component(STRATEGIES, "strategy", "strategy_options", "strategy"),
    Component(LABEL_OPTIMIZERS, "label_optimizer", "label_optimizer_options", "label-opt"),
)

#: the fields that change the data a run sees (runs that agree on them share one split)
DATA_FIELDS: Tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Config) if f.metadata.get("data"))
#: the fields a resumed run may change
RESUMABLE_FIELDS = frozenset(f.name for f in dataclasses.fields(Config) if f.metadata.get("resumable"))


def component_options(config: Config, component: Component) -> Dict[str, Any]:
    """The options ``config`` gives ``component``, checked against its declaration (``ValueError``)."""
    name, options = getattr(config, component.name_field), getattr(config, component.options_field)
    if component.registry is STRATEGIES and name == "none":
        if options:
            raise ValueError(f"strategy 'none' takes no options, got strategy_options={options!r}")
        return {}
    return component.registry.schema(name).check(options)


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
    # lr == 0 is legal (a meta strategy then warns, in the Learner); below 0 the optimisers ascend
    for name in ("lr", "weight_decay", "label_lr"):
        check_range(name, getattr(config, name), 0.0)
    check_range("momentum", config.momentum, 0.0, 1.0)
    check_rate(config.noise_rate)  # add_noise's own check, before any data is loaded
    if config.noise == "matrix" and not config.noise_matrix:
        raise ValueError("noise 'matrix' needs a transition matrix (noise_matrix: a .npy, .csv or .json file)")
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
    if config.noise_matrix and config.noise != "matrix":
        ignored.append(f"noise_matrix={config.noise_matrix!r} is ignored: noise is {config.noise!r}, not 'matrix'")
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


#: named starting points for ``labelmeta train --preset NAME`` (any flag still overrides them)
PRESETS: Dict[str, Config] = {
    # CIFAR: torchvision data from --data-root, CIFAR ResNet-18 (3x3 stem, no max-pool), random crop +
    # horizontal flip decoded in 4 worker processes, channels-last, SGD 0.1 with cosine decay; clean labels, per-class
    # labels meta-learned with ``one-step`` (per-sample weights are for noisy labels, and one-step runs under torchrun;
    # one-step-reweight does not yet). CIFAR-10 takes its meta batches from the training data. Meant for a GPU.
    "cifar10": Config(dataset="cifar10", model="resnet18", lr=0.1, weight_decay=5e-4, epochs=200, batch_size=128,
                      noise="none", noise_rate=0.0, labels="per-class", strategy="one-step", label_lr=2.0,
                      meta_source="train", meta_per_class=0, meta_batch_size=128, warmup_epochs=5, device="cuda", workers=4,
                      pin_memory=True, channels_last=True),
    # CIFAR-100: the configuration benchmarks/clean_labels.py found best on clean labels (the largest mean gain over
    # one-hot across its settings, +3.0 points where one-hot over-fits most: 20 look-alike classes): per-class labels
    # meta-learned on a held-out split that is not trained on, 25 images a class (5 % of the training set, about the
    # share held out there)
    "cifar100": Config(dataset="cifar100", model="resnet18", lr=0.1, weight_decay=5e-4, epochs=200, batch_size=128,
                       noise="none", noise_rate=0.0, labels="per-class", strategy="one-step", label_lr=2.0,
                       meta_source="clean", meta_per_class=25, meta_batch_size=128, warmup_epochs=5, device="cuda",
                       workers=4, pin_memory=True, channels_last=True),
}
