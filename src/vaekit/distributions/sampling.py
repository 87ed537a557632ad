"""Sampling from torch.distributions with an explicit ``torch.Generator``.

torch.distributions draw from the global RNG; for reproducible, explicit randomness we draw the
base noise from ``generator`` and transform it exactly as ``rsample`` would (Normal, Bernoulli,
Delta). Any other distribution (a user's posterior, say) samples with its own ``rsample`` under
the global RNG seeded from ``generator`` and restored afterwards: still a function of the
generator's state, and the global RNG is left as it was.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from vaekit.distributions.posteriors import Delta


def draw(
    dist: Distribution,
    sample_shape: tuple[int, ...] = (),
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A (reparameterised where possible) sample of shape ``sample_shape + batch + event``.

    With ``generator=None`` this is ``dist.rsample`` (or ``sample``); with a generator, the noise
    comes from it, so two calls with equally seeded generators give identical draws.
    """
    if generator is None:
        return dist.rsample(sample_shape) if dist.has_rsample else dist.sample(sample_shape)
    base = dist.base_dist if isinstance(dist, Independent) else dist
    shape = torch.Size(sample_shape) + dist.batch_shape + dist.event_shape
    if isinstance(base, Normal):
        eps = torch.randn(shape, generator=generator, device=base.loc.device, dtype=base.loc.dtype)
        return base.loc + base.scale * eps
    if isinstance(base, Bernoulli):
        probs = base.probs.expand(shape)
        u = torch.rand(shape, generator=generator, device=probs.device, dtype=probs.dtype)
        return (u < probs).to(probs.dtype)
    if isinstance(base, Delta):
        return dist.rsample(sample_shape)
    return _seeded_draw(dist, sample_shape, generator)


def _seeded_draw(
    dist: Distribution, sample_shape: tuple[int, ...], generator: torch.Generator
) -> Tensor:
    """``dist.rsample`` (or ``sample``) with the global RNG of the generator's device seeded from
    ``generator`` for the call, then restored."""
    seed = int(torch.randint(2**62, (), generator=generator, device=generator.device))
    devices = [generator.device] if generator.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=generator.device.type):
        torch.manual_seed(seed)
        return dist.rsample(sample_shape) if dist.has_rsample else dist.sample(sample_shape)
