"""Plain networks without probability: MLP and convolutional trunks and decoder nets."""

from vaekit.nn.activations import ACTIVATIONS, make_activation
from vaekit.nn.conv import ConvDecoderNet, ConvTrunk, stage_sizes
from vaekit.nn.mlp import MLPDecoderNet, MLPTrunk

__all__ = [
    "ACTIVATIONS",
    "ConvDecoderNet",
    "ConvTrunk",
    "MLPDecoderNet",
    "MLPTrunk",
    "make_activation",
    "stage_sizes",
]
