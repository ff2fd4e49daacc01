"""Named starting points of a run: ``labelmeta train --preset NAME`` (any flag still overrides them)."""
from __future__ import annotations

from typing import Dict

from .config import Config

#: the presets by name
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
