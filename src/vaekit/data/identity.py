"""The dataset identity: a content hash of the exact tensors a model saw, one byte layout for
data held in memory and data streamed from an image cache."""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import Tensor

from .base import Binarization, Split


def new_digest(name: str, binarize: Binarization) -> Any:
    """The running hash of a dataset's identity, started with its name and binarisation."""
    return hashlib.sha256(f"{name}\0{binarize}".encode())


def hash_tensor(digest: Any, key: str, tensor: Tensor | None) -> None:
    """Add ``tensor`` under ``key``: its dtype, shape and raw bytes (the key alone for None)."""
    digest.update(f"\0{key}".encode())
    if tensor is None:
        return
    digest.update(f":{tensor.dtype}:{tuple(tensor.shape)}".encode())
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    digest.update(flat.view(torch.uint8).numpy().data)  # raw bytes, no copy


def dataset_identity(
    name: str, binarize: Binarization, splits: dict[str, Split], extras: dict[str, Tensor]
) -> str:
    """First 16 hex digits of a sha256 over the name, binarisation and every tensor's bytes.

    Two runs share an identity exactly when they saw the same data, whatever file it came from.
    """
    digest = new_digest(name, binarize)
    for split_name, split in splits.items():
        hash_tensor(digest, f"{split_name}.x", split.x)
        hash_tensor(digest, f"{split_name}.y", split.y)
    for key, tensor in sorted(extras.items()):
        hash_tensor(digest, key, tensor)
    return str(digest.hexdigest()[:16])
