"""Samplers: the contract and the registry of ways to draw from a trained model."""

from vaekit.samplers.ancestral import GaussianFitSampler, GaussianMixtureSampler, PriorSampler
from vaekit.samplers.base import Sampler
from vaekit.samplers.ex_post import FlowSampler, TwoStageSampler
from vaekit.samplers.imputation import MASKS, impute
from vaekit.samplers.interpolation import PATHS, interpolate, interpolate_images, traversal
from vaekit.samplers.kernels import (
    IMPUTATION_KERNELS,
    ChainState,
    EncodeDecodeKernel,
    MetropolisWithinGibbsKernel,
    PseudoGibbsKernel,
    TransitionKernel,
)
from vaekit.samplers.markov_chain import MarkovChainSampler, Trajectory

SAMPLERS: dict[str, type[Sampler]] = {
    "prior": PriorSampler,
    "gaussian-fit": GaussianFitSampler,
    "gaussian-mixture": GaussianMixtureSampler,
    "flow": FlowSampler,
    "two-stage": TwoStageSampler,
    "markov-chain": MarkovChainSampler,
}

__all__ = [
    "IMPUTATION_KERNELS",
    "MASKS",
    "PATHS",
    "SAMPLERS",
    "ChainState",
    "EncodeDecodeKernel",
    "FlowSampler",
    "GaussianFitSampler",
    "GaussianMixtureSampler",
    "MarkovChainSampler",
    "MetropolisWithinGibbsKernel",
    "PriorSampler",
    "PseudoGibbsKernel",
    "Sampler",
    "Trajectory",
    "TransitionKernel",
    "TwoStageSampler",
    "impute",
    "interpolate",
    "interpolate_images",
    "traversal",
]
