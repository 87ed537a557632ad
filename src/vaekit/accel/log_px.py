"""A lean log p(x|z) for MLP decoders with a Bernoulli likelihood, for importance sampling.

The same value as ``decoder(z).log_prob(x)`` up to float rounding, with far fewer passes over
the [k·B, C·H·W] logits (tests/accel/test_log_px.py checks it against the distributions).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vaekit.accel.bfloat16x3 import BFloat16x3Weight, compose, split_rows
from vaekit.accel.compile import compiled_or_eager
from vaekit.accel.mlp_stack import forward_stack, parse_layers
from vaekit.distributions.likelihoods import BernoulliLikelihood
from vaekit.models.parts import NetworkDecoder
from vaekit.nn.mlp import MLPDecoderNet


def softplus_sum(logits: Tensor, bias: Tensor | None = None) -> Tensor:
    """Σ_d softplus(l_d) over the last dimension of ``logits`` [N, P] (plus ``bias`` [P], if
    given, added first), as the Bernoulli log-likelihood needs it, with one logarithm per group
    of pixels instead of one per pixel.

    softplus(l) = max(l, 0) + log(1 + e^{-|l|}); the logarithms of a group of g pixels are summed
    as the log of a product of g factors in (1, 2], which cannot overflow for g <= 64. Σ max(l, 0)
    = ½ (Σ l + Σ |l|). Accuracy: as float32 summation (within 1e-4 nats on 784 pixels; tested).
    Eagerly this is several passes, about as fast as ``F.softplus(l).sum(-1)``; under
    ``torch.compile`` they fuse into one pass with one exp per pixel and no per-pixel log, and
    the bias costs nothing there (with ``addmm`` it was a copy of the whole output).
    """
    if bias is not None:
        logits = logits + bias
    n, p = logits.shape
    groups = next((g for g in range(64, 7, -1) if p % g == 0), None)
    if groups is None:
        return F.softplus(logits).sum(-1)
    magnitude = logits.abs()
    factors = (1 + torch.exp(-magnitude)).view(n, groups, p // groups)  # [N, g, P/g]
    return 0.5 * (logits.sum(-1) + magnitude.sum(-1)) + factors.prod(1).log().sum(-1)


def split_softplus_sum(residual: Tensor, neg_base: Tensor, bias: Tensor | None = None) -> Tensor:
    """``softplus_sum`` of logits given as bfloat16x3 parts (``BFloat16x3Weight.parts``)."""
    return softplus_sum(compose(residual, neg_base), bias)


class LeanBernoulliLogPx:
    """log p(x|z) [k, B] for z [k, B, D] when p(x|z) is Bernoulli with logits l = h Wᵀ + b from a
    final Linear layer (MLP decoders); ``of`` returns None for other decoders.

    log p(x|z) = Σ_d x_d l_d - softplus(l_d), and Σ_d x_d l_d = h · (x W) + x · b needs no pass
    over the [k·B, C·H·W] logits: x W [B, H] is made once per batch (``bind``). Only
    Σ_d softplus(l_d) (``softplus_sum``, which also adds the bias b) is elementwise. Hidden layers
    that mlp_stack.py can parse run with in-place activations. Same value as
    ``decoder(z).log_prob(x)`` up to float rounding.

    ``matmul="bfloat16x3"`` takes h Wᵀ as three-term bfloat16 products (bfloat16x3.py): float32
    accuracy to ~1e-5 of the logits from GEMMs several times faster than sgemm on a CPU with AMX
    (the estimator ~1.25 times faster for a 784-400-20 decoder,
    docs/how-to/evaluate-and-compare.md).
    ``compile=True`` fuses the softplus sum (and the bfloat16 split of h) with torch.compile.
    """

    def __init__(self, network: MLPDecoderNet, *, compile: bool, matmul: str) -> None:
        *hidden, last = network.layers
        assert type(last) is nn.Linear  # checked by ``of``
        self.last = last
        layers = parse_layers(hidden) if hidden else []
        self.trunk: Callable[[Tensor], Tensor] = (
            nn.Sequential(*hidden) if layers is None else lambda h: forward_stack(layers, h)[-1]
        )
        self.reduce: Callable[..., Tensor] = softplus_sum
        # bfloat16x3 only: the split last weight, and how h is split. The hidden layers stay
        # eager: compiled with the split they were slower (tanh layers of the IWAE decoder).
        self.split: BFloat16x3Weight | None = None
        self.split_rows: Callable[[Tensor], Tensor] = split_rows
        if matmul == "bfloat16x3":
            self.split = BFloat16x3Weight(last.weight.t())
            self.reduce = split_softplus_sum
            if compile:  # without the option inductor drops the bfloat16 round trip of the split
                self.split_rows = compiled_or_eager(
                    split_rows, fallback="evaluating eagerly", emulate_precision_casts=True
                )
        if compile:
            self.reduce = compiled_or_eager(self.reduce, fallback="evaluating eagerly")

    @classmethod
    def of(cls, decoder: nn.Module, *, compile: bool, matmul: str) -> LeanBernoulliLogPx | None:
        if not isinstance(decoder, NetworkDecoder):
            return None
        network = decoder.network
        if type(decoder.likelihood) is not BernoulliLikelihood or not isinstance(
            network, MLPDecoderNet
        ):
            return None
        if type(network.layers[-1]) is not nn.Linear:
            return None
        return cls(network, compile=compile, matmul=matmul)

    def bind(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(x W [B, H], x · b [B]) for a batch x of targets."""
        x_flat = x.reshape(x.shape[0], -1)  # [B, C·H·W]
        return x_flat @ self.last.weight, x_flat @ self.last.bias

    def __call__(self, z: Tensor, x_weight: Tensor, x_bias: Tensor) -> Tensor:
        k, b = z.shape[:2]
        z_rows = z.reshape(k * b, -1)
        h = self.trunk(z_rows)  # [k·B, H]
        if self.split is None:
            softplus_total = self.reduce(torch.mm(h, self.last.weight.t()), self.last.bias)
        else:
            softplus_total = self.reduce(*self.split.parts(self.split_rows(h)), self.last.bias)
        x_dot_logits = torch.einsum("kbh,bh->kb", h.view(k, b, -1), x_weight) + x_bias
        return x_dot_logits - softplus_total.view(k, b)
