"""Image grids and labelled rows of images from ``[N, C, H, W]`` tensors, as arrays or PNGs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from vaekit.files import atomic_write
from vaekit.plots.common import DPI, STYLE, save_figure

__all__ = ["MAX_SIDE", "image_grid", "save_image_grid", "save_reconstructions", "save_rows"]

# Images are [N, C, H, W] tensors with C = 1 (grey) or 3 (RGB) and values in [0, 1] (clamped).
_MIN_CELL = 48  # px: smallest displayed side of one image in labelled figures
_MARGIN = 240  # px around labelled image axes; cropped again by bbox_inches="tight"
MAX_SIDE = 2800  # px: no PNG is larger on its longest side, whatever the data (grids shrink)


def numpy_images(images: Tensor, name: str = "images") -> np.ndarray:
    """[N, C, H, W] tensor in [0, 1] -> float array [N, H, W, C], clamped, NaN as 0."""
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty [N, C, H, W] tensor with C = 1 or 3, "
            f"got shape {tuple(images.shape)}"
        )
    array = images.detach().to("cpu", torch.float32).nan_to_num(0.0).clamp(0.0, 1.0).numpy()
    return array.transpose(0, 2, 3, 1)


def upscale(images: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of [N, H, W, C] by an integer factor."""
    return images.repeat(factor, axis=1).repeat(factor, axis=2) if factor > 1 else images


