"""The pieces of a configured model: likelihood, prior, posterior head, networks, the
two-stochastic-layer stack and the label condition."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import nn

from vaekit.build.lookup import lookup
from vaekit.config import ModelConfig
from vaekit.distributions import LIKELIHOODS, POSTERIORS, PRIORS, Likelihood
from vaekit.distributions.hierarchical import (
    ConditionalGaussian,
    LowerLayer,
    TwoLayerEncoder,
    TwoLayerPrior,
)
from vaekit.distributions.posteriors import GaussianHead
from vaekit.distributions.priors import MixturePrior, VampPrior
from vaekit.errors import ConfigError, DataError
from vaekit.models import Condition, TrunkEncoder
from vaekit.nn import ACTIVATIONS, ConvDecoderNet, ConvTrunk, MLPDecoderNet, MLPTrunk


def build_likelihood(cfg: ModelConfig) -> Likelihood:
    """The decoder's likelihood head."""
    cls = lookup(LIKELIHOODS, cfg.likelihood, "likelihood")
    kwargs: dict[str, dict[str, float | int]] = {
        "gaussian": {"sigma": cfg.sigma},
        "gaussian-learned": {"min_scale": cfg.min_scale},
        "discretized-logistic": {"components": cfg.mixture_components},
    }
    try:
        likelihood: Likelihood = cls(**kwargs.get(cfg.likelihood, {}))
    except ValueError as error:
        raise ConfigError(f"model: {error}") from None
    return likelihood


def build_prior(cfg: ModelConfig, encoder: nn.Module, event_shape: Sequence[int]) -> nn.Module:
    """The prior p(z): the standard normal, a learned mixture, or the VampPrior over
    ``encoder`` (``model.prior_components`` components or pseudo-inputs)."""
    cls = lookup(PRIORS, cfg.prior, "prior")
    if cfg.prior != "standard-normal" and cfg.kind.startswith("aae"):
        raise ConfigError(
            f"model.prior = {cfg.prior!r} is learned through the KL term of a VAE; an adversarial "
            "autoencoder matches its codes to draws of the prior, which carry no gradient to it: "
            'use model.kind = "vae", or model.prior = "standard-normal" with an AAE'
        )
    if cfg.prior == "vamp":
        return VampPrior(encoder, event_shape, cfg.prior_components)
    if cfg.prior == "mixture":
        return MixturePrior(cfg.latent_dim, cfg.prior_components)
    prior: nn.Module = cls(cfg.latent_dim)
    return prior


def build_posterior(cfg: ModelConfig, kind_posterior: str, in_features: int) -> nn.Module:
    """The encoder's head: the model kind's own (``kind_posterior``), or for a VAE the
    configured ``model.posterior`` (the IAF: a Gaussian then ``model.flow_steps`` flow steps)."""
    if cfg.posterior == "gaussian":
        if cfg.flow_steps != ModelConfig().flow_steps:
            raise ConfigError('model.flow_steps applies to model.posterior = "iaf" only')
        head: nn.Module = POSTERIORS[kind_posterior](in_features, cfg.latent_dim)
        return head
    if cfg.kind != "vae":
        raise ConfigError(
            f"model.posterior = {cfg.posterior!r} is a VAE's posterior; model kind {cfg.kind!r} "
            'has its own encoder: use model.kind = "vae", or leave model.posterior out'
        )
    if cfg.gradient_estimator == "dreg":
        raise ConfigError(
            'model.gradient_estimator = "dreg" needs a diagonal Gaussian posterior; use '
            f'model.gradient_estimator = "reparam" with model.posterior = {cfg.posterior!r}'
        )
    cls = lookup(POSTERIORS, cfg.posterior, "posterior")
    head = cls(in_features, cfg.latent_dim, steps=cfg.flow_steps)
    return head


