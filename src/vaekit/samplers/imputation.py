"""Missing-pixel imputation: masks of missing pixels and a runner over the imputation kernels.

A mask is a bool tensor [N, C, H, W] (images) or [N, D] (vectors), True where a value is
missing; a pixel is missing in every channel at once. For vectors, "center" and "left-half"
hide the middle and the first half of the features. The runner starts each chain at
z_0 ~ p(z) with the missing values drawn from p(x|z_0) and iterates a kernel of
``IMPUTATION_KERNELS``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from vaekit.distributions.sampling import draw
from vaekit.models.base import Autoencoder
from vaekit.samplers.kernels import IMPUTATION_KERNELS, ChainState
from vaekit.samplers.markov_chain import MarkovChainSampler, Trajectory

# (num, (C, H, W) or (D,), generator) -> missing [num, *shape]
MaskMaker = Callable[[int, tuple[int, ...], torch.Generator | None], Tensor]


def _broadcast(pixels: Tensor, num: int, shape: tuple[int, ...]) -> Tensor:
    """A [H, W] or [N, H, W] pixel mask expanded to [num, C, H, W]; [D] or [N, D] to [num, D]."""
    if len(shape) == 1:
        return pixels.expand(num, *shape).clone()
    return pixels.expand(num, 1, *shape[1:]).expand(num, *shape).clone()


def center_mask(
    num: int, shape: tuple[int, ...], generator: torch.Generator | None = None
) -> Tensor:
    """The central square of half the image side is missing (inpainting); for vectors, the
    middle half of the features."""
    if len(shape) == 1:
        features = torch.zeros(shape, dtype=torch.bool)
        features[shape[0] // 4 : shape[0] // 4 + max(1, shape[0] // 2)] = True
        return _broadcast(features, num, shape)
    _, h, w = shape
    pixels = torch.zeros(h, w, dtype=torch.bool)
    pixels[h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = True
    return _broadcast(pixels, num, shape)


def left_half_mask(
    num: int, shape: tuple[int, ...], generator: torch.Generator | None = None
) -> Tensor:
    """The left half of every image is missing; for vectors, the first half of the features."""
    if len(shape) == 1:
        features = torch.zeros(shape, dtype=torch.bool)
        features[: max(1, shape[0] // 2)] = True
        return _broadcast(features, num, shape)
    _, h, w = shape
    pixels = torch.zeros(h, w, dtype=torch.bool)
    pixels[:, : w // 2] = True
    return _broadcast(pixels, num, shape)


def random_mask(
    num: int,
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    *,
    fraction: float = 0.5,
) -> Tensor:
    """Each pixel (or feature) independently missing with probability ``fraction`` (different
    per datapoint)."""
    if len(shape) == 1:
        return torch.rand(num, *shape, generator=generator) < fraction
    _, h, w = shape
    pixels = torch.rand(num, 1, h, w, generator=generator) < fraction
    return _broadcast(pixels, num, shape)


MASKS: dict[str, MaskMaker] = {
    "center": center_mask,
    "random": random_mask,
    "left-half": left_half_mask,
}


@torch.no_grad()
def initial_imputation(
    model: Autoencoder,
    x: Tensor,
    missing: Tensor,
    *,
    generator: torch.Generator | None = None,
) -> ChainState:
    """z_0 ~ p(z) and x with its missing pixels drawn from p(x|z_0)."""
    z = draw(model.prior(), (len(x),), generator=generator)
    guess = draw(model.decoder(z), generator=generator)
    return ChainState(z=z, x=torch.where(missing, guess, x))


@torch.no_grad()
def impute(
    model: Autoencoder,
    x: Tensor,
    missing: Tensor,
    *,
    method: str = "mwg",
    num_steps: int = 100,
    record: Iterable[int] | None = None,
    decode: str = "sample",
    generator: torch.Generator | None = None,
) -> Trajectory:
    """Run an imputation chain for images x [N, C, H, W] whose ``missing`` pixels are unknown.

    ``method`` is "pseudo-gibbs" or "mwg" (Metropolis-within-Gibbs, exact for the model);
    each recorded state's ``x`` is the completed image, observed pixels unchanged. ``decode``
    "sample" is the chain of the theory; "mean" fills in decoder means (smoother figures,
    not a sampler of the conditional).
    """
    if method not in IMPUTATION_KERNELS:
        valid = ", ".join(IMPUTATION_KERNELS)
        raise ValueError(f"unknown imputation method {method!r}; choose one of: {valid}")
    missing = missing.to(x.device).bool()
    if missing.shape != x.shape:
        raise ValueError(f"mask {tuple(missing.shape)} and x {tuple(x.shape)} differ in shape")
    kernel = IMPUTATION_KERNELS[method](model, missing, decode=decode)
    chain = MarkovChainSampler(model, kernel=kernel, decode=decode)
    start = initial_imputation(model, x, missing, generator=generator)
    return chain.run(start, num_steps, record=record, generator=generator)
