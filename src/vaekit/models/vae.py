"""The variational autoencoder with beta, KL warm-up, the IWAE bound and input corruption.

beta-VAE (Higgins et al. 2017), IWAE (Burda et al. 2016, eq. 8) and the denoising VAE
(Im et al. 2017) are arguments of this one class, not subclasses.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution

from vaekit.distributions.posteriors import detached_gaussian
from vaekit.distributions.priors import StandardNormalPrior, kl_to_prior
from vaekit.distributions.sampling import draw
from vaekit.models.base import Autoencoder, Decoder, Encoder, Loss
from vaekit.models.corruption import Corruption
from vaekit.models.fused_elbo import FusedELBO

GRADIENT_ESTIMATORS = ("reparam", "dreg")


class VAE(Autoencoder):
    """Gaussian-encoder VAE.

    Args:
        beta: weight on the KL (beta-VAE); 1 gives the ELBO.
        num_particles: k importance samples; k > 1 trains the IWAE bound
            log (1/k) Σ_i p(x, z_i) / q(z_i|x), with beta on log p(z_i) - log q(z_i|x).
        analytic_kl: use the closed-form KL when torch knows the pair (k = 1 only).
        corruption: C(x̃|x) on the encoder input (denoising VAE); the clean x is scored.
        gradient_estimator: ``"reparam"``, the reparameterisation gradient of the objective
            as written; or ``"dreg"``, the doubly reparameterised estimator of Tucker et al.
            (2019) for the encoder (for k = 1 it is Roeder et al.'s 2017 "sticking the
            landing"). Both are unbiased estimators of the same gradient, and give the same
            decoder gradient; ``"dreg"`` drops the score-function term of log q(z|x), whose
            noise grows with k (Rainforth et al. 2018). The loss values do not change.
        fused: train MLP models with a Gaussian q and a Bernoulli p (the ELBO with the
            closed-form KL, or the IWAE bound) through the hand-derived gradients of
            ``fused_elbo.py`` (``loss_and_grad_`` and,
            under autograd, ``loss``): same loss, same gradients, less time per step
            (benchmarks/train_step.py). Other models always take the distributions path.
    """

    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        prior: StandardNormalPrior,
        *,
        beta: float = 1.0,
        num_particles: int = 1,
        analytic_kl: bool = True,
        corruption: Corruption | None = None,
        gradient_estimator: str = "reparam",
        fused: bool = True,
    ):
        super().__init__(encoder, decoder, prior, corruption)
        if beta < 0:
            raise ValueError(f"beta must be non-negative, got {beta}")
        if num_particles < 1:
            raise ValueError(f"num_particles must be at least 1, got {num_particles}")
        if gradient_estimator not in GRADIENT_ESTIMATORS:
            choices = ", ".join(repr(name) for name in GRADIENT_ESTIMATORS)
            raise ValueError(
                f"gradient_estimator must be one of {choices}, got {gradient_estimator!r}"
            )
        self.beta = float(beta)
        self.gradient_estimator = gradient_estimator
        self.num_particles = int(num_particles)
        self.analytic_kl = analytic_kl
        self.fused = None
        # k = 1 fuses the closed-form KL; without analytic_kl it takes the one-sample estimate.
        if fused and (num_particles > 1 or analytic_kl) and type(prior) is StandardNormalPrior:
            self.fused = FusedELBO.of(
                encoder.trunk,
                encoder.head,
                decoder.network,
                decoder.likelihood,
                num_particles,
                dreg=gradient_estimator == "dreg",
            )

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
        # The fused autograd node computes its products in the parameters' dtype: under
        # autocast the modules run (loss_and_grad_, the trainer's path, honours autocast).
        autocast = torch.is_autocast_enabled(x.device.type)
        if self.fused is not None and torch.is_grad_enabled() and not autocast:
            return self._fused_loss(x, weight, generator)
        q = self.encoder(self.corrupt(x, generator))
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

    @property
    def has_direct_gradients(self) -> bool:
        return self.fused is not None

    def loss_and_grad_(
        self,
        x: Tensor,
        *,
        kl_weight: float = 1.0,
        generator: torch.Generator | None = None,
        scale: float = 1.0,
        compile: bool = False,
    ) -> Loss | None:
        if self.fused is None:
            return None
        x_in, eps = self._fused_inputs(x, generator)
        out = self.fused.loss_and_grad_(x_in, x, eps, self.beta * kl_weight, scale, compile=compile)
        return self._fused_result(*out)

    def _fused_loss(self, x: Tensor, weight: float, generator: torch.Generator | None) -> Loss:
        """``loss`` for k = 1 through ``fused_elbo.py``."""
        assert self.fused is not None
        x_in, eps = self._fused_inputs(x, generator)
        return self._fused_result(*self.fused(x_in, x, eps, weight))

    def _fused_inputs(self, x: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """The encoder input and the noise ε, drawn in the order and shape ``loss`` draws them."""
        x_in = self.corrupt(x, generator)
        shape: tuple[int, ...] = (x.shape[0], self.latent_dim)
        if self.num_particles > 1:
            shape = (self.num_particles, *shape)
        eps = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
        return x_in, eps

    def _fused_result(
        self,
        objective: Tensor,
        recon: Tensor,
        kl: Tensor,
        bound: Tensor,
        grads_finite: Tensor | None = None,
    ) -> Loss:
        """The Loss that ``loss`` returns, with the same metrics in the same order."""
        metrics = {"recon": recon, "kl": kl, "elbo": -(recon + kl)}
        if self.num_particles > 1:
            metrics["iwae"] = bound
        metrics["loss"] = objective.detach()
        return Loss({"model": objective}, metrics, grads_finite)

    def elbo(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Per-datapoint ELBO [B] in nats (one sample of z, closed-form KL where available)."""
        q = self.encoder(x)
        z = draw(q, generator=generator)
        return self.decoder(z).log_prob(x) - self.kl(q, z)


def _elbo_terms(log_px: Tensor, kl: Tensor, weight: float) -> tuple[Tensor, dict[str, Tensor]]:
    """The k = 1 objective and its metrics from log p(x|z) and the KL, both [B]."""
    objective = -(log_px - weight * kl).mean()
    recon, kl_mean = -log_px.mean(), kl.mean()
    return objective, {"recon": recon, "kl": kl_mean, "elbo": -(recon + kl_mean)}


def _iwae_terms(
    log_px: Tensor, log_ratio: Tensor, weight: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """The k > 1 objective, minus the IWAE bound with ``weight`` on log p(z) - log q(z|x), and
    its metrics, from log p(x|z_i) and the log-ratios, both [K, B]."""
    log_k = math.log(log_px.shape[0])
    objective = -(torch.logsumexp(log_px + weight * log_ratio, 0) - log_k).mean()
    bound = (torch.logsumexp(log_px + log_ratio, 0) - log_k).mean()
    recon, kl_mean = -log_px.mean(), -log_ratio.mean()
    return objective, {"recon": recon, "kl": kl_mean, "elbo": -(recon + kl_mean), "iwae": bound}
