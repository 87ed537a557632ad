"""Samplers: the contract and the registry of ways to draw from a trained model."""

from vaekit.samplers.ancestral import GaussianFitSampler, PriorSampler
from vaekit.samplers.base import Sampler

SAMPLERS: dict[str, type[Sampler]] = {
    "prior": PriorSampler,
    "gaussian-fit": GaussianFitSampler,
}

__all__ = ["SAMPLERS", "GaussianFitSampler", "PriorSampler", "Sampler"]
