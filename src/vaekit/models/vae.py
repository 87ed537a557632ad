"""The variational autoencoder with beta, KL warm-up, the IWAE bound and input corruption.

beta-VAE (Higgins et al. 2017), IWAE (Burda et al. 2016, eq. 8) and the denoising VAE
(Im et al. 2017) are arguments of this one class, not subclasses.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution

from vaekit.distributions.priors import StandardNormalPrior, kl_to_prior
from vaekit.distributions.sampling import draw
from vaekit.models.base import Autoencoder, Decoder, Encoder, Loss
from vaekit.models.corruption import Corruption
from vaekit.models.fused_elbo import FusedELBO


class VAE(Autoencoder):
    """Gaussian-encoder VAE.

    Args:
        beta: weight on the KL (beta-VAE); 1 gives the ELBO.
        num_particles: k importance samples; k > 1 trains the IWAE bound
            log (1/k) Σ_i p(x, z_i) / q(z_i|x), with beta on log p(z_i) - log q(z_i|x).
        analytic_kl: use the closed-form KL when torch knows the pair (k = 1 only).
        corruption: C(x̃|x) on the encoder input (denoising VAE); the clean x is scored.
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
        fused: bool = True,
    ):
        super().__init__(encoder, decoder, prior, corruption)
        if beta < 0:
            raise ValueError(f"beta must be non-negative, got {beta}")
        if num_particles < 1:
            raise ValueError(f"num_particles must be at least 1, got {num_particles}")
        self.beta = float(beta)
        self.num_particles = int(num_particles)
        self.analytic_kl = analytic_kl
        self.fused = None
        # k = 1 fuses the closed-form KL; without analytic_kl it takes the one-sample estimate.
        if fused and (num_particles > 1 or analytic_kl) and type(prior) is StandardNormalPrior:
            self.fused = FusedELBO.of(
                encoder.trunk, encoder.head, decoder.network, decoder.likelihood, num_particles
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
        # The fused ELBO is float32 code: under autocast (bfloat16 training) the modules run.
        autocast = torch.is_autocast_enabled(x.device.type)
        if self.fused is not None and torch.is_grad_enabled() and not autocast:
            return self._fused_loss(x, weight, generator)
        q = self.encoder(self.corrupt(x, generator))
        if self.num_particles == 1:
            z = draw(q, generator=generator)  # [B, D]
            log_px = self.decoder(z).log_prob(x)  # [B]
            kl = self.kl(q, z)  # [B]
            objective = -(log_px - weight * kl).mean()
            recon, kl_mean = -log_px.mean(), kl.mean()
            metrics = {"recon": recon, "kl": kl_mean, "elbo": -(recon + kl_mean)}
        else:
            z = draw(q, (self.num_particles,), generator=generator)  # [K, B, D]
            log_px, log_ratio = self.log_weights(x, q, z)
            log_k = math.log(self.num_particles)
            objective = -(torch.logsumexp(log_px + weight * log_ratio, 0) - log_k).mean()
            bound = (torch.logsumexp(log_px + log_ratio, 0) - log_k).mean()
            recon, kl_mean = -log_px.mean(), -log_ratio.mean()
            metrics = {"recon": recon, "kl": kl_mean, "elbo": -(recon + kl_mean), "iwae": bound}
        metrics["loss"] = objective
        return Loss({"model": objective}, {k: v.detach() for k, v in metrics.items()})

    def loss_and_grad_(
        self,
        x: Tensor,
        *,
        kl_weight: float = 1.0,
        generator: torch.Generator | None = None,
        scale: float = 1.0,
    ) -> Loss | None:
        if self.fused is None or torch.is_autocast_enabled(x.device.type):
            return None
        x_in, eps = self._fused_inputs(x, generator)
        out = self.fused.loss_and_grad_(x_in, x, eps, self.beta * kl_weight, scale)
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

    def _fused_result(self, objective: Tensor, recon: Tensor, kl: Tensor, bound: Tensor) -> Loss:
        """The Loss that ``loss`` returns, with the same metrics in the same order."""
        metrics = {"recon": recon, "kl": kl, "elbo": -(recon + kl)}
        if self.num_particles > 1:
            metrics["iwae"] = bound
        metrics["loss"] = objective.detach()
        return Loss({"model": objective}, metrics)

    def elbo(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Per-datapoint ELBO [B] in nats (one sample of z, closed-form KL where available)."""
        q = self.encoder(x)
        z = draw(q, generator=generator)
        return self.decoder(z).log_prob(x) - self.kl(q, z)
