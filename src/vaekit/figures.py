"""The standard figures of a run: samples, reconstructions, latent map, curves, manifold; for
feature vectors, marginals and a pair plot in place of image grids (``plots.vectors``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import torch

from vaekit import plots
from vaekit.data.base import Dataset
from vaekit.models.base import Autoencoder
from vaekit.runs import class_label
from vaekit.runtime import RunDir
from vaekit.samplers import GaussianFitSampler, PriorSampler, Sampler


def default_sampler(model: Autoencoder, dataset: Dataset) -> Sampler:
    """Prior sampling for models trained towards a prior; a Gaussian fit of codes for plain AEs
    (a conditional one encodes the training data with their labels)."""
    if model.prior_matched:
        return PriorSampler(model)
    return GaussianFitSampler(model, dataset.train.x, labels=dataset.train.y)


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
    labels = dataset.val.y[:max_points] if dataset.val.y is not None else None
    codes = torch.cat(
        [
            _encode(model, x, y, device)
            for x, y in zip(val_x.split(1000), _split(labels, 1000, len(val_x)), strict=True)
        ]
    )
    written.append(
        plots.save_latent_scatter(
            codes,
            labels,
            run.figure("latent"),
            title="Validation codes",
            class_names=dataset.class_names,
        )
    )
    if history:
        num_dims = math.prod(dataset.event_shape)
        written.append(plots.save_curves(history, run.figure("curves"), num_dims=num_dims))
    if model.latent_dim == 2 and dataset.is_images and model.condition is None:
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
    x = dataset.val.x[:16].to(device)
    y = None if dataset.val.y is None else dataset.val.y[:16]
    condition = model.condition
    if condition is None:
        samples = sampler.sample(64, generator=generator).cpu()
        grid = plots.save_image_grid(samples, run.figure("samples"), title="Samples")
    else:  # one row of 8 per class
        rows = torch.arange(condition.dim).repeat_interleave(8).to(device)
        with model.given(rows):
            samples = sampler.sample(len(rows), generator=generator).cpu()
        names = dataset.class_names
        labels = [class_label(k, names) for k in range(condition.dim)]
        grid = plots.save_rows(
            list(samples.split(8)), run.figure("samples"), row_labels=labels, title="Samples"
        )
    with _given(model, y):
        recon = model.reconstruct(x).cpu()
    return [grid, plots.save_reconstructions(x.cpu(), recon, run.figure("reconstructions"))]


def _given(model: Autoencoder, y: torch.Tensor | None) -> AbstractContextManager[None]:
    """``model.given(y)`` for a conditional model, a no-op block otherwise."""
    return model.given(y if model.condition is not None else None)


def _split(y: torch.Tensor | None, size: int, total: int) -> Sequence[torch.Tensor | None]:
    """``y.split(size)``, or as many Nones as ``total`` rows make batches."""
    return [None] * math.ceil(total / size) if y is None else y.split(size)


def _encode(
    model: Autoencoder, x: torch.Tensor, y: torch.Tensor | None, device: torch.device
) -> torch.Tensor:
    with _given(model, y):
        return model.encode_mean(x.to(device)).cpu()


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
    real_y = None if dataset.train.y is None else dataset.train.y[:max_points]
    with _given(model, real_y):  # a conditional model draws the real vectors' class mix
        samples = sampler.sample(len(real), generator=generator).cpu()
    val = dataset.val.x[:max_points]
    val_y = None if dataset.val.y is None else dataset.val.y[:max_points]
    recon = torch.cat(
        [
            _reconstruct(model, x, y, device)
            for x, y in zip(val.split(1000), _split(val_y, 1000, len(val)), strict=True)
        ]
    )
    if dataset.standardization is not None:
        real, samples, val, recon = map(dataset.standardization.invert, (real, samples, val, recon))
    names = dataset.feature_names or None
    return [
        plots.save_marginals(real, samples, run.figure("samples"), names=names),
        plots.save_pairs(real, samples, run.figure("pairs"), names=names),
        plots.save_vector_reconstructions(val, recon, run.figure("reconstructions"), names=names),
    ]


def _reconstruct(
    model: Autoencoder, x: torch.Tensor, y: torch.Tensor | None, device: torch.device
) -> torch.Tensor:
    with _given(model, y):
        return model.reconstruct(x.to(device)).cpu()
