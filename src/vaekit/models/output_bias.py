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

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from vaekit.distributions.likelihoods import Likelihood
from vaekit.errors import ConfigError
from vaekit.models.base import Autoencoder
from vaekit.models.parts import NetworkDecoder

OutputLayer = nn.Linear | nn.Conv1d | nn.Conv2d | nn.ConvTranspose2d


def data_moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-value mean and standard deviation [C, H, W] or [D] of the points x [N, ...]
    (float64 sums, population std, returned as float32)."""
    if len(x) == 0:
        raise ConfigError("the training data are empty: there is no marginal to start from")
    values = x.detach().double()
    return values.mean(0).float(), values.std(0, correction=0).float()


def init_output_bias(model: Autoencoder, mean: Tensor, std: Tensor) -> None:
    """Set the decoder's output bias so that p(x|z) starts at the marginal with per-value
    ``mean`` and ``std`` (``data_moments``): per value for a Linear output layer; for a
    convolution, one bias per channel, from the channel's pooled mean and spread.

    The decoder must be a ``NetworkDecoder`` whose network returns the output of one of its
    Linear or convolution layers, with a bias, up to a reshape (found with forward hooks on one
    pass, in eval mode, without gradients), and its likelihood must have a starting point
    (``Likelihood.marginal_raw``); ConfigError otherwise.
    """
    layer, values = _start(model, mean, std)
    bias = layer.bias
    assert bias is not None  # _start checked it
    with torch.no_grad():
        bias.copy_(values.to(bias))


def has_marginal_start(model: Autoencoder, mean: Tensor, std: Tensor) -> bool:
    """Whether ``init_output_bias`` applies to ``model``."""
    try:
        _start(model, mean, std)
    except ConfigError:
        return False
    return True


def _start(model: Autoencoder, mean: Tensor, std: Tensor) -> tuple[OutputLayer, Tensor]:
    """The output layer and its starting bias."""
    decoder = next((m for m in model.decoder.modules() if isinstance(m, NetworkDecoder)), None)
    if decoder is None or not isinstance(decoder.likelihood, Likelihood):
        raise ConfigError(
            "model.output_bias = 'marginal' needs a decoder made of a network and a likelihood "
            "head (NetworkDecoder); set model.output_bias = 'default'"
        )
    candidates = [m for m in decoder.network.modules() if isinstance(m, OutputLayer)]
    layer = _output_layer(model, decoder, candidates, mean)
    bias: Tensor | None = None if layer is None else layer.bias
    if layer is None or bias is None:
        raise ConfigError(
            "model.output_bias = 'marginal' needs a decoder network whose output is that of "
            "a Linear or convolution layer with a bias (reshapes aside); set "
            "model.output_bias = 'default'"
        )
    if not isinstance(layer, nn.Linear):  # a convolution: one bias per channel, pooled moments
        pixels_mean = mean.reshape(mean.shape[0], -1)  # [C, pixels]
        pooled = pixels_mean.mean(1, keepdim=True)
        spread = std.reshape(mean.shape[0], -1).square() + (pixels_mean - pooled).square()
        mean = pooled.view(-1, *[1] * (mean.dim() - 1))
        std = spread.mean(1).sqrt().view_as(mean)
    raw = decoder.likelihood.marginal_raw(mean, std)
    if raw is None:
        raise ConfigError(
            f"model.output_bias = 'marginal' has no starting point for the "
            f"{type(decoder.likelihood).__name__} (it is defined for the bernoulli and gaussian "
            "likelihoods); set model.output_bias = 'default'"
        )
    values = raw.reshape(-1)
    if values.numel() != bias.numel():
        raise ConfigError(
            f"the decoder's output layer has {bias.numel()} biases, but the data's marginal gives "
            f"{values.numel()}; set model.output_bias = 'default'"
        )
    return layer, values


def _output_layer(
    model: Autoencoder, decoder: NetworkDecoder, candidates: list[OutputLayer], mean: Tensor
) -> OutputLayer | None:
    """The candidate whose output is the decoder network's (up to a reshape), found on one
    pass that encodes and decodes the data's mean (label 0 for a conditional model), in eval
    mode and without gradients; None where there is none."""
    seen: dict[int, Tensor] = {}

    def keep(key: int) -> Callable[[nn.Module, tuple[Any, ...], Tensor], None]:
        return lambda _module, _inputs, output: seen.__setitem__(key, output)

    modules: list[nn.Module] = [*candidates, decoder.network]
    hooks = [module.register_forward_hook(keep(i)) for i, module in enumerate(modules)]
    device = next(model.parameters()).device
    x = mean.to(device).unsqueeze(0).expand(2, *mean.shape)
    labels = None if model.condition is None else torch.zeros(2, dtype=torch.long, device=device)
    training = model.training
    model.eval()
    try:
        with torch.no_grad(), model.given(labels):
            model.decoder(model.encode_mean(x))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(training)
    network = seen.get(len(candidates))
    if network is None:
        return None
    for i in reversed(range(len(candidates))):
        out = seen.get(i)
        if (
            out is not None
            and out.shape.numel() == network.shape.numel()
            and torch.equal(out.reshape(-1), network.reshape(-1))
        ):
            return candidates[i]
    return None
