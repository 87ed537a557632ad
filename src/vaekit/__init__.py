"""vaekit: train, sample, evaluate and explain generative autoencoders with PyTorch."""

from vaekit.config import Config, load_config
from vaekit.errors import VaekitError
from vaekit.experiment import train
from vaekit.models import AE, VAE, Autoencoder, Loss
from vaekit.runs import load, load_run
from vaekit.samplers import GaussianFitSampler, PriorSampler

__version__ = "0.1.0"

__all__ = [
    "AE",
    "VAE",
    "Autoencoder",
    "Config",
    "GaussianFitSampler",
    "Loss",
    "PriorSampler",
    "VaekitError",
    "__version__",
    "load",
    "load_config",
    "load_run",
    "train",
]
