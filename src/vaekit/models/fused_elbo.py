"""The ELBO of an MLP VAE (Gaussian q, Bernoulli p) with hand-derived gradients.

For the common case — MLP trunk and decoder with ReLU, leaky ReLU or tanh, a Gaussian head, a
Bernoulli likelihood, one particle, closed-form KL — this module computes the per-datapoint loss
and its gradients in one pass each way:

    l = decoder(z), z = loc + σ ε,  recon = Σ_d softplus(l_d) - x_d l_d,
    KL = ½ Σ_j (loc_j² + σ_j² - log σ_j² - 1)                       (Kingma & Welling 2014, B)
    ∂recon/∂l = sigmoid(l) - x,  ∂KL/∂loc = loc,  ∂KL/∂log σ² = ½ (σ² - 1)

Two entry points share that code. ``FusedELBO.__call__`` is one autograd node (for ``VAE.loss``
under autograd), instead of the ~40 nodes and temporaries of the ``torch.distributions`` path.
``FusedELBO.loss_and_grad_`` skips autograd altogether and writes the gradients into the
parameters' ``.grad`` in place, views of one flat buffer; the trainer takes this path
(``Autoencoder.loss_and_grad_``). benchmarks/train_step.py times the three paths.

The gradients are checked against autograd through the distributions path in float64
(tests/models/test_fused_elbo.py), and the noise ε is drawn exactly as ``draw`` draws it, so all
paths give the same numbers for the same generator state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vaekit.distributions.likelihoods import BernoulliLikelihood, Likelihood
from vaekit.distributions.posteriors import LOG_VAR_MAX, LOG_VAR_MIN, GaussianHead
from vaekit.nn.mlp import MLPDecoderNet, MLPTrunk

# Activations whose derivative can be read from their output y (so inputs need not be kept).
_ACTIVATIONS: dict[type[nn.Module], str] = {nn.ReLU: "relu", nn.Tanh: "tanh"}


def _activation(module: nn.Module) -> tuple[str, float] | None:
    """(name, leaky slope) of a supported activation module, else None."""
    if type(module) in _ACTIVATIONS:
        return _ACTIVATIONS[type(module)], 0.0
    if type(module) is nn.LeakyReLU and module.negative_slope > 0:
        return "leaky_relu", float(module.negative_slope)  # sign(y) = sign(input)
    return None


@dataclass(frozen=True)
class _Layer:
    linear: nn.Linear
    activation: str | None = None  # None: no activation after this Linear
    slope: float = 0.0  # leaky ReLU's negative slope


def _layers(modules: Iterable[nn.Module]) -> list[_Layer] | None:
    """Linear (+ supported activation) pairs, or None if anything else is in the stack."""
    layers: list[_Layer] = []
    for module in modules:
        if isinstance(module, nn.Flatten):
            continue
        if type(module) is nn.Linear:
            layers.append(_Layer(module))
        elif layers and layers[-1].activation is None and (found := _activation(module)):
            layers[-1] = _Layer(layers[-1].linear, *found)
        else:
            return None
    return layers


@dataclass(frozen=True)
class FusedELBO:
    """The fused objective for one model; build it with ``FusedELBO.of`` (None if unsupported)."""

    trunk: list[_Layer]
    loc: nn.Linear
    log_var: nn.Linear
    decoder: list[_Layer]

    @classmethod
    def of(
        cls, trunk: nn.Module, head: nn.Module, network: nn.Module, likelihood: Likelihood
    ) -> FusedELBO | None:
        """The fused ELBO of these encoder and decoder parts, or None when the parts are not an
        MLP trunk + Gaussian head + MLP decoder + Bernoulli likelihood with supported layers."""
        if not (
            isinstance(trunk, MLPTrunk)
            and type(head) is GaussianHead
            and isinstance(network, MLPDecoderNet)
            and type(likelihood) is BernoulliLikelihood
        ):
            return None
        trunk_layers, decoder_layers = _layers(trunk.layers), _layers(network.layers)
        if not trunk_layers or not decoder_layers or decoder_layers[-1].activation is not None:
            return None
        return cls(trunk_layers, head.loc, head.log_var, decoder_layers)

    def parameters(self) -> list[Tensor]:
        """The parameters in gradient order: trunk, loc, log-variance, decoder (weight, bias)."""
        linears = [layer.linear for layer in self.trunk]
        linears += [self.loc, self.log_var, *(layer.linear for layer in self.decoder)]
        return [p for linear in linears for p in (linear.weight, linear.bias)]

    def __call__(
        self, x_in: Tensor, x: Tensor, eps: Tensor, kl_weight: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(objective, recon, kl): the scalar mean of recon + kl_weight · KL over the batch, and
        the detached batch means of -log p(x|z) and KL(q || p). ``x_in`` is the encoder input
        (corrupted for a denoising model), ``x`` the scored target, ``eps`` [B, D] the noise."""
        out: tuple[Tensor, Tensor, Tensor] = _FusedELBOFunction.apply(
            self, x_in, x, eps, kl_weight, *self.parameters()
        )
        return out

    @torch.no_grad()
    def loss_and_grad_(
        self, x_in: Tensor, x: Tensor, eps: Tensor, kl_weight: float, scale: float = 1.0
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``__call__`` without autograd: the same (detached) values, and the gradient of
        ``scale · objective`` written into every parameter's ``.grad``, replacing what was there.

        Existing contiguous gradients are overwritten in place (``out=``), so a training loop that
        calls this every step allocates no gradient memory after the first.
        """
        objective, recon, kl, saved = _forward(self, x_in, x, eps, kl_weight)
        grads = _grad_buffers(self.parameters())
        _backward(self, saved, scale / x.shape[0], kl_weight, grads)
        return objective, recon, kl


def _grad_buffers(params: list[Tensor]) -> list[Tensor]:
    """The parameters' ``.grad`` where all can be written with ``out=``; otherwise new ones.

    New gradients are views of one flat buffer, so that the trainer tests them all for NaN and
    infinity with a single sum (``guard.grads_finite``).
    """
    grads = [p.grad for p in params]
    usable = [
        g
        for p, g in zip(params, grads, strict=True)
        if g is not None and g.dtype == p.dtype and g.device == p.device and g.is_contiguous()
    ]
    if len(usable) == len(params):
        return usable
    first = params[0]
    if any(p.dtype != first.dtype or p.device != first.device for p in params):
        for p in params:
            p.grad = torch.empty_like(p, memory_format=torch.contiguous_format)
    else:
        flat = torch.empty(sum(p.numel() for p in params), dtype=first.dtype, device=first.device)
        for p, view in zip(params, flat.split([p.numel() for p in params]), strict=True):
            p.grad = view.view_as(p)
    return [p.grad for p in params if p.grad is not None]


def _activate(h: Tensor, layer: _Layer) -> Tensor:
    if layer.activation == "relu":
        return h.relu_()
    if layer.activation == "tanh":
        return h.tanh_()
    if layer.activation == "leaky_relu":
        return F.leaky_relu_(h, layer.slope)
    return h


def _activation_backward(grad: Tensor, y: Tensor, layer: _Layer) -> Tensor:
    """The gradient before the activation, from the one after it and the activation's output y."""
    if layer.activation == "relu":
        return torch.ops.aten.threshold_backward(grad, y, 0)
    if layer.activation == "tanh":
        return torch.ops.aten.tanh_backward(grad, y)
    if layer.activation == "leaky_relu":
        return torch.ops.aten.leaky_relu_backward(grad, y, layer.slope, True)
    return grad


def _forward_stack(layers: list[_Layer], h: Tensor) -> list[Tensor]:
    """Outputs of every layer (after its activation), inputs first: [h, y_1, ..., y_L]."""
    outputs = [h]
    for layer in layers:
        h = _activate(torch.addmm(layer.linear.bias, h, layer.linear.weight.t()), layer)
        outputs.append(h)
    return outputs


def _backward_stack(
    layers: list[_Layer],
    outputs: list[Tensor],
    grad: Tensor,
    grads: list[Tensor],
    need_input_grad: bool,
) -> Tensor | None:
    """Writes each layer's weight and bias gradients into ``grads`` (in layer order, two per
    layer); returns the gradient of the stack's input when ``need_input_grad``."""
    for i in range(len(layers) - 1, -1, -1):
        grad = _activation_backward(grad, outputs[i + 1], layers[i])
        torch.mm(grad.t(), outputs[i], out=grads[2 * i])
        torch.sum(grad, 0, out=grads[2 * i + 1])
        if i > 0 or need_input_grad:
            grad = grad.mm(layers[i].linear.weight)
    return grad if need_input_grad else None


@dataclass(frozen=True)
class _Saved:
    """What the backward pass needs from the forward pass."""

    target: Tensor  # [B, C·H·W]
    eps: Tensor
    loc: Tensor
    scale: Tensor
    variance: Tensor
    in_range: Tensor  # where the log-variance clamp passes gradients
    trunk: list[Tensor]  # the trunk's input and layer outputs
    decoder: list[Tensor]  # z and the decoder's layer outputs; the last are the logits


def _forward(
    plan: FusedELBO, x_in: Tensor, x: Tensor, eps: Tensor, kl_weight: float
) -> tuple[Tensor, Tensor, Tensor, _Saved]:
    """(objective, recon mean, KL mean, saved tensors) of one batch; see the module docstring."""
    b = x.shape[0]
    target = x.reshape(b, -1)
    trunk = _forward_stack(plan.trunk, x_in.reshape(b, -1))
    h = trunk[-1]
    loc = torch.addmm(plan.loc.bias, h, plan.loc.weight.t())  # [B, D]
    log_var_raw = torch.addmm(plan.log_var.bias, h, plan.log_var.weight.t())
    log_var = log_var_raw.clamp(LOG_VAR_MIN, LOG_VAR_MAX)
    scale = torch.exp(0.5 * log_var)
    z = torch.addcmul(loc, scale, eps)  # as draw(): loc + scale · eps
    decoder = _forward_stack(plan.decoder, z)
    logits = decoder[-1]  # [B, C·H·W]
    # Σ_d softplus(l_d) - x_d l_d: the Bernoulli negative log-likelihood (grey x: cross-entropy)
    recon = F.softplus(logits).sum() - torch.dot(target.reshape(-1), logits.reshape(-1))
    variance = scale * scale
    kl = 0.5 * (loc * loc + variance - log_var - 1).sum()
    objective = (recon + kl_weight * kl) / b
    in_range = (log_var_raw >= LOG_VAR_MIN) & (log_var_raw <= LOG_VAR_MAX)
    saved = _Saved(target, eps, loc, scale, variance, in_range, trunk, decoder)
    return objective, recon / b, kl / b, saved


def _backward(
    plan: FusedELBO, saved: _Saved, s: Tensor | float, kl_weight: float, grads: list[Tensor]
) -> None:
    """Writes the parameter gradients of ``s`` × (per-datapoint sum of the objective) into
    ``grads`` (in ``plan.parameters()`` order)."""
    n_trunk, n_decoder = 2 * len(plan.trunk), 2 * len(plan.decoder)
    grad_logits = torch.sigmoid(saved.decoder[-1]).sub_(saved.target).mul_(s)  # [B, C·H·W]
    grad_z = _backward_stack(plan.decoder, saved.decoder, grad_logits, grads[-n_decoder:], True)
    assert grad_z is not None
    w = s * kl_weight
    grad_loc = grad_z + w * saved.loc
    # z = loc + exp(½ log σ²) ε: ∂z/∂log σ² = ½ σ ε; the clamp passes gradients inside its range
    grad_log_var = (grad_z * saved.eps * saved.scale + w * (saved.variance - 1)).mul_(0.5)
    grad_log_var.mul_(saved.in_range)
    h = saved.trunk[-1]
    head = grads[n_trunk : n_trunk + 4]
    torch.mm(grad_loc.t(), h, out=head[0])
    torch.sum(grad_loc, 0, out=head[1])
    torch.mm(grad_log_var.t(), h, out=head[2])
    torch.sum(grad_log_var, 0, out=head[3])
    grad_h = grad_loc.mm(plan.loc.weight).addmm_(grad_log_var, plan.log_var.weight)
    _backward_stack(plan.trunk, saved.trunk, grad_h, grads[:n_trunk], False)


class _FusedELBOFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, plan: FusedELBO, x_in: Tensor, x: Tensor, eps: Tensor, kl_weight: float,
        *params: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
        objective, recon, kl, saved = _forward(plan, x_in, x, eps, kl_weight)
        ctx.plan, ctx.kl_weight, ctx.num_trunk = plan, kl_weight, len(saved.trunk)
        ctx.save_for_backward(
            saved.target, saved.eps, saved.loc, saved.scale, saved.variance, saved.in_range,
            *saved.trunk, *saved.decoder,
        )  # fmt: skip
        ctx.mark_non_differentiable(recon, kl)
        return objective, recon, kl

    @staticmethod
    def backward(ctx: Any, grad_objective: Tensor, *_: Tensor) -> tuple[Tensor | None, ...]:
        plan: FusedELBO = ctx.plan
        target, eps, loc, scale, variance, in_range, *layers = ctx.saved_tensors
        trunk, decoder = layers[: ctx.num_trunk], layers[ctx.num_trunk :]
        saved = _Saved(target, eps, loc, scale, variance, in_range, trunk, decoder)
        grads = [torch.empty_like(p) for p in plan.parameters()]
        _backward(plan, saved, grad_objective / saved.target.shape[0], ctx.kl_weight, grads)
        return (None, None, None, None, None, *grads)
