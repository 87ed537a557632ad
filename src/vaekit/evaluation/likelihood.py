"""Likelihood metrics: the ELBO split into reconstruction and KL, and importance-sampled log p(x).

Both go through the model's own ``encoder`` (q(z|x)), ``decoder`` (p(x|z)) and ``prior`` (p(z)),
so they score exactly the densities the model was trained with. Units: nats per datapoint
(summed over pixels) and bits per dimension.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vaekit.distributions.likelihoods import BernoulliLikelihood
from vaekit.distributions.priors import kl_to_prior
from vaekit.distributions.sampling import draw
from vaekit.evaluation.bfloat16x3 import (
    MATMUL_PRECISIONS,
    BFloat16x3Weight,
    compose,
    split_rows,
)
from vaekit.evaluation.context import EvaluationContext, MetricResult
from vaekit.models.base import Autoencoder, Decoder
from vaekit.models.fused_elbo import forward_stack, parse_layers
from vaekit.nn.mlp import MLPDecoderNet
from vaekit.runtime import compiled_or_eager

# Burda, Grosse & Salakhutdinov 2016 evaluate every model with K = 5000.
DEFAULT_NUM_IMPORTANCE_SAMPLES = 5000
# Rows (importance samples x datapoints) per decoder call: enough for an efficient matmul, few
# enough that the likelihood's [rows, C·H·W] temporaries (3 MiB each on MNIST) stay cache-sized
# and are recycled by the allocator; at 4096 rows, page faults on freshly mapped temporaries cost
# as much as the matmuls on the 2-core VM (benchmarks/eval_importance_sampling.py).
DEFAULT_ROWS_PER_CALL = 1024


@torch.inference_mode()
def elbo_terms(
    model: Autoencoder,
    x: Tensor,
    *,
    batch_size: int = 1000,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-datapoint reconstruction -log p(x|z), z ~ q(z|x), and KL(q(z|x) || p(z)), [N] each.

    One z per datapoint (the usual ELBO estimate); the KL is closed-form where available.
    ELBO = -(reconstruction + KL). Returned on the CPU in float64.
    """
    device = next(model.parameters()).device
    prior = model.prior()
    recon, kl = [], []
    for x_batch in x.split(batch_size):
        x_batch = x_batch.to(device)
        q = model.encoder(x_batch)
        z = draw(q, generator=generator)  # [B, D]
        recon.append(-model.decoder(z).log_prob(x_batch).double().cpu())
        kl.append(kl_to_prior(q, prior, z).double().cpu())
    return torch.cat(recon), torch.cat(kl)


