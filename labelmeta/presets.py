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
    # CIFAR-10N (Wei et al., ICLR 2022): CIFAR-10 with its real human annotations, CIFAR-10_human.pt read from
    # --data-root (entry "worse_label", about 40 % noise; --noise-key aggre_label or random_label1 for the others),
    # its clean_label checked against CIFAR-10's targets. The noisy-label default (per-sample labels and weights,
    # one-step-reweight) with 100 clean images a class held out as the meta set, as benchmarks/noisy_labels.py's
    # CIFAR-10 base. Meant for a GPU.
    "cifar10n": Config(dataset="cifar10", model="resnet18", lr=0.1, weight_decay=5e-4, epochs=120, batch_size=128,
                       noise="file", noise_options={"path": "CIFAR-10_human.pt", "key": "worse_label",
                                                    "truth_key": "clean_label"},
                       meta_per_class=100, meta_batch_size=200, warmup_epochs=10, device="cuda", workers=4,
                       pin_memory=True, channels_last=True),
    # CIFAR-100N: CIFAR-100 with CIFAR-100_human.pt's "noisy_label" (about 40 % noise), as cifar10n
    "cifar100n": Config(dataset="cifar100", model="resnet18", lr=0.1, weight_decay=5e-4, epochs=120, batch_size=128,
                        noise="file", noise_options={"path": "CIFAR-100_human.pt", "key": "noisy_label",
                                                     "truth_key": "clean_label"},
                        meta_per_class=10, meta_batch_size=200, warmup_epochs=10, device="cuda", workers=4,
                        pin_memory=True, channels_last=True),
}
