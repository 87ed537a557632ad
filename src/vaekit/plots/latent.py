"""The latent space drawn: a scatter of the codes and the decoded manifold of a 2-D latent."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor

from vaekit.plots.common import STYLE, save_figure
from vaekit.plots.images import cell_centres, numpy_images, save_image_axes, tile, upscale

__all__ = ["manifold_axes", "save_latent_scatter", "save_manifold"]

_MIN_MANIFOLD = 400  # px: smallest side of the decoded manifold grid


def _discrete_classes(labels: Tensor) -> list[int] | None:
    """The sorted class values when `labels` are integers with at most 10 distinct values."""
    if labels.is_floating_point() or labels.is_complex():
        return None
    classes = sorted(int(v) for v in labels.unique())
    return classes if len(classes) <= 10 else None


def save_latent_scatter(
    z: Tensor,
    labels: Tensor | None,
    path: str | Path,
    *,
    title: str | None = None,
    class_names: Sequence[str] = (),
) -> Path:
    """Scatter latent codes `z` [N, D], coloured by `labels` [N] when given.

    D = 1 is spread vertically by jitter (one strip per class), D = 2 is drawn as is, D > 2 is
    projected on its first two principal components. Integer labels with at most 10 values get
    a legend (tab10), naming label k ``class_names[k]`` where given; any other labels a
    colorbar.
    """
    if z.ndim != 2 or len(z) == 0:
        raise ValueError(f"z must be a non-empty [N, D] tensor, got shape {tuple(z.shape)}")
    if labels is not None and labels.shape != (len(z),):
        raise ValueError(f"labels must have shape [{len(z)}], got {tuple(labels.shape)}")
    points = z.detach().to("cpu", torch.float64).numpy()
    n, d = points.shape
    rng = np.random.default_rng(0)  # fixed: jitter and drawing order are cosmetic
    classes = _discrete_classes(labels) if labels is not None else None
    values = labels.detach().to("cpu", torch.float64).numpy() if labels is not None else None
    xlabel, ylabel = "z1", "z2"
    if d == 1:
        offset = np.searchsorted(classes, values) if classes and values is not None else 0
        points = np.column_stack([points[:, 0], offset + rng.uniform(-0.3, 0.3, n)])
        ylabel = "label (jittered)" if classes else "jitter"
    elif d > 2:
        if n < 2:
            raise ValueError("a PCA projection of z needs at least 2 points")
        centred = points - points.mean(axis=0)
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)  # rows of vt: PCs
        explained = singular**2 / max(float((singular**2).sum()), 1e-300)
        points = centred @ vt[:2].T  # [N, 2]
        xlabel, ylabel = (f"PC{i + 1} ({100 * explained[i]:.0f}% var)" for i in range(2))
    order = rng.permutation(n)  # no class hides under the last-drawn one

    def name(c: int) -> str:
        return class_names[c] if 0 <= c < len(class_names) else str(c)

    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(6.0, 5.0))
        ax = fig.add_subplot()
        colour: Any = "C0"
        if classes is not None and values is not None:
            palette = matplotlib.colormaps["tab10"](np.arange(10))  # [10, 4] RGBA
            # digit k keeps colour Ck in every figure; other class values go by rank
            digits = min(classes) >= 0 and max(classes) < 10
            rank = {c: c if digits else i for i, c in enumerate(classes)}
            colour = palette[[rank[int(v)] for v in values[order]]]
            handles = [
                Line2D([], [], ls="", marker="o", color=palette[rank[c]], label=name(c))
                for c in classes
            ]
            ax.legend(handles=handles, title="label", loc="upper left", bbox_to_anchor=(1, 1))
        elif values is not None:
            colour = values[order]
        x, y = points[order].T
        cmap = "viridis" if classes is None and values is not None else None
        mappable = ax.scatter(x, y, c=colour, cmap=cmap, s=8, alpha=0.6, linewidths=0)
        if cmap is not None:
            fig.colorbar(mappable, ax=ax, label="label", alpha=1.0)
        if d == 1:
            ax.set_yticks(range(len(classes)) if classes else [], [name(c) for c in classes or []])
        else:
            ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title or f"latent codes (N = {n}, D = {d}{', PCA' if d > 2 else ''})")
        ax.grid(True)
        return save_figure(fig, path)


def manifold_axes(
    codes: Tensor | None,
    *,
    grid_size: int = 20,
    latent_range: float = 0.95,
    padding: float = 0.05,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """The z1 and z2 values [G] each of the manifold grid, increasing.

    With ``codes`` [N, 2]: evenly spaced from each axis's minimum to its maximum, widened by
    ``padding`` of the range on both sides, so the grid covers every code the latent scatter
    shows. Without: standard-normal quantiles at linspace(1 - latent_range, latent_range)
    (Kingma & Welling 2014, fig. 4).
    """
    if not 0.5 < latent_range < 1.0 or grid_size < 2 or padding < 0:
        raise ValueError(
            f"need 0.5 < latent_range < 1, grid_size >= 2 and padding >= 0, got {latent_range}, "
            f"{grid_size}, {padding}"
        )
    dtype = dtype or torch.get_default_dtype()
    if codes is None:
        probs = torch.linspace(1 - latent_range, latent_range, grid_size, dtype=dtype)
        quantiles = torch.distributions.Normal(0.0, 1.0).icdf(probs).to(device)  # [G]
        return quantiles, quantiles
    if codes.ndim != 2 or codes.shape[1] != 2 or len(codes) == 0:
        raise ValueError(f"codes must be a non-empty [N, 2] tensor, got {tuple(codes.shape)}")
    finite = codes.detach().to("cpu", torch.float64)
    finite = finite[torch.isfinite(finite).all(1)]
    if len(finite) == 0:
        raise ValueError("codes has no finite row")
    low, high = finite.amin(0), finite.amax(0)  # [2]
    margin = padding * (high - low).clamp_min(1e-6)
    low, high = low - margin, high + margin
    axes = [torch.linspace(float(low[i]), float(high[i]), grid_size, dtype=dtype) for i in (0, 1)]
    return axes[0].to(device), axes[1].to(device)


def save_manifold(
    decode_mean: Callable[[Tensor], Tensor],
    path: str | Path,
    *,
    codes: Tensor | None = None,
    grid_size: int = 20,
    latent_range: float = 0.95,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Decode a grid of 2-D latents and tile the images; z2 increases upwards.

    The grid spans ``codes`` [N, 2] (e.g. the codes of the latent scatter) from minimum to
    maximum, padded by 5 %, or without codes the standard-normal quantiles of
    ``manifold_axes``. `decode_mean` maps z [G*G, 2] (row-major from the top-left cell) to
    images [G*G, C, H, W].
    """
    z1_values, z2_values = manifold_axes(
        codes, grid_size=grid_size, latent_range=latent_range, dtype=dtype, device=device
    )
    z2, z1 = torch.meshgrid(z2_values.flip(0), z1_values, indexing="ij")  # top row: largest z2
    z = torch.stack([z1, z2], dim=-1).reshape(-1, 2)  # [G*G, 2]
    with torch.no_grad():
        images = decode_mean(z)
    if images.ndim != 4 or len(images) != len(z):
        raise ValueError(f"decode_mean must return [{len(z)}, C, H, W], got {tuple(images.shape)}")
    array = numpy_images(images)
    h, w = array.shape[1:3]
    factor = max(1, math.ceil(_MIN_MANIFOLD / (grid_size * min(h, w))))
    grid = tile(upscale(array, factor), grid_size, 0, 1.0)
    shown = sorted({round(i * (grid_size - 1) / 4) for i in range(5)})  # <= 5 ticks per axis
    x_values = z1_values.detach().cpu().double().numpy()
    y_values = z2_values.detach().cpu().double().numpy()
    xticks = (cell_centres(shown, w * factor, 0), [f"{x_values[i]:.2f}" for i in shown])
    yticks = (cell_centres(shown, h * factor, 0), [f"{y_values[-1 - i]:.2f}" for i in shown])
    spans = "the codes' range" if codes is not None else "Normal quantiles"
    title = f"decoded means over a {grid_size}×{grid_size} grid spanning {spans}"
    return save_image_axes(
        grid, path, title=title, xticks=xticks, yticks=yticks, xlabel="z1", ylabel="z2"
    )
