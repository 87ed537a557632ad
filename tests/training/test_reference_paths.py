"""The optimised training path against plain reference code, and dynamic binarisation."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from vaekit import accel
from vaekit.build import build_model
from vaekit.config import ModelConfig
from vaekit.data.base import Dataset, Split
from vaekit.models import VAE
from vaekit.training.batches import epoch_permutation
from vaekit.training.trainer import Trainer


def reference_negative_elbo(model: VAE, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """pytorch/examples' loss written out by hand: BCE summed over pixels + analytic KL, mean."""
    trunk = [m for m in model.encoder.trunk.layers if isinstance(m, torch.nn.Linear)]
    decoder = [m for m in model.decoder.network.layers if isinstance(m, torch.nn.Linear)]
    h = x.flatten(1)
    for layer in trunk:
        h = F.relu(h @ layer.weight.T + layer.bias)
    head = model.encoder.head
    mu = h @ head.loc.weight.T + head.loc.bias
    logvar = h @ head.log_var.weight.T + head.log_var.bias
    z = mu + torch.exp(0.5 * logvar) * eps
    for layer in decoder[:-1]:
        z = F.relu(z @ layer.weight.T + layer.bias)
    probs = torch.sigmoid(z @ decoder[-1].weight.T + decoder[-1].bias)
    target = x.flatten(1)
    bce = -(target * probs.log() + (1 - target) * (1 - probs).log()).sum(1)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
    return (bce + kl).mean()


def test_loss_and_gradients_match_a_plain_float64_reference() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(latent_dim=3, hidden=(10,), activation="relu", likelihood="bernoulli")
    model = build_model(cfg, (1, 4, 4)).double()
    assert isinstance(model, VAE)
    x = torch.rand(6, 1, 4, 4, dtype=torch.float64)
    ours = model.loss(x, generator=torch.Generator().manual_seed(3)).objectives["model"]
    eps = torch.randn(6, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    reference = reference_negative_elbo(model, x, eps)
    ours_grads = torch.autograd.grad(ours, list(model.parameters()))
    reference_grads = torch.autograd.grad(reference, list(model.parameters()))
    assert torch.allclose(ours, reference, rtol=1e-12, atol=1e-10)
    for a, b in zip(ours_grads, reference_grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-10)
    # The trainer's path for this model: gradients written into .grad without autograd.
    direct = accel.direct_gradients(model)
    assert direct is not None
    out = direct(x, generator=torch.Generator().manual_seed(3))
    assert out is not None
    assert torch.allclose(out[0].objectives["model"], reference, rtol=1e-12, atol=1e-10)
    for p, b in zip(model.parameters(), reference_grads, strict=True):
        assert p.grad is not None and torch.allclose(p.grad, b, rtol=1e-9, atol=1e-10)


def test_the_trainer_takes_the_same_steps_with_direct_and_autograd_gradients() -> None:
    dataset = _grey_dataset(50)
    cfg = ModelConfig(latent_dim=2, hidden=(8,), beta=2.0, corruption="masking")
    states = []
    for accelerate in ("auto", "off"):
        torch.manual_seed(0)
        model = build_model(cfg, (1, 4, 4))
        trainer = Trainer(
            model, dataset, epochs=3, batch_size=16, lr=1e-2, warmup_epochs=2, seed=0,
            accelerate=accelerate,
        )  # fmt: skip
        assert trainer.gradient_path == {"auto": "direct", "off": "autograd"}[accelerate]
        history = trainer.fit()
        states.append((model.state_dict(), history))
    (direct_state, direct_history), (state, history) = states
    for key, value in state.items():
        torch.testing.assert_close(direct_state[key], value, rtol=1e-4, atol=1e-5)
    for a, b in zip(direct_history, history, strict=True):
        assert a.keys() == b.keys()
        assert all(abs(a[k] - b[k]) <= 1e-3 * max(1.0, abs(b[k])) for k in a)


def _grey_dataset(num: int) -> Dataset:
    levels = torch.linspace(0.1, 0.9, num).view(num, 1, 1, 1).expand(num, 1, 4, 4).contiguous()
    split = Split(levels)
    return Dataset("grey", split, split, split, "unit", "dynamic", "test")


def test_dynamic_binarisation_draws_fresh_pixels_every_epoch() -> None:
    dataset = _grey_dataset(40)
    model = build_model(ModelConfig(latent_dim=2, hidden=(8,)), (1, 4, 4))
    seen: list[torch.Tensor] = []
    epochs = 60
    trainer = Trainer(model, dataset, epochs=epochs, batch_size=40, lr=1e-3, seed=0)
    direct = trainer.direct  # the trainer's path for this MLP model
    assert direct is not None

    def recording(x: torch.Tensor, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(x.clone())
        return direct(x, **kwargs)

    trainer.direct = recording  # type: ignore[assignment]
    trainer.fit()
    batches = torch.stack(seen)  # [epochs, 40, 1, 4, 4]: one full-data batch per epoch
    assert set(batches.unique().tolist()) == {0.0, 1.0}
    # Put every epoch back in data order (its permutation is a function of seed and epoch).
    ordered = torch.stack(
        [batches[e][epoch_permutation(40, 0, e).argsort()] for e in range(epochs)]
    )
    # Fresh pixels: the same image is drawn differently in consecutive epochs.
    assert not torch.equal(ordered[0], ordered[1])
    # Expected mean: each image's pixels are on with probability equal to its grey level
    # (60 epochs x 16 pixels = 960 draws per image; standard error <= 0.016).
    per_image = ordered.mean(dim=(0, 2, 3, 4))
    levels = dataset.train.x[:, 0, 0, 0]
    assert torch.allclose(per_image, levels, atol=0.06)


def test_training_flushes_subnormals_and_restores_the_default_after() -> None:
    tiny = torch.tensor([1e-39], dtype=torch.float32)  # subnormal in float32
    with accel.training_context("auto"):
        assert (tiny * 1.0).item() == 0.0
    assert (tiny * 1.0).item() != 0.0
    with accel.training_context("off"):  # the reference keeps IEEE arithmetic
        assert (tiny * 1.0).item() != 0.0


def test_subnormals_are_flushed_on_every_intra_op_thread() -> None:
    """The flag is per thread: a kernel split over two threads must flush on both halves,
    also when the worker threads were started before the flush (as in any training run), and
    with another OpenMP runtime loaded beside torch's (scikit-learn bundles its own)."""
    import threading

    import sklearn.utils._openmp_helpers  # noqa: F401  (loads scikit-learn's libgomp)

    from vaekit.accel.cpu import flush_denormals, on_every_thread

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.full((1 << 20,), 1e-30)  # x · 1e-10 = 1e-40 is subnormal in float32
        assert int((x * 1e-10 != 0).sum()) == x.numel()  # the team is running, unflushed
        with flush_denormals():
            assert int((x * 1e-10 != 0).sum()) == 0
        assert int((x * 1e-10 != 0).sum()) == x.numel()
        seen: set[int] = set()
        if on_every_thread(lambda: seen.add(threading.get_native_id())):
            assert len(seen) == 2 and threading.get_native_id() in seen
        else:  # no GNU OpenMP team to reach: the caller's thread only
            assert seen == {threading.get_native_id()}
        torch.set_num_threads(1)
        seen.clear()
        assert not on_every_thread(lambda: seen.add(threading.get_native_id()))
        assert seen == {threading.get_native_id()}  # one thread: the caller, once
    finally:
        torch.set_num_threads(threads)
