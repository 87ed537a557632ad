"""What every metric receives: the model, its data, the evaluation settings and a seed."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from vaekit.data.base import Dataset, Split
from vaekit.evaluation.progress import SILENT, Progress
from vaekit.models.base import Autoencoder

if TYPE_CHECKING:
    from vaekit.evaluation.features import Features

MetricResult = dict[str, Any]


class NotApplicable(Exception):
    """A metric that does not apply to this model or dataset (e.g. log p(x) of a plain AE)."""


@dataclass
class EvaluationContext:
    """A model, its dataset and the settings one evaluation shares across metrics.

    ``dataset`` holds the splits exactly as the model was trained and scored on them (binarised
    if the run was); ``load_grey`` returns the same splits without binarisation (the real images
    that generated samples are compared with); ``load_extractor`` returns the features FID/KID
    compare (a trained conv extractor for images, standardised raw features for vectors). Both
    are called at most once, and only by the metrics that need them.
    """

    model: Autoencoder
    dataset: Dataset
    split: str = "test"
    num_importance_samples: int = 5000
    num_samples: int = 10_000
    batch_size: int = 100
    seed: int = 0
    grey_targets: bool = False
    compile: bool = False  # torch.compile the likelihood's elementwise work where it helps
    matmul: str = "float32"  # the likelihood's decoder product (accel/bfloat16x3.py)
    elbo_samples: int = 1  # draws of z per datapoint averaged in the per-datapoint ELBO
    progress: Progress = SILENT  # estimates and bars for long metrics (progress.py)
    load_grey: Callable[[], Dataset] | None = None
    load_extractor: Callable[[], Features] | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    # Per-datapoint values ([N], higher is better) that metrics keep for paired comparisons:
    # written beside the report (evaluation/per_example.py).
    per_example: dict[str, Tensor] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        """Where the model lives; data are moved there batch by batch."""
        return next(self.model.parameters()).device

    @property
    def data(self) -> Split:
        """The split being evaluated."""
        split: Split = getattr(self.dataset, self.split)
        return split

    @property
    def num_dims(self) -> int:
        """Dimensions of one datapoint (C·H·W, or D for vectors), for bits per dimension."""
        return math.prod(self.dataset.event_shape)

    def generator(self, offset: int = 0) -> torch.Generator:
        """A fresh generator on the model's device, seeded by ``seed + offset``.

        Each metric takes its own offset, so running a metric alone gives the same number as
        running it among others.
        """
        return torch.Generator(self.device).manual_seed(self.seed + offset)

    @cached_property
    def grey(self) -> Dataset:
        """The same splits without binarisation (the dataset itself when it is not binarised)."""
        if self.dataset.binarize == "none" or self.load_grey is None:
            return self.dataset
        return self.load_grey()

    @cached_property
    def extractor(self) -> Features:
        """The dataset's features for FID/KID (an extractor is trained on first use, then read
        from the cache)."""
        if self.load_extractor is None:
            raise NotApplicable("no feature extractor was configured for this evaluation")
        return self.load_extractor()

    def loaded_extractor(self) -> Features | None:
        """The features if a metric has loaded them, else None (for provenance)."""
        extractor: Features | None = self.__dict__.get("extractor")
        return extractor

    def require_density(self, what: str) -> None:
        """Raise NotApplicable unless the model defines a likelihood bound."""
        if not self.model.has_density:
            raise NotApplicable(
                f"{what} needs a model with a density (an ELBO); "
                f"{type(self.model).__name__} has a deterministic encoder"
            )

    def require_labels(self, what: str) -> tuple[Tensor, Tensor]:
        """The train and evaluated split's labels, or NotApplicable when the data have none."""
        train_y, test_y = self.dataset.train.y, self.data.y
        if train_y is None or test_y is None:
            raise NotApplicable(
                f"{what} needs class labels; dataset {self.dataset.name!r} has none"
            )
        return train_y, test_y