def tile(images: np.ndarray, ncols: int, padding: int, pad_value: float) -> np.ndarray:
    """[N, H, W, C] floats -> uint8 grid [rows*H + (rows+1)*pad, ...] ([H, W] when C = 1)."""
    n, h, w, c = images.shape
    nrows = math.ceil(n / ncols)
    fill = round(min(max(pad_value, 0.0), 1.0) * 255)
    grid = np.full(
        (nrows * h + (nrows + 1) * padding, ncols * w + (ncols + 1) * padding, c), fill, np.uint8
    )
    pixels = np.rint(images * 255).astype(np.uint8)
    for i in range(n):
        top, left = padding + (i // ncols) * (h + padding), padding + (i % ncols) * (w + padding)
        grid[top : top + h, left : left + w] = pixels[i]
    return grid[..., 0] if c == 1 else grid


def _columns(n: int, ncols: int | None) -> int:
    """The number of grid columns: `ncols` (at most n) or ceil(sqrt(n)) when None."""
    if ncols is not None and ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    return min(ncols or math.ceil(math.sqrt(n)), n)


def cell_centres(cells: Sequence[int], size: int, padding: int) -> list[float]:
    """Pixel coordinates of the centres of grid cells `cells` (as imshow places pixels)."""
    return [padding + i * (size + padding) + (size - 1) / 2 for i in cells]


def image_grid(
    images: Tensor, *, ncols: int | None = None, padding: int = 2, pad_value: float = 1.0
) -> np.ndarray:
    """Tile `images` [N, C, H, W] row-major into a uint8 array [H', W'] (grey) or [H', W', 3].

    `ncols` defaults to ceil(sqrt(N)); `padding` pixels of `pad_value` (in [0, 1]) separate
    the cells and frame the grid.
    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    array = numpy_images(images)
    return tile(array, _columns(len(array), ncols), padding, pad_value)


def save_image_axes(
    grid: np.ndarray,
    path: str | Path,
    *,
    title: str | None = None,
    yticks: tuple[Sequence[float], Sequence[str]] | None = None,
    xticks: tuple[Sequence[float], Sequence[str]] | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
) -> Path:
    """Show a uint8 grid pixel for pixel (axes exactly its size) with optional labels; a grid
    too large for ``MAX_SIDE`` is shrunk first (tick positions follow)."""
    grid, scale = _fit(grid, MAX_SIDE - 2 * _MARGIN)
    if scale != 1.0:
        xticks = ([p * scale for p in xticks[0]], xticks[1]) if xticks else None
        yticks = ([p * scale for p in yticks[0]], yticks[1]) if yticks else None
    height, width = grid.shape[:2]
    fig_w, fig_h = width + 2 * _MARGIN, height + 2 * _MARGIN
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI)
        ax = fig.add_axes((_MARGIN / fig_w, _MARGIN / fig_h, width / fig_w, height / fig_h))
        ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_frame_on(False)
        ax.set_xticks(*(xticks or ([], [])))
        ax.set_yticks(*(yticks or ([], [])))
        ax.tick_params(length=3 if xlabel or ylabel else 0)
        ax.set_xlabel(xlabel or "")
        ax.set_ylabel(ylabel or "")
        ax.set_title(title or "")
        return save_figure(fig, path)


def save_image_grid(
    images: Tensor,
    path: str | Path,
    *,
    ncols: int | None = None,
    title: str | None = None,
    min_size: int = 256,
) -> Path:
    """Write `images` [N, C, H, W] as one PNG grid whose shorter side is >= `min_size` pixels.

    Small images are enlarged by an integer nearest-neighbour factor (pixels stay crisp);
    without a title the PNG holds exactly the grid pixels.
    """
    array = numpy_images(images)
    n, h, w, _ = array.shape
    ncols, padding = _columns(n, ncols), 2
    sides = ((math.ceil(n / ncols), h), (ncols, w))  # (cells, pixels per cell) down and across
    factor = max(1, *(math.ceil((min_size - (k + 1) * padding) / (k * s)) for k, s in sides))
    grid = tile(upscale(array, factor), ncols, padding, 1.0)
    if title:
        return save_image_axes(grid, path, title=title)
    grid, _ = _fit(grid, MAX_SIDE)
    return atomic_write(path, lambda tmp: Image.fromarray(grid).save(tmp, format="PNG"))


def _fit(grid: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """``grid`` shrunk (area filter) so its longest side is at most ``max_side``, and the scale."""
    height, width = grid.shape[:2]
    if max(height, width) <= max_side:
        return grid, 1.0
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(grid).resize(size, Image.Resampling.BOX)), scale


def save_rows(
    rows: Sequence[Tensor],
    path: str | Path,
    *,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Stack rows of images ([n_i, C, H, W] each, e.g. one per Markov-chain step) with labels.

    Rows are left-aligned; a shorter row leaves blank cells. Small images are enlarged so each
    cell is at least 48 pixels.
    """
    if not rows:
        raise ValueError("save_rows needs at least one row")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"got {len(row_labels)} row_labels for {len(rows)} rows")
    arrays = [numpy_images(row, f"rows[{i}]") for i, row in enumerate(rows)]
    if len({a.shape[1:] for a in arrays}) != 1:
        raise ValueError(f"all rows need one image shape, got {[a.shape[1:] for a in arrays]}")
    h, w = arrays[0].shape[1:3]
    factor = max(1, math.ceil(_MIN_CELL / min(h, w)))
    ncols, padding = max(len(a) for a in arrays), 2
    blank = np.ones((1, *arrays[0].shape[1:]), np.float32)
    cells = [np.concatenate([a, *[blank] * (ncols - len(a))]) for a in arrays]
    grid = tile(upscale(np.concatenate(cells), factor), ncols, padding, 1.0)
    centres = cell_centres(range(len(rows)), h * factor, padding)
    yticks = (centres, list(row_labels)) if row_labels is not None else None
    return save_image_axes(grid, path, title=title, yticks=yticks)


def save_reconstructions(
    x: Tensor, x_hat: Tensor, path: str | Path, *, max_items: int = 16
) -> Path:
    """Write the first `max_items` inputs `x` above their reconstructions `x_hat`, 16 per pair."""
    if x.shape != x_hat.shape:
        raise ValueError(f"x {tuple(x.shape)} and x_hat {tuple(x_hat.shape)} differ in shape")
    n = min(len(x), max_items)
    rows, labels = [], []
    for start in range(0, n, 16):
        stop = min(start + 16, n)
        rows += [x[start:stop], x_hat[start:stop]]
        labels += ["input", "reconstruction"]
    return save_rows(rows, path, row_labels=labels, title="inputs and reconstructions")
