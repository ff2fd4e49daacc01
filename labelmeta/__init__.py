"""labelmeta: learn soft labels by meta-learning through unrolled optimiser steps."""
from .config import Config
from .data import DATASETS, make_splits
from .detect_correct import DetectCorrect
from .health import LabelHealth, format_health, label_health
from .label_issues import IssueStats, LabelIssues, find_label_issues, read_label_issues
from .labels import LABELS, LabelParameterization, make_labels
from .learner import Learner, StepStats
from .losses import LOSSES, distillation_loss, make_loss, soft_cross_entropy
from .metrics import accuracy, label_correction
from .model_optimizers import MODEL_OPTIMIZERS
from .models import MODELS, make_model
from .noise import NOISE, NoiseKind, NoisyLabels, Samples, add_noise
from .optim import LABEL_OPTIMIZERS, MirrorDescent, make_label_optimizer
from .records import EpochRecord, Results
from .runner import fit, fit_learner
from .schedule import MetaSchedule
from .strategies import (BACKENDS, STRATEGIES, TARGETS, MetaProblem, MetaWeightNet, OneStep, OneStepReweight, Strategy,
                         Unrolled, make_strategy)

__version__ = "0.1.0"

__all__ = [
    "BACKENDS", "Config", "DATASETS", "DetectCorrect", "EpochRecord", "IssueStats", "LABELS", "LabelHealth", "LABEL_OPTIMIZERS", "LOSSES", "LabelIssues", "LabelParameterization",
    "Learner", "MODELS", "MODEL_OPTIMIZERS", "NOISE", "NoiseKind", "NoisyLabels", "Samples", "MetaProblem", "MetaSchedule", "MetaWeightNet", "MirrorDescent",
    "OneStep", "OneStepReweight", "Results", "STRATEGIES", "StepStats", "Strategy", "TARGETS", "Unrolled", "accuracy",
    "add_noise", "distillation_loss", "find_label_issues", "fit", "fit_learner", "format_health", "label_health", "label_correction", "make_label_optimizer", "make_labels", "make_loss", "make_model", "make_splits", "make_strategy", "read_label_issues", "soft_cross_entropy",
]
