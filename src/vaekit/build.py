"""The one place where names in a config become objects, by reading the registries."""

from __future__ import annotations

import dataclasses
import inspect
import math
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaekit.config import DataConfig, ModelConfig
from vaekit.data import DATASETS, default_data_root, load_dataset
from vaekit.data.base import Dataset, SourceOptions
from vaekit.data.user import PYTHON_DATA
from vaekit.distributions import LIKELIHOODS, POSTERIORS, PRIORS, Likelihood
from vaekit.distributions.hierarchical import (
    ConditionalGaussian,
    LowerLayer,
    TwoLayerEncoder,
    TwoLayerPrior,
)
from vaekit.distributions.likelihoods import UNIT_INTERVAL
from vaekit.distributions.posteriors import GaussianHead
from vaekit.distributions.priors import MixturePrior, VampPrior
from vaekit.errors import ConfigError, DataError
from vaekit.models import (
    CORRUPTIONS,
    MODELS,
    VAE,
    Autoencoder,
    Condition,
    ConditionalDecoder,
    ConditionalEncoder,
    LatentDiscriminator,
    NetworkDecoder,
    TrunkEncoder,
)
from vaekit.nn import ACTIVATIONS, ConvDecoderNet, ConvTrunk, MLPDecoderNet, MLPTrunk


def lookup(registry: Mapping[str, Any], name: str, what: str) -> Any:
    """``registry[name]``, or a ConfigError listing the valid names."""
    try:
        return registry[name]
    except KeyError:
        valid = ", ".join(sorted(registry))
        raise ConfigError(f"unknown {what} {name!r}; choose one of: {valid}") from None


def build_dataset(cfg: DataConfig, seed: int) -> Dataset:
    """Load the configured dataset (validation carved with ``seed``)."""
    if cfg.name == PYTHON_DATA:
        raise DataError(
            "this run was trained on data passed from Python (vaekit.fit), which the command "
            "line cannot load; score it in Python, e.g. vaekit.evaluation.log_likelihood(model, x)"
        )
    lookup(DATASETS, cfg.name, "dataset")
    options = SourceOptions(
        root=Path(cfg.root) if cfg.root else default_data_root(),
        path=Path(cfg.path) if cfg.path else None,
        image_size=cfg.image_size,
        channels=cfg.channels,
        download=cfg.download,
        seed=seed,
        skip_bad_files=cfg.skip_bad_files,
        in_memory=cfg.in_memory,
        label_column=cfg.label_column,
    )
    return load_dataset(
        cfg.name,
        options=options,
        val_size=cfg.val_size,
        val_from=cfg.val_from,
        binarize=cfg.binarize,
        limit=cfg.limit,
        seed=seed,
        standardize=cfg.standardize,
    )


# Feature scales (standard deviations) further apart than this defeat a Gaussian likelihood with
# one shared or freely learned scale: the widest features dominate the loss (or the KL explodes).
MAX_SCALE_RATIO = 100.0


def check_data_fits(dataset: Dataset, cfg: ModelConfig) -> None:
    """Refuse data a likelihood cannot score: Bernoulli needs values in [0, 1]; a Gaussian on
    feature vectors whose scales differ by more than ``MAX_SCALE_RATIO`` needs them standardised;
    a conditional model needs its labelled data in memory.
    """
    if cfg.likelihood in UNIT_INTERVAL and dataset.value_range != "unit":
        fix = (
            "set model.likelihood=gaussian"
            if dataset.standardization is None
            else "standardised data are real-valued: set model.likelihood=gaussian"
        )
        raise DataError(
            f"dataset {dataset.name!r} has values outside [0, 1], which a {cfg.likelihood} "
            f"likelihood cannot score; rescale the data to [0, 1] or {fix}"
        )
    if cfg.conditional and dataset.train_stream is not None:
        raise DataError(
            "model.conditional = true trains on labelled data held in memory, but this folder "
            "is streamed from disk: set data.in_memory = true (or data.limit to fewer images)"
        )
    unscaled_vectors = dataset.standardization is None and not dataset.is_images
    if cfg.likelihood.startswith("gaussian") and unscaled_vectors:
        _check_scales(dataset, cfg.likelihood)


def _check_scales(dataset: Dataset, likelihood: str) -> None:
    std = dataset.train.x.double().std(0, correction=0)
    varying = std > 0
    if int(varying.sum()) < 2:
        return
    widest = int(std.argmax())
    narrowest = int(torch.where(varying, std, torch.inf).argmin())
    ratio = float(std[widest] / std[narrowest])
    if ratio > MAX_SCALE_RATIO:
        raise DataError(
            f"the {len(std)} features differ in scale by {ratio:.0f}x (std of "
            f"feature {widest} is {float(std[widest]):.4g}, of feature {narrowest} "
            f"{float(std[narrowest]):.4g}); a {likelihood} likelihood would model only the "
            "widest ones: set data.standardize = true (samples are mapped back to the "
            "original units)"
        )


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


