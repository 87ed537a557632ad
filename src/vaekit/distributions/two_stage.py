"""The second stage of a two-stage VAE (Dai & Wipf 2019, "Diagnosing and enhancing VAE models"):
a small VAE fitted to a first model's codes u, whose prior N(0, I) is then pushed through its
decoder to sample codes.

q(v|u) = N(μ(u), diag σ(u)²) and p(u|v) = N(mean(v), γ² I) with one learned scale γ shared by
every dimension (log γ a parameter). The paper's point: codes on a manifold
of lower dimension than u let γ → 0 at the optimum, and with γ → 0 the aggregate posterior
∫ q(v|u) p(u) du approaches N(0, I), so decoding v ~ N(0, I) reproduces the codes' density.
Both networks are MLPs whose output layer also sees the network's input (the paper's skip
connection); sampling returns the decoder mean, as the paper does.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from vaekit.distributions.sampling import draw


class SkipMLP(nn.Module):
    """x [B, D_in] -> [B, D_out]: ``num_layers`` ReLU layers of ``hidden`` units, then a linear
    output layer of the last hidden features concatenated with x."""

    def __init__(self, in_features: int, out_features: int, *, hidden: int, num_layers: int):
        super().__init__()
        layers: list[nn.Module] = []
        for fan_in in [in_features] + [hidden] * (num_layers - 1):
            layers += [nn.Linear(fan_in, hidden), nn.ReLU()]
        self.hidden = nn.Sequential(*layers)
        self.out = nn.Linear(hidden + in_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.cat([self.hidden(x), x], dim=-1))


class SecondStageVAE(nn.Module):
    """A VAE over vectors u ∈ R^``dim`` with latent v ∈ R^``latent_dim``, prior N(0, I) and the
    Gaussian decoder N(mean(v), γ² I) of one learned scale γ (starting at ``gamma``, the paper's
    1 by default); encoder and decoder are ``SkipMLP`` networks of ``num_layers`` × ``hidden``."""

    def __init__(
        self,
        dim: int,
        *,
        latent_dim: int,
        hidden: int = 128,
        num_layers: int = 3,
        gamma: float = 1.0,
    ):
        super().__init__()
        if min(dim, latent_dim, hidden, num_layers) < 1:
            raise ValueError(
                "need dim, latent_dim, hidden, num_layers >= 1, "
                f"got {dim}, {latent_dim}, {hidden}, {num_layers}"
            )
        self.dim = dim
        self.latent_dim = latent_dim
        self.encoder = SkipMLP(dim, 2 * latent_dim, hidden=hidden, num_layers=num_layers)
        self.decoder = SkipMLP(latent_dim, dim, hidden=hidden, num_layers=num_layers)
        self.log_gamma = nn.Parameter(torch.tensor(math.log(gamma)))

    @property
    def gamma(self) -> Tensor:
        """The decoder's scale γ (a scalar tensor)."""
        return self.log_gamma.exp()

    def posterior(self, u: Tensor) -> Distribution:
        """q(v|u), a diagonal Gaussian over R^latent_dim for each of u [B, dim]."""
        loc, log_scale = self.encoder(u).chunk(2, dim=-1)
        return Independent(Normal(loc, log_scale.exp(), validate_args=False), 1)

    def prior(self) -> Distribution:
        """p(v) = N(0, I) over R^latent_dim."""
        zeros = self.log_gamma.new_zeros(self.latent_dim)
        return Independent(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1)

    def likelihood(self, v: Tensor) -> Distribution:
        """p(u|v) = N(mean(v), γ² I) for v [..., latent_dim]."""
        loc = self.decoder(v)
        return Independent(Normal(loc, self.gamma.expand_as(loc), validate_args=False), 1)

    def elbo(self, u: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """The evidence lower bound [B] on log p(u) for u [B, dim], one reparameterised v per
        point (its noise from ``generator``); the KL to the prior is in closed form."""
        q = self.posterior(u)
        v = draw(q, generator=generator)
        return self.likelihood(v).log_prob(u) - kl_divergence(q, self.prior())

    @torch.no_grad()
    def sample(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        """u [N, dim]: v ~ N(0, I) from ``generator``, decoded to the mean of p(u|v)."""
        v = draw(self.prior(), (num_samples,), generator=generator)
        return self.decoder(v)


def fit_second_stage(
    codes: Tensor,
    *,
    latent_dim: int | None = None,
    hidden: int = 128,
    num_layers: int = 3,
    gamma: float = 0.3,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 1e-2,
    final_lr: float = 1e-4,
    seed: int = 0,
) -> SecondStageVAE:
    """A ``SecondStageVAE`` fitted to ``codes`` [N, D] by maximising the ELBO (Adam, ``steps``
    minibatches of ``batch_size``, the learning rate decaying geometrically from ``lr`` to
    ``final_lr``); ``latent_dim`` defaults to D, as in the paper. Initial weights, batches and
    the reparameterisation noise come from ``seed``, so a fit is reproducible.

    γ starts at ``gamma`` < 1: on standardised (unit-variance) codes, γ = 1 is where the
    collapsed fit (q(v|u) = p(v), decoder mean 0, the codes explained as noise) is a stationary
    point, and on a 2-D mixture the fit stayed there; a smaller start weights the reconstruction
    above the KL, and γ is then learned (it falls to about the codes' unexplained spread, and
    towards 0 for codes on a lower-dimensional manifold).
    """
    dim = codes.shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = SecondStageVAE(
            dim,
            latent_dim=dim if latent_dim is None else latent_dim,
            hidden=hidden,
            num_layers=num_layers,
            gamma=gamma,
        )
    vae = vae.to(device=codes.device, dtype=codes.dtype)
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
    decay = math.exp(math.log(final_lr / lr) / max(steps - 1, 1))
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=decay)
    generator = torch.Generator(codes.device).manual_seed(seed)
    for _ in range(steps):
        size = (min(batch_size, len(codes)),)
        index = torch.randint(len(codes), size, generator=generator, device=codes.device)
        loss = -vae.elbo(codes[index], generator=generator).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return vae.eval()