def networks(
    cfg: ModelConfig, event_shape: Sequence[int], params: int, code_dim: int, extra: int = 0
) -> tuple[Any, nn.Module]:
    """The encoder trunk and the decoder network for codes of ``code_dim`` dimensions; with
    ``extra`` condition dimensions, the trunk reads x joined to them (flattened for an MLP, as
    image channels for conv nets) and the decoder reads [z, y]."""
    lookup(ACTIVATIONS, cfg.activation, "activation")
    code_dim += extra
    if cfg.network == "mlp":
        inputs = (math.prod(event_shape) + extra,) if extra else event_shape
        trunk = MLPTrunk(inputs, cfg.hidden, cfg.activation)
        net = MLPDecoderNet(code_dim, event_shape, cfg.hidden[::-1], cfg.activation, params)
        return trunk, net
    if len(event_shape) != 3:
        raise DataError(
            f"conv networks need images [C, H, W], but these data are vectors of "
            f'{list(event_shape)} features; set model.network = "mlp"'
        )
    if event_shape[1] != event_shape[2]:
        raise DataError(
            f"conv networks need square images, got {list(event_shape)}; set "
            'model.network = "mlp", or resize the images to a square (data.image_size)'
        )
    channels, *side = event_shape
    conv = ConvTrunk((channels + extra, *side), cfg.conv_channels, cfg.activation, cfg.batch_norm)
    dec = ConvDecoderNet(
        code_dim, event_shape, cfg.conv_channels, cfg.activation, cfg.batch_norm, params
    )
    return conv, dec


def two_layers(
    cfg: ModelConfig, event_shape: Sequence[int], params: int
) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(encoder, decoder network, prior) of the two-stochastic-layer VAE (Burda et al. 2016):
    q(z1|x) q(z2|z1), p(z2) p(z1|z2) with p(z2) = N(0, I), and a decoder that reads z1."""
    defaults = ModelConfig()
    clashes = {
        "kind": cfg.kind != "vae",
        "posterior": cfg.posterior != defaults.posterior,
        "prior": cfg.prior != defaults.prior,
        "gradient_estimator": cfg.gradient_estimator != defaults.gradient_estimator,
    }
    clash = next((name for name, differs in clashes.items() if differs), None)
    if clash is not None:
        raise ConfigError(
            f"model.stochastic_layers = 2 builds its own Gaussian posterior and hierarchical "
            f"prior for a VAE, with the reparameterisation gradient; model.{clash} = "
            f"{getattr(cfg, clash)!r} does not combine with it: leave model.{clash} at "
            f"{getattr(defaults, clash)!r}, or set model.stochastic_layers = 1"
        )
    lower_dim, top_dim = cfg.lower_latent_dim, cfg.latent_dim
    trunk, decoder_net = networks(cfg, event_shape, params, lower_dim)
    lower = TrunkEncoder(trunk, GaussianHead(trunk.out_features, lower_dim))
    up = ConditionalGaussian(lower_dim, cfg.lower_hidden, top_dim, cfg.activation)
    down = ConditionalGaussian(top_dim, cfg.lower_hidden[::-1], lower_dim, cfg.activation)
    encoder = TwoLayerEncoder(lower, up, top_dim)
    return (
        encoder,
        nn.Sequential(LowerLayer(lower_dim), decoder_net),
        TwoLayerPrior(top_dim, down, lower_dim),
    )


def condition_of(cfg: ModelConfig, num_classes: int | None) -> Condition | None:
    """The ``Condition`` a conditional model's encoder and decoder share, else None."""
    if not cfg.conditional:
        return None
    if num_classes is None or num_classes < 1:
        raise DataError(
            "model.conditional = true needs class labels: train on a labelled dataset (digits, "
            "mnist, a table with data.label_column, or an image folder of class folders, "
            "where every readable image sits in a subfolder of the folder, two or more of them)"
        )
    for name, differs in (
        ("prior", cfg.prior == "vamp"),
        ("stochastic_layers", cfg.stochastic_layers != 1),
    ):
        if differs:
            raise ConfigError(
                f"model.conditional = true does not combine with model.{name} = "
                f"{getattr(cfg, name)!r} yet (its prior would need the labels); use "
                f"model.{name} = {getattr(ModelConfig(), name)!r}"
            )
    return Condition(num_classes)


def refuse_lower_layer_settings(cfg: ModelConfig) -> None:
    defaults = ModelConfig()
    for name in ("lower_latent_dim", "lower_hidden"):
        if getattr(cfg, name) != getattr(defaults, name):
            raise ConfigError(f"model.{name} applies to model.stochastic_layers = 2 only")
