"""Figures from tensors: image grids, reconstructions, latent scatters, curves and manifolds.

Every writer builds a `matplotlib.figure.Figure` rendered by Agg directly (no pyplot, so no
global figure registry and no backend switch), uses one shared style, creates the parent
directory, writes the PNG atomically (temporary file, then `os.replace`) and returns the path.
Images are `[N, C, H, W]` tensors with C = 1 (grey) or 3 (RGB) and values in [0, 1] (clamped).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image
from torch import Tensor

from vaekit.files import atomic_write

__all__ = [
    "curve_panels",
    "image_grid",
    "manifold_axes",
    "save_curves",
    "save_image_grid",
    "save_latent_scatter",
    "save_manifold",
    "save_reconstructions",
    "save_rows",
]

_DPI = 100
STYLE: dict[Any, Any] = {  # Any keys: matplotlib types them as a Literal of rc names
    "figure.dpi": _DPI,
    "savefig.dpi": _DPI,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "grid.alpha": 0.3,
    "legend.frameon": False,
}
_MIN_CELL = 48  # px: smallest displayed side of one image in labelled figures
_MIN_MANIFOLD = 400  # px: smallest side of the decoded manifold grid
_MARGIN = 240  # px around labelled image axes; cropped again by bbox_inches="tight"
MAX_SIDE = 2800  # px: no PNG is larger on its longest side, whatever the data (grids shrink)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Render with Agg and write; the Figure is never registered with pyplot, so nothing leaks."""
    FigureCanvasAgg(fig)
    return atomic_write(
        path, lambda tmp: fig.savefig(tmp, format="png", bbox_inches="tight", pad_inches=0.1)
    )


def _to_numpy_images(images: Tensor, name: str = "images") -> np.ndarray:
    """[N, C, H, W] tensor in [0, 1] -> float array [N, H, W, C], clamped, NaN as 0."""
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty [N, C, H, W] tensor with C = 1 or 3, "
            f"got shape {tuple(images.shape)}"
        )
    array = images.detach().to("cpu", torch.float32).nan_to_num(0.0).clamp(0.0, 1.0).numpy()
    return array.transpose(0, 2, 3, 1)


def _upscale(images: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of [N, H, W, C] by an integer factor."""
    return images.repeat(factor, axis=1).repeat(factor, axis=2) if factor > 1 else images


def _grid(images: np.ndarray, ncols: int, padding: int, pad_value: float) -> np.ndarray:
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


def _centres(cells: Sequence[int], size: int, padding: int) -> list[float]:
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
    array = _to_numpy_images(images)
    return _grid(array, _columns(len(array), ncols), padding, pad_value)


def _save_image_axes(
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
        fig = Figure(figsize=(fig_w / _DPI, fig_h / _DPI), dpi=_DPI)
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
    array = _to_numpy_images(images)
    n, h, w, _ = array.shape
    ncols, padding = _columns(n, ncols), 2
    sides = ((math.ceil(n / ncols), h), (ncols, w))  # (cells, pixels per cell) down and across
    factor = max(1, *(math.ceil((min_size - (k + 1) * padding) / (k * s)) for k, s in sides))
    grid = _grid(_upscale(array, factor), ncols, padding, 1.0)
    if title:
        return _save_image_axes(grid, path, title=title)
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
    arrays = [_to_numpy_images(row, f"rows[{i}]") for i, row in enumerate(rows)]
    if len({a.shape[1:] for a in arrays}) != 1:
        raise ValueError(f"all rows need one image shape, got {[a.shape[1:] for a in arrays]}")
    h, w = arrays[0].shape[1:3]
    factor = max(1, math.ceil(_MIN_CELL / min(h, w)))
    ncols, padding = max(len(a) for a in arrays), 2
    blank = np.ones((1, *arrays[0].shape[1:]), np.float32)
    cells = [np.concatenate([a, *[blank] * (ncols - len(a))]) for a in arrays]
    grid = _grid(_upscale(np.concatenate(cells), factor), ncols, padding, 1.0)
    centres = _centres(range(len(rows)), h * factor, padding)
    yticks = (centres, list(row_labels)) if row_labels is not None else None
    return _save_image_axes(grid, path, title=title, yticks=yticks)


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


def _discrete_classes(labels: Tensor) -> list[int] | None:
    """The sorted class values when `labels` are integers with at most 10 distinct values."""
    if labels.is_floating_point() or labels.is_complex():
        return None
    classes = sorted(int(v) for v in labels.unique())
    return classes if len(classes) <= 10 else None


def save_latent_scatter(
    z: Tensor, labels: Tensor | None, path: str | Path, *, title: str | None = None
) -> Path:
    """Scatter latent codes `z` [N, D], coloured by `labels` [N] when given.

    D = 1 is spread vertically by jitter (one strip per class), D = 2 is drawn as is, D > 2 is
    projected on its first two principal components. Integer labels with at most 10 values get
    a legend (tab10); any other labels a colorbar.
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
                Line2D([], [], ls="", marker="o", color=palette[rank[c]], label=str(c))
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
            ax.set_yticks(range(len(classes)) if classes else [], [str(c) for c in classes or []])
        else:
            ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title or f"latent codes (N = {n}, D = {d}{', PCA' if d > 2 else ''})")
        ax.grid(True)
        return save_figure(fig, path)


