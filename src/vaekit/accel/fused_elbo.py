"""The ELBO of an MLP VAE (Gaussian q, Bernoulli p) with hand-derived gradients.

For the common case — MLP trunk and decoder with ReLU, leaky ReLU or tanh, a Gaussian head, a
Bernoulli likelihood — this module computes the per-datapoint loss and its gradients in one pass
each way. With one particle and the closed-form KL:

    l = decoder(z), z = loc + σ ε,  recon = Σ_d softplus(l_d) - x_d l_d,
    KL = ½ Σ_j (loc_j² + σ_j² - log σ_j² - 1)                       (Kingma & Welling 2014, B)
    ∂recon/∂l = sigmoid(l) - x,  ∂KL/∂loc = loc,  ∂KL/∂log σ² = ½ (σ² - 1)

With k > 1 particles z_i = loc + σ ε_i, the IWAE bound (Burda et al. 2016, eq. 8) with β on
the log-ratio:

    a_i = log p(x|z_i) + β (log p(z_i) - log q(z_i|x)),
    log p(z) - log q(z|x) = ½ (ε² - z² + log σ²)  (summed over latent dimensions),
    objective = -(logsumexp_i a_i - log k),  ∂objective/∂a_i = -w_i,  w = softmax(a)

so particle i's decoder gradient is w_i (sigmoid(l_i) - x), ∂/∂z_i adds w_i β z_i, and the
direct term of log σ² is -½ β Σ_i w_i = -½ β (ε held fixed: the reparameterised log q). The
MIWAE and CIWAE bounds (Rainforth et al. 2018) differ only in w, which still sums to 1 over the
particles of a datapoint (``bound_weights.py``); PIWAE, whose encoder and decoder follow two bounds,
trains through autograd.

``direct_elbo.DirectELBO`` gives the trainer this path, and ``mlp_stack.py`` holds the trunk's
and the decoder's forward and backward passes.

Under ``torch.autocast`` (``train.precision = "bfloat16"``) the trunk's and the decoder's matrix
products run in autocast's dtype, forward and backward, with float32 accumulation: on a CPU
with AMX, or a GPU's tensor cores, several times the float32 rate. Everything elementwise (the
activations, softplus, sigmoid, the KL, the importance weights), the two small Gaussian-head
projections, the bias gradients and every value returned stay in the parameters' dtype, and the
weight gradients are written in it: autocast's contract, without autograd.

The gradients are checked against autograd through the distributions path in float64
(tests/accel/test_fused_elbo.py), and the noise ε is drawn exactly as ``draw`` draws it, so all
paths give the same numbers for the same generator state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vaekit.accel.bound_weights import particle_weights
from vaekit.accel.compile import compiled_or_eager
from vaekit.accel.mlp_stack import (
    Layer,
    Stack,
    backward_stack,
    matmul_dtype,
    parse_layers,
    run_stack,
)
from vaekit.distributions.likelihoods import BernoulliLikelihood
from vaekit.distributions.posteriors import LOG_VAR_MAX, LOG_VAR_MIN, GaussianHead
from vaekit.distributions.priors import StandardNormalPrior
from vaekit.models.parts import NetworkDecoder, TrunkEncoder
from vaekit.models.vae import VAE, multi_sample_bounds
from vaekit.nn.mlp import MLPDecoderNet, MLPTrunk

# The bounds with one set of weights for the encoder and the decoder (PIWAE has two: autograd).
FUSED_BOUNDS = ("iwae", "miwae", "ciwae")


@dataclass(frozen=True)
class FusedELBO:
    """The fused objective for one model's layers, k and estimator (see ``DirectELBO``)."""

    trunk: list[Layer]
    loc: nn.Linear
    log_var: nn.Linear
    decoder: list[Layer]
    particles: int = 1  # k: 1 is the ELBO with the closed-form KL, k > 1 a multi-sample bound
    dreg: bool = False  # the encoder takes the doubly reparameterised gradient (see _backward)
    bound: str = (
        "iwae"  # k > 1: "iwae", "miwae" (M groups of k / M) or "ciwae" (see bound_weights.py)
    )
    groups: int = 1  # M, for "miwae"
    ciwae_beta: float = 0.5  # c, for "ciwae"

    @classmethod
    def of(cls, model: nn.Module) -> FusedELBO | None:
        """The fused objective of ``model`` (k = 1, reparameterised), or None unless it is a
        ``VAE`` of an MLP trunk + Gaussian head, an MLP decoder + Bernoulli likelihood with
        supported layers, and a standard normal prior."""
        if not isinstance(model, VAE) or type(model.prior) is not StandardNormalPrior:
            return None
        if model.bound not in FUSED_BOUNDS:
            return None
        encoder, decoder = model.encoder, model.decoder
        if not (isinstance(encoder, TrunkEncoder) and isinstance(decoder, NetworkDecoder)):
            return None
        trunk, head, network = encoder.trunk, encoder.head, decoder.network
        if not (
            isinstance(trunk, MLPTrunk)
            and type(head) is GaussianHead
            and isinstance(network, MLPDecoderNet)
            and type(decoder.likelihood) is BernoulliLikelihood
        ):
            return None
        trunk_layers, decoder_layers = parse_layers(trunk.layers), parse_layers(network.layers)
        if not trunk_layers or not decoder_layers or decoder_layers[-1].activation is not None:
            return None
        return cls(trunk_layers, head.loc, head.log_var, decoder_layers)

    def parameters(self) -> list[Tensor]:
        """The parameters in gradient order: trunk, loc, log-variance, decoder (weight, bias)."""
        linears = [layer.linear for layer in self.trunk]
        linears += [self.loc, self.log_var, *(layer.linear for layer in self.decoder)]
        return [p for linear in linears for p in (linear.weight, linear.bias)]

    @torch.no_grad()
    def loss_and_grad_(
        self,
        x_in: Tensor,
        x: Tensor,
        eps: Tensor,
        kl_weight: float,
        scale: float = 1.0,
        *,
        compile: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(objective, recon, kl, bounds, finite) without autograd: the scalar objective (k = 1:
        the batch mean of recon + kl_weight · KL; k > 1: minus the plan's bound with kl_weight on
        log p(z) - log q(z|x)), the detached batch means of -log p(x|z), of the KL (k > 1: its
        one-sample estimate log q - log p, averaged over particles) and [2] of the IWAE bound and
        the plan's bound, without the KL weight (k = 1: the ELBO, twice); ``x_in`` is the
        encoder input (corrupted for a denoising model), ``x`` the scored target, ``eps`` the
        noise, [B, D] or [k, B, D]. The gradient of ``scale · objective`` written into every
        parameter's ``.grad``, replacing what was there; last, a [] bool: whether the objective
        and all those gradients are finite (``Loss``'s ``grads_finite``; compiled, the test fuses
        into the kernels that write them).

        Existing contiguous gradients are overwritten in place (``out=``), so a training loop that
        calls this every step allocates no gradient memory after the first. Under
        ``torch.autocast`` the trunk's and decoder's matrix products run in autocast's dtype.
        ``compile=True`` runs the same code through ``torch.compile`` (seconds to compile once per
        batch shape; then, in the trainer on an AMX CPU, 14-16% faster steps with bfloat16
        products and 0-10% in float32, docs/how-to/fast-training.md); where it cannot compile it
        warns once and runs eagerly.
        """
        matmul = matmul_dtype(x.device)
        # The casts are explicit: autocast itself would also round the head and the sums
        off = nullcontext() if matmul is None else torch.autocast(x.device.type, enabled=False)
        with off:
            grads = _grad_buffers(self.parameters())
            s = scale / x.shape[0]
            if compile:  # the weights as tensors: a new float would be a new graph every step
                as_tensor = partial(torch.tensor, device=x.device, dtype=x.dtype)
                return _compiled_values_and_grads()(
                    self, x_in, x, eps, as_tensor(kl_weight), as_tensor(s), matmul, grads
                )
            return _values_and_grads(self, x_in, x, eps, kl_weight, s, matmul, grads)


@torch.no_grad()
def _values_and_grads(
    plan: FusedELBO,
    x_in: Tensor,
    x: Tensor,
    eps: Tensor,
    kl_weight: float | Tensor,
    s: float | Tensor,
    matmul: torch.dtype | None,
    grads: list[Tensor],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(objective, recon, kl, bounds, finite), with the gradients of s · B · objective written
    into ``grads``: the body of ``FusedELBO.loss_and_grad_``, eager or compiled."""
    objective, recon, kl, bounds, saved = _forward(plan, x_in, x, eps, kl_weight, matmul)
    _backward(plan, saved, s, kl_weight, grads)
    # NaN and infinities survive a sum. Per gradient, not over their flat buffer: compiled, each
    # sum fuses into the kernel writing that gradient, where the flat one re-read them all.
    total = objective + sum(g.sum() for g in grads)
    return objective, recon, kl, bounds, torch.isfinite(total)


@cache
def _compiled_values_and_grads() -> Callable[..., Any]:
    """``_values_and_grads`` through torch.compile, made once per process (dynamo keeps one graph
    per model and batch shape); eager from the first failure to compile on."""
    return compiled_or_eager(_values_and_grads, fallback="training eagerly")


def _grad_buffers(params: list[Tensor]) -> list[Tensor]:
    """The parameters' ``.grad``, each replaced by a new contiguous tensor where it cannot be
    written with ``out=`` (missing, another dtype or device, not contiguous). A training loop
    that calls this every step allocates no gradient memory after the first."""
    grads = []
    for p in params:
        g = p.grad
        if g is None or g.dtype != p.dtype or g.device != p.device or not g.is_contiguous():
            p.grad = g = torch.empty_like(p, memory_format=torch.contiguous_format)
        grads.append(g)
    return grads


@dataclass(frozen=True)
class _Saved:
    """What the backward pass needs from the forward pass."""

    target: Tensor  # [B, C·H·W]
    eps: Tensor
    loc: Tensor
    scale: Tensor
    variance: Tensor
    in_range: Tensor  # where the log-variance clamp passes gradients
    weights: Tensor | None  # k > 1: the normalised importance weights [k, B]
    trunk: Stack  # the trunk's input and layer outputs
    decoder: Stack  # z and the decoder's layer outputs; the last are the logits


def _forward(
    plan: FusedELBO,
    x_in: Tensor,
    x: Tensor,
    eps: Tensor,
    kl_weight: float | Tensor,
    matmul: torch.dtype | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, _Saved]:
    """(objective, recon, KL, bounds, saved tensors) of one batch; see ``loss_and_grad_``.
    ``matmul``: the dtype of the trunk's and decoder's products (None: the parameters')."""
    b = x.shape[0]
    target = x.reshape(b, -1)
    trunk_stack = run_stack(plan.trunk, x_in.reshape(b, -1), matmul)
    h = trunk_stack.outputs[-1]
    loc, log_var_raw = _heads(plan, h)  # [B, D] each
    log_var = log_var_raw.clamp(LOG_VAR_MIN, LOG_VAR_MAX)
    scale = torch.exp(0.5 * log_var)
    z = torch.addcmul(loc, scale, eps)  # as draw(): loc + scale · eps, [B, D] or [k, B, D]
    decoder_stack = run_stack(plan.decoder, z.reshape(-1, z.shape[-1]), matmul)
    variance = scale * scale
    in_range = (log_var_raw >= LOG_VAR_MIN) & (log_var_raw <= LOG_VAR_MAX)
    stacks = (trunk_stack, decoder_stack)
    if plan.particles == 1:
        logits = decoder_stack.outputs[-1]  # [B, C·H·W]
        # Σ_d softplus(l_d) - x_d l_d: the Bernoulli negative log-likelihood (grey x: BCE)
        recon = F.softplus(logits).sum() - torch.dot(target.reshape(-1), logits.reshape(-1))
        kl = 0.5 * (loc * loc + variance - log_var - 1).sum()
        objective = (recon + kl_weight * kl) / b
        saved = _Saved(target, eps, loc, scale, variance, in_range, None, *stacks)
        elbo = -(recon + kl) / b
        return objective, recon / b, kl / b, torch.stack([elbo, elbo]), saved
    k = plan.particles
    logits = decoder_stack.outputs[-1].view(k, b, -1)
    log_px = torch.einsum("kbp,bp->kb", logits, target) - F.softplus(logits).sum(-1)  # [k, B]
    # log p(z) - log q(z|x) = ½ (ε² - z² + log σ²), summed over D (the log 2π terms cancel)
    log_ratio = 0.5 * ((eps * eps - z * z).sum(-1) + log_var.sum(-1))  # [k, B]
    log_weights = log_px + kl_weight * log_ratio
    plain = log_px + log_ratio  # the bounds reported: without the KL weight
    if plan.bound == "iwae":
        log_k = math.log(k)
        objective = -(torch.logsumexp(log_weights, 0) - log_k).mean()
        iwae = (torch.logsumexp(plain, 0) - log_k).mean()
        bounds = torch.stack([iwae, iwae])
    else:  # MIWAE or CIWAE: the bounds as VAE.loss computes them
        bound = partial(
            multi_sample_bounds,
            groups=plan.groups,
            particles=k // plan.groups,
            ciwae_beta=plan.ciwae_beta,
        )
        objective = -bound(log_weights)[plan.bound].mean()
        reported = bound(plain)
        bounds = torch.stack([reported["iwae"].mean(), reported[plan.bound].mean()])
    weights = particle_weights(log_weights, plan.bound, plan.groups, plan.ciwae_beta)
    saved = _Saved(target, eps, loc, scale, variance, in_range, weights, *stacks)
    return objective, -log_px.mean(), -log_ratio.mean(), bounds, saved


def _backward(
    plan: FusedELBO,
    saved: _Saved,
    s: Tensor | float,
    kl_weight: float | Tensor,
    grads: list[Tensor],
) -> None:
    """Writes the parameter gradients of ``s`` × B × objective (``s`` = d loss / d objective
    divided by the batch size B) into ``grads`` (in ``plan.parameters()`` order)."""
    n_trunk, n_decoder = 2 * len(plan.trunk), 2 * len(plan.decoder)
    probs = torch.sigmoid(saved.decoder.outputs[-1])  # [k·B, C·H·W]
    if saved.weights is None:  # k = 1: ∂/∂l of the summed recon is sigmoid(l) - x
        grad_logits = probs.sub_(saved.target).mul_(s)
    else:  # k > 1: particle i of datapoint b enters with its normalised weight w_ib
        k, b = saved.weights.shape
        per_particle = (saved.weights * s).view(k, b, 1)
        grad_logits = probs.view(k, b, -1).sub_(saved.target).mul_(per_particle).view(k * b, -1)
    grad_z = backward_stack(plan.decoder, saved.decoder, grad_logits, grads[-n_decoder:], True)
    assert grad_z is not None
    w = s * kl_weight
    if plan.dreg:
        grad_loc, grad_log_var = _dreg_encoder_grads(saved, grad_z, w, kl_weight)
    elif saved.weights is None:
        grad_loc = grad_z + w * saved.loc
        # z = loc + exp(½ log σ²) ε: ∂z/∂log σ² = ½ σ ε; KL: ∂/∂log σ² = ½ (σ² - 1)
        grad_log_var = (grad_z * saved.eps * saved.scale + w * (saved.variance - 1)).mul_(0.5)
    else:
        z = saved.decoder.outputs[0].view(k, b, -1)
        # log p(z) - log q(z|x) = ½ (ε² - z² + log σ²): ∂/∂z = -z, ∂/∂log σ² = ½ (ε fixed)
        grad_z = grad_z.view(k, b, -1).addcmul_(z, (saved.weights * w).view(k, b, 1))
        grad_loc = grad_z.sum(0)
        # Σ_i w_ib = 1, so the direct ½ of every particle adds up to ½ per datapoint
        grad_log_var = ((grad_z * saved.eps).sum(0) * saved.scale - w).mul_(0.5)
    grad_log_var.mul_(saved.in_range)  # the clamp passes gradients inside its range only
    h = saved.trunk.outputs[-1]
    grad_h = _heads_backward(plan, h, grad_loc, grad_log_var, grads[n_trunk : n_trunk + 4])
    backward_stack(plan.trunk, saved.trunk, grad_h, grads[:n_trunk], False)


# The Gaussian head's two projections of the trunk's output h: compiled, as one product of
# their stacked weights (three matrix products fewer per step, the stacking fused into other
# kernels; 784-400-20 VAE, 2-core AMX CPU: ~0.06 ms of a ~2.3 ms step in an exploratory A/B);
# eagerly, as two (the stacking and the split cost more than the calls they save there).


def _heads(plan: FusedELBO, h: Tensor) -> tuple[Tensor, Tensor]:
    """(loc, log-variance before its clamp) from the trunk's output h."""
    if torch.compiler.is_compiling():
        weight = torch.cat([plan.loc.weight, plan.log_var.weight])
        both = torch.addmm(torch.cat([plan.loc.bias, plan.log_var.bias]), h, weight.t())
        loc, log_var = both.split(plan.loc.out_features, 1)
        return loc, log_var
    loc = torch.addmm(plan.loc.bias, h, plan.loc.weight.t())
    return loc, torch.addmm(plan.log_var.bias, h, plan.log_var.weight.t())


def _heads_backward(
    plan: FusedELBO, h: Tensor, grad_loc: Tensor, grad_log_var: Tensor, grads: list[Tensor]
) -> Tensor:
    """Writes the heads' (weight, bias) gradients into ``grads`` (loc's, then the
    log-variance's) and returns the gradient of h."""
    if torch.compiler.is_compiling():
        grad_both = torch.cat([grad_loc, grad_log_var], 1)  # [B, 2D]
        weights, biases = (
            t.split(plan.loc.out_features) for t in (grad_both.t() @ h, grad_both.sum(0))
        )
        for out, value in zip(grads, (weights[0], biases[0], weights[1], biases[1]), strict=True):
            out.copy_(value)
        return grad_both.mm(torch.cat([plan.loc.weight, plan.log_var.weight]))
    torch.mm(grad_loc.t(), h, out=grads[0])
    torch.sum(grad_loc, 0, out=grads[1])
    torch.mm(grad_log_var.t(), h, out=grads[2])
    torch.sum(grad_log_var, 0, out=grads[3])
    return grad_loc.mm(plan.loc.weight).addmm_(grad_log_var, plan.log_var.weight)


def _dreg_encoder_grads(
    saved: _Saved, grad_z: Tensor, w: float | Tensor, kl_weight: float | Tensor
) -> tuple[Tensor, Tensor]:
    """The gradients of loc and log σ² under the doubly reparameterised estimator.

    Particle i enters through its path z_i = loc + σ ε_i alone, with q's parameters held fixed
    in log q(z_i|x): ∂/∂z_i of β (log p(z_i) - log q(z_i|x)) is β (ε_i / σ - z_i), and the whole
    ∂a_i/∂z_i takes the weight c_i = (1 - β) w_i + β w_i² (1 for k = 1). ``grad_z`` from the
    decoder already carries w_i, so it is scaled by (1 - β) + β w_i. ``w`` is s · β.
    """
    z = saved.decoder.outputs[0].view_as(saved.eps)
    path = z - saved.eps / saved.scale  # -∂/∂z (log p(z) - log q(z|x)), q's parameters fixed
    if saved.weights is None:  # k = 1
        grad_z = grad_z.view_as(z).add_(path * w)
        return grad_z, (grad_z * saved.eps * saved.scale).mul_(0.5)
    k, b = saved.weights.shape
    path_scale = ((1 - kl_weight) + kl_weight * saved.weights).view(k, b, 1)
    coefficient = saved.weights.view(k, b, 1) * path_scale * w  # c_i · s · β
    grad_z = grad_z.view(k, b, -1).mul_(path_scale).addcmul_(path, coefficient)
    return grad_z.sum(0), ((grad_z * saved.eps).sum(0) * saved.scale).mul_(0.5)
