"""Plots of runs and of learned labels (matplotlib, imported lazily): ``labelmeta plot``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Mapping, Optional, Sequence

import torch
from torch import Tensor

from . import checkpoint
from .build import splits_for
from .config import Config
from .health import LabelHealth, classes_of_run, label_health
from .label_issues import LabelIssues, issues_path, read_label_issues
from .labels import LABELS, make_labels
from .records import Results


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - matplotlib is a dependency
        raise ImportError("labelmeta.plots needs matplotlib: pip install matplotlib") from err
    return plt


def plot_label_matrix(matrix: Tensor, class_names: Optional[Sequence[str]] = None, ax=None,
                      title: str = "learned label of each annotated class", log: bool = True):
    """Heat-map of a ``[C, C]`` row-stochastic matrix, e.g. ``PerClass.similarity()``.

    Row ``i`` is the soft label given to samples annotated ``i``. With ``log=True`` the colours
    show ``log10`` probabilities, so that the small off-diagonal mass (the class similarity)
    is visible next to the large diagonal. Returns the matplotlib ``Axes``.
    """
    plt = _pyplot()
    import numpy as np

    values = matrix.detach().cpu().double().numpy()
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise ValueError(f"matrix must be square [C, C], got {tuple(values.shape)}")
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(values))]
    if len(names) != len(values):
        raise ValueError(f"{len(names)} class names for a {len(values)}-class matrix")
    if ax is None:
        size = max(4.0, 0.35 * len(values) + 2)
        _, ax = plt.subplots(figsize=(size + 1, size))
    shown = np.log10(np.clip(values, 1e-4, 1)) if log else values
    image = ax.imshow(shown, cmap="viridis")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="log10 probability" if log else "probability")
    ax.set_xticks(range(len(names)))
    ax.set_yticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_yticklabels(names, fontsize=7)
    ax.set(xlabel="class", ylabel="annotated class", title=title)
    return ax


#: the curves of a run, one axis each: (title, y label, [(EpochRecord field, line style)], scale)
_CURVES = [
    ("test accuracy", "accuracy (%)", [("test_accuracy", "-")], 100.0),
    ("training loss (solid) and meta loss (dashed)", "loss", [("train_loss", "-"), ("meta_loss", "--")], 1.0),
    ("corrupted labels corrected", "% of the corrupted", [("corrected", "-")], 100.0),
    ("clean labels broken", "% of the clean", [("clean_broken", "-")], 100.0),
]


def load_run(path: str | Path) -> Results:
    """A run's :class:`~labelmeta.records.Results` from the JSON ``labelmeta train --output`` wrote;
    ``ValueError`` naming the file if it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        return Results.from_dict(data)
    except FileNotFoundError:
        raise ValueError(f"{str(path)!r} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, AttributeError) as err:
        raise ValueError(f"{str(path)!r} is not the JSON of a labelmeta run ({type(err).__name__}: {err})") from None


def plot_curves(runs: Mapping[str, Results]):
    """Test accuracy, training and meta loss, corrupted labels corrected and clean labels broken
    over epochs, one line per run (``name -> Results``); axes a run has no figure for (a run
    without learned labels corrects nothing) show the runs that have. Returns the figure."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    colours = plt.get_cmap("tab10").colors
    for ax, (title, ylabel, fields, scale) in zip(axes.flat, _CURVES):
        shown = False
        for i, (name, run) in enumerate(runs.items()):
            for field, style in fields:
                points = [(h.epoch, getattr(h, field) * scale) for h in run.history if getattr(h, field) is not None]
                if points:
                    ax.plot(*zip(*points), style, color=colours[i % len(colours)], marker=".",
                            label=name if style == "-" else None)
                    shown = True
        ax.set(title=title, xlabel="epoch", ylabel=ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if shown:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no run has this figure", ha="center", va="center", transform=ax.transAxes, color="0.5")
    return fig


def plot_precision_recall(issues: Mapping[str, LabelIssues], ax=None):
    """The precision–recall curve of each run's ranked label issues (``name -> LabelIssues`` with the
    truth known), its flags as a dot on it, and the average precision in the legend. Returns the ``Axes``."""
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    colours = plt.get_cmap("tab10").colors
    for i, (name, found) in enumerate(issues.items()):
        stats = found.stats()
        precision, recall, _ = found.precision_recall()
        colour = colours[i % len(colours)]
        ax.step(recall * 100, precision * 100, where="post", color=colour,
                label=f"{name} (AP {stats.average_precision:.2f}, F1 {stats.f1:.2f})")
        if stats.flagged:
            ax.plot(stats.recall * 100, stats.precision * 100, "o", color=colour)
    ax.set(xlabel="recall: % of the corrupted labels found", ylabel="precision: % of the found that are corrupted",
           title="label issues, ranked by suspicion (dot: the flagged ones)", xlim=(0, 101), ylim=(0, 101))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return ax


def plot_label_health(health: LabelHealth, title: str = "label health"):
    """The estimated noise matrix (annotated × suggested, rows normalised) as a heat-map, the true one
    (annotated × true) beside it where the truth is known, on one colour scale, and per annotated class
    the estimated noise rate and the flagged share against the true rate (:mod:`labelmeta.health`).
    Returns the figure."""
    plt = _pyplot()
    import numpy as np

    known = health.true_counts is not None
    size = max(4.0, 0.35 * health.num_classes + 2)
    fig, axes = plt.subplots(1, 3 if known else 2, figsize=((3 if known else 2) * (size + 1), size))
    matrices = [(health.estimated_matrix, "suggested class", "estimated: annotated × suggested")]
    if known:
        matrices.append((health.true_matrix, "true class", "true: annotated × true"))
    for ax, (matrix, xlabel, name) in zip(axes, matrices):
        plot_label_matrix(matrix, health.class_names, ax=ax, title=f"{title}\n{name} (share of the row)")
        ax.images[0].set_clim(-4, 0)  # both maps on the log10 scale plot_label_matrix clips to
        ax.set(xlabel=xlabel)
    ax = axes[-1]
    x = np.arange(health.num_classes)
    rates = [("estimated (suggested ≠ annotated)", health.estimated_noise_rate), ("flagged", health.flagged_rate)]
    if known:
        rates.append(("true (truth ≠ annotated)", health.true_noise_rate))
    width = 0.8 / len(rates)
    for i, (label, rate) in enumerate(rates):
        ax.bar(x + (i - (len(rates) - 1) / 2) * width, rate.numpy() * 100, width, label=label)
    ax.set_xticks(x)
    ax.set_xticklabels(health.class_names, rotation=90, fontsize=7)
    ax.set(xlabel="annotated class", ylabel="% of the class's samples", title="noise rate per annotated class")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()  # the colour bar's label would otherwise run into the next panel
    return fig


def _draw_input(ax, x: Tensor, title: str) -> None:
    """One input: an image (``[C, H, W]`` or ``[H, W]``) as a thumbnail, anything else as a curve."""
    x = x.detach().float().cpu()
    if x.dim() == 3 and x.shape[0] in (1, 3):
        image = x.permute(1, 2, 0)
        image = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-12)
        ax.imshow(image.squeeze(-1).numpy(), cmap="gray" if x.shape[0] == 1 else None)
        ax.set_xticks([])
        ax.set_yticks([])
    elif x.dim() == 2 and x.shape[0] > 3:
        ax.imshow(x.numpy(), cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        ax.plot(x.flatten().numpy(), lw=1)
        ax.set_yticks([])
    ax.set_title(title, fontsize=8)


def plot_evidence(issues: LabelIssues, splits, rows: int = 6, title: str = "evidence"):
    """The ``rows`` most suspect flagged samples, each beside the clean samples that argue most against its
    annotation (``issues.evidence``, :mod:`labelmeta.evidence`): thumbnails for images, curves for 1-D inputs.
    ``splits``: the run's :class:`~labelmeta.data.Splits` (rebuilt from its configuration). Returns the figure."""
    if issues.evidence is None:
        raise ValueError("these label issues have no evidence (runs write it with an output file and evidence > 0)")
    plt = _pyplot()
    names = splits.class_names
    name = (lambda c: names[c]) if names else str  # noqa: E731
    shown = [i for i in issues.ranking().tolist() if bool(issues.flagged[i])][:rows]
    k = issues.evidence.shape[1]
    where = {int(s): pos for pos, s in enumerate(splits.meta_source_index.tolist())}
    fig, axes = plt.subplots(max(len(shown), 1), k + 1, figsize=(2.2 * (k + 1), 1.6 * max(len(shown), 1)), squeeze=False)
    for row, i in enumerate(shown):
        x, _, _ = splits.train[i]
        _draw_input(axes[row][0], x, f"#{int(issues.source_index[i]) if issues.source_index is not None else i}: "
                                     f"annotated {name(int(issues.annotated[i]))}, "
                                     f"suggested {name(int(issues.suggested[i]))}")
        for col, j in enumerate(issues.evidence[i].tolist(), start=1):
            if j < 0 or j not in where:
                axes[row][col].axis("off")
                continue
            xj, yj, _ = splits.meta[where[j]]
            _draw_input(axes[row][col], xj, f"clean #{j}: {name(int(yj))}")
    fig.suptitle(f"{title}: flagged samples (left) and the clean samples arguing against their annotation",
                 fontsize=9)
    return fig


