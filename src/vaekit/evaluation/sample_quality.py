"""Sample quality on features: FID, KID, and precision/recall (k-NN manifolds).

The functions take feature matrices (or data plus ``Features``), so samples from any sampler,
including Markov chains, can be scored. Images are embedded by a conv extractor vaekit trains
itself, vectors by standardising their raw columns (``features.py``). FID (Heusel et al. 2017)
is the Fréchet distance of Gaussians fitted to the features; KID (Bińkowski et al. 2018) the
unbiased MMD² with the cubic polynomial kernel, averaged over subsets; precision and recall
follow Kynkäänniemi et al. 2019 with k = 3. Every number is keyed by the features' hash:
"fid-<hash>", never Inception FID.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from vaekit.evaluation.context import EvaluationContext, MetricResult, NotApplicable
from vaekit.evaluation.extractor import FeatureExtractor
from vaekit.evaluation.features import Features
from vaekit.models.conditional import labels_for
from vaekit.samplers.base import Sampler

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
PR_NEIGHBOURS = 3  # Kynkäänniemi et al. 2019


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """|mu1 - mu2|² + tr(cov1 + cov2 - 2 (cov1 cov2)^½), the squared W2 between two Gaussians."""
    a, b = cov1.double().numpy(), cov2.double().numpy()
    with warnings.catch_warnings():  # singular covariances (few points) are handled below
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(a @ b)
        if not np.isfinite(covmean).all():  # as pytorch-fid: offset both diagonals
            offset = np.eye(len(a)) * 1e-6
            covmean = scipy.linalg.sqrtm((a + offset) @ (b + offset))
    covmean = np.real(covmean)
    diff = (mu1 - mu2).double().numpy()
    return float(diff @ diff + np.trace(a) + np.trace(b) - 2 * np.trace(covmean))


def gaussian_moments(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean [F] and unbiased covariance [F, F] of features [N, F]."""
    features = features.double()
    return features.mean(0), torch.cov(features.T).reshape(features.shape[1], -1)


def fid(real: Tensor, fake: Tensor) -> float:
    """Fréchet distance between Gaussian fits of two feature sets [N, F], [M, F]."""
    return frechet_distance(*gaussian_moments(real), *gaussian_moments(fake))


