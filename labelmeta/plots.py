"""Plots of learned labels (matplotlib, imported lazily)."""
from __future__ import annotations

from typing import Optional, Sequence

from torch import Tensor


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
