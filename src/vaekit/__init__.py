"""vaekit: train, sample, evaluate and explain generative autoencoders with PyTorch."""

from vaekit.config import Config, load_config
from vaekit.errors import VaekitError
from vaekit.experiment import train
from vaekit.models import AAE, AE, VAE, Autoencoder, Loss
from vaekit.runs import load, load_run
from vaekit.samplers import (
    GaussianFitSampler,
    GaussianMixtureSampler,
    MarkovChainSampler,
    PriorSampler,
)

__version__ = "0.1.0"

__all__ = [
    "AAE",
    "AE",
    "VAE",
    "Autoencoder",
    "Config",
    "GaussianFitSampler",
    "GaussianMixtureSampler",
    "Loss",
    "MarkovChainSampler",
    "PriorSampler",
    "VaekitError",
    "__version__",
    "load",
    "load_config",
    "load_run",
    "train",
]