def kid(
    real: Tensor,
    fake: Tensor,
    *,
    num_subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """Kernel inception distance: mean and std over subsets of the unbiased MMD² with
    k(a, b) = (aᵀb / F + 1)³, as in Bińkowski et al. 2018."""
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError("KID needs at least two real and two generated points")
    dim = real.shape[1]
    values = []
    for _ in range(num_subsets):
        x = real[torch.randperm(len(real), generator=generator)[:size]].double()
        y = fake[torch.randperm(len(fake), generator=generator)[:size]].double()
        k_xx = (x @ x.T / dim + 1) ** 3
        k_yy = (y @ y.T / dim + 1) ** 3
        k_xy = (x @ y.T / dim + 1) ** 3
        off = size * (size - 1)
        mmd2 = (k_xx.sum() - k_xx.trace()) / off + (k_yy.sum() - k_yy.trace()) / off
        values.append(float(mmd2 - 2 * k_xy.mean()))
    return float(np.mean(values)), float(np.std(values))


def _kth_neighbour_radius(points: Tensor, k: int, batch_size: int = 2000) -> Tensor:
    """Distance from each point [N, F] to its k-th nearest other point [N]."""
    radii = []
    for block in points.split(batch_size):
        distances = torch.cdist(block, points)  # [b, N], includes the point itself at 0
        radii.append(distances.topk(k + 1, dim=1, largest=False).values[:, -1])
    return torch.cat(radii)


def _fraction_inside(
    queries: Tensor, centres: Tensor, radii: Tensor, batch_size: int = 2000
) -> float:
    """Fraction of queries inside at least one ball (centre, radius)."""
    inside = 0
    for block in queries.split(batch_size):
        inside += int((torch.cdist(block, centres) <= radii).any(1).sum())
    return inside / len(queries)


def precision_recall(real: Tensor, fake: Tensor, *, k: int = PR_NEIGHBOURS) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    Precision: fraction of generated features inside the real manifold (the union of balls
    around real points reaching their k-th nearest real neighbour); recall: fraction of real
    features inside the generated manifold, built the same way.
    """
    real, fake = real.float(), fake.float()
    precision = _fraction_inside(fake, real, _kth_neighbour_radius(real, k))
    recall = _fraction_inside(real, fake, _kth_neighbour_radius(fake, k))
    return precision, recall


def feature_scores(
    real: Tensor, fake: Tensor, name: str, *, generator: torch.Generator | None = None
) -> MetricResult:
    """FID, KID and precision/recall between feature sets [N, F] and [M, F], keyed by ``name``."""
    kid_mean, kid_std = kid(real, fake, generator=generator)
    precision, recall = precision_recall(real, fake)
    return {
        f"fid-{name}": fid(real, fake),
        f"kid-{name}": kid_mean,
        f"kid-{name}_std": kid_std,
        "precision": precision,
        "recall": recall,
        "num_real": len(real),
        "num_samples": len(fake),
    }


def sample_quality(
    extractor: Features,
    real: Tensor,
    samples: Tensor,
    *,
    generator: torch.Generator | None = None,
) -> MetricResult:
    """FID, KID and precision/recall of ``samples`` [M, ...] against ``real`` [N, ...].

    Keys carry the features' hash, e.g. ``fid-<hash>``; any sampler's output can be scored.
    """
    return feature_scores(
        extractor.embed(real), extractor.embed(samples), extractor.hash, generator=generator
    )


def uniform_noise(real: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Noise shaped like ``real``: uniform in [0, 1] for images [N, C, H, W] (the pixel range),
    uniform in each feature's observed [min, max] for vectors [N, D] (``noise_range``)."""
    noise = torch.rand(real.shape, generator=generator, dtype=real.dtype)
    if real.ndim == 4:
        return noise
    low, high = real.amin(0), real.amax(0)  # [D]
    return low + (high - low) * noise


def noise_range(real: Tensor) -> str:
    """Where ``uniform_noise`` draws from, in words, for the report."""
    return "uniform in [0, 1]" if real.ndim == 4 else "uniform in each feature's range"


def sanity_references(
    extractor: Features,
    real: Tensor,
    real_features: Tensor,
    *,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """The FID and KID scale: two random halves of ``real`` against each other (how close two
    sets of real data are; contiguous halves of an ordered split would overstate it), and
    ``real`` against ``uniform_noise`` (how far data without structure is)."""
    order = torch.randperm(len(real), generator=generator)
    half = len(real) // 2
    noise_features = extractor.embed(uniform_noise(real, generator=generator))
    first, second = real_features[order[:half]], real_features[order[half:]]
    return {
        "fid_half_vs_half": fid(first, second),
        "fid_noise_vs_real": fid(real_features, noise_features),
        "kid_half_vs_half": kid(first, second, generator=generator)[0],
        "kid_noise_vs_real": kid(real_features, noise_features, generator=generator)[0],
    }


def sample_quality_metric(ctx: EvaluationContext) -> MetricResult:
    """FID/KID/precision/recall of ``ctx.num_samples`` samples from the default sampler, on
    ``ctx.extractor``'s features (trained conv features for images, standardised raw features
    for vectors)."""
    from vaekit.figures import default_sampler

    extractor = ctx.extractor
    real = getattr(ctx.grey, ctx.split).x
    sampler = default_sampler(ctx.model, ctx.dataset)
    samples, labels = draw_samples(ctx, sampler, ctx.generator(4), "sample-quality, sampling")
    if samples.shape[1:] != real.shape[1:]:
        raise NotApplicable(f"samples {tuple(samples.shape[1:])} differ from data shape")
    standardization = ctx.dataset.standardization
    if standardization is not None:  # features see the data's own units, whatever the run's
        real, samples = standardization.invert(real), standardization.invert(samples)
    reference_generator = torch.Generator().manual_seed(ctx.seed)
    real_features = extractor.embed(real)
    result = feature_scores(
        real_features, extractor.embed(samples), extractor.hash, generator=reference_generator
    )
    result["sampler"] = type(sampler).__name__
    if (
        labels is not None
        and isinstance(extractor, FeatureExtractor)
        and extractor.spec["objective"] == "classifier"
    ):
        # the share of class-conditional samples the extractor assigns to their own class
        result["conditional_accuracy"] = extractor.accuracy(samples, labels)
    result["reference"] = {
        **sanity_references(extractor, real, real_features, generator=reference_generator),
        "noise": noise_range(real),
    }
    result["extractor"] = extractor.describe()
    return result


def draw_samples(
    ctx: EvaluationContext, sampler: Sampler, generator: torch.Generator, what: str
) -> tuple[Tensor, Tensor | None]:
    """``ctx.num_samples`` samples [N, ...] on the CPU, in chunks of 1,000, and for a
    conditional model the class each was drawn for [N]: the evaluated split's labels in turn,
    so the samples have the data's class mix (None for other models)."""
    labels = labels_for(ctx.model, ctx.data.y)
    if labels is not None:
        labels = labels.repeat(math.ceil(ctx.num_samples / len(labels)))[: ctx.num_samples]
    chunks = torch.arange(ctx.num_samples).split(1000)
    parts = []
    for chunk in ctx.progress.track(chunks, len(chunks), what):
        with ctx.model.given(None if labels is None else labels[chunk].to(ctx.device)):
            parts.append(sampler.sample(len(chunk), generator=generator).cpu())
    return torch.cat(parts), labels
