"""An MLP stack (Linear layers, each with ReLU, leaky ReLU, tanh or nothing after it) with a
hand-derived forward and backward pass, for the fused ELBO and the lean log p(x|z).

Under ``torch.autocast`` the products of layers at least ``MIN_LOW_PRECISION_WIDTH`` wide each
way run in autocast's dtype, forward and backward, with float32 accumulation; the activations,
the bias gradients and the outputs stay in the parameters' dtype, and the weight gradients are
written in it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

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
class Layer:
    """One Linear layer and the activation after it."""

    linear: nn.Linear
    activation: str | None = None  # None: no activation after this Linear
    slope: float = 0.0  # leaky ReLU's negative slope


def parse_layers(modules: Iterable[nn.Module]) -> list[Layer] | None:
    """Linear (+ supported activation) pairs, or None if anything else is in the stack."""
    layers: list[Layer] = []
    for module in modules:
        if isinstance(module, nn.Flatten):
            continue
        if type(module) is nn.Linear:
            layers.append(Layer(module))
        elif layers and layers[-1].activation is None and (found := _activation(module)):
            layers[-1] = Layer(layers[-1].linear, *found)
        else:
            return None
    return layers


def _activate(h: Tensor, layer: Layer) -> Tensor:
    if layer.activation == "relu":
        return h.relu_()
    if layer.activation == "tanh":
        return h.tanh_()
    if layer.activation == "leaky_relu":
        return F.leaky_relu_(h, layer.slope)
    return h


def _activation_backward(grad: Tensor, y: Tensor, layer: Layer) -> Tensor:
    """The gradient before the activation, from the one after it and the activation's output y."""
    if layer.activation == "relu":
        return torch.ops.aten.threshold_backward(grad, y, 0)
    if layer.activation == "tanh":
        return torch.ops.aten.tanh_backward(grad, y)
    if layer.activation == "leaky_relu":
        return torch.ops.aten.leaky_relu_backward(grad, y, layer.slope, True)
    return grad


def matmul_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype autocast gives matrix products on ``device`` now; None outside autocast."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return None


# A layer with fewer inputs or outputs than this keeps its products in the parameters' dtype
# under autocast: the casts cost more than bfloat16 saves there (784-400-20 VAE, 2-core AMX
# CPU: the 20 -> 400 decoder layer's three products took 130 µs in bfloat16, 70 in float32,
# an exploratory timing inside the training step).
MIN_LOW_PRECISION_WIDTH = 64


@dataclass(frozen=True)
class Stack:
    """One MLP stack's forward pass, as its backward pass needs it."""

    outputs: list[Tensor]  # [h, y_1, ..., y_L]: the input, then every layer after its activation
    # Per layer: its (input, weight) cast to the lower matmul dtype, or None (parameters' dtype)
    casts: list[tuple[Tensor, Tensor] | None]


def run_stack(layers: list[Layer], h: Tensor, matmul: torch.dtype | None = None) -> Stack:
    """The stack's forward pass; its products in ``matmul`` (None: in h's dtype) for layers at
    least ``MIN_LOW_PRECISION_WIDTH`` wide each way, the outputs in h's dtype."""
    outputs: list[Tensor] = [h]
    casts: list[tuple[Tensor, Tensor] | None] = []
    for layer in layers:
        weight, bias = layer.linear.weight, layer.linear.bias
        if matmul is None or min(weight.shape) < MIN_LOW_PRECISION_WIDTH:
            casts.append(None)
            pre = torch.addmm(bias, h, weight.t())
        else:  # float32 accumulation inside the kernel; the output is rounded to ``matmul``
            h_low, weight_low = h.to(matmul), weight.to(matmul)
            casts.append((h_low, weight_low))
            pre = torch.addmm(bias.to(matmul), h_low, weight_low.t()).to(h.dtype)
        h = _activate(pre, layer)
        outputs.append(h)
    return Stack(outputs, casts)


def forward_stack(layers: list[Layer], h: Tensor) -> list[Tensor]:
    """Outputs of every layer (after its activation), inputs first: [h, y_1, ..., y_L]."""
    return run_stack(layers, h).outputs


def backward_stack(
    layers: list[Layer],
    stack: Stack,
    grad: Tensor,
    grads: list[Tensor],
    need_input_grad: bool,
) -> Tensor | None:
    """Writes each layer's weight and bias gradients into ``grads`` (in layer order, two per
    layer); returns the gradient of the stack's input when ``need_input_grad``. The products run
    in the dtype of the forward pass's (``stack.casts``)."""
    outputs = stack.outputs
    for i in range(len(layers) - 1, -1, -1):
        grad = _activation_backward(grad, outputs[i + 1], layers[i])
        torch.sum(grad, 0, out=grads[2 * i + 1])
        needed = i > 0 or need_input_grad
        cast = stack.casts[i]
        if cast is None:
            torch.mm(grad.t(), outputs[i], out=grads[2 * i])
            if needed:
                grad = grad.mm(layers[i].linear.weight)
            continue
        h_low, weight_low = cast
        grad_low = grad.to(weight_low.dtype)
        grads[2 * i].copy_(torch.mm(grad_low.t(), h_low))
        if needed:
            grad = grad_low.mm(weight_low).to(grad.dtype)
    return grad if need_input_grad else None
