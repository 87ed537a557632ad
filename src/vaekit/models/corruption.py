"""Corruption processes C(x̃|x) for denoising autoencoders (an argument of the models)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn


class Corruption(nn.Module, ABC):
    """x -> x̃ ~ C(x̃|x); applied to the encoder input only, the loss scores the clean x."""

    def __init__(self, level: float):
        super().__init__()
        if not level >= 0:
            raise ValueError(f"corruption level must be non-negative, got {level}")
        self.level = float(level)

    @abstractmethod
    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A corrupted copy of x (same shape)."""

    def extra_repr(self) -> str:
        return f"level={self.level}"


class GaussianNoise(Corruption):
    """x̃ = x + level·ε, ε ~ N(0, I); level = 0.5 gives the Markov-chain paper's N(x, 0.25 I)."""

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + self.level * noise


class SaltAndPepper(Corruption):
    """Each pixel independently set to 0 or 1 (equal odds) with probability ``level``."""

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        salt = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) < 0.5
        return torch.where(u < self.level, salt.to(x.dtype), x)


class Masking(Corruption):
    """Each pixel independently set to 0 with probability ``level`` (masking noise)."""

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x * (keep >= self.level).to(x.dtype)


CORRUPTIONS: dict[str, type[Corruption]] = {
    "gaussian": GaussianNoise,
    "salt-and-pepper": SaltAndPepper,
    "masking": Masking,
}
