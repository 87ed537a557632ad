"""Latent paths: endpoints, spherical norms, chain refinement and traversals."""

from __future__ import annotations

import pytest
import torch

from vaekit.build import build_model
from vaekit.config import ModelConfig
from vaekit.samplers import PATHS, interpolate, interpolate_images, traversal
from vaekit.samplers.interpolation import lerp, slerp


@pytest.mark.parametrize("method", sorted(PATHS))
def test_paths_start_and_end_at_the_endpoints(method: str) -> None:
    generator = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(2, 4, 16, generator=generator, dtype=torch.float64)
    path = PATHS[method](z0, z1, 7)
    assert path.shape == (7, 4, 16)
    assert torch.allclose(path[0], z0) and torch.allclose(path[-1], z1)


def test_slerp_keeps_the_norm_where_lerp_shrinks_it() -> None:
    generator = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(2, 500, 100, generator=generator, dtype=torch.float64)
    z1 = z1 / z1.norm(dim=-1, keepdim=True) * z0.norm(dim=-1, keepdim=True)  # equal norms
    middle_s, middle_l = slerp(z0, z1, 3)[1], lerp(z0, z1, 3)[1]
    ratio_s = middle_s.norm(dim=-1) / z0.norm(dim=-1)
    ratio_l = middle_l.norm(dim=-1) / z0.norm(dim=-1)
    assert torch.allclose(ratio_s, torch.ones_like(ratio_s))
    # Near-orthogonal 100-d draws: the linear midpoint has about 1/sqrt(2) of the norm.
    assert (ratio_l - 2**-0.5).abs().max() < 0.12


def test_slerp_of_parallel_points_is_linear() -> None:
    z0 = torch.tensor([[1.0, 2.0]])
    path = slerp(z0, 3 * z0, 5)
    assert torch.isfinite(path).all() and torch.allclose(path, lerp(z0, 3 * z0, 5))


def test_chain_refinement_moves_each_point_and_is_seeded() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(kind="vae", latent_dim=3, hidden=(16,), corruption="gaussian")
    model = build_model(cfg, (1, 8, 8)).eval()
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    raw = interpolate_images(model, x[:1], x[1:], num_points=5)
    refined = interpolate_images(
        model, x[:1], x[1:], num_points=5, chain_steps=3, generator=torch.Generator().manual_seed(1)
    )
    again = interpolate(
        model,
        model.encode_mean(x[:1]),
        model.encode_mean(x[1:]),
        num_points=5,
        chain_steps=3,
        generator=torch.Generator().manual_seed(1),
    )
    assert raw.shape == refined.shape == (5, 1, 3)
    assert not torch.allclose(raw, refined)
    assert torch.equal(refined, again)
    with pytest.raises(ValueError, match="unknown interpolation"):
        interpolate(model, raw[0], raw[1], method="cubic")


def test_traversal_sets_one_unit() -> None:
    z = torch.zeros(2, 4)
    values = torch.linspace(-2, 2, 5)
    path = traversal(z, 1, values)
    assert path.shape == (5, 2, 4)
    assert torch.equal(path[:, 0, 1], values) and path[..., [0, 2, 3]].abs().sum() == 0
    with pytest.raises(ValueError, match="dim"):
        traversal(z, 4, values)
