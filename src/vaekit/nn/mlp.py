"""Multilayer perceptrons: an encoder trunk that flattens datapoints, a decoder that unflattens."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from torch import Tensor, nn

from vaekit.nn.activations import make_activation


def _stack(sizes: Sequence[int], activation: str) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [nn.Linear(fan_in, fan_out), make_activation(activation)]
    return layers


class MLPTrunk(nn.Module):
    """x [B, C, H, W] or [B, D] -> features [B, hidden[-1]] (Linear + activation per layer)."""

    def __init__(self, event_shape: Sequence[int], hidden: Sequence[int], activation: str):
        super().__init__()
        if not hidden:
            raise ValueError("an MLP trunk needs at least one hidden layer")
        self.out_features = int(hidden[-1])
        self.layers = nn.Sequential(
            nn.Flatten(), *_stack([math.prod(event_shape), *hidden], activation)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class MLPDecoderNet(nn.Module):
    """z [B, latent] -> raw likelihood parameters through ``hidden`` (mirrored order):
    [B, P·C, H, W] for images (C, H, W), [B, P·D] for vectors (D,)."""

    def __init__(
        self,
        latent_dim: int,
        event_shape: Sequence[int],
        hidden: Sequence[int],
        activation: str,
        params_per_pixel: int = 1,
    ):
        super().__init__()
        self.out_shape = (params_per_pixel * int(event_shape[0]), *map(int, event_shape[1:]))
        sizes = [latent_dim, *hidden]
        self.layers = nn.Sequential(
            *_stack(sizes, activation), nn.Linear(sizes[-1], math.prod(self.out_shape))
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.layers(z).view(-1, *self.out_shape)
