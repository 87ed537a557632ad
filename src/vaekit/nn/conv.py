"""DCGAN-style convolutional encoder trunk and decoder, sized from the input shape.

Each stride-2 stage halves the side (4x4 kernels, padding 1) while it is even and above 4:
28 -> 14 -> 7, 32 -> 16 -> 8 -> 4, 64 -> 32 -> 16 -> 8 -> 4. The decoder mirrors the stages with
transposed convolutions, so any channel count and these sizes round-trip exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from vaekit.nn.activations import make_activation

MAX_STAGES = 4


def stage_sizes(side: int) -> list[int]:
    """Spatial sides after each stride-2 stage, starting with the input side."""
    sides = [side]
    while sides[-1] > 4 and sides[-1] % 2 == 0 and len(sides) <= MAX_STAGES:
        sides.append(sides[-1] // 2)
    return sides


def _norm(channels: int, batch_norm: bool) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels)] if batch_norm else []


class ConvTrunk(nn.Module):
    """x [B, C, S, S] -> features [B, F]: stride-2 convs with ``base_channels·2^i`` channels."""

    def __init__(
        self, event_shape: Sequence[int], base_channels: int, activation: str, batch_norm: bool
    ):
        super().__init__()
        c, h, w = event_shape
        if h != w:
            raise ValueError(f"conv networks need square images, got {h}x{w}")
        sides = stage_sizes(h)
        layers: list[nn.Module] = []
        channels = c
        for i in range(len(sides) - 1):
            out = base_channels * 2**i
            # DCGAN: no normalisation on the first layer.
            layers += [nn.Conv2d(channels, out, 4, 2, 1), *_norm(out, batch_norm and i > 0)]
            layers.append(make_activation(activation))
            channels = out
        self.layers = nn.Sequential(*layers, nn.Flatten())
        self.out_features = channels * sides[-1] ** 2

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class ConvDecoderNet(nn.Module):
    """z [B, D] -> raw parameters [B, P·C, S, S]: linear to the smallest map, then up-convs."""

    def __init__(
        self,
        latent_dim: int,
        event_shape: Sequence[int],
        base_channels: int,
        activation: str,
        batch_norm: bool,
        params_per_pixel: int = 1,
    ):
        super().__init__()
        c, h, _ = event_shape
        sides = stage_sizes(h)
        stages = len(sides) - 1
        channels = base_channels * 2 ** max(stages - 1, 0)
        self.start_shape = (channels, sides[-1], sides[-1])
        self.project = nn.Sequential(
            nn.Linear(latent_dim, channels * sides[-1] ** 2), make_activation(activation)
        )
        layers: list[nn.Module] = []
        for i in reversed(range(stages)):
            if i == 0:
                layers.append(nn.ConvTranspose2d(channels, params_per_pixel * c, 4, 2, 1))
            else:
                out = base_channels * 2 ** (i - 1)
                layers += [nn.ConvTranspose2d(channels, out, 4, 2, 1), *_norm(out, batch_norm)]
                layers.append(make_activation(activation))
                channels = out
        if stages == 0:
            layers.append(nn.Conv2d(channels, params_per_pixel * c, 3, 1, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.layers(self.project(z).view(-1, *self.start_shape))
