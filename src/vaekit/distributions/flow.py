"""A masked autoregressive flow (Papamakarios, Pavlakou & Murray 2017) for low-dimensional
vectors such as a model's latent codes: a density with exact ``log_prob`` and seeded ``sample``.

Each of ``num_layers`` MADE networks (Germain et al. 2015) maps z to (μ, α), with output d
depending on z_<d only; the layer's transform is u_d = (z_d − μ_d) · exp(−α_d), so
log p(z) = log N(u; 0, I) − Σ α over the layers. The order of the dimensions is reversed between
layers. Sampling inverts the layers, one dimension at a time.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

MAX_LOG_SCALE = 5.0  # α is squashed into (-5, 5): exp(±5) bounds each layer's scaling


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 ``mask`` [out, in]."""

    def __init__(self, mask: Tensor):
        super().__init__(mask.shape[1], mask.shape[0])
        self.mask: Tensor
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """z [B, D] -> (μ, α) [B, D] each, output d a function of z_<d (degrees 1..D in order).

    With ``context`` > 0 a context vector h [B, context] also feeds the first hidden layer,
    unmasked, so every output may depend on all of h (the IAF posterior's encoder features).
    """

    def __init__(self, dim: int, hidden: int, context: int = 0):
        super().__init__()
        inputs = torch.arange(1, dim + 1)
        # hidden degrees cycle through 1..D-1 (a deterministic MADE; every degree represented)
        units = torch.arange(hidden) % max(dim - 1, 1) + 1
        self.net = nn.Sequential(
            MaskedLinear((units[:, None] >= inputs[None, :]).float()),
            nn.ReLU(),
            MaskedLinear((units[:, None] >= units[None, :]).float()),
            nn.ReLU(),
            MaskedLinear((inputs.repeat(2)[:, None] > units[None, :]).float()),
        )
        self.context = nn.Linear(context, hidden, bias=False) if context > 0 else None

    def forward(self, z: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(μ, α) for z [..., D], with context h [..., context] broadcast against z."""
        first = self.net[0](z)
        if self.context is not None:
            if h is None:
                raise ValueError("this MADE was built with a context input; pass h")
            first = first + self.context(h)
        mu, raw = self.net[1:](first).chunk(2, dim=-1)
        return mu, MAX_LOG_SCALE * torch.tanh(raw / MAX_LOG_SCALE)


class MaskedAutoregressiveFlow(nn.Module):
    """p(z) over R^D through ``num_layers`` MADE layers of ``hidden`` units."""

    def __init__(self, dim: int, *, num_layers: int = 5, hidden: int = 64):
        super().__init__()
        if dim < 1 or num_layers < 1 or hidden < 1:
            raise ValueError(
                f"need dim, num_layers, hidden >= 1, got {dim}, {num_layers}, {hidden}"
            )
        self.dim = dim
        self.layers = nn.ModuleList(MADE(dim, hidden) for _ in range(num_layers))

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) [B] for z [B, D]."""
        log_det = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        u = z
        for layer in self.layers:
            mu, alpha = layer(u)
            u = ((u - mu) * torch.exp(-alpha)).flip(-1)
            log_det = log_det - alpha.sum(-1)
        base = -0.5 * (u**2).sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)
        return base + log_det

    @torch.no_grad()
    def sample(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        """z [N, D]: u ~ N(0, I) from ``generator``, then every layer inverted."""
        weight = next(self.parameters())
        u = torch.randn(
            num_samples, self.dim, generator=generator, device=weight.device, dtype=weight.dtype
        )
        for layer in reversed(self.layers):
            u = u.flip(-1)
            z = torch.zeros_like(u)
            for d in range(self.dim):  # z_d needs z_<d: one pass per dimension
                mu, alpha = layer(z)
                z[:, d] = u[:, d] * torch.exp(alpha[:, d]) + mu[:, d]
            u = z
        return u


def fit_flow(
    codes: Tensor,
    *,
    num_layers: int = 5,
    hidden: int = 64,
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
) -> MaskedAutoregressiveFlow:
    """A flow fitted by maximum likelihood (Adam, ``steps`` minibatches) to ``codes`` [N, D];
    its initial weights and batches come from ``seed``, so a fit is reproducible."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        flow = MaskedAutoregressiveFlow(codes.shape[1], num_layers=num_layers, hidden=hidden)
    flow = flow.to(device=codes.device, dtype=codes.dtype)
    optimizer = torch.optim.Adam(flow.parameters(), lr=lr)
    generator = torch.Generator(codes.device).manual_seed(seed)
    for _ in range(steps):
        size = (min(batch_size, len(codes)),)
        index = torch.randint(len(codes), size, generator=generator, device=codes.device)
        loss = -flow.log_prob(codes[index]).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return flow.eval()
