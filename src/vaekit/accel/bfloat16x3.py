"""A float32-accurate matrix product from bfloat16 products ("bfloat16x3"), for CPUs with AMX.

On a CPU with AMX a bfloat16 GEMM runs several times faster than float32 sgemm, but a bfloat16
operand keeps 8 significant bits, far too few for a log-likelihood (a logit of 10 moves by ~0.02).
Splitting each float32 operand into two bfloat16 terms, a = a_hi + a_lo with a_hi = bf16(a) and
a_lo = bf16(a - a_hi), keeps ~16 bits, and

    a · b ≈ a_hi · b_hi + a_lo · b_hi + a_hi · b_lo       (a_lo · b_lo, ~2^-18 relative, dropped)

is one bfloat16 GEMM with a three times longer inner dimension, accumulated in float32. torch's
bfloat16 GEMM on the CPU writes a bfloat16 result, which would round the product back to 8 bits;
so the product is taken as a residual instead. A one-term GEMM first gives the base
``-bf16(a_hi · b_hi)``, and ``addmm(base, [a_hi, a_lo, a_hi], [b_hi; b_hi; b_lo])`` adds it inside
the float32 accumulation before rounding: the bfloat16 result is then the small difference
a · b - base (~2^-8 of the product), whose rounding costs ~2^-17 of the product. The product is
``residual - base`` in float32.

Measured (tests/evaluation/test_bfloat16x3.py): on a [257, 400] x [400, 784] product the largest
error is 1.1e-5 of the largest entry (float32 sgemm 4e-7, one bfloat16 product 4.5e-3); on
log p(x|z) of MNIST-sized decoders the test asserts under 10 times float32's rounding error (3-6
times, ~2e-6 of |log p(x|z)|, in an exploratory run of its comparison).
"""

from __future__ import annotations

import torch
from torch import Tensor

# The matmul precisions the importance-sampled likelihood can use (``log_likelihood``).
MATMUL_PRECISIONS = ("float32", "bfloat16x3")


def split_rows(h: Tensor) -> Tensor:
    """[N, H] float32 -> [N, 3H] bfloat16 holding (h_hi, h_lo, h_hi), h_hi + h_lo ≈ h.

    Under torch.compile this needs ``emulate_precision_casts`` (inductor otherwise drops the
    bfloat16 round trip in ``h - h_hi`` and h_lo comes out zero); the likelihood's compiled path
    (``likelihood._BernoulliLinearLogPx``) sets it.
    """
    hi = h.to(torch.bfloat16)
    lo = (h - hi.float()).to(torch.bfloat16)
    return torch.cat([hi, lo, hi], 1)


def compose(residual: Tensor, neg_base: Tensor) -> Tensor:
    """The float32 product from ``BFloat16x3Weight.parts``."""
    return residual.float() - neg_base.float()


class BFloat16x3Weight:
    """The right operand ``weight`` [H, P] of a product h @ weight, split once for bfloat16x3."""

    def __init__(self, weight: Tensor) -> None:
        weight = weight.detach().float()
        hi = weight.to(torch.bfloat16)
        lo = (weight - hi.float()).to(torch.bfloat16)
        self.width = weight.shape[0]
        self.neg_hi = (-hi).contiguous()  # [H, P]
        self.stacked = torch.cat([hi, hi, lo], 0).contiguous()  # [3H, P]

    def parts(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """(residual, neg_base), both [N, P] bfloat16, for ``rows = split_rows(h)``:
        h @ weight ≈ ``compose(residual, neg_base)``."""
        neg_base = torch.mm(rows[:, : self.width], self.neg_hi)
        residual = torch.addmm(neg_base, rows, self.stacked)
        return residual, neg_base

    def __call__(self, h: Tensor) -> Tensor:
        """h @ weight in float32 through three-term bfloat16 products (eager)."""
        return compose(*self.parts(split_rows(h)))
