"""Likelihood metrics: the ELBO split into reconstruction and KL, and importance-sampled log p(x).

Both go through the model's own ``encoder`` (q(z|x)), ``decoder`` (p(x|z)) and ``prior`` (p(z)),
so they score exactly the densities the model was trained with. Units: nats per datapoint
(summed over pixels) and bits per dimension.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vaekit import accel
from vaekit.distributions.priors import kl_to_prior
from vaekit.distributions.sampling import draw
from vaekit.evaluation.context import EvaluationContext, MetricResult
from vaekit.evaluation.progress import SILENT, Progress
from vaekit.models.base import Autoencoder
from vaekit.models.conditional import labelled_batches, labels_for

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
    num_samples: int = 1,
    generator: torch.Generator | None = None,
    y: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-datapoint reconstruction -log p(x|z), z ~ q(z|x), and KL(q(z|x) || p(z)), [N] each.

    Each is the mean over ``num_samples`` draws of z per datapoint: one draw is the usual ELBO
    estimate, unbiased but noisy per datapoint; K draws divide its per-datapoint variance by K
    (the mean over datapoints is the same in expectation). The KL is closed-form where
    available. ELBO = -(reconstruction + KL). Returned on the CPU in float64. A conditional
    model scores x given its labels ``y`` [N].
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    device = next(model.parameters()).device
    prior = model.prior()
    recon, kl = [], []
    for x_batch in labelled_batches(model, x, labels_for(model, y), batch_size):
        x_batch = x_batch.to(device)
        q = model.encoder(x_batch)
        recon_sum = torch.zeros(len(x_batch), dtype=torch.float64, device=device)
        kl_sum = torch.zeros_like(recon_sum)
        for _ in range(num_samples):
            z = draw(q, generator=generator)  # [B, D]
            recon_sum -= model.decoder(z).log_prob(x_batch).double()
            kl_sum += kl_to_prior(q, prior, z).double()
        recon.append((recon_sum / num_samples).cpu())
        kl.append((kl_sum / num_samples).cpu())
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
    accelerate: str = "auto",
    progress: Progress = SILENT,
    y: Tensor | None = None,
) -> Tensor:
    """Importance-sampled log p(x) [N] in nats (Burda et al. 2016, eq. 14), float64 on the CPU.

    log p(x) ≈ logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K, z_k ~ q(z|x).
    The encoder runs once per datapoint; the K samples are drawn and decoded ``chunk_size`` at a
    time with a running logsumexp, so memory is bounded by ``batch_size · chunk_size`` rows
    whatever K is. ``chunk_size=None`` picks about DEFAULT_ROWS_PER_CALL rows per decoder call.
    The estimate is a stochastic lower bound whose mean increases to log p(x) as K grows; with
    the exact posterior as q every weight equals p(x) and it is exact for any K.

    With ``accelerate="auto"``, MLP decoders with a Bernoulli p(x|z) take a lean path
    (``vaekit.accel.lean_log_px``); ``compile=True`` also fuses its softplus sum with
    torch.compile (falls back to eager if compiling fails). ``matmul="bfloat16x3"`` (lean path
    only) takes the decoder's last product as three-term bfloat16 products: as accurate as the
    estimator needs, and faster on CPUs with AMX (benchmarks/eval_importance_sampling.py).
    ``accelerate="off"`` scores every decoder through ``decoder(z).log_prob(x)``.
    ``progress`` announces and shows the batches when they take long (``progress.py``).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    device = next(model.parameters()).device
    prior = model.prior()
    if chunk_size is None:
        chunk_size = max(1, DEFAULT_ROWS_PER_CALL // batch_size)
    chunk_size = min(chunk_size, num_samples)
    log_k = math.log(num_samples)
    lean = accel.lean_log_px(model.decoder, accelerate=accelerate, compile=compile, matmul=matmul)
    out = []
    batches = labelled_batches(model, x, labels_for(model, y), batch_size)
    count = math.ceil(len(x) / batch_size)
    for x_batch in progress.track(batches, count, "log-likelihood"):
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


ELBO_NOISE_NOTE = (
    "each datapoint's ELBO is the mean of {k} single-sample estimate(s): unbiased, but noisy "
    "per datapoint, so a datapoint's importance-sampled log p(x) can fall below its ELBO; "
    "--elbo-samples K averages K draws per datapoint (per-datapoint noise / sqrt(K))"
)


def elbo_metric(ctx: EvaluationContext) -> MetricResult:
    """ELBO on the split (``ctx.elbo_samples`` draws of z per point, averaged), split into
    reconstruction and KL; nats, bits/dim."""
    ctx.require_density("the ELBO")
    recon, kl = elbo_terms(
        ctx.model,
        ctx.data.x,
        batch_size=max(ctx.batch_size, 500),
        num_samples=ctx.elbo_samples,
        generator=ctx.generator(1),
        y=ctx.data.y,
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
        "elbo_samples": ctx.elbo_samples,
        "per_example_note": ELBO_NOISE_NOTE.format(k=ctx.elbo_samples),
        **_grey_note(ctx),
    }


def below_elbo_fraction(log_px: Tensor, elbo: Tensor) -> float:
    """The fraction of datapoints whose log p(x) estimate is below their ELBO estimate: 0 for
    exact values (log p(x) >= ELBO); with noisy per-datapoint ELBOs, it falls as they are
    averaged over more draws."""
    return float((log_px < elbo).double().mean())


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
        progress=ctx.progress,
        y=ctx.data.y,
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