def _networks(
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


def _two_layers(
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
    trunk, decoder_net = _networks(cfg, event_shape, params, lower_dim)
    lower = TrunkEncoder(trunk, GaussianHead(trunk.out_features, lower_dim))
    up = ConditionalGaussian(lower_dim, cfg.lower_hidden, top_dim, cfg.activation)
    down = ConditionalGaussian(top_dim, cfg.lower_hidden[::-1], lower_dim, cfg.activation)
    encoder = TwoLayerEncoder(lower, up, top_dim)
    return (
        encoder,
        nn.Sequential(LowerLayer(lower_dim), decoder_net),
        TwoLayerPrior(top_dim, down, lower_dim),
    )


def _condition(cfg: ModelConfig, num_classes: int | None) -> Condition | None:
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


def _refuse_lower_layer_settings(cfg: ModelConfig) -> None:
    defaults = ModelConfig()
    for name in ("lower_latent_dim", "lower_hidden"):
        if getattr(cfg, name) != getattr(defaults, name):
            raise ConfigError(f"model.{name} applies to model.stochastic_layers = 2 only")


def build_model(
    cfg: ModelConfig, event_shape: Sequence[int], *, num_classes: int | None = None
) -> Autoencoder:
    """The configured model for data of shape ``event_shape``: (C, H, W) or (D,).

    A conditional model (``model.conditional``) needs ``num_classes``, the number of class
    labels it is conditioned on."""
    cls, posterior = lookup(MODELS, cfg.kind, "model kind")
    if cfg.latent_dim < 1:
        raise ConfigError(f"model.latent_dim must be at least 1, got {cfg.latent_dim}")
    likelihood = build_likelihood(cfg)
    condition = _condition(cfg, num_classes)
    extra = 0 if condition is None else condition.dim
    encoder: nn.Module
    if cfg.stochastic_layers == 2:
        encoder, decoder_net, prior = _two_layers(cfg, event_shape, likelihood.params_per_pixel)
    else:
        _refuse_lower_layer_settings(cfg)
        trunk, decoder_net = _networks(
            cfg, event_shape, likelihood.params_per_pixel, cfg.latent_dim, extra
        )
        encoder = TrunkEncoder(trunk, build_posterior(cfg, posterior, trunk.out_features))
        prior = build_prior(cfg, encoder, event_shape)
    decoder: nn.Module = NetworkDecoder(decoder_net, likelihood)
    if condition is not None:
        join = "flat" if cfg.network == "mlp" else "planes"
        encoder = ConditionalEncoder(encoder, condition, join)
        decoder = ConditionalDecoder(decoder, condition)
    corruption = None
    if cfg.corruption != "none":
        corruption = lookup(CORRUPTIONS, cfg.corruption, "corruption")(cfg.corruption_level)
    variants: dict[str, Any] = {
        "beta": cfg.beta,
        "num_particles": cfg.num_particles,
        "analytic_kl": cfg.analytic_kl,
        "gradient_estimator": cfg.gradient_estimator,
        "bound": cfg.bound,
        "bound_groups": cfg.bound_groups,
        "ciwae_beta": cfg.ciwae_beta,
        "corruption": corruption,
        "adversarial_weight": cfg.adversarial_weight,
    }
    accepted = inspect.signature(cls).parameters
    defaults = ModelConfig()
    for name in [*variants, "discriminator_hidden"]:
        uses = "discriminator" if name == "discriminator_hidden" else name
        if uses not in accepted and getattr(cfg, name) != getattr(defaults, name):
            raise ConfigError(f"model.{name} does not apply to model kind {cfg.kind!r}")
    kwargs = {k: v for k, v in variants.items() if k in accepted}
    if "discriminator" in accepted:  # the AAE's critic of codes, sized like the networks
        kwargs["discriminator"] = LatentDiscriminator(
            cfg.latent_dim, cfg.discriminator_hidden, cfg.activation
        )
    try:
        model: Autoencoder = cls(encoder, decoder, prior, **kwargs)
    except ValueError as error:
        raise ConfigError(f"model: {error}") from None
    _BUILT[model] = (cfg, tuple(event_shape))
    return model


# The models build_model made, with their config: ``vaekit.save`` writes it beside the weights.
_BUILT: weakref.WeakKeyDictionary[Autoencoder, tuple[ModelConfig, tuple[int, ...]]] = (
    weakref.WeakKeyDictionary()
)


def recipe_of(model: Autoencoder) -> tuple[ModelConfig, tuple[int, ...]] | None:
    """(model config, event shape) of a model ``build_model`` made, with its current ``beta``
    and ``num_particles`` (both settable); None for a model built in Python."""
    entry = _BUILT.get(model)
    if entry is None:
        return None
    cfg, event_shape = entry
    if isinstance(model, VAE):
        cfg = dataclasses.replace(cfg, beta=model.beta, num_particles=model.num_particles)
    return cfg, event_shape
