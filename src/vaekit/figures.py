"""The standard figures of a run: samples, reconstructions, latent map, curves, manifold; for
feature vectors, marginals and a pair plot in place of image grids (``vector_plots``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from vaekit import plots, vector_plots
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
    """Write samples, reconstructions, latent and curves PNGs (and the manifold for 2-D z of
    images; the pair plot for vectors)."""
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    sampler = default_sampler(model, dataset)
    if dataset.is_images:
        written = _image_figures(model, dataset, run, sampler, generator)
    else:
        written = _vector_figures(model, dataset, run, sampler, generator, max_points)
    val_x = dataset.val.x[:max_points]
    codes = torch.cat([model.encode_mean(b.to(device)).cpu() for b in val_x.split(1000)])
    labels = dataset.val.y[:max_points] if dataset.val.y is not None else None
    written.append(
        plots.save_latent_scatter(codes, labels, run.figure("latent"), title="Validation codes")
    )
    if history:
        num_dims = math.prod(dataset.event_shape)
        written.append(plots.save_curves(history, run.figure("curves"), num_dims=num_dims))
    if model.latent_dim == 2 and dataset.is_images:
        # the grid spans the codes latent.png shows, so no cluster there falls outside it
        written.append(
            plots.save_manifold(
                model.decode_mean, run.figure("manifold"), codes=codes, device=device
            )
        )
    return written


def _image_figures(
    model: Autoencoder,
    dataset: Dataset,
    run: RunDir,
    sampler: Sampler,
    generator: torch.Generator,
) -> list[Path]:
    device = next(model.parameters()).device
    samples = sampler.sample(64, generator=generator).cpu()
    x = dataset.val.x[:16].to(device)
    return [
        plots.save_image_grid(samples, run.figure("samples"), title="Samples"),
        plots.save_reconstructions(
            x.cpu(), model.reconstruct(x).cpu(), run.figure("reconstructions")
        ),
    ]


def _vector_figures(
    model: Autoencoder,
    dataset: Dataset,
    run: RunDir,
    sampler: Sampler,
    generator: torch.Generator,
    max_points: int,
) -> list[Path]:
    """Marginals and a pair plot of training against generated vectors, and reconstructions of
    validation vectors, in the data's own units."""
    device = next(model.parameters()).device
    real = dataset.train.x[:max_points]
    samples = sampler.sample(len(real), generator=generator).cpu()
    val = dataset.val.x[:max_points]
    recon = torch.cat([model.reconstruct(b.to(device)).cpu() for b in val.split(1000)])
    if dataset.standardization is not None:
        real, samples, val, recon = map(dataset.standardization.invert, (real, samples, val, recon))
    names = dataset.feature_names or None
    return [
        vector_plots.save_marginals(real, samples, run.figure("samples"), names=names),
        vector_plots.save_pairs(real, samples, run.figure("pairs"), names=names),
        vector_plots.save_vector_reconstructions(
            val, recon, run.figure("reconstructions"), names=names
        ),
    ]
