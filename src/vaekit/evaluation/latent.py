"""Latent-space metrics: active units, per-unit KL, aggregate posterior vs prior, and probes.

Active units follow Burda et al. 2016 (unit u is active when Cov_x(E_q[z_u|x]) > 0.01). The
aggregate posterior q(z) = E_x q(z|x) is what a Markov chain on the encoder and decoder samples
from (Creswell et al. 2016); its mismatch with p(z) is measured by an MMD with a permutation
null and by the KL of a moment-matched Gaussian to N(0, I).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Independent, kl_divergence

from vaekit.distributions.sampling import draw
from vaekit.evaluation.context import EvaluationContext, MetricResult
from vaekit.models.conditional import labelled_batches, labels_for

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016, section 5.2
MMD_MAX_POINTS = 2000
NUM_PERMUTATIONS = 200
PROBE_NEIGHBOURS = 5


MOMENT_SAMPLES = 64  # draws per input where q(z|x) has no closed-form variance (a flow)


@torch.inference_mode()
def encode(ctx: EvaluationContext, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Posterior codes and variances Var_q[z|x], [N, D] each, float64 on the CPU.

    The codes are ``q.mean``: E_q[z|x] for a Gaussian, the flow's image of its base mean for
    an IAF posterior. A posterior without a closed-form variance gets the sample variance of
    ``MOMENT_SAMPLES`` draws from the context's generator. A conditional model encodes x given
    its labels ``y``."""
    loc, var = [], []
    generator = ctx.generator(6)
    labels = labels_for(ctx.model, y)
    for x_batch in labelled_batches(ctx.model, x, labels, max(ctx.batch_size, 500)):
        q = ctx.model.encoder(x_batch.to(ctx.device))
        loc.append(q.mean.double().cpu())
        try:
            variance = q.variance
        except NotImplementedError:
            variance = draw(q, (MOMENT_SAMPLES,), generator=generator).var(0)
        var.append(variance.double().cpu())
    return torch.cat(loc), torch.cat(var)