@torch.inference_mode()
def log_likelihood(
    model: Autoencoder,
    x: Tensor,
    *,
    num_samples: int = DEFAULT_NUM_IMPORTANCE_SAMPLES,
    batch_size: int = 100,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
    compile: bool = False,
    matmul: str = "float32",
) -> Tensor:
    """Importance-sampled log p(x) [N] in nats (Burda et al. 2016, eq. 14), float64 on the CPU.

    log p(x) ≈ logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K, z_k ~ q(z|x).
    The encoder runs once per datapoint; the K samples are drawn and decoded ``chunk_size`` at a
    time with a running logsumexp, so memory is bounded by ``batch_size · chunk_size`` rows
    whatever K is. ``chunk_size=None`` picks about DEFAULT_ROWS_PER_CALL rows per decoder call.
    The estimate is a stochastic lower bound whose mean increases to log p(x) as K grows; with
    the exact posterior as q every weight equals p(x) and it is exact for any K.

    MLP decoders with a Bernoulli p(x|z) take a lean path (see ``_BernoulliLinearLogPx``);
    ``compile=True`` also fuses its softplus sum with torch.compile (seconds to compile once,
    then the estimator took 38 s instead of 52 s at K = 5000 on 1,000 MNIST images, one CPU
    thread, benchmarks/eval_importance_sampling.py; falls back to eager if compiling fails).
    ``matmul="bfloat16x3"`` (lean path only) takes the decoder's last product as three-term
    bfloat16 products: as accurate as the estimator needs, and faster on CPUs with AMX
    (bfloat16x3.py; docs/evaluation.md has the figures).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    device = next(model.parameters()).device
    prior = model.prior()
    if chunk_size is None:
        chunk_size = max(1, DEFAULT_ROWS_PER_CALL // batch_size)
    chunk_size = min(chunk_size, num_samples)
    log_k = math.log(num_samples)
    if matmul not in MATMUL_PRECISIONS:
        raise ValueError(f"matmul must be one of {MATMUL_PRECISIONS}, got {matmul!r}")
    lean = _BernoulliLinearLogPx.of(model.decoder, compile=compile, matmul=matmul)
    if lean is None and matmul != "float32":
        raise ValueError(
            f"matmul={matmul!r} {BFLOAT16X3_SCOPE}; use matmul='float32' for this model"
        )
    out = []
    for x_batch in x.split(batch_size):
        x_batch = x_batch.to(device)
        b = x_batch.shape[0]
        q = model.encoder(x_batch)  # batch [B], event [D]
        # x repeated chunk_size times, rows ordered [chunk, B] like the flattened z below; made
        # once per batch, a partial last chunk uses its first k·B rows.
        if lean is not None:
            x_weight, x_bias = lean.bind(x_batch)
        else:
            x_rows = x_batch.expand(chunk_size, *x_batch.shape).reshape(-1, *x_batch.shape[1:])
        total = torch.full((b,), -math.inf, dtype=torch.float64, device=device)
        for start in range(0, num_samples, chunk_size):
            k = min(chunk_size, num_samples - start)
            z = draw(q, (k,), generator=generator)  # [k, B, D]
            if lean is not None:
                log_px = lean(z, x_weight, x_bias)
            else:
                log_px = model.decoder(z.reshape(k * b, -1)).log_prob(x_rows[: k * b]).view(k, b)
            log_w = log_px + prior.log_prob(z) - q.log_prob(z)  # [k, B]
            total = torch.logaddexp(total, torch.logsumexp(log_w, 0).double())
        out.append((total - log_k).cpu())
    return torch.cat(out)


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


BFLOAT16X3_SCOPE = "applies to MLP decoders with a Bernoulli likelihood only"


def has_lean_path(model: Autoencoder) -> bool:
    """Whether ``log_likelihood`` takes the lean Bernoulli-MLP path (and allows bfloat16x3)."""
    return _BernoulliLinearLogPx.of(model.decoder, compile=False, matmul="float32") is not None


def split_softplus_sum(residual: Tensor, neg_base: Tensor, bias: Tensor | None = None) -> Tensor:
    """``softplus_sum`` of logits given as bfloat16x3 parts (``BFloat16x3Weight.parts``)."""
    return softplus_sum(compose(residual, neg_base), bias)


class _BernoulliLinearLogPx:
    """log p(x|z) [k, B] for z [k, B, D] when p(x|z) is Bernoulli with logits l = h Wᵀ + b from a
    final Linear layer (MLP decoders); ``of`` returns None for other decoders.

    log p(x|z) = Σ_d x_d l_d - softplus(l_d), and Σ_d x_d l_d = h · (x W) + x · b needs no pass
    over the [k·B, C·H·W] logits: x W [B, H] is made once per batch (``bind``). Only
    Σ_d softplus(l_d) (``softplus_sum``, which also adds the bias b) is elementwise. Hidden layers
    that fused_elbo.py can parse run with in-place activations. Same value as
    ``decoder(z).log_prob(x)`` up to float rounding.

    ``matmul="bfloat16x3"`` takes h Wᵀ as three-term bfloat16 products (bfloat16x3.py): float32
    accuracy to ~1e-5 of the logits from GEMMs several times faster than sgemm on a CPU with AMX
    (the estimator ~1.25 times faster for a 784-400-20 decoder, docs/evaluation.md).
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
    def of(cls, decoder: Decoder, *, compile: bool, matmul: str) -> _BernoulliLinearLogPx | None:
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


def _mean_and_stderr(values: Tensor) -> tuple[float, float]:
    n = values.numel()
    stderr = float(values.std()) / math.sqrt(n) if n > 1 else math.nan
    return float(values.mean()), stderr


def bits_per_dim(nats: float, num_dims: int) -> float:
    """A per-datapoint negative log-likelihood in nats as bits per dimension."""
    return nats / (num_dims * math.log(2.0))


def _grey_note(ctx: EvaluationContext) -> dict[str, str]:
    if not ctx.grey_targets:
        return {}
    return {
        "note": "Bernoulli likelihood on grey (non-binarised) pixels: a cross-entropy, not a "
        "normalised log-likelihood; compare only with numbers from the same protocol"
    }


def elbo_metric(ctx: EvaluationContext) -> MetricResult:
    """ELBO on the split (one z per point), split into reconstruction and KL; nats, bits/dim."""
    ctx.require_density("the ELBO")
    recon, kl = elbo_terms(
        ctx.model, ctx.data.x, batch_size=max(ctx.batch_size, 500), generator=ctx.generator(1)
    )
    ctx.per_example["elbo"] = -(recon + kl)
    elbo, stderr = _mean_and_stderr(ctx.per_example["elbo"])
    return {
        "elbo": elbo,
        "elbo_stderr": stderr,
        "reconstruction": float(recon.mean()),
        "kl": float(kl.mean()),
        "bits_per_dim": bits_per_dim(-elbo, ctx.num_dims),
        "num_points": len(recon),
        **_grey_note(ctx),
    }


def log_likelihood_metric(ctx: EvaluationContext) -> MetricResult:
    """Importance-sampled log p(x) with K = ``ctx.num_importance_samples`` (IWAE estimator)."""
    ctx.require_density("the importance-sampled log-likelihood")
    values = log_likelihood(
        ctx.model,
        ctx.data.x,
        num_samples=ctx.num_importance_samples,
        batch_size=ctx.batch_size,
        generator=ctx.generator(2),
        compile=ctx.compile,
        matmul=ctx.matmul,
    )
    ctx.per_example["log_likelihood"] = values
    mean, stderr = _mean_and_stderr(values)
    return {
        "log_likelihood": mean,
        "nll": -mean,
        "stderr": stderr,
        "bits_per_dim": bits_per_dim(-mean, ctx.num_dims),
        "num_importance_samples": ctx.num_importance_samples,
        "num_points": values.numel(),
        **_grey_note(ctx),
    }
