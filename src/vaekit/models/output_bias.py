"""Start the decoder at the data's marginal: the output layer's bias set so that, before any
training, p(x|z) is the per-value marginal of the training data (Bernoulli log-odds of the mean
pixel, or the Gaussian's mean and spread).

The IWAE code (Burda et al. 2016) and the works that reuse its protocol start the Bernoulli
decoder this way. Without it, the first steps spend the decoder's large initial loss on learning
the average image through the latent path, the encoder's posteriors shrink and stop depending
on x, and training then sits on a plateau at the pixel marginal. A standard normal prior pulls
the posteriors back out; a learned prior such as the VampPrior shrinks with them and can keep
the model there for good.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from vaekit.distributions.likelihoods import Likelihood
from vaekit.errors import ConfigError
from vaekit.models.base import Autoencoder
from vaekit.models.parts import NetworkDecoder

# Modules that only reshape: they may follow the output layer.
_RESHAPES = (nn.Flatten, nn.Unflatten, nn.Identity)
OutputLayer = nn.Linear | nn.Conv1d | nn.Conv2d | nn.ConvTranspose2d


def data_moments(batches: Iterable[Tensor], limit: int | None = None) -> tuple[Tensor, Tensor]:
    """Per-value mean and standard deviation [C, H, W] or [D] over ``batches`` of data (the
    first ``limit`` datapoints, or all), accumulated in float64."""
    total: Tensor | None = None
    squares: Tensor | None = None
    count = 0
    for batch in batches:
        if limit is not None:
            batch = batch[: limit - count]
        rows = batch.detach().to(torch.float64)
        total = rows.sum(0) if total is None else total + rows.sum(0)
        squares = (rows**2).sum(0) if squares is None else squares + (rows**2).sum(0)
        count += len(rows)
        if limit is not None and count >= limit:
            break
    if total is None or squares is None or count == 0:
        raise ConfigError("the training data are empty: there is no marginal to start from")
    mean = total / count
    std = (squares / count - mean**2).clamp_min(0.0).sqrt()
    return mean.float(), std.float()


def output_layer(model: Autoencoder) -> tuple[OutputLayer, Likelihood]:
    """The decoder's last weight layer (Linear or convolution, with a bias, followed by nothing
    but reshapes) and the likelihood head it feeds; ConfigError where there is none."""
    decoder = next((m for m in model.decoder.modules() if isinstance(m, NetworkDecoder)), None)
    if decoder is None or not isinstance(decoder.likelihood, Likelihood):
        raise ConfigError(
            "model.output_bias = 'marginal' needs a decoder made of a network and a likelihood "
            "head (NetworkDecoder); set model.output_bias = 'default'"
        )
    leaves = [m for m in decoder.network.modules() if not list(m.children())]
    while leaves and isinstance(leaves[-1], _RESHAPES):
        leaves.pop()
    last = leaves[-1] if leaves else None
    if not isinstance(last, OutputLayer) or last.bias is None:
        raise ConfigError(
            "model.output_bias = 'marginal' needs a decoder network that ends in a Linear or "
            f"convolution layer with a bias, but it ends in {type(last).__name__}; set "
            "model.output_bias = 'default'"
        )
    return last, decoder.likelihood


def init_output_bias(model: Autoencoder, mean: Tensor, std: Tensor) -> None:
    """Set the decoder's output bias so that p(x|z) starts at the marginal with per-value
    ``mean`` and ``std`` (``data_moments``): per value for a Linear output layer, averaged over
    the pixels of each channel for a convolution. ConfigError where the likelihood has no such
    starting point or the decoder does not end in a biased weight layer."""
    layer, likelihood = output_layer(model)
    raw = likelihood.marginal_raw(mean, std)
    if raw is None:
        raise ConfigError(
            f"model.output_bias = 'marginal' has no starting point for the "
            f"{type(likelihood).__name__} (it is defined for the bernoulli and gaussian "
            "likelihoods); set model.output_bias = 'default'"
        )
    bias: Tensor | None = layer.bias
    assert bias is not None  # output_layer checked it
    if isinstance(layer, nn.Linear):
        values = raw.reshape(-1)
    else:  # one bias per output channel: the channel's average over its pixels
        values = raw.reshape(raw.shape[0], -1).mean(1)
    if values.numel() != bias.numel():
        raise ConfigError(
            f"the decoder's output layer has {bias.numel()} biases, but the data's marginal "
            f"gives {values.numel()}; set model.output_bias = 'default'"
        )
    with torch.no_grad():
        bias.copy_(values.to(bias))
