"""vaekit: train, sample, evaluate and explain generative autoencoders with PyTorch.

Bring your own networks and data: ``VAE(encoder, decoder, prior)`` takes any modules that
return ``torch.distributions`` objects, ``fit(model, data)`` trains it on tensors, arrays, torch
Datasets or DataLoaders, and ``save`` / ``load`` keep it as safetensors plus JSON. Recipes run
through ``train(load_config(path))`` or the ``vaekit`` command.
"""

from vaekit.build import build_model
from vaekit.config import Config, load_config
from vaekit.distributions import (
    BernoulliLikelihood,
    ContinuousBernoulliLikelihood,
    DeltaHead,
    DiscretizedLogisticLikelihood,
    DiscretizedLogisticMixture,
    FixedGaussianLikelihood,
    GaussianHead,
    IAFHead,
    IAFPosterior,
    LearnedGaussianLikelihood,
    MixturePrior,
    StandardNormalPrior,
    VampPrior,
)
from vaekit.errors import VaekitError
from vaekit.experiment import train
from vaekit.fit import fit
from vaekit.models import (
    AAE,
    AE,
    VAE,
    Autoencoder,
    Decoder,
    Encoder,
    LatentDiscriminator,
    Loss,
    NetworkDecoder,
    Prior,
    TrunkEncoder,
    data_moments,
    init_output_bias,
)
from vaekit.nn import ConvDecoderNet, ConvTrunk, MLPDecoderNet, MLPTrunk
from vaekit.runs import load, load_run, save
from vaekit.samplers import (
    FlowSampler,
    GaussianFitSampler,
    GaussianMixtureSampler,
    MarkovChainSampler,
    PriorSampler,
    TwoStageSampler,
)
from vaekit.training.stop import StopTraining
from vaekit.training.trainer import Trainer

__version__ = "0.1.0"

__all__ = [
    "AAE",
    "AE",
    "VAE",
    "Autoencoder",
    "BernoulliLikelihood",
    "Config",
    "ContinuousBernoulliLikelihood",
    "ConvDecoderNet",
    "ConvTrunk",
    "Decoder",
    "DeltaHead",
    "DiscretizedLogisticLikelihood",
    "DiscretizedLogisticMixture",
    "Encoder",
    "FixedGaussianLikelihood",
    "FlowSampler",
    "GaussianFitSampler",
    "GaussianHead",
    "GaussianMixtureSampler",
    "IAFHead",
    "IAFPosterior",
    "LatentDiscriminator",
    "LearnedGaussianLikelihood",
    "Loss",
    "MLPDecoderNet",
    "MLPTrunk",
    "MarkovChainSampler",
    "MixturePrior",
    "NetworkDecoder",
    "Prior",
    "PriorSampler",
    "StandardNormalPrior",
    "StopTraining",
    "Trainer",
    "TrunkEncoder",
    "TwoStageSampler",
    "VaekitError",
    "VampPrior",
    "__version__",
    "build_model",
    "data_moments",
    "fit",
    "init_output_bias",
    "load",
    "load_config",
    "load_run",
    "save",
    "train",
]
