"""The particles' weights of the multi-sample bounds, for the hand-derived gradients."""

from __future__ import annotations

import torch
from torch import Tensor


def particle_weights(log_weights: Tensor, bound: str, groups: int, ciwae_beta: float) -> Tensor:
    """w = B · ∂bound/∂a [k, B] for log weights a [k, B] (B times the derivative of the batch
    mean), which sum to 1 over the particles of each datapoint:

        IWAE   log (1/k) Σ_i e^a_i                            w = softmax(a)
        MIWAE  (1/M) Σ_m log (1/K) Σ_{i in group m} e^a_i     w = softmax within the group / M
        CIWAE  c (1/k) Σ_i a_i + (1 - c) IWAE                 w = c / k + (1 - c) softmax(a)

    (Rainforth et al. 2018; K = k / M, the groups consecutive runs of K particles, as
    ``models.vae.multi_sample_bounds`` lays them out.)"""
    k, b = log_weights.shape
    if bound == "miwae":
        grouped = log_weights.view(groups, k // groups, b)  # [M, K, B]
        return (torch.softmax(grouped, 1) / groups).view(k, b)
    weights = torch.softmax(log_weights, 0)
    if bound == "ciwae":
        return weights.mul_(1 - ciwae_beta).add_(ciwae_beta / k)
    return weights
