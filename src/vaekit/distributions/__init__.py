"""Probability objects: posteriors q(z|x), likelihoods p(x|z), priors p(z), seeded sampling."""

from vaekit.distributions.discretized_logistic import DiscretizedLogisticMixture
from vaekit.distributions.gaussian_mixture import DiagonalGaussianMixture
from vaekit.distributions.hierarchical import (
    ConditionalGaussian,
    HierarchicalLatent,
    LowerLayer,
    TwoLayerEncoder,
    TwoLayerPrior,
)
from vaekit.distributions.likelihoods import (
    LIKELIHOODS,
    BernoulliLikelihood,
    ContinuousBernoulliLikelihood,
    DiscretizedLogisticLikelihood,
    FixedGaussianLikelihood,
    LearnedGaussianLikelihood,
    Likelihood,
    bits_per_dim,
)
from vaekit.distributions.posteriors import (
    POSTERIORS,
    Delta,
    DeltaHead,
    GaussianHead,
    IAFHead,
    IAFPosterior,
    Widenable,
    diagonal_gaussian,
)
from vaekit.distributions.priors import (
    PRIORS,
    MixturePrior,
    StandardNormalPrior,
    VampPrior,
    kl_to_prior,
)
from vaekit.distributions.sampling import draw

__all__ = [
    "LIKELIHOODS",
    "POSTERIORS",
    "PRIORS",
    "BernoulliLikelihood",
    "ConditionalGaussian",
    "ContinuousBernoulliLikelihood",
    "Delta",
    "DeltaHead",
    "DiagonalGaussianMixture",
    "DiscretizedLogisticLikelihood",
    "DiscretizedLogisticMixture",
    "FixedGaussianLikelihood",
    "GaussianHead",
    "HierarchicalLatent",
    "IAFHead",
    "IAFPosterior",
    "LearnedGaussianLikelihood",
    "Likelihood",
    "LowerLayer",
    "MixturePrior",
    "StandardNormalPrior",
    "TwoLayerEncoder",
    "TwoLayerPrior",
    "VampPrior",
    "Widenable",
    "bits_per_dim",
    "diagonal_gaussian",
    "draw",
    "kl_to_prior",
]
