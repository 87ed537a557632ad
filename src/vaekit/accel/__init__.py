"""Optional speed-ups behind one switch, ``accelerate = "auto" | "off"``.

With ``"off"`` vaekit computes everything through the model's own ``torch.distributions``
objects and autograd (the reference). With ``"auto"`` (the default) it takes, where the model's
parts allow it, faster paths that compute the same numbers:

- hand-derived ELBO / IWAE gradients for MLP VAEs with a Gaussian q and a Bernoulli p
  (``fused_elbo.py``, its MLP stacks in ``mlp_stack.py``, the trainer's door
  ``direct_elbo.py``; checked against autograd in float64);
- subnormals flushed to zero on every CPU thread while training (``cpu.py``);
- a lean log p(x|z) for importance sampling, optionally with bfloat16x3 products
  (``log_px.py``, ``bfloat16x3.py``).

This module is the seam: the trainer and the evaluation call the functions below, and nothing
outside this package imports its insides. Models know nothing of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from vaekit.accel.compile import compiled_or_eager
from vaekit.accel.cpu import flush_denormals, retain_freed_memory
from vaekit.accel.direct_elbo import DirectELBO
from vaekit.accel.log_px import LeanBernoulliLogPx

ACCELERATE_MODES = ("auto", "off")
# The matmul precisions the importance-sampled likelihood can use (``lean_log_px``).
MATMUL_PRECISIONS = ("float32", "bfloat16x3")
BFLOAT16X3_SCOPE = "applies to MLP decoders with a Bernoulli likelihood only"

__all__ = [
    "ACCELERATE_MODES",
    "BFLOAT16X3_SCOPE",
    "MATMUL_PRECISIONS",
    "DirectELBO",
    "LeanBernoulliLogPx",
    "check_mode",
    "compiled_or_eager",
    "compiled_parts",
    "direct_gradients",
    "has_lean_path",
    "lean_log_px",
    "retain_freed_memory",
    "training_context",
]


def check_mode(accelerate: str) -> None:
    """Raise ValueError unless ``accelerate`` is one of ``ACCELERATE_MODES``."""
    if accelerate not in ACCELERATE_MODES:
        choices = ", ".join(repr(mode) for mode in ACCELERATE_MODES)
        raise ValueError(f"accelerate must be one of {choices}, got {accelerate!r}")


def direct_gradients(
    model: nn.Module, *, accelerate: str = "auto", compile: bool = False
) -> DirectELBO | None:
    """The model's hand-derived gradients (``DirectELBO``), or None: autograd trains it.

    None with ``accelerate="off"`` and for every model whose parts ``fused_elbo.py`` does not
    cover. ``compile=True`` runs them through ``torch.compile`` (eager fallback, one warning).
    """
    check_mode(accelerate)
    return None if accelerate == "off" else DirectELBO.of(model, compile=compile)


@contextmanager
def training_context(accelerate: str = "auto") -> Iterator[None]:
    """The CPU settings a training loop runs under: subnormals flushed with ``"auto"``."""
    check_mode(accelerate)
    if accelerate == "off":
        yield
        return
    with flush_denormals():
        yield


@contextmanager
def compiled_parts(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """While the block runs, ``model.encoder`` and ``model.decoder`` run through
    ``torch.compile`` (any modules, the user's own included; their Distributions are traced
    too). Where compiling fails the first call warns once and runs eagerly. The modules are
    unchanged afterwards (nothing compiled is saved with them)."""
    parts = [model.get_submodule(name) for name in ("encoder", "decoder")] if enabled else []
    for part in parts:
        part.forward = compiled_or_eager(part.forward, fallback="running eagerly")
    try:
        yield
    finally:
        for part in parts:
            del part.forward


def lean_log_px(
    decoder: nn.Module, *, accelerate: str = "auto", compile: bool = False, matmul: str = "float32"
) -> LeanBernoulliLogPx | None:
    """The lean log p(x|z) of ``decoder`` for importance sampling, or None (the caller scores
    ``decoder(z).log_prob(x)``). ``matmul="bfloat16x3"`` needs the lean path; a ValueError says
    so where there is none (or ``accelerate="off"``)."""
    check_mode(accelerate)
    if matmul not in MATMUL_PRECISIONS:
        raise ValueError(f"matmul must be one of {MATMUL_PRECISIONS}, got {matmul!r}")
    lean = None
    if accelerate == "auto":
        lean = LeanBernoulliLogPx.of(decoder, compile=compile, matmul=matmul)
    if lean is None and matmul != "float32":
        if accelerate == "off":
            raise ValueError(f"matmul={matmul!r} needs accelerate='auto'")
        raise ValueError(f"matmul={matmul!r} {BFLOAT16X3_SCOPE}; use matmul='float32'")
    return lean


def has_lean_path(decoder: nn.Module) -> bool:
    """Whether ``lean_log_px`` finds a lean path for ``decoder`` (and allows bfloat16x3)."""
    return LeanBernoulliLogPx.of(decoder, compile=False, matmul="float32") is not None
