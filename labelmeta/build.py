"""Assembly: the data and the :class:`~labelmeta.learner.Learner` a :class:`~labelmeta.config.Config` describes."""
from __future__ import annotations

from typing import Any, Dict, Optional

from .accel import to_channels_last
from .config import COMPONENTS, Config, component_options
from .data import Splits, make_splits
from .distributed import Distributed
from .labels import LabelParameterization, make_labels
from .learner import Learner
from .losses import make_loss
from .model_optimizers import MODEL_OPTIMIZERS
from .models import make_model
from .optim import make_label_optimizer
from .strategies import make_strategy


def options(config: Config, name_field: str) -> Dict[str, Any]:
    """The checked options ``config`` gives the component its field ``name_field`` names (e.g. ``"labels"``)."""
    component = next(c for c in COMPONENTS if c.name_field == name_field)
    return component_options(config, component)


def splits_for(config: Config) -> Splits:
    """The train / meta / test data ``config`` describes (the meta split only for ``meta_source="clean"``)."""
    return make_splits(config.dataset, meta_per_class=config.meta_per_class if config.meta_source == "clean" else 0,
                       noise=config.noise, noise_rate=config.noise_rate, seed=config.seed,
                       noise_options=options(config, "noise"), meta_in_train=config.meta_in_train,
                       validation_per_class=config.validation_per_class,
                       data_root=config.data_root, **options(config, "dataset"))


def build_learner(config: Config, splits: Splits, labels: Optional[LabelParameterization] = None,
                  distributed: Optional[Distributed] = None) -> Learner:
    """Model, optimiser, labels, strategy and label optimiser as ``config`` describes.

    ``labels`` replaces the parameterisation ``config.labels`` names (e.g. a teacher's, which a
    name cannot describe); it must have been built for ``splits``' training set.
    """
    model = make_model(config.model, splits.input_shape, splits.num_classes, **options(config, "model"))
    model = model.to(config.device)
    if config.channels_last:
        model = to_channels_last(model)
    optimizer = MODEL_OPTIMIZERS.build(config.optimizer, model.parameters(), config)
    if labels is None:
        labels = make_labels(config.labels, splits.labels.noisy, splits.num_classes, **options(config, "labels"))
    elif labels.num_samples != len(splits.labels.noisy) or labels.num_classes != splits.num_classes:
        raise ValueError(f"labels were built for {labels.num_samples} samples of {labels.num_classes} classes, "
                         f"the training set has {len(splits.labels.noisy)} of {splits.num_classes}")
    labels = labels.to(config.device)
    labels.set_epochs(config.epochs)
    loss = make_loss(config.loss, **options(config, "loss"))
    strategy = make_strategy(config.strategy, **options(config, "strategy"))
    label_opt = None
    if strategy.learns and labels.learnable:
        label_opt = make_label_optimizer(config.label_optimizer, labels.param_groups(), config.label_lr * labels.lr_scale,
                                         **options(config, "label_optimizer"))
    return Learner(model, optimizer, labels, strategy, label_opt, loss=loss, distributed=distributed,
                   amp=config.amp)
