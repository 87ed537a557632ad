"""Conditioning on labels or any vector y (the conditional VAE of Sohn, Lee & Yan 2015).

A ``Condition`` holds the y of the datapoints being processed; a ``ConditionalEncoder`` joins it
to x before its network (x -> q(z|x, y)) and a ``ConditionalDecoder`` joins it to z
(z -> p(x|z, y)). The two share one ``Condition``, so every part of vaekit that calls
``model.encoder(x)`` and ``model.decoder(z)`` (the objectives, the importance-sampled
likelihood, the samplers and the Markov chain) works unchanged inside ``model.given(y)``.

Rows are matched by position: with y for B datapoints, a call on n = m·B rows (the K samples of
each datapoint, laid out [K, B] as the objectives do) gives row r the y of datapoint r mod B.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.distributions import Distribution
from torch.nn import functional as F

from vaekit.errors import ConfigError

if TYPE_CHECKING:
    from vaekit.models.base import Autoencoder


class Condition(nn.Module):
    """The current y [B, ``dim``] of a conditional model (no parameters).

    ``given`` takes class labels [B] (integers in [0, dim), one-hot encoded) or vectors
    [B, dim] (used as they are).
    """

    def __init__(self, dim: int):
        super().__init__()
        if dim < 1:
            raise ValueError(f"a condition needs at least 1 dimension, got {dim}")
        self.dim = dim
        self._value: Tensor | None = None

    def encode(self, y: Tensor) -> Tensor:
        """y as vectors [B, dim]: one-hot for integer labels, as given for float vectors."""
        if not y.is_floating_point():
            if y.dim() != 1:
                raise ValueError(f"class labels must be one-dimensional [B], got {list(y.shape)}")
            # checked on the CPU only: on a GPU the check would wait for the device every step
            # (the trainer checks a dataset's labels once; one_hot rejects others on the device)
            if y.device.type == "cpu" and len(y) and (int(y.min()) < 0 or int(y.max()) >= self.dim):
                raise ValueError(
                    f"class labels must lie in [0, {self.dim - 1}], got "
                    f"{int(y.min())}..{int(y.max())}"
                )
            return F.one_hot(y.long(), self.dim).float()
        if y.dim() != 2 or y.shape[1] != self.dim:
            raise ValueError(f"condition vectors must be [B, {self.dim}], got {list(y.shape)}")
        return y

    @contextmanager
    def given(self, y: Tensor) -> Iterator[None]:
        """A block in which the model is conditioned on y (labels [B] or vectors [B, dim])."""
        previous, self._value = self._value, self.encode(y)
        try:
            yield
        finally:
            self._value = previous

    def rows(self, n: int, like: Tensor) -> Tensor:
        """y for n rows [n, dim] in ``like``'s dtype and device: row r has datapoint r mod B's."""
        if self._value is None:
            raise ConfigError(
                "this model is conditional: give it y, e.g. `with model.given(labels): ...` in "
                "Python, or --condition on the command line"
            )
        value = self._value.to(device=like.device, dtype=like.dtype)
        batch = len(value)
        if batch == 0 or n % batch:
            raise ValueError(f"{n} rows do not repeat a condition given for {batch} datapoints")
        return value.repeat(n // batch, 1)


class ConditionalEncoder(nn.Module):
    """x -> q(z|x, y): ``encoder`` applied to x joined with y. ``join="flat"`` flattens x and
    appends y (for MLPs); ``"planes"`` appends y as constant image channels (for conv nets)."""

    def __init__(self, encoder: nn.Module, condition: Condition, join: str = "flat"):
        super().__init__()
        if join not in ("flat", "planes"):
            raise ValueError(f'join must be "flat" or "planes", got {join!r}')
        self.encoder, self.condition, self.join = encoder, condition, join

    def forward(self, x: Tensor) -> Distribution:
        y = self.condition.rows(len(x), x)
        if self.join == "flat":
            joined = torch.cat([x.flatten(1), y], 1)
        else:
            planes = y[:, :, None, None].expand(-1, -1, *x.shape[2:])
            joined = torch.cat([x, planes], 1)
        out: Distribution = self.encoder(joined)
        return out


class ConditionalDecoder(nn.Module):
    """z -> p(x|z, y): ``decoder`` applied to [z, y] (z [..., D], any leading dimensions)."""

    def __init__(self, decoder: nn.Module, condition: Condition):
        super().__init__()
        self.decoder, self.condition = decoder, condition

    def forward(self, z: Tensor) -> Distribution:
        rows = z.reshape(-1, z.shape[-1])
        joined = torch.cat([rows, self.condition.rows(len(rows), rows)], 1)
        out: Distribution = self.decoder(joined.view(*z.shape[:-1], -1))
        return out


def labels_for(model: Autoencoder, y: Tensor | None) -> Tensor | None:
    """``y`` where ``model`` is conditional (refusing data without labels), else None."""
    if model.condition is None:
        return None
    if y is None:
        raise ConfigError(
            "this model is conditional and these data come without labels: give the labels of "
            "the data (labels=... in Python; on the command line, a labelled dataset held in "
            "memory, data.in_memory = true)"
        )
    return y


def labelled_batches(
    model: Autoencoder, x: Tensor, y: Tensor | None, batch_size: int
) -> Iterator[Tensor]:
    """``x.split(batch_size)``, each batch yielded inside ``model.given`` its labels (a
    conditional model) or as it is (``y`` None): process a batch before asking for the next."""
    labels: Sequence[Tensor | None] = (
        [None] * len(x.split(batch_size)) if y is None else y.split(batch_size)
    )
    for x_batch, y_batch in zip(x.split(batch_size), labels, strict=True):
        with model.given(y_batch):
            yield x_batch
