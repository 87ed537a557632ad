"""Latent paths: linear and spherical interpolation, chain refinement, single-unit traversals.

Spherical interpolation (Shoemake 1985; White 2016, "Sampling generative networks") keeps the
norm of the path near that of typical N(0, I) draws, where linear paths cut through the
low-density centre of a high-dimensional Gaussian. Creswell, Arulkumaran & Bharath (2016) then
refine every point of a path with a few encode-decode chain steps, pulling it towards the
aggregate posterior.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from vaekit.models.base import Autoencoder
from vaekit.samplers.kernels import ChainState, EncodeDecodeKernel, TransitionKernel

Path = Callable[[Tensor, Tensor, int], Tensor]


def _weights(num_points: int, like: Tensor) -> Tensor:
    if num_points < 2:
        raise ValueError(f"a path needs at least 2 points, got {num_points}")
    return torch.linspace(0.0, 1.0, num_points, dtype=like.dtype, device=like.device)


def lerp(z0: Tensor, z1: Tensor, num_points: int) -> Tensor:
    """Points (1 - t) z0 + t z1 for t in linspace(0, 1): [num_points, *z0.shape]."""
    t = _weights(num_points, z0).view(-1, *[1] * z0.dim())  # [T, 1, ..., 1]
    return (1 - t) * z0 + t * z1


def slerp(z0: Tensor, z1: Tensor, num_points: int, *, eps: float = 1e-7) -> Tensor:
    """Spherical interpolation along the last dimension: [num_points, *z0.shape].

    sin((1 - t)Ω)/sin Ω · z0 + sin(tΩ)/sin Ω · z1 with Ω the angle between z0 and z1; nearly
    parallel pairs (sin Ω < eps) fall back to the linear path, the limit of the formula.
    """
    t = _weights(num_points, z0).view(-1, *[1] * z0.dim())  # [T, 1, ..., 1]
    cos = torch.nn.functional.cosine_similarity(z0, z1, dim=-1, eps=1e-12).clamp(-1.0, 1.0)
    omega = torch.arccos(cos).unsqueeze(-1)  # [..., 1]
    sin = torch.sin(omega)
    safe = sin.clamp_min(eps)
    spherical = (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / safe
    return torch.where(sin > eps, spherical, lerp(z0, z1, num_points))


PATHS: dict[str, Path] = {"lerp": lerp, "slerp": slerp}


@torch.no_grad()
def refine(
    kernel: TransitionKernel,
    z: Tensor,
    num_steps: int,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Each latent z [N, D] after ``num_steps`` independent chain steps of ``kernel``."""
    state = ChainState(z=z, x=kernel.model.decode_mean(z))
    for _ in range(num_steps):
        state = kernel.step(state, generator=generator)
    return state.z


@torch.no_grad()
def interpolate(
    model: Autoencoder,
    z0: Tensor,
    z1: Tensor,
    *,
    method: str = "slerp",
    num_points: int = 8,
    chain_steps: int = 0,
    kernel: TransitionKernel | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Latent paths [num_points, B, D] from z0 [B, D] to z1, each point refined by chain steps.

    ``kernel`` defaults to the encode-decode chain with decoder means (the paper's figures).
    """
    if method not in PATHS:
        raise ValueError(f"unknown interpolation {method!r}; choose one of: {', '.join(PATHS)}")
    if chain_steps < 0:
        raise ValueError(f"chain_steps must be non-negative, got {chain_steps}")
    path = PATHS[method](z0, z1, num_points)  # [T, B, D]
    if chain_steps == 0:
        return path
    kernel = kernel if kernel is not None else EncodeDecodeKernel(model, decode="mean")
    flat = refine(kernel, path.reshape(-1, path.shape[-1]), chain_steps, generator=generator)
    return flat.view(path.shape)


@torch.no_grad()
def interpolate_images(
    model: Autoencoder,
    x0: Tensor,
    x1: Tensor,
    *,
    method: str = "slerp",
    num_points: int = 8,
    chain_steps: int = 0,
    kernel: TransitionKernel | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``interpolate`` between the encoder means of images x0 and x1 [B, C, H, W]."""
    z0, z1 = model.encode_mean(x0), model.encode_mean(x1)
    return interpolate(
        model,
        z0,
        z1,
        method=method,
        num_points=num_points,
        chain_steps=chain_steps,
        kernel=kernel,
        generator=generator,
    )


def traversal(z: Tensor, dim: int, values: Tensor) -> Tensor:
    """Copies of z [B, D] with unit ``dim`` set to each of ``values`` [T]: [T, B, D]."""
    if not 0 <= dim < z.shape[-1]:
        raise ValueError(f"dim must lie in 0..{z.shape[-1] - 1}, got {dim}")
    path = z.unsqueeze(0).repeat(len(values), *[1] * z.dim())
    path[..., dim] = values.to(z).view(-1, *[1] * (z.dim() - 1))
    return path
