"""The masked autoregressive flow and the flow sampler: a normalised density (2-D numerical
integration), autoregressive by construction, sampling inverts the density's transform, and a fit
recovers a known 2-D Gaussian mixture."""

from __future__ import annotations

import torch

from vaekit.build import build_model
from vaekit.config import ModelConfig
from vaekit.distributions.flow import MADE, MaskedAutoregressiveFlow, fit_flow
from vaekit.samplers import SAMPLERS, FlowSampler

CENTRES = torch.tensor([[-4.0, 0.0], [4.0, 0.0], [0.0, 5.0]])


def random_flow(dim: int = 2, seed: int = 0) -> MaskedAutoregressiveFlow:
    torch.manual_seed(seed)
    flow = MaskedAutoregressiveFlow(dim, num_layers=3, hidden=16).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.mul_(1.5)  # further from the identity than a fresh flow, still mostly on the grid
    return flow


def test_flow_density_integrates_to_one() -> None:
    grid = torch.linspace(-24, 24, 1001, dtype=torch.float64)
    z1, z2 = torch.meshgrid(grid, grid, indexing="ij")
    with torch.no_grad():
        density = random_flow().log_prob(torch.stack([z1, z2], -1).view(-1, 2)).exp()
    total = torch.trapezoid(torch.trapezoid(density.view(1001, 1001), grid, dim=1), grid)
    assert abs(float(total) - 1) < 2e-3


def test_made_outputs_depend_only_on_earlier_dimensions() -> None:
    made = MADE(5, 12).double()
    z = torch.randn(1, 5, dtype=torch.float64, requires_grad=True)
    for d in range(5):
        mu, alpha = made(z)
        (grad,) = torch.autograd.grad(mu[0, d] + alpha[0, d], z)
        assert torch.all(grad[0, d:] == 0), d


def test_sampling_inverts_the_density_transform() -> None:
    flow = random_flow(dim=3)
    z = flow.sample(50, generator=torch.Generator().manual_seed(4))
    u = torch.randn(50, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    out = z
    with torch.no_grad():
        for layer in flow.layers:
            mu, alpha = layer(out)
            out = ((out - mu) * torch.exp(-alpha)).flip(-1)
    torch.testing.assert_close(out, u)


def test_a_fitted_flow_recovers_a_two_dimensional_mixture() -> None:
    g = torch.Generator().manual_seed(0)
    x = CENTRES[torch.randint(3, (2000,), generator=g)] + 0.5 * torch.randn(2000, 2, generator=g)
    mean, std = x.mean(0), x.std(0)
    flow = fit_flow((x - mean) / std, steps=400, seed=0)
    samples = flow.sample(4000, generator=torch.Generator().manual_seed(1)) * std + mean
    nearest = torch.cdist(samples, CENTRES).min(1)
    assert float((nearest.values < 1.5).float().mean()) > 0.85  # the modes, not between them
    shares = torch.bincount(nearest.indices, minlength=3) / 4000
    assert bool(((shares > 0.25) & (shares < 0.42)).all()), shares
    again = fit_flow((x - mean) / std, steps=400, seed=0)
    first = flow.sample(10, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(again.sample(10, generator=torch.Generator().manual_seed(1)), first)


def test_flow_sampler_decodes_its_codes() -> None:
    assert SAMPLERS["flow"] is FlowSampler
    model = build_model(ModelConfig(latent_dim=2, hidden=(8,)), (1, 4, 4)).eval()
    data = torch.rand(200, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    sampler = FlowSampler(model, data, steps=50, num_layers=2, hidden=8)
    images = sampler.sample(7, generator=torch.Generator().manual_seed(1))
    assert images.shape == (7, 1, 4, 4) and bool(((images >= 0) & (images <= 1)).all())
