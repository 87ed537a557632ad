"""``DirectELBO``: the trainer's fused ELBO / IWAE / MIWAE / CIWAE step of one ``VAE``.

It skips autograd altogether and writes the gradients of ``fused_elbo.FusedELBO`` into the
parameters' ``.grad`` in place; the trainer takes this path through ``vaekit.accel`` when
acceleration is on (``train.accelerate = "auto"``). benchmarks/train_step.py times it against
autograd through the distributions.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from vaekit.accel.fused_elbo import FUSED_BOUNDS, FusedELBO
from vaekit.models.base import Loss
from vaekit.models.vae import VAE


class DirectELBO:
    """The hand-derived gradients of one ``VAE``, for the trainer: ``__call__`` is ``loss`` plus
    the backward pass, with the gradients written into the parameters' ``.grad``.

    Built once per model (``of``, None where the model's parts are not supported); k, beta, the
    bound and the gradient estimator are read from the model at every call, so they stay live.
    A call returns None, having drawn nothing, where they cannot be fused (one particle without
    the closed-form KL: k = 1 with ``analytic_kl`` off, or a one-particle MIWAE or CIWAE; PIWAE);
    the trainer then takes autograd.
    """

    def __init__(self, model: VAE, base: FusedELBO, *, compile: bool) -> None:
        self.model, self.base, self.compile = model, base, compile
        self._plans: dict[tuple[int, bool, str, int, float], FusedELBO] = {}

    @classmethod
    def of(cls, model: nn.Module, *, compile: bool = False) -> DirectELBO | None:
        base = FusedELBO.of(model)
        return None if base is None else cls(model, base, compile=compile)  # type: ignore[arg-type]

    def plan(self) -> FusedELBO | None:
        """The fused objective for the model's current k, bound and estimator, or None."""
        model, bound = self.model, self.model.bound
        if bound not in FUSED_BOUNDS:
            return None
        # As VAE.loss reads them: M not for IWAE, c for CIWAE only, DReG for IWAE only
        groups = model.bound_groups if bound != "iwae" else 1
        ciwae_beta = model.ciwae_beta if bound == "ciwae" else 0.5
        dreg = bound == "iwae" and model.gradient_estimator == "dreg"
        k = model.num_particles * groups
        if k == 1 and (bound != "iwae" or not model.analytic_kl):
            return None  # one particle, and the objective has no closed-form KL: autograd
        key = (k, dreg, bound, groups, ciwae_beta)
        if key not in self._plans:  # one object per key: compiled, dynamo guards on it
            self._plans[key] = replace(
                self.base, particles=k, dreg=dreg, bound=bound, groups=groups, ciwae_beta=ciwae_beta
            )
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
        objective, recon, kl, bounds, finite = plan.loss_and_grad_(
            x_in, x, eps, weight, scale, compile=self.compile
        )
        metrics = {"recon": recon, "kl": kl, "elbo": -(recon + kl)}
        if plan.bound != "iwae":  # as VAE.loss reports the other bounds, in its order
            metrics |= {"iwae": bounds[0], plan.bound: bounds[1], "loss": objective.detach()}
            metrics["kl_weight"] = torch.full_like(kl, weight)
            return Loss({"model": objective}, metrics), finite
        if plan.particles > 1:
            metrics["iwae"] = bounds[0]
        else:  # as VAE.loss reports them
            metrics["weighted_kl"] = weight * kl
        metrics["kl_weight"] = torch.full_like(kl, weight)
        metrics["loss"] = objective.detach()
        return Loss({"model": objective}, metrics), finite
