"""The hand-derived gradients (``DirectELBO``) against ``model.loss`` and autograd, and when
they apply.

``accelerate="off"`` trains through ``model.loss`` and ``torch.autograd``; ``"auto"`` takes
``DirectELBO`` where the model's parts allow it. Wherever both apply they give the same loss and
the same gradients: checked here in float64, with the same generator state for both.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vaekit import accel
from vaekit.accel import DirectELBO
from vaekit.build import build_model
from vaekit.config import ModelConfig
from vaekit.models import VAE, Loss

MLP = ModelConfig(latent_dim=3, hidden=(12, 7), likelihood="bernoulli")
SHAPE = (1, 5, 5)


def _model(**change: object) -> VAE:
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(MLP, **change), SHAPE).double()  # type: ignore[arg-type]
    assert isinstance(model, VAE)
    return model


def _autograd(
    model: VAE, x: torch.Tensor, kl_weight: float, seed: int = 4
) -> tuple[Loss, list[torch.Tensor]]:
    """``accelerate="off"``: the loss through the distributions and its autograd gradients."""
    loss = model.loss(x, kl_weight=kl_weight, generator=torch.Generator().manual_seed(seed))
    grads = torch.autograd.grad(loss.objectives["model"], list(model.parameters()))
    return loss, list(grads)


def _direct(
    model: VAE, x: torch.Tensor, kl_weight: float, seed: int = 4, direct: DirectELBO | None = None
) -> tuple[Loss, list[torch.Tensor]]:
    """``accelerate="auto"``: the loss and the gradients ``DirectELBO`` writes into ``.grad``."""
    direct = direct or accel.direct_gradients(model)
    assert direct is not None
    model.zero_grad(set_to_none=True)
    out = direct(x, kl_weight=kl_weight, generator=torch.Generator().manual_seed(seed))
    assert out is not None
    loss, finite = out
    assert bool(finite)
    assert all(p.grad is not None for p in model.parameters())
    return loss, [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]


def _assert_same(
    direct: tuple[Loss, list], autograd: tuple[Loss, list], *, relative_to_largest: bool = False
) -> None:
    """The same metrics, objective and gradients; ``relative_to_largest``: each gradient's
    absolute tolerance scaled by its largest entry (where that is far above 1)."""
    (direct_loss, direct_grads), (loss, grads) = direct, autograd
    assert list(direct_loss.metrics) == list(loss.metrics)
    for key, value in loss.metrics.items():
        torch.testing.assert_close(direct_loss.metrics[key], value, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(
        direct_loss.objectives["model"], loss.objectives["model"].detach(), rtol=1e-12, atol=1e-10
    )
    for a, b in zip(direct_grads, grads, strict=True):
        largest = max(1.0, float(b.abs().max())) if relative_to_largest else 1.0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12 * largest)


@pytest.mark.parametrize("activation", ["relu", "tanh", "leaky_relu"])
@pytest.mark.parametrize("corruption", ["none", "masking"])
def test_elbo_loss_and_gradients_equal_autograds(activation: str, corruption: str) -> None:
    model = _model(activation=activation, corruption=corruption, beta=2.0)
    x = torch.rand(9, *SHAPE, dtype=torch.float64)
    direct = _direct(model, x, kl_weight=0.3)
    assert list(direct[0].metrics) == [
        "recon",
        "kl",
        "elbo",
        "weighted_kl",
        "kl_weight",
        "loss",
    ]
    _assert_same(direct, _autograd(model, x, kl_weight=0.3))


@pytest.mark.parametrize(("particles", "activation"), [(2, "relu"), (5, "tanh")])
@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_iwae_bound_and_gradients_equal_autograds(
    particles: int, activation: str, beta: float
) -> None:
    model = _model(activation=activation, num_particles=particles, beta=beta, corruption="masking")
    x = torch.bernoulli(torch.rand(6, *SHAPE, dtype=torch.float64))
    direct = _direct(model, x, kl_weight=0.7)
    assert list(direct[0].metrics) == [
        "recon",
        "kl",
        "elbo",
        "iwae",
        "kl_weight",
        "loss",
    ]
    _assert_same(direct, _autograd(model, x, kl_weight=0.7))


@pytest.mark.parametrize(
    "change",
    [
        {"bound": "miwae", "bound_groups": 3, "num_particles": 2},
        {"bound": "miwae", "bound_groups": 4, "num_particles": 1},  # M one-sample ELBOs, averaged
        {"bound": "ciwae", "num_particles": 5, "ciwae_beta": 0.3},
        {"bound": "ciwae", "num_particles": 3, "ciwae_beta": 1.0},  # the ELBO, Monte Carlo KL
    ],
)
@pytest.mark.parametrize("beta", [1.0, 0.6])
def test_miwae_and_ciwae_bounds_and_gradients_equal_autograds(change: dict, beta: float) -> None:
    """The same loss, metrics (in VAE.loss's order) and gradients as the distributions path, in
    float64, where the two bounds differ from IWAE only in the particles' weights."""
    model = _model(activation="tanh", beta=beta, corruption="masking", **change)
    x = torch.bernoulli(torch.rand(6, *SHAPE, dtype=torch.float64))
    direct = accel.direct_gradients(model)
    assert direct is not None and direct.plan() is not None
    ours = _direct(model, x, 0.7, direct=direct)
    assert list(ours[0].metrics) == [
        "recon",
        "kl",
        "elbo",
        "iwae",
        change["bound"],
        "loss",
        "kl_weight",
    ]
    _assert_same(ours, _autograd(model, x, kl_weight=0.7))


def test_settings_a_bound_ignores_stay_ignored_when_changed_live() -> None:
    """VAE.loss reads M for the bounds other than IWAE, c for CIWAE only and DReG for IWAE
    only: set live, the direct path reads them as it does, and the two paths agree."""
    x = torch.bernoulli(torch.rand(6, *SHAPE, dtype=torch.float64))
    for bound, change in (
        ("iwae", {"bound_groups": 3}),
        ("iwae", {"ciwae_beta": 0.2}),
        ("miwae", {"gradient_estimator": "dreg", "ciwae_beta": 0.2}),
        ("ciwae", {"gradient_estimator": "dreg", "bound_groups": 3}),
    ):
        groups = 2 if bound == "miwae" else 1
        model = _model(activation="tanh", bound=bound, bound_groups=groups, num_particles=3)
        direct = accel.direct_gradients(model)
        assert direct is not None
        for name, value in change.items():
            setattr(model, name, value)
        _assert_same(_direct(model, x, 0.9, direct=direct), _autograd(model, x, kl_weight=0.9))


def test_piwae_and_single_particle_bounds_take_autograd() -> None:
    """PIWAE trains the encoder and the decoder on two bounds (two sets of weights), and one
    particle of MIWAE or CIWAE has no closed-form KL: both stay on the distributions path."""
    assert DirectELBO.of(_model(bound="piwae", bound_groups=2, num_particles=2)) is None
    for bound in ("miwae", "ciwae"):
        direct = accel.direct_gradients(_model(bound=bound, num_particles=1))
        assert direct is not None and direct.plan() is None


@pytest.mark.parametrize(("particles", "beta"), [(1, 1.0), (1, 0.4), (4, 1.0), (4, 2.5)])
def test_dreg_loss_and_gradients_equal_autograds(particles: int, beta: float) -> None:
    model = _model(
        activation="tanh", num_particles=particles, beta=beta, gradient_estimator="dreg",
        corruption="masking",
    )  # fmt: skip
    x = torch.bernoulli(torch.rand(6, *SHAPE, dtype=torch.float64))
    direct = accel.direct_gradients(model)
    assert direct is not None and direct.plan() is not None and direct.plan().dreg  # type: ignore[union-attr]
    _assert_same(_direct(model, x, 0.8, direct=direct), _autograd(model, x, kl_weight=0.8))


def test_iwae_without_the_closed_form_kl_is_direct_too() -> None:
    """k > 1 needs no KL: ``analytic_kl=False`` changes nothing there, and both paths agree."""
    model = _model(analytic_kl=False, num_particles=3)
    x = torch.rand(5, *SHAPE, dtype=torch.float64)
    _assert_same(_direct(model, x, kl_weight=0.6), _autograd(model, x, kl_weight=0.6))


@pytest.mark.parametrize("estimator", ["reparam", "dreg"])
def test_direct_gradients_respect_the_log_variance_clamp(estimator: str) -> None:
    model = _model(gradient_estimator=estimator)
    with torch.no_grad():  # push some log-variances below LOG_VAR_MIN: the clamp cuts their grad
        model.encoder.head.log_var.bias[:2] = -40.0
    x = torch.rand(5, *SHAPE, dtype=torch.float64)
    bias_index = [n for n, _ in model.named_parameters()].index("encoder.head.log_var.bias")
    direct = accel.direct_gradients(model)
    for particles in (1, 3):
        model.num_particles = particles
        ours = _direct(model, x, kl_weight=1.0, direct=direct)
        assert ours[1][bias_index][:2].abs().max() == 0
        assert ours[1][bias_index][2:].abs().max() > 0
        # dreg: σ at the clamp's floor (e^-10) puts ε/σ ~ 1e4 into the encoder's gradients
        dreg = estimator == "dreg"
        _assert_same(ours, _autograd(model, x, kl_weight=1.0), relative_to_largest=dreg)


def test_k_beta_and_the_estimator_stay_live_on_both_paths() -> None:
    """Set after construction, ``num_particles``, ``beta`` and ``gradient_estimator`` reach
    ``model.loss`` and the ``DirectELBO`` made before, which still equal each other."""
    model = _model(num_particles=1)
    x = torch.bernoulli(torch.rand(6, *SHAPE, dtype=torch.float64))
    direct = accel.direct_gradients(model)
    assert direct is not None and direct.plan().particles == 1  # type: ignore[union-attr]

    model.num_particles = 4
    loss = model.loss(x, generator=torch.Generator().manual_seed(0))
    assert "iwae" in loss.metrics
    loss.objectives["model"].backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in model.parameters())
    plan = direct.plan()
    assert plan is not None and plan.particles == 4 and not plan.dreg
    ours = _direct(model, x, kl_weight=0.5, direct=direct)
    assert "iwae" in ours[0].metrics
    _assert_same(ours, _autograd(model, x, kl_weight=0.5))

    # beta: the same answer as a model built with it, on both paths
    model.beta = 0.3
    built = _model(num_particles=4, beta=0.3)
    built.load_state_dict(model.state_dict())
    ours = _direct(model, x, kl_weight=0.5, direct=direct)
    _assert_same(ours, _autograd(model, x, kl_weight=0.5))
    _assert_same(ours, _autograd(built, x, kl_weight=0.5))
    before = _autograd(_model(num_particles=4), x, kl_weight=0.5)
    assert not torch.allclose(before[0].objectives["model"], ours[0].objectives["model"])

    model.gradient_estimator = "dreg"
    assert direct.plan().dreg  # type: ignore[union-attr]
    _assert_same(_direct(model, x, 0.5, direct=direct), _autograd(model, x, kl_weight=0.5))

    model.gradient_estimator, model.num_particles, model.beta = "reparam", 1, 2.0
    assert direct.plan().particles == 1  # type: ignore[union-attr]
    ours = _direct(model, x, kl_weight=0.5, direct=direct)
    assert "iwae" not in ours[0].metrics
    _assert_same(ours, _autograd(model, x, kl_weight=0.5))


