"""Figures from tensors, written as PNGs: images, learning curves, the latent space, vectors."""

from vaekit.plots.common import STYLE, save_figure
from vaekit.plots.curves import Panel, curve_panels, save_curves
from vaekit.plots.images import (
    MAX_SIDE,
    image_grid,
    save_image_grid,
    save_reconstructions,
    save_rows,
)
from vaekit.plots.latent import manifold_axes, save_latent_scatter, save_manifold
from vaekit.plots.vectors import (
    save_marginals,
    save_pairs,
    save_paths,
    save_vector_reconstructions,
)

__all__ = [
    "MAX_SIDE",
    "STYLE",
    "Panel",
    "curve_panels",
    "image_grid",
    "manifold_axes",
    "save_curves",
    "save_figure",
    "save_image_grid",
    "save_latent_scatter",
    "save_manifold",
    "save_marginals",
    "save_pairs",
    "save_paths",
    "save_reconstructions",
    "save_rows",
    "save_vector_reconstructions",
]
