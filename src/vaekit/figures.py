"""The standard figures of a run: samples, reconstructions, latent map, curves, manifold."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from vaekit import plots
from vaekit.data.base import Dataset
from vaekit.models.base import Autoencoder
from vaekit.runtime import RunDir
from vaekit.samplers import GaussianFitSampler, PriorSampler, Sampler


def default_sampler(model: Autoencoder, dataset: Dataset) -> Sampler:
    """Prior sampling for models trained towards a prior; a Gaussian fit of codes for plain AEs."""
    if model.prior_matched:
        return PriorSampler(model)
    return GaussianFitSampler(model, dataset.train.x)


@torch.no_grad()
def render_run_figures(
    model: Autoencoder,
    dataset: Dataset,
    run: RunDir,
    history: Sequence[dict[str, float]],
    *,
    seed: int = 0,
    max_points: int = 5000,
) -> list[Path]:
    """Write samples, reconstructions, latent and curves PNGs (and the manifold for 2-D z)."""
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    written = []
    sampler = default_sampler(model, dataset)
    samples = sampler.sample(64, generator=generator).cpu()
    written.append(plots.save_image_grid(samples, run.figure("samples"), title="Samples"))
    x = dataset.val.x[:16].to(device)
    written.append(
        plots.save_reconstructions(
            x.cpu(), model.reconstruct(x).cpu(), run.figure("reconstructions")
        )
    )
    val_x = dataset.val.x[:max_points]
    codes = torch.cat([model.encode_mean(b.to(device)).cpu() for b in val_x.split(1000)])
    labels = dataset.val.y[:max_points] if dataset.val.y is not None else None
    written.append(
        plots.save_latent_scatter(codes, labels, run.figure("latent"), title="Validation codes")
    )
    if history:
        written.append(plots.save_curves(history, run.figure("curves")))
    if model.latent_dim == 2:
        written.append(
            plots.save_manifold(model.decode_mean, run.figure("manifold"), device=device)
        )
    return written
