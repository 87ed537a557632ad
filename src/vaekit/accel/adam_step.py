"""Fused Adam's update without ``Optimizer.step``'s Python: the same kernel, state and numbers.

``torch.optim.Adam(fused=True).step()`` wraps a short kernel in Python: hooks, profiling
records, per-parameter state look-ups and grouping the tensors by device and dtype. For the
784-400-20 VAE on a 2-core CPU that Python costs about half as much as the kernel itself.
``fused_adam_step`` makes the two calls torch's own ``_fused_adam`` makes, on the optimiser's own
state tensors: the step counts go up by one, ``torch._fused_adam_`` (or ``_fused_adamw_``)
updates parameters and moments, and the counts go back down where ``found_inf`` is 1. So
``state_dict``, resume and ``step()`` stay interchangeable with it, bitwise
(tests/accel/test_adam_step.py).

It declines, doing nothing and returning False, whenever ``step()`` might do something else:
another optimiser class, a non-fused Adam, hooks, capturable or differentiable mode, tensor
hyper-parameters, parameters without state yet (the first step initialises it), mixed devices or
dtypes, or a torch without these private entry points. The caller then calls ``step()``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.optim import optimizer as optimizer_module

_STATE_KEYS = ("exp_avg", "exp_avg_sq", "step")


class _Call(NamedTuple):
    tensors: list[list[Tensor]]  # params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps
    counts: Tensor  # [len(steps)]: the step counts, of which ``steps`` are the elements
    hyper: dict[str, Any]  # the kernel's keyword arguments
    decoupled: bool  # AdamW's weight decay


@torch.no_grad()
def fused_adam_step(optimizer: torch.optim.Optimizer, found_inf: Tensor | None = None) -> bool:
    """One Adam step as ``optimizer.step()`` would take it with ``optimizer.found_inf`` set to
    ``found_inf`` ([] float32, 1 skips the update); False, having done nothing, if it cannot."""
    calls = _plan(optimizer)
    if calls is None:
        return False
    for call in calls:
        call.counts.add_(1)  # every count at once (foreach on the CPU is one op per tensor)
        kernel = torch._fused_adamw_ if call.decoupled else torch._fused_adam_
        kernel(*call.tensors, **call.hyper, grad_scale=None, found_inf=found_inf)
        if found_inf is not None:
            call.counts.sub_(found_inf)
    return True


def _plan(optimizer: torch.optim.Optimizer) -> list[_Call] | None:
    """The kernel arguments of every parameter group, or None if ``step()`` must be called."""
    if (
        type(optimizer) is not torch.optim.Adam
        or optimizer._optimizer_step_pre_hooks
        or optimizer._optimizer_step_post_hooks
        or getattr(optimizer_module, "_global_optimizer_pre_hooks", True)
        or getattr(optimizer_module, "_global_optimizer_post_hooks", True)
        or not hasattr(torch, "_fused_adam_")
        or not hasattr(torch, "_fused_adamw_")
    ):
        return None
    calls = []
    for group in optimizer.param_groups:
        if not group.get("fused") or group.get("capturable") or group.get("differentiable"):
            return None
        values = (group["lr"], *group["betas"], group["eps"], group["weight_decay"])
        if not all(type(value) is float or type(value) is int for value in values):
            return None
        params: list[Tensor] = [p for p in group["params"] if p.grad is not None]
        if not params:
            continue
        amsgrad = bool(group["amsgrad"])
        keys = (*_STATE_KEYS[:2], "max_exp_avg_sq", "step") if amsgrad else _STATE_KEYS
        columns: list[list[Tensor]] = [params, []] + [[] for _ in keys]
        device, dtype = params[0].device, params[0].dtype
        for p in params:
            state = optimizer.state.get(p)
            grad = p.grad
            if not state or any(key not in state for key in keys) or grad is None:
                return None
            if p.device != device or p.dtype != dtype or grad.is_sparse or grad.dtype != dtype:
                return None
            columns[1].append(grad)
            for column, key in zip(columns[2:], keys, strict=True):
                column.append(state[key])
        if not amsgrad:
            columns.insert(4, [])  # no max_exp_avg_sqs
        beta1, beta2 = group["betas"]
        hyper = {
            "amsgrad": amsgrad,
            "lr": float(group["lr"]),
            "beta1": float(beta1),
            "beta2": float(beta2),
            "weight_decay": float(group["weight_decay"]),
            "eps": float(group["eps"]),
            "maximize": bool(group["maximize"]),
        }
        counts = _shared_counts(optimizer, params, columns[-1])
        calls.append(
            _Call(columns, counts, hyper, bool(group.get("decoupled_weight_decay", False)))
        )
    return calls


def _shared_counts(
    optimizer: torch.optim.Optimizer, params: list[Tensor], steps: list[Tensor]
) -> Tensor:
    """One tensor that ``steps`` tile exactly (each count one element); ``steps`` (and the state)
    are made views of it where they are not yet (after the first step or a ``load_state_dict``).

    Each parameter keeps its own 0-dim ``state["step"]``, as ``state_dict`` and ``step()``
    expect; they merely share storage, so that counting a step is one operation.
    """
    base = flat_base(steps)
    if base is not None:
        return base
    counts = torch.stack(steps)
    for i, p in enumerate(params):
        steps[i] = counts[i]
        optimizer.state[p]["step"] = steps[i]
    return counts


def flat_base(tensors: list[Tensor]) -> Tensor | None:
    """The flat tensor that the tensors, contiguous views of it, tile exactly; else None."""
    base = tensors[0]._base if tensors else None
    if base is None or base.dim() != 1 or not base.is_contiguous():
        return None
    if not all(t._base is base and t.is_contiguous() for t in tensors):
        return None
    end = base.storage_offset()
    for offset, numel in sorted((t.storage_offset(), t.numel()) for t in tensors):
        if offset != end:
            return None
        end += numel
    return base if end == base.storage_offset() + base.numel() else None
