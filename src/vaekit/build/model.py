"""The model a config describes, and the config of a model built that way."""

from __future__ import annotations

import dataclasses
import inspect
import weakref
from collections.abc import Sequence
from typing import Any

from torch import nn

from vaekit.build.lookup import lookup
from vaekit.build.parts import (
    build_likelihood,
    build_posterior,
    build_prior,
    condition_of,
    networks,
    refuse_lower_layer_settings,
    two_layers,
)
from vaekit.config import ModelConfig
from vaekit.errors import ConfigError
from vaekit.models import (
    CORRUPTIONS,
    MODELS,
    VAE,
    Autoencoder,
    ConditionalDecoder,
    ConditionalEncoder,
    LatentDiscriminator,
    NetworkDecoder,
    TrunkEncoder,
)


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
    condition = condition_of(cfg, num_classes)
    extra = 0 if condition is None else condition.dim
    encoder: nn.Module
    if cfg.stochastic_layers == 2:
        encoder, decoder_net, prior = two_layers(cfg, event_shape, likelihood.params_per_pixel)
    else:
        refuse_lower_layer_settings(cfg)
        trunk, decoder_net = networks(
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
