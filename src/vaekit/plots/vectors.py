"""Figures for feature vectors [N, D]: reconstruction scatters, marginals, pairs and paths."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from vaekit.plots.common import STYLE, save_figure

__all__ = ["save_marginals", "save_pairs", "save_paths", "save_vector_reconstructions"]

# Each figure has a fixed layout (at most MAX_FEATURES panels of PANEL_INCHES), so its PNG
# stays well under images.MAX_SIDE pixels whatever D and N are. Values are drawn as given: pass
# them in the data's own units (`Standardization.invert`) for readable axes.
MAX_FEATURES = 8  # panels in the reconstruction and marginal figures
PAIR_FEATURES = 4  # features in the pair plot
PANEL_INCHES = 2.4
MAX_POINTS = 2000  # points drawn per scatter (the first ones)
REAL, GENERATED = "#4c72b0", "#dd8452"


def _as_vectors(x: Tensor, name: str) -> np.ndarray:
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"{name} must be a non-empty [N, D] tensor, got {tuple(x.shape)}")
    values: np.ndarray = x.detach().to("cpu").double().numpy()
    return values


def _names(names: Sequence[str] | None, d: int) -> list[str]:
    if names is None:
        return [f"feature {i}" for i in range(d)]
    if len(names) != d:
        raise ValueError(f"{len(names)} feature names for {d} features")
    return list(names)


def _panels(count: int) -> tuple[Figure, list[Axes]]:
    ncols = min(4, count)
    nrows = math.ceil(count / ncols)
    fig = Figure(figsize=(PANEL_INCHES * ncols, PANEL_INCHES * nrows + 0.4))
    fig.subplots_adjust(top=1 - 0.55 / (PANEL_INCHES * nrows + 0.4), hspace=0.55, wspace=0.3)
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(count)]
    return fig, axes


def save_vector_reconstructions(
    x: Tensor,
    reconstruction: Tensor,
    path: str | Path,
    *,
    names: Sequence[str] | None = None,
    only: Tensor | None = None,
    title: str = "Reconstructions",
    ylabel: str = "reconstructed",
) -> Path:
    """One panel per feature (the first ``MAX_FEATURES``): reconstructed against true values of
    ``x`` [N, D], with the diagonal where a perfect reconstruction would lie. ``only`` (bool
    [N, D]) keeps just those values, e.g. the missing ones of an imputation."""
    true, recon = _as_vectors(x, "x"), _as_vectors(reconstruction, "reconstruction")
    if true.shape != recon.shape:
        raise ValueError(f"x {true.shape} and reconstruction {recon.shape} differ in shape")
    keep = np.ones(true.shape, bool) if only is None else only.detach().cpu().numpy()
    labels = _names(names, true.shape[1])
    count = min(MAX_FEATURES, true.shape[1])
    with matplotlib.rc_context(STYLE):
        fig, axes = _panels(count)
        for i, ax in enumerate(axes):
            a, b = true[keep[:, i], i][:MAX_POINTS], recon[keep[:, i], i][:MAX_POINTS]
            ax.set_title(labels[i], fontsize=9)
            if len(a) == 0:
                ax.set_axis_off()
                continue
            low, high = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
            ax.plot([low, high], [low, high], color="0.6", linewidth=1)
            ax.scatter(a, b, s=6, alpha=0.6, color=REAL, linewidths=0)
            ax.set_xlabel("true", fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
        fig.suptitle(_shown(title, count, true.shape[1]))
        return save_figure(fig, path)


def save_marginals(
    real: Tensor, generated: Tensor, path: str | Path, *, names: Sequence[str] | None = None
) -> Path:
    """One panel per feature (the first ``MAX_FEATURES``): histograms of real and generated
    values on shared bins, as densities."""
    a, b = _as_vectors(real, "real"), _as_vectors(generated, "generated")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"real ({a.shape[1]}) and generated ({b.shape[1]}) features differ")
    labels = _names(names, a.shape[1])
    count = min(MAX_FEATURES, a.shape[1])
    with matplotlib.rc_context(STYLE):
        fig, axes = _panels(count)
        for i, ax in enumerate(axes):
            bins = _bins(a[:, i], b[:, i])
            for values, colour, label in ((a, REAL, "real"), (b, GENERATED, "generated")):
                ax.hist(
                    values[:, i], bins=bins, density=True, alpha=0.55, color=colour, label=label
                )
            ax.set_title(labels[i], fontsize=9)
            ax.set_yticks([])
        axes[0].legend(fontsize=8)
        fig.suptitle(_shown("Samples: marginals", count, a.shape[1]))
        return save_figure(fig, path)


def save_pairs(
    real: Tensor, generated: Tensor, path: str | Path, *, names: Sequence[str] | None = None
) -> Path:
    """A pair plot of the first ``PAIR_FEATURES`` features: real and generated points off the
    diagonal, their histograms on it."""
    a, b = _as_vectors(real, "real"), _as_vectors(generated, "generated")
    labels = _names(names, a.shape[1])
    k = min(PAIR_FEATURES, a.shape[1])
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(PANEL_INCHES * k, PANEL_INCHES * k + 0.4))
        fig.subplots_adjust(top=1 - 0.55 / (PANEL_INCHES * k + 0.4), hspace=0.25, wspace=0.25)
        for row in range(k):
            for col in range(k):
                ax = fig.add_subplot(k, k, row * k + col + 1)
                if row == col:
                    bins = _bins(a[:, col], b[:, col])
                    ax.hist(a[:, col], bins=bins, density=True, alpha=0.55, color=REAL)
                    ax.hist(b[:, col], bins=bins, density=True, alpha=0.55, color=GENERATED)
                    ax.set_yticks([])
                else:
                    for values, colour in ((a, REAL), (b, GENERATED)):
                        ax.scatter(
                            values[:MAX_POINTS, col],
                            values[:MAX_POINTS, row],
                            s=4,
                            alpha=0.5,
                            color=colour,
                            linewidths=0,
                        )
                if row == k - 1:
                    ax.set_xlabel(labels[col], fontsize=8)
                if col == 0:
                    ax.set_ylabel(labels[row], fontsize=8)
                ax.tick_params(labelsize=7)
        fig.suptitle(f"Pairs: real (blue) and generated (orange), first {k} features")
        return save_figure(fig, path)


def save_paths(
    paths: dict[str, Tensor], path: str | Path, *, names: Sequence[str] | None = None
) -> Path:
    """One panel per feature (the first ``MAX_FEATURES``): each feature along interpolation
    paths [T, P, D] (T points between P pairs), one line per pair; each entry of ``paths``
    (e.g. without and with chain steps) gets its own line style."""
    if not paths:
        raise ValueError("save_paths needs at least one set of paths")
    arrays = {label: p.detach().cpu().double().numpy() for label, p in paths.items()}
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise ValueError(f"paths must share one shape [T, P, D], got {sorted(shapes)}")
    steps, pairs, d = next(iter(shapes))
    labels = _names(names, d)
    count = min(MAX_FEATURES, d)
    colours = matplotlib.colormaps["tab10"]
    position = np.linspace(0, 1, steps)
    with matplotlib.rc_context(STYLE):
        fig, axes = _panels(count)
        for i, ax in enumerate(axes):
            for style, (label, values) in zip(("-", "--", ":"), arrays.items(), strict=False):
                for pair in range(pairs):
                    ax.plot(
                        position,
                        values[:, pair, i],
                        style,
                        color=colours(pair % 10),
                        linewidth=1.2,
                        label=label if pair == 0 else None,
                    )
            ax.set_title(labels[i], fontsize=9)
            ax.set_xlabel("position on the path", fontsize=8)
        if len(arrays) > 1:
            axes[0].legend(fontsize=7)
        fig.suptitle(_shown(f"Interpolation between {pairs} pairs", count, d))
        return save_figure(fig, path)


def _bins(*columns: np.ndarray) -> list[float]:
    """Shared histogram bins: about √n of them (8 to 30) over the range of all values."""
    values = np.concatenate(columns)
    count = int(np.clip(round(math.sqrt(min(len(c) for c in columns))), 8, 30))
    return [float(edge) for edge in np.histogram_bin_edges(values, bins=count)]


def _shown(title: str, count: int, total: int) -> str:
    return title if count == total else f"{title} (first {count} of {total} features)"