def active_units(loc: Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> tuple[int, Tensor]:
    """(number of active units, Cov_x(E_q[z_u|x]) per unit [D]) from posterior means [N, D]."""
    activity = loc.var(0, unbiased=True) if len(loc) > 1 else torch.zeros(loc.shape[1])
    return int((activity > threshold).sum()), activity


@torch.inference_mode()
def per_unit_kl(ctx: EvaluationContext, x: Tensor, y: Tensor | None = None) -> Tensor:
    """E_x KL(q(z_u|x) || p(z_u)) per unit [D] in nats (factorised q and p, closed form)."""
    prior = ctx.model.prior()
    total = torch.zeros(ctx.model.latent_dim, dtype=torch.float64)
    labels = labels_for(ctx.model, y)
    for x_batch in labelled_batches(ctx.model, x, labels, max(ctx.batch_size, 500)):
        q = ctx.model.encoder(x_batch.to(ctx.device))
        if not (isinstance(q, Independent) and isinstance(prior, Independent)):
            raise TypeError("per-unit KL needs factorised (Independent) q(z|x) and p(z)")
        total += kl_divergence(q.base_dist, prior.base_dist).double().sum(0).cpu()  # [D]
    return total / len(x)


def gaussian_fit_kl(loc: Tensor, var: Tensor) -> float:
    """KL(N(m, S) || N(0, I)) for the Gaussian with the aggregate posterior's moments.

    q(z) = (1/N) Σ_n N(loc_n, diag var_n) has mean m = mean(loc) and covariance
    S = Cov(loc) + mean(diag var_n) (law of total covariance); KL = ½(tr S + |m|² - D - log|S|).
    """
    m = loc.mean(0)
    centred = loc - m
    cov = centred.T @ centred / len(loc) + torch.diag(var.mean(0))  # [D, D]
    logdet = torch.linalg.slogdet(cov + 1e-12 * torch.eye(len(m), dtype=cov.dtype))[1]
    return float(0.5 * (torch.trace(cov) + m @ m - len(m) - logdet))


def mmd_permutation_test(
    x: Tensor,
    y: Tensor,
    *,
    num_permutations: int = NUM_PERMUTATIONS,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Unbiased MMD² between samples x [N, D] and y [M, D], with a permutation null.

    Gaussian kernel with the median pairwise distance of the pooled sample as bandwidth
    (Gretton et al. 2012). The null distribution comes from ``num_permutations`` random
    relabellings of the pooled points; ``scaled`` = (MMD² - null mean) / null std is the
    permutation-based scale, ``p_value`` the fraction of null values at least as large.
    """
    pooled = torch.cat([x, y]).double()
    n, total = len(x), len(x) + len(y)
    sq = torch.cdist(pooled, pooled).square()  # [T, T]
    bandwidth_sq = float(sq[sq > 0].median()) if bool((sq > 0).any()) else 1.0
    kernel = torch.exp(-sq / (2 * bandwidth_sq))
    kernel.fill_diagonal_(0.0)  # unbiased: drop the i = j terms
    labels = torch.zeros(num_permutations + 1, total, dtype=torch.float64)
    labels[0, :n] = 1.0  # row 0: the observed split; then random relabellings
    for row in range(1, num_permutations + 1):
        labels[row, torch.randperm(total, generator=generator)[:n]] = 1.0
    other = 1.0 - labels
    k_labels = labels @ kernel  # [P+1, T]
    s_xx = (k_labels * labels).sum(1)
    s_xy = (k_labels * other).sum(1)
    s_yy = kernel.sum() - s_xx - 2 * s_xy
    m = total - n
    mmd2 = s_xx / (n * (n - 1)) + s_yy / (m * (m - 1)) - 2 * s_xy / (n * m)  # [P+1]
    observed, null = float(mmd2[0]), mmd2[1:]
    null_std = float(null.std())
    return {
        "mmd2": observed,
        "null_mean": float(null.mean()),
        "null_std": null_std,
        "scaled": (observed - float(null.mean())) / null_std if null_std > 0 else math.inf,
        "p_value": float((1 + (null >= observed).sum()) / (1 + num_permutations)),
        "bandwidth": math.sqrt(bandwidth_sq),
        "num_points": n,
    }


def probe_accuracies(
    train_codes: Tensor,
    train_labels: Tensor,
    test_codes: Tensor,
    test_labels: Tensor,
    *,
    num_neighbours: int = PROBE_NEIGHBOURS,
    seed: int = 0,
) -> dict[str, float]:
    """Test accuracy of a logistic-regression probe and a k-NN classifier fitted on train codes.

    Codes are standardised with the training codes' mean and scale; ``chance`` is the accuracy
    of always predicting the most frequent training class.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_codes.numpy())
    train_x, test_x = scaler.transform(train_codes.numpy()), scaler.transform(test_codes.numpy())
    train_y, test_y = train_labels.numpy(), test_labels.numpy()
    logistic = LogisticRegression(max_iter=1000, random_state=seed).fit(train_x, train_y)
    neighbours = min(num_neighbours, len(train_x))
    knn = KNeighborsClassifier(n_neighbors=neighbours).fit(train_x, train_y)
    majority = np.bincount(train_y).argmax()
    return {
        "logistic_accuracy": float((logistic.predict(test_x) == test_y).mean()),
        "knn_accuracy": float((knn.predict(test_x) == test_y).mean()),
        "knn_neighbours": neighbours,
        "chance": float((test_y == majority).mean()),
    }


def active_units_metric(ctx: EvaluationContext) -> MetricResult:
    """Active units (Cov_x E_q[z_u] > 0.01), per-unit KL, and a posterior-collapse warning."""
    loc, _ = encode(ctx, ctx.data.x, ctx.data.y)
    count, activity = active_units(loc)
    result: MetricResult = {
        "active_units": count,
        "latent_dim": ctx.model.latent_dim,
        "threshold": ACTIVE_UNIT_THRESHOLD,
        "activity": [round(float(a), 6) for a in activity],
    }
    if not ctx.model.has_density:
        result["note"] = "deterministic codes: no KL, and the 0.01 threshold depends on their scale"
        return result
    first = None if ctx.data.y is None else ctx.data.y[:1]
    with ctx.model.given(labels_for(ctx.model, first)):
        prior, q = ctx.model.prior(), ctx.model.encoder(ctx.data.x[:1].to(ctx.device))
    if not (isinstance(q, Independent) and isinstance(prior, Independent)):
        result["note"] = (
            "the KL per unit needs a factorised q(z|x) and p(z); this model's do not factorise "
            "(a flow posterior or a learned prior), so only the activity is given"
        )
        return result
    kl = per_unit_kl(ctx, ctx.data.x, ctx.data.y)
    result["kl_per_unit"] = [round(float(k), 6) for k in kl]
    result["kl_total"] = float(kl.sum())
    inactive = ctx.model.latent_dim - count
    if count == 0:
        result["warning"] = "posterior collapse: no latent unit is active; the decoder ignores z"
    elif inactive > 0:
        result["warning"] = (
            f"{inactive} of {ctx.model.latent_dim} latent units are inactive (collapsed to the "
            "prior); they carry no information about x"
        )
    return result


def aggregate_posterior_metric(ctx: EvaluationContext) -> MetricResult:
    """Aggregate posterior vs prior: MMD² with a permutation scale, and a Gaussian-fit KL."""
    x = ctx.data.x
    loc, var = encode(ctx, x, ctx.data.y)
    generator = ctx.generator(3)
    count = min(len(x), MMD_MAX_POINTS)
    index = torch.randperm(len(x), generator=torch.Generator().manual_seed(ctx.seed))[:count]
    # One draw z ~ q(z|x) per point is one draw from the aggregate posterior q(z).
    labels = labels_for(ctx.model, ctx.data.y)
    with torch.inference_mode(), ctx.model.given(None if labels is None else labels[index]):
        q = ctx.model.encoder(x[index].to(ctx.device))
        codes = draw(q, generator=generator).double().cpu()  # [n, D]
        prior_draws = draw(ctx.model.prior(), (count,), generator=generator).double().cpu()
    mmd = mmd_permutation_test(
        codes, prior_draws, generator=torch.Generator().manual_seed(ctx.seed)
    )
    return {
        "mmd": mmd,
        "gaussian_fit_kl": gaussian_fit_kl(loc, var),
        "aggregate_mean_norm": float(loc.mean(0).norm()),
    }


def probes_metric(ctx: EvaluationContext) -> MetricResult:
    """Logistic-regression and k-NN accuracy on encoder means (fit on train, score the split)."""
    train_y, test_y = ctx.require_labels("the latent probes")
    train_codes, _ = encode(ctx, ctx.dataset.train.x, ctx.dataset.train.y)
    test_codes, _ = encode(ctx, ctx.data.x, ctx.data.y)
    result = probe_accuracies(
        train_codes.float(), train_y, test_codes.float(), test_y, seed=ctx.seed
    )
    return {**result, "num_train": len(train_y), "num_test": len(test_y)}