def label_matrix_from_checkpoint(path: str | Path, run: Results) -> Optional[Tensor]:
    """The learned ``[C, C]`` label matrix of ``run`` from its checkpoint (a parameterisation with a
    ``similarity()``, e.g. ``per-class``), or ``None`` for parameterisations without one.
    ``ValueError`` if the checkpoint was written by another run."""
    config = Config.from_dict(run.config)
    if not hasattr(LABELS.get(config.labels), "similarity"):
        return None
    state = checkpoint.load(path, config)["learner"]["labels"]
    labels = make_labels(config.labels, state["targets"], state["logits"].shape[1], **config.label_options)
    labels.load_state_dict(state)
    return labels.similarity().detach()


def plot_runs(paths: Sequence[str | Path], out: str | Path, names: Optional[Sequence[str]] = None) -> List[Path]:
    """``labelmeta plot``: write ``curves.png`` for the runs' JSON files under ``out``,
    ``label_issues.png`` (:func:`plot_precision_recall`) for the runs whose label issues were written
    beside them with the truth known, ``NAME_health.png`` (:func:`plot_label_health`) for each run whose
    label issues were written, ``NAME_evidence.png`` (:func:`plot_evidence`, the run's data rebuilt from its
    configuration) for those with evidence, and ``NAME_label_matrix.png`` for each run with a learned label matrix
    (``per-class``: stored in its results, or for older results read from its checkpoint).
    Returns the files written."""
    names = list(names) if names is not None else [Path(p).stem for p in paths]
    if len(names) != len(paths):
        raise ValueError(f"{len(names)} names for {len(paths)} runs")
    if len(set(names)) != len(names):
        raise ValueError(f"two runs have the same name ({names}): pass --names")
    runs = {name: load_run(path) for name, path in zip(names, paths)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "curves.png"]
    save_figure(plot_curves(runs), written[0])
    all_issues = {name: read_label_issues(path) for name, path in zip(names, paths) if issues_path(path).exists()}
    issues = {name: found for name, found in all_issues.items()
              if found.true is not None and bool(found.stats().corrupted)}
    if issues:
        written.append(out / "label_issues.png")
        save_figure(plot_precision_recall(issues).figure, written[-1])
    for name, run in runs.items():
        if name in all_issues:
            health = label_health(all_issues[name], *classes_of_run(run, all_issues[name]))
            written.append(out / f"{name}_health.png")
            save_figure(plot_label_health(health, title=name), written[-1])
            if all_issues[name].evidence is not None and bool(all_issues[name].flagged.any()):
                written.append(out / f"{name}_evidence.png")
                save_figure(plot_evidence(all_issues[name], splits_for(Config.from_dict(run.config)), title=name),
                            written[-1])
        ckpt = run.config.get("checkpoint")
        matrix = None
        if run.label_matrix is not None:
            matrix = torch.tensor(run.label_matrix)
        elif ckpt and Path(ckpt).exists():
            matrix = label_matrix_from_checkpoint(ckpt, run)
        if matrix is not None:
            ax = plot_label_matrix(matrix, title=f"{name}: learned label of each annotated class")
            written.append(out / f"{name}_label_matrix.png")
            save_figure(ax.figure, written[-1])
    return written


def save_figure(fig, path: str | Path, dpi: int = 120) -> None:
    """Lay out, write and close a matplotlib figure (its folder is created): the look of every
    figure labelmeta and its benchmarks write."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)
