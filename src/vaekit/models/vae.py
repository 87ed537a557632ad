"""The variational autoencoder with beta, KL warm-up, the IWAE bound and input corruption.

beta-VAE (Higgins et al. 2017), IWAE (Burda et al. 2016, eq. 8) and the denoising VAE
(Im et al. 2017) are arguments of this one class, not subclasses.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from vaekit.distributions.posteriors import detached_gaussian
from vaekit.distributions.priors import kl_to_prior
from vaekit.distributions.sampling import draw
from vaekit.models.base import Autoencoder, Loss

GRADIENT_ESTIMATORS = ("reparam", "dreg")
# Multi-sample bounds (Rainforth et al. 2018) besides IWAE: MIWAE averages M IWAE bounds of K
# samples; CIWAE mixes the ELBO and the IWAE bound; PIWAE trains the encoder on MIWAE and the
# decoder on the IWAE bound of all M·K samples.
BOUNDS = ("iwae", "miwae", "ciwae", "piwae")


class VAE(Autoencoder):
    """Variational autoencoder over any encoder, decoder and prior that fit the protocols.

    Args:
        encoder: x -> q(z|x), any module returning a Distribution with event shape [D]
            (``TrunkEncoder`` with a ``GaussianHead`` is the library's).
        decoder: z -> p(x|z), any module returning a Distribution over x.
        prior: () -> p(z), e.g. ``StandardNormalPrior(latent_dim)``.
        beta: weight on the KL (beta-VAE); 1 gives the ELBO.
        num_particles: k importance samples; k > 1 trains the IWAE bound
            log (1/k) Σ_i p(x, z_i) / q(z_i|x), with beta on log p(z_i) - log q(z_i|x).
        analytic_kl: use the closed-form KL when torch knows the pair (k = 1 only); otherwise,
            and for pairs torch does not know, the one-sample Monte-Carlo estimate.
        corruption: C(x̃|x) on the encoder input (denoising VAE); the clean x is scored.
        gradient_estimator: ``"reparam"``, the reparameterisation gradient of the objective
            as written; or ``"dreg"``, the doubly reparameterised estimator of Tucker et al.
            (2019) for the encoder (for k = 1 it is Roeder et al.'s 2017 "sticking the
            landing"; it needs a diagonal Gaussian q). Both are unbiased estimators of the same
            gradient, and give the same decoder gradient; ``"dreg"`` drops the score-function
            term of log q(z|x), whose noise grows with k (Rainforth et al. 2018). The loss
            values do not change.
        bound: the multi-sample bound trained, with log w = log p(x|z) + β (log p(z) - log q):
            ``"iwae"`` (the default; with k = 1 the ELBO); ``"miwae"``, (1/M) Σ_m log (1/K)
            Σ_k w_mk over ``bound_groups`` = M groups of ``num_particles`` = K samples;
            ``"ciwae"``, c · (1/K) Σ_k log w_k + (1 - c) · log (1/K) Σ_k w_k with ``ciwae_beta``
            = c; ``"piwae"``, the encoder trained on MIWAE(M, K) and the decoder (and a learned
            prior) on IWAE over all M·K samples, one optimiser each (Rainforth et al. 2018).
            The bounds other than IWAE take the reparameterisation gradient.

    ``beta`` and ``num_particles`` may be changed after construction; every path (``loss``, the
    trainer, the optional accelerated gradients of ``vaekit.accel``) reads the current value.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        prior: nn.Module,
        *,
        beta: float = 1.0,
        num_particles: int = 1,
        analytic_kl: bool = True,
        corruption: nn.Module | None = None,
        gradient_estimator: str = "reparam",
        bound: str = "iwae",
        bound_groups: int = 1,
        ciwae_beta: float = 0.5,
    ):
        super().__init__(encoder, decoder, prior, corruption)
        if gradient_estimator not in GRADIENT_ESTIMATORS:
            choices = ", ".join(repr(name) for name in GRADIENT_ESTIMATORS)
            raise ValueError(
                f"gradient_estimator must be one of {choices}, got {gradient_estimator!r}"
            )
        if bound not in BOUNDS:
            raise ValueError(f"bound must be one of {', '.join(BOUNDS)}, got {bound!r}")
        if isinstance(bound_groups, bool) or int(bound_groups) != bound_groups or bound_groups < 1:
            raise ValueError(f"bound_groups must be an integer of at least 1, got {bound_groups}")
        if bound_groups != 1 and bound not in ("miwae", "piwae"):
            raise ValueError(f"bound_groups (M) applies to the miwae and piwae bounds, not {bound}")
        if not 0 <= ciwae_beta <= 1:
            raise ValueError(f"ciwae_beta must lie in [0, 1], got {ciwae_beta}")
        if bound != "iwae" and gradient_estimator != "reparam":
            raise ValueError(f"the {bound} bound trains with gradient_estimator='reparam' only")
        self.bound, self.bound_groups, self.ciwae_beta = bound, int(bound_groups), ciwae_beta
        self.beta = beta
        self.num_particles = num_particles
        self.gradient_estimator = gradient_estimator
        self.analytic_kl = analytic_kl

    @property
    def beta(self) -> float:
        """Weight on the KL (or on log p(z) - log q(z|x) for k > 1); settable."""
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        if not value >= 0:
            raise ValueError(f"beta must be non-negative, got {value}")
        self._beta = float(value)

    @property
    def num_particles(self) -> int:
        """k, the importance samples per datapoint (1: the ELBO); settable."""
        return self._num_particles

    @num_particles.setter
    def num_particles(self, value: int) -> None:
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"num_particles must be an integer of at least 1, got {value}")
        self._num_particles = int(value)

    def kl(self, q: Distribution, z: Tensor) -> Tensor:
        """KL(q(z|x) || p(z)) [B]: closed form when available, else the one-sample estimate."""
        return kl_to_prior(q, self.prior(), z, analytic=self.analytic_kl)

    def log_weights(self, x: Tensor, q: Distribution, z: Tensor) -> tuple[Tensor, Tensor]:
        """log p(x|z) and log p(z) - log q(z|x), both [K, B], for particles z [K, B, D]."""
        k, b = z.shape[:2]
        x_k = x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:])
        log_px = self.decoder(z.reshape(k * b, -1)).log_prob(x_k).view(k, b)
        log_ratio = self.prior().log_prob(z) - q.log_prob(z)  # [K, B]
        return log_px, log_ratio

    def loss(
        self, x: Tensor, *, kl_weight: float = 1.0, generator: torch.Generator | None = None
    ) -> Loss:
        weight = self.beta * kl_weight
        q = self.encoder(self.corrupt(x, generator))
        if self.bound != "iwae":
            z = draw(q, (self.bound_groups * self.num_particles,), generator=generator)
            return self._bound_loss(*self.log_weights(x, q, z), weight)
        if self.gradient_estimator == "dreg":
            return self._dreg_loss(x, q, weight, generator)
        if self.num_particles == 1:
            z = draw(q, generator=generator)  # [B, D]
            log_px = self.decoder(z).log_prob(x)  # [B]
            objective, metrics = _elbo_terms(log_px, self.kl(q, z), weight)
        else:
            z = draw(q, (self.num_particles,), generator=generator)  # [K, B, D]
            objective, metrics = _iwae_terms(*self.log_weights(x, q, z), weight)
        metrics["loss"] = objective
        return Loss({"model": objective}, {k: v.detach() for k, v in metrics.items()})

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """One optimiser, or for PIWAE two: the encoder's, and the generative model's (decoder
        and a learned prior's parameters)."""
        if self.bound != "piwae":
            return super().parameter_groups()
        encoder = list(self.encoder.parameters())
        mine = {id(p) for p in encoder}
        return {"encoder": encoder, "model": [p for p in self.parameters() if id(p) not in mine]}

    def _bound_loss(self, log_px: Tensor, log_ratio: Tensor, weight: float) -> Loss:
        """MIWAE, CIWAE or PIWAE from log p(x|z) and log p(z) - log q(z|x), both [M·K, B]."""
        groups, k = self.bound_groups, self.num_particles
        log_w = log_px + weight * log_ratio  # [M·K, B]
        bounds = multi_sample_bounds(log_w, groups, k, self.ciwae_beta)
        value = bounds[self.bound if self.bound != "piwae" else "miwae"]
        objectives = {"model": -value.mean()}
        if self.bound == "piwae":
            objectives = {"encoder": -value.mean(), "model": -bounds["iwae"].mean()}
        plain = multi_sample_bounds(log_px + log_ratio, groups, k, self.ciwae_beta)
        recon, kl_mean = -log_px.mean(), -log_ratio.mean()
        metrics = {"recon": recon, "kl": kl_mean, "elbo": -(recon + kl_mean)}
        metrics |= {"iwae": plain["iwae"].mean(), self.bound: plain[self.bound].mean()}
        metrics["loss"] = -value.mean()
        metrics["kl_weight"] = torch.full_like(kl_mean, weight)
        return Loss(objectives, {name: v.detach() for name, v in metrics.items()})

    def _dreg_loss(
        self, x: Tensor, q: Distribution, weight: float, generator: torch.Generator | None
    ) -> Loss:
        """``loss`` with the doubly reparameterised gradient (Tucker et al. 2019, eq. 7).

        With a_i = log p(x|z_i) + β (log p(z_i) - log q(z_i|x)) and w = softmax(a), the IWAE
        gradient is Σ_i w_i ∇a_i. The decoder takes it as it is. For the encoder, the part of
        ∇a_i that goes through q's parameters directly (the score function) is replaced by its
        reparameterised equal in expectation, which leaves the path through z_i alone, with
        weight c_i = (1 - β) w_i + β w_i² (w_i² at β = 1; 1 at k = 1, "sticking the landing").

        One backward pass gives both: log q is evaluated with q's parameters detached, the
        surrogate is -Σ_i w_i a_i with w held fixed, and a hook scales the gradient that reaches
        z_i by (1 - β) + β w_i. The returned objective has the value of ``loss``'s.
        """
        k = self.num_particles
        z = draw(q, (k,), generator=generator)  # [K, B, D]
        log_px, log_ratio = self.log_weights(x, detached_gaussian(q), z)
        log_weights = log_px + weight * log_ratio  # [K, B]
        w = torch.softmax(log_weights.detach(), 0)
        if z.requires_grad and k > 1:
            path_scale = ((1 - weight) + weight * w).unsqueeze(-1)
            # the scaled gradient keeps z's dtype (bfloat16 under autocast; w is float32)
            z.register_hook(lambda grad: (grad * path_scale).to(grad.dtype))
        surrogate = -(w * log_weights).sum(0).mean()
        with torch.no_grad():  # the loss's value and metrics only: no graph for them
            if k == 1:
                value, metrics = _elbo_terms(log_px[0], self.kl(q, z[0]), weight)
            else:
                value, metrics = _iwae_terms(log_px, log_ratio, weight)
        objective = surrogate + (value - surrogate).detach()
        metrics["loss"] = value
        return Loss({"model": objective}, {name: v.detach() for name, v in metrics.items()})

    def elbo(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Per-datapoint ELBO [B] in nats (one sample of z, closed-form KL where available)."""
        q = self.encoder(x)
        z = draw(q, generator=generator)
        return self.decoder(z).log_prob(x) - self.kl(q, z)


def multi_sample_bounds(
    log_w: Tensor, groups: int, particles: int, ciwae_beta: float
) -> dict[str, Tensor]:
    """Per-datapoint bounds [B] from log weights [M·K, B] (M = ``groups`` of K = ``particles``):
    ``iwae`` over all M·K samples, ``miwae`` (the mean of the M groups' IWAE bounds), ``ciwae``
    (c · the mean log weight + (1 - c) · IWAE, for M = 1) and ``piwae`` (the encoder's bound,
    MIWAE)."""
    total, batch = log_w.shape
    if total != groups * particles:
        raise ValueError(f"{total} log weights for {groups} groups of {particles}")
    iwae = torch.logsumexp(log_w, 0) - math.log(total)
    grouped = log_w.view(groups, particles, batch)
    miwae = (torch.logsumexp(grouped, 1) - math.log(particles)).mean(0)
    ciwae = ciwae_beta * log_w.mean(0) + (1 - ciwae_beta) * iwae
    return {"iwae": iwae, "miwae": miwae, "ciwae": ciwae, "piwae": miwae}


def _elbo_terms(log_px: Tensor, kl: Tensor, weight: float) -> tuple[Tensor, dict[str, Tensor]]:
    """The k = 1 objective recon + weight · KL and its metrics from log p(x|z) and the KL, both
    [B]: the unweighted terms, ``weighted_kl`` (weight · KL) and ``kl_weight``."""
    objective = -(log_px - weight * kl).mean()
    recon, kl_mean = -log_px.mean(), kl.mean()
    metrics = {"recon": recon, "kl": kl_mean, "elbo": -(recon + kl_mean)}
    # objective = recon + weighted_kl exactly, so epoch means keep that sum while the weight ramps
    metrics["weighted_kl"] = weight * kl_mean
    metrics["kl_weight"] = torch.full_like(kl_mean, weight)
    return objective, metrics


def _iwae_terms(
    log_px: Tensor, log_ratio: Tensor, weight: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """The k > 1 objective, minus the IWAE bound with ``weight`` on log p(z) - log q(z|x), and
    its metrics, from log p(x|z_i) and the log-ratios, both [K, B]."""
    log_k = math.log(log_px.shape[0])
    objective = -(torch.logsumexp(log_px + weight * log_ratio, 0) - log_k).mean()
    bound = (torch.logsumexp(log_px + log_ratio, 0) - log_k).mean()
    recon, kl_mean = -log_px.mean(), -log_ratio.mean()
    metrics = {"recon": recon, "kl": kl_mean, "elbo": -(recon + kl_mean), "iwae": bound}
    metrics["kl_weight"] = torch.full_like(kl_mean, weight)
    return objective, metrics