# metric name -> (panel title, y-axis label); other numeric metrics get a plain panel.
_PANELS = {
    "loss": ("objective  recon + KL weight × KL", "nats per datapoint"),
    "neg_elbo": ("negative ELBO  recon + KL", "nats per datapoint"),
    "recon": ("reconstruction  −E[log p(x|z)]", "nats per datapoint"),
    "kl": ("KL(q(z|x) ‖ p(z))", "nats per datapoint"),
    "kl_weight": ("KL weight  beta × warm-up", "weight"),
    "bits_per_dim": ("bits per dimension (negative ELBO)", "bits/dim"),
    "lr": ("learning rate", "lr"),  # log scale when positive
}
# The objective panel when it equals the negative ELBO throughout (beta = 1, no warm-up).
_SAME_OBJECTIVE = ("objective = negative ELBO  recon + KL", "nats per datapoint")
_HIDDEN = {"weighted_kl"}  # objective − recon: the objective panel shows it
_SHOWN_WHEN_NONZERO = {"skipped_steps"}  # a count worth seeing once it is not 0

Series = dict[str, tuple[list[float], list[float]]]  # split -> (epochs, values)


def _with_bits_per_dim(record: Mapping[str, float], num_dims: int) -> dict[str, float]:
    """``record`` with ``split/bits_per_dim`` added where it is missing (rows of older runs
    hold it for validation only): from the negative ELBO, else the reconstruction term."""
    out = dict(record)
    for split in ("train", "val"):
        nll = -out[f"{split}/elbo"] if f"{split}/elbo" in out else out.get(f"{split}/recon")
        if _is_number(nll) and f"{split}/bits_per_dim" not in out:
            out[f"{split}/bits_per_dim"] = nll / (num_dims * math.log(2.0))
    return out


@dataclass(frozen=True)
class Panel:
    """One quantity of the learning curves: its title, y label and {split: (xs, ys)}."""

    name: str
    title: str
    ylabel: str
    series: Series


