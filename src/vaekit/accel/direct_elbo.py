"""``DirectELBO``: the trainer's fused ELBO / IWAE step of one ``VAE``, gradients in place.

It skips autograd altogether and writes the gradients of ``fused_elbo.FusedELBO`` into the
parameters' ``.grad`` in place; the trainer takes this path through ``vaekit.accel`` when
acceleration is on (``train.accelerate = "auto"``). benchmarks/train_step.py times it against
autograd through the distributions.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from vaekit.accel.fused_elbo import FusedELBO
from vaekit.models.base import Loss
from vaekit.models.vae import VAE


class DirectELBO:
    """The hand-derived gradients of one ``VAE``, for the trainer: ``__call__`` is ``loss`` plus
    the backward pass, with the gradients written into the parameters' ``.grad``.

    Built once per model (``of``, None where the model's parts are not supported); k, beta and
    the gradient estimator are read from the model at every call, so they stay live. A call
    returns None, having drawn nothing, where this k cannot be fused (k = 1 without the
    closed-form KL); the trainer then takes autograd.
    """

    def __init__(self, model: VAE, base: FusedELBO, *, compile: bool) -> None:
        self.model, self.base, self.compile = model, base, compile
        self._plans: dict[tuple[int, bool], FusedELBO] = {}

    @classmethod
    def of(cls, model: nn.Module, *, compile: bool = False) -> DirectELBO | None:
        base = FusedELBO.of(model)
        return None if base is None else cls(model, base, compile=compile)  # type: ignore[arg-type]

    def plan(self) -> FusedELBO | None:
        """The fused objective for the model's current k and estimator, or None."""
        model = self.model
        k, dreg = model.num_particles, model.gradient_estimator == "dreg"
        if k == 1 and not model.analytic_kl:
            return None
        key = (k, dreg)
        if key not in self._plans:  # one object per key: compiled, dynamo guards on it
            self._plans[key] = replace(self.base, particles=k, dreg=dreg)
        return self._plans[key]

    def __call__(
        self,
        x: Tensor,
        *,
        kl_weight: float = 1.0,
        generator: torch.Generator | None = None,
        scale: float = 1.0,
    ) -> tuple[Loss, Tensor] | None:
        """(Loss, grads_finite) as ``VAE.loss`` defines the loss, with the gradient of ``scale``
        × the objective in ``.grad`` (replacing what was there); ``grads_finite`` is a [] bool:
        whether the objective and every gradient written are finite. None: not fused."""
        plan = self.plan()
        if plan is None:
            return None
        model = self.model
        x_in = model.corrupt(x, generator)  # drawn in the order and shape ``loss`` draws them
        shape: tuple[int, ...] = (x.shape[0], plan.loc.out_features)
        if plan.particles > 1:
            shape = (plan.particles, *shape)
        eps = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
        weight = model.beta * kl_weight
        objective, recon, kl, bound, finite = plan.loss_and_grad_(
            x_in, x, eps, weight, scale, compile=self.compile
        )
        metrics = {"recon": recon, "kl": kl, "elbo": -(recon + kl)}
        if plan.particles > 1:
            metrics["iwae"] = bound
        else:  # as VAE.loss reports them
            metrics["weighted_kl"] = weight * kl
        metrics["kl_weight"] = torch.full_like(kl, weight)
        metrics["loss"] = objective.detach()
        return Loss({"model": objective}, metrics), finite
