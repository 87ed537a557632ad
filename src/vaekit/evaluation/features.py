"""What FID, KID and precision/recall compare: the ``Features`` protocol, standardised raw
features for vectors, and the choice of features for a dataset.

Images go through a conv extractor vaekit trains itself (``extractor.py``): a classifier when
the dataset has labels, a denoising autoencoder when it has none. Vectors (tabular data) need
no network: each column already is a feature, and standardising the columns with the training
split's mean and std keeps a column measured in large units from swamping the others in the
Fréchet distance, the kernel and the nearest-neighbour balls.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from vaekit.data.base import Dataset
from vaekit.evaluation.extractor import ExtractorCache, extractor_spec

STANDARDISED_FEATURES = "standardised raw features (training-split mean and std per feature)"


class Features(Protocol):
    """Maps datapoints to feature vectors; ``hash`` names the metrics computed on them."""

    @property
    def hash(self) -> str:
        """12 hex digits that change whenever the features would."""
        ...

    def embed(self, x: Tensor, *, batch_size: int = 1000) -> Tensor:
        """Features [N, F] (float64, CPU) of datapoints x [N, ...]."""
        ...

    def describe(self) -> dict[str, Any]:
        """Provenance for evaluation.json, including ``hash`` and what the features are."""
        ...


@dataclass(frozen=True)
class StandardisedFeatures:
    """Vectors x [N, D] as (x - mean) / std per feature, mean and std fitted on training data.

    A feature that is constant in the training data gets std 1 (it is only centred). No network
    and nothing trained, so nothing to cache: fitting is one pass over the data.
    """

    mean: Tensor  # [D] float64
    std: Tensor  # [D] float64, positive

    @classmethod
    def fit(cls, x: Tensor) -> StandardisedFeatures:
        """Mean and (population) std of each column of x [N, D]."""
        if x.ndim != 2:
            raise ValueError(f"standardised features need vectors [N, D], got {tuple(x.shape)}")
        x = x.detach().cpu().double()
        constant = x.amax(0) == x.amin(0)  # exact: a computed std of equal values may not be 0
        std = torch.where(constant, torch.ones(()), x.std(0, correction=0))
        return cls(mean=x.mean(0), std=std)

    @property
    def hash(self) -> str:
        """12 hex digits of a sha256 over the mean and std."""
        digest = hashlib.sha256(b"standardised")
        for tensor in (self.mean, self.std):
            digest.update(tensor.contiguous().numpy().tobytes())
        return digest.hexdigest()[:12]

    def embed(self, x: Tensor, *, batch_size: int = 1000) -> Tensor:
        """Standardised x [N, D] (float64, CPU); ``batch_size`` is unused (one pass)."""
        if x.ndim != 2 or x.shape[1] != len(self.mean):
            raise ValueError(
                f"standardised features were fitted on {len(self.mean)}-dimensional vectors, "
                f"not on datapoints of shape {tuple(x.shape[1:])}"
            )
        return (x.detach().cpu().double() - self.mean) / self.std

    def describe(self) -> dict[str, Any]:
        """Provenance for evaluation.json."""
        return {
            "hash": self.hash,
            "objective": "standardise",
            "features": STANDARDISED_FEATURES,
            "num_features": len(self.mean),
        }


def features_for(
    dataset: Dataset, cache: ExtractorCache, *, min_steps: int | None = None
) -> Features:
    """The features a dataset's samples are scored on.

    Vectors: standardised raw features fitted on ``dataset.train``. Images with labels (train
    and test): the classifier extractor; images without: the autoencoder extractor; either is
    read from ``cache`` or trained there first (``min_steps`` as in ``extractor_spec``).
    """
    if not dataset.is_images:
        return StandardisedFeatures.fit(dataset.train.x)
    labelled = dataset.train.y is not None and dataset.test.y is not None
    num_classes = dataset.num_classes if labelled else None
    return cache.get(dataset, extractor_spec(dataset.event_shape, num_classes, min_steps=min_steps))
