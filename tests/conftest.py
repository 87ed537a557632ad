"""Shared fixtures: small models, a probabilistic-PCA model with its exact posterior, and a
tiny run trained through the CLI."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import MultivariateNormal

from vaekit.cli import main
from vaekit.distributions import FixedGaussianLikelihood, GaussianHead, StandardNormalPrior
from vaekit.models import VAE, NetworkDecoder, TrunkEncoder
from vaekit.nn import MLPDecoderNet


@dataclass
class PPCA:
    """x = W z + mu + sigma·eps with orthogonal columns of W (so p(z|x) is diagonal)."""

    W: Tensor  # [D, K]
    mu: Tensor  # [D]
    sigma: float

    @property
    def shape(self) -> tuple[int, int, int]:
        return (1, 1, self.W.shape[0])

    def marginal(self) -> MultivariateNormal:
        cov = self.W @ self.W.T + self.sigma**2 * torch.eye(self.W.shape[0], dtype=self.W.dtype)
        return MultivariateNormal(self.mu, covariance_matrix=cov)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        z = torch.randn(n, self.W.shape[1], generator=generator, dtype=self.W.dtype)
        eps = torch.randn(n, self.W.shape[0], generator=generator, dtype=self.W.dtype)
        return (z @ self.W.T + self.mu + self.sigma * eps).view(n, *self.shape)

    def posterior_params(self) -> tuple[Tensor, Tensor, Tensor]:
        """p(z|x) = N(A (x - mu), diag v): returns A [K, D], mu-offset bias [K], variance v [K]."""
        m = (self.W**2).sum(0) + self.sigma**2  # diagonal of M = WᵀW + σ²I
        A = self.W.T / m[:, None]
        return A, -(A @ self.mu), self.sigma**2 / m

    def model(self, encoder_error: float = 0.0) -> VAE:
        """A VAE whose encoder is the exact posterior (plus ``encoder_error`` on its mean)."""
        d, k = self.W.shape
        A, bias, var = self.posterior_params()
        head = GaussianHead(d, k)
        decoder_net = MLPDecoderNet(k, self.shape, (), "relu")
        with torch.no_grad():
            head.loc.weight.copy_(A)
            head.loc.bias.copy_(bias + encoder_error)
            head.log_var.weight.zero_()
            head.log_var.bias.copy_(var.log())
            linear = decoder_net.layers[-1]
            assert isinstance(linear, nn.Linear)
            linear.weight.copy_(self.W)
            linear.bias.copy_(self.mu)
        encoder = TrunkEncoder(nn.Flatten(), head)
        decoder = NetworkDecoder(decoder_net, FixedGaussianLikelihood(self.sigma))
        return VAE(encoder, decoder, StandardNormalPrior(k), analytic_kl=False).double()


@pytest.fixture
def ppca() -> PPCA:
    generator = torch.Generator().manual_seed(0)
    d, k = 6, 2
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    W = q[:, :k] * torch.tensor([2.0, 1.0], dtype=torch.float64)
    mu = torch.randn(d, generator=generator, dtype=torch.float64)
    return PPCA(W, mu, 0.5)


@pytest.fixture(autouse=True, scope="module")
def fresh_compiled_graphs() -> Iterator[None]:
    """Every test module starts without compiled graphs.

    torch.compile's caches are process-wide, and dynamo compiles one function at most 8 times
    (the direct path once per model) before it runs it eagerly for good: a module that compiles
    many models would otherwise turn a later module's compiled run into an eager one
    (reliability/test_exact_resume.py compares a compiled run of this process with one of a
    fresh process, bit for bit).
    """
    yield
    if "torch._dynamo" in sys.modules:  # something compiled: forget it (else nothing to do)
        torch._dynamo.reset()
        from vaekit.accel import fused_elbo

        fused_elbo._compiled_values_and_grads.cache_clear()


def log_mean_exp(x: Tensor, dim: int) -> Tensor:
    return torch.logsumexp(x, dim) - math.log(x.shape[dim])


TINY = str(Path(__file__).parents[1] / "configs" / "tiny.toml")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny recipe trained by ``vaekit train`` (2 epochs), one per test module."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", "--config", TINY, "--out", str(out), "--quiet"]) == 0
    return out