@pytest.mark.parametrize(
    "change",
    [
        {"likelihood": "gaussian"},
        {"activation": "elu"},  # its derivative needs the input, not the output
        {"network": "conv", "conv_channels": 4},
        {"kind": "ae", "beta": 1.0},
    ],
)
def test_other_models_take_the_distributions_path(change: dict) -> None:
    model = build_model(dataclasses.replace(MLP, **change), (1, 8, 8))
    assert DirectELBO.of(model) is None and accel.direct_gradients(model) is None
    loss = model.loss(torch.rand(3, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss.objectives["model"])


def test_accelerate_off_has_no_direct_path_and_other_modes_are_refused() -> None:
    model = _model()
    assert isinstance(accel.direct_gradients(model), DirectELBO)
    assert accel.direct_gradients(model, accelerate="off") is None
    with pytest.raises(ValueError, match="accelerate must be one of 'auto', 'off'"):
        accel.direct_gradients(model, accelerate="on")


def test_direct_metrics_agree_with_the_distributions_path_in_float32() -> None:
    torch.manual_seed(0)
    model = build_model(MLP, SHAPE)
    x = torch.rand(4, *SHAPE)
    with torch.no_grad():
        plain = model.loss(x, generator=torch.Generator().manual_seed(1)).metrics
    direct = accel.direct_gradients(model)
    assert direct is not None
    out = direct(x, generator=torch.Generator().manual_seed(1))
    assert out is not None
    for key, value in plain.items():
        torch.testing.assert_close(out[0].metrics[key], value, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("particles", [1, 4])
def test_direct_gradients_equal_autograd_and_reuse_the_grad_buffers(particles: int) -> None:
    model = _model(corruption="masking", beta=1.5, num_particles=particles)
    params = list(model.parameters())
    x = torch.rand(7, *SHAPE, dtype=torch.float64)
    loss, expected = _autograd(model, x, kl_weight=0.4, seed=2)
    direct = accel.direct_gradients(model)
    assert direct is not None
    # A non-contiguous stale gradient is replaced by a contiguous one ...
    params[0].grad = torch.zeros(params[0].shape[::-1], dtype=torch.float64).t()
    direct(x, generator=torch.Generator().manual_seed(5))
    assert all(p.grad is not None and p.grad.is_contiguous() for p in params)
    written = [p.grad.data_ptr() for p in params]  # type: ignore[union-attr]
    # ... and later calls overwrite every gradient in place.
    out = direct(x, kl_weight=0.4, generator=torch.Generator().manual_seed(2), scale=0.25)
    assert out is not None
    assert [p.grad.data_ptr() for p in params] == written  # type: ignore[union-attr]
    ours, _ = out
    assert not ours.objectives["model"].requires_grad
    for key, value in loss.metrics.items():
        torch.testing.assert_close(ours.metrics[key], value, rtol=1e-12, atol=1e-12)
    for p, g in zip(params, expected, strict=True):
        assert p.grad is not None and p.grad.shape == p.shape
        torch.testing.assert_close(p.grad, 0.25 * g, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("particles", [1, 4])
def test_the_direct_path_reports_whether_its_gradients_are_finite(
    particles: int, compile: bool
) -> None:
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(MLP, num_particles=particles), SHAPE)
    direct = accel.direct_gradients(model, compile=compile)
    assert direct is not None
    x = torch.bernoulli(torch.full((6, *SHAPE), 0.4))

    def flag(**kwargs: float) -> bool:
        out = direct(x, generator=torch.Generator().manual_seed(1), **kwargs)
        assert out is not None
        loss, finite = out
        assert finite.shape == () and finite.dtype == torch.bool
        grads = torch.cat([p.grad.flatten() for p in model.parameters()])  # type: ignore[union-attr]
        assert bool(finite) == bool(grads.isfinite().all() & loss.objectives["model"].isfinite())
        return bool(finite)

    assert flag()
    assert not flag(scale=float("inf"))  # finite objective, infinite gradients
    out = direct(x, scale=float("inf"))
    assert out is not None and torch.isfinite(out[0].objectives["model"])
    with torch.no_grad():
        model.decoder.network.layers[0].weight[0, 0] = float("nan")  # type: ignore[index]
    assert not flag()


def test_models_without_a_direct_path_draw_nothing() -> None:
    """k = 1 with the one-sample KL estimate has no direct path: the call returns None having
    drawn nothing and written no gradient (the trainer then takes autograd); k > 1 has one."""
    model = build_model(dataclasses.replace(MLP, analytic_kl=False), SHAPE)
    assert isinstance(model, VAE)
    direct = accel.direct_gradients(model)
    assert direct is not None and direct.plan() is None
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    assert direct(torch.rand(2, *SHAPE), generator=generator) is None
    assert torch.equal(generator.get_state(), state)
    assert all(p.grad is None for p in model.parameters())
    model.num_particles = 2
    assert direct.plan() is not None and direct(torch.rand(2, *SHAPE)) is not None
