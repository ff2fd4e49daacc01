"""``Config``: everything a run needs, and the components it names.

Each component a run assembles (dataset, model, labels, training loss, strategy, label
optimiser, noise kind) is named by one field and configured by one dict of its declared options
(:data:`COMPONENTS`); the options are checked against the component's own declaration
(:func:`component_options`), so a new component brings its settings with it and no field here has to
know about it. The model's optimiser is named the same way, from a registry whose entries declare no
options (:data:`labelmeta.checks.NAMED_FIELDS`). Each field says in its metadata what
it is: ``data`` (changes the samples or annotations a run sees: runs that agree on these share one
split) and ``resumable`` (may differ between the run that wrote a checkpoint and the one resuming it).

The checks made before any training are :mod:`labelmeta.checks`; the named starting points of
``labelmeta train --preset`` are :mod:`labelmeta.presets`; the model's optimisers are
:mod:`labelmeta.model_optimizers`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Literal, Mapping, Optional, Tuple

from .data import DATASETS
from .labels import LABELS
from .losses import LOSSES
from .models import MODELS
from .noise import NOISE
from .optim import LABEL_OPTIMIZERS
from .registry import Registry
from .strategies import DEFAULT_STRATEGY, STRATEGIES

_DATA = {"data": True}
_RESUMABLE = {"resumable": True}


def _options() -> Any:
    return field(default_factory=dict)


@dataclass
class Config:
    """Everything a run needs. The defaults are the recommended recipe for noisy labels: per-sample
    weights from one exact one-step hypergradient at every step judge the annotations, and the samples
    they reject get labels that learn (``detect-correct``; ``benchmarks/noisy_labels.py`` compares it with
    every method, ``benchmarks/detect_correct.py`` takes it apart; ``benchmarks/default_recipe.py`` chose the
    meta step's cost); a component's options default to its own declared defaults (``labelmeta list NAME``
    shows them)."""

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
    #: how the training annotations are drawn, a name in ``NOISE`` (class-conditional, instance-dependent, or
    #: read from a file: ``labelmeta list`` names them)
    noise: str = field(default="symmetric", metadata=_DATA)
    #: nominal noise rate in [0, 1) (symmetric, asymmetric, instance, confidence)
    noise_rate: float = field(default=0.4, metadata=_DATA)
    #: the noise kind's options, e.g. ``path`` and ``key`` of noise "file"
    noise_options: Dict[str, Any] = field(default_factory=dict, metadata=_DATA)
    seed: int = field(default=0, metadata=_DATA)                       #: seeds the split, the noise and training
    # model and its optimiser
    model: str = "cnn1d-bn"                                            #: a name in ``MODELS``
    model_options: Dict[str, Any] = _options()
    optimizer: str = "sgd"                               #: a name in ``model_optimizers.MODEL_OPTIMIZERS`` (sgd, adam, adamw)
    lr: float = 0.05                                                   #: the model's learning rate (its peak, under "cosine")
    momentum: float = 0.9                                              #: SGD's momentum, in [0, 1)
    weight_decay: float = 5e-4                                         #: the model optimiser's L2 weight decay
    schedule: Literal["cosine", "constant"] = "cosine"                 #: the model's learning-rate schedule
    epochs: int = 40                                                   #: passes over the training set
    batch_size: int = 128                                              #: training samples a model step
    # labels and how they are learned
    labels: str = "detect-correct"                                     #: a name in ``LABELS``
    label_options: Dict[str, Any] = _options()
    loss: str = "ce"                                                   #: training loss, a name in ``LOSSES``
    loss_options: Dict[str, Any] = _options()
    #: a name in ``STRATEGIES`` ("none": no meta step); the default learns per-sample weights and the labels from one
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
    meta_batch_size: int = 500                 #: samples of the meta batch a meta step reads
    # run
    device: str = field(default="cpu", metadata=_RESUMABLE)           #: torch device: cpu, cuda, cuda:1, mps
    deterministic: bool = False                #: deterministic algorithms only (slower on GPU; CPU runs are already)
    amp: bool = False                          #: bfloat16 autocast through the inner, meta and model steps (labelmeta.accel)
    channels_last: bool = False                #: channels-last memory format for image models and batches
    workers: int = 0                           #: DataLoader worker processes for datasets read sample by sample (images)
    pin_memory: bool = False                   #: page-locked host batches, copied to the GPU asynchronously
    persistent_workers: bool = False           #: keep the workers alive between epochs (needs workers > 0)
    output: Optional[str] = field(default=None, metadata=_RESUMABLE)   #: write results as JSON here
    #: clean samples named as evidence against each flagged annotation in the issues CSV (0: none)
    evidence: int = field(default=3, metadata=_RESUMABLE)
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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Config":
        """The Config a stored dict describes (a run's JSON, a checkpoint, a benchmark cell), those written
        by earlier versions included (:func:`upgrade`); an unknown field is a ``ValueError``."""
        data = upgrade(data)
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown Config field(s) {', '.join(unknown)}")
        return cls(**data)


def upgrade(data: Mapping[str, Any]) -> Dict[str, Any]:
    """A stored Config dict in today's fields: ``noise_matrix`` (before the noise kinds declared options)
    becomes the ``matrix`` kind's ``path`` option. Fields added since keep their defaults when absent."""
    data = dict(data)
    if "noise_matrix" in data:
        matrix = data.pop("noise_matrix")
        if matrix is not None and data.get("noise") == "matrix":
            data["noise_options"] = {**data.get("noise_options", {}), "path": matrix}
    return data


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
    Component(NOISE, "noise", "noise_options", "noise"),
)

#: the fields that change the data a run sees (runs that agree on them share one split)
DATA_FIELDS: Tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Config) if f.metadata.get("data"))
#: the fields a resumed run may change
RESUMABLE_FIELDS = frozenset(f.name for f in dataclasses.fields(Config) if f.metadata.get("resumable"))


def component_options(config: Config, component: Component) -> Dict[str, Any]:
    """The options ``config`` gives ``component``, checked against its declaration (``ValueError``)."""
    name, options = getattr(config, component.name_field), getattr(config, component.options_field)
    return component.registry.schema(name).check(options)