def curve_panels(
    records: Sequence[Mapping[str, float]], *, num_dims: int | None = None
) -> tuple[list[Panel], bool]:
    """The panels ``save_curves`` draws, in order, and whether the x axis is the epoch.

    ``elbo`` is drawn as ``neg_elbo`` (the same sense as the objective ``loss``); the objective
    gets no panel of its own where it equals the negative ELBO throughout (beta = 1, no
    warm-up); a quantity that takes one value over two or more records is left out
    (``skipped_steps`` is drawn once it is not 0).
    """
    if num_dims is not None:
        records = [_with_bits_per_dim(record, num_dims) for record in records]
    series: dict[str, Series] = {}
    has_epoch = bool(records) and all(_is_number(record.get("epoch")) for record in records)
    for index, record in enumerate(records):
        epoch = record.get("epoch")
        x = float(epoch) if has_epoch and _is_number(epoch) else float(index + 1)
        for key, value in record.items():
            if key in ("epoch", "step") or not _is_number(value):
                continue
            split, _, name = key.rpartition("/")
            if name in _HIDDEN:
                continue
            if name == "elbo":
                name, value = "neg_elbo", -value
            xs, ys = series.setdefault(name, {}).setdefault(split, ([], []))
            xs.append(x)
            ys.append(float(value))
    if not series:
        raise ValueError("save_curves found no numeric metrics in the records")
    titles = dict(_PANELS)
    if "loss" in series and "neg_elbo" in series and _same(series["loss"], series["neg_elbo"]):
        del series["loss"]
        titles["neg_elbo"] = _SAME_OBJECTIVE
    for name in list(series):
        values = [y for _, ys in series[name].values() for y in ys]
        if name in _SHOWN_WHEN_NONZERO:
            constant = all(y == 0 for y in values)
        else:
            constant = len(values) > len(series[name]) and len(set(values)) == 1
        if constant:
            del series[name]
    names = [k for k in _PANELS if k in series] + sorted(k for k in series if k not in _PANELS)
    panels = [Panel(name, *titles.get(name, (name, name)), series[name]) for name in names]
    return panels, has_epoch


def _same(a: Series, b: Series) -> bool:
    """Whether two quantities hold the same values for the same splits and epochs."""
    if a.keys() != b.keys():
        return False
    return all(
        a[split][0] == b[split][0] and np.allclose(a[split][1], b[split][1], rtol=1e-6, atol=1e-6)
        for split in a
    )


def save_curves(
    records: Sequence[Mapping[str, float]], path: str | Path, *, num_dims: int | None = None
) -> Path:
    """Plot epoch rows of metrics (`train/loss`, `val/kl`, `lr`, ...) as one panel per quantity.

    Keys `split/name` share the panel `name` (train in blue, val in orange); non-numeric values
    are ignored; the x axis is `epoch` when present, else the record number. `loss` is the
    objective the optimiser minimised (recon + KL weight × KL for a VAE), `elbo` is drawn as
    the negative ELBO, and constant quantities get no panel (``curve_panels``). ``num_dims``
    (dimensions of one datapoint) fills in bits per dimension where records lack it.
    """
    panels, has_epoch = curve_panels(records, num_dims=num_dims)
    if not panels:
        raise ValueError("save_curves found only constant metrics in the records")
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    colours = {"train": "C0", "val": "C1"}
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, panel in zip(axes, panels, strict=False):
            for i, (split, (xs, ys)) in enumerate(sorted(panel.series.items())):
                marker = "o" if len(xs) <= 20 else None
                colour = colours.get(split, f"C{i + 2}")
                ax.plot(xs, ys, marker=marker, ms=3, color=colour, label=split or panel.name)
            values = [y for _, ys in panel.series.values() for y in ys]
            if panel.name == "lr" and all(y > 0 for y in values):
                ax.set_yscale("log")
            ax.set_title(panel.title)
            ax.set_xlabel("epoch" if has_epoch else "record")
            ax.set_ylabel(panel.ylabel)
            ax.grid(True)
            if any(panel.series):  # a lone unsplit series such as `lr` needs no legend
                ax.legend()
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
        return save_figure(fig, path)


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


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
    array = _to_numpy_images(images)
    h, w = array.shape[1:3]
    factor = max(1, math.ceil(_MIN_MANIFOLD / (grid_size * min(h, w))))
    grid = _grid(_upscale(array, factor), grid_size, 0, 1.0)
    shown = sorted({round(i * (grid_size - 1) / 4) for i in range(5)})  # <= 5 ticks per axis
    x_values = z1_values.detach().cpu().double().numpy()
    y_values = z2_values.detach().cpu().double().numpy()
    xticks = (_centres(shown, w * factor, 0), [f"{x_values[i]:.2f}" for i in shown])
    yticks = (_centres(shown, h * factor, 0), [f"{y_values[-1 - i]:.2f}" for i in shown])
    spans = "the codes' range" if codes is not None else "Normal quantiles"
    title = f"decoded means over a {grid_size}×{grid_size} grid spanning {spans}"
    return _save_image_axes(
        grid, path, title=title, xticks=xticks, yticks=yticks, xlabel="z1", ylabel="z2"
    )
