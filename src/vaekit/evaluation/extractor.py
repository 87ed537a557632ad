"""The feature extractor for FID/KID: a small classifier vaekit trains itself on a dataset.

No downloaded weights: a LeNet-style conv net (28x28 inputs) or a generic small conv net (other
sizes) is trained with a seeded loop on the dataset's training split, and cached under the data
root, keyed by the dataset's identity and the extractor's own spec hash. Its features are the
penultimate layer. Numbers computed with it are named by the hash of its weights
("FID-<hash>"), never "FID", because they are only comparable with the same extractor.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vaekit.data.base import Dataset
from vaekit.errors import CheckpointError
from vaekit.files import write_json
from vaekit.weights import load_weights, read_json, save_weights

EXTRACTOR_VERSION = 1
FEATURE_DIM = 128
MIN_EPOCHS = 3
MIN_STEPS = 1000  # at least this many optimiser steps, however small the dataset


def extractor_spec(
    event_shape: tuple[int, int, int], num_classes: int, *, min_steps: int | None = None
) -> dict[str, Any]:
    """Everything that defines an extractor before training; its hash names the cache entry.

    Training runs for MIN_EPOCHS epochs or ``min_steps`` (default MIN_STEPS) optimiser steps,
    whichever is longer.
    """
    return {
        "version": EXTRACTOR_VERSION,
        "architecture": "lenet" if event_shape[1:] == (28, 28) else "small-conv",
        "event_shape": list(event_shape),
        "num_classes": int(num_classes),
        "feature_dim": FEATURE_DIM,
        "min_epochs": MIN_EPOCHS,
        "min_steps": MIN_STEPS if min_steps is None else int(min_steps),
        "batch_size": 128,
        "lr": 1e-3,
        "seed": 0,
    }


def spec_hash(spec: dict[str, Any]) -> str:
    """First 12 hex digits of a sha256 over the canonical JSON of ``spec``."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


class FeatureExtractor(nn.Module):
    """Conv trunk -> ``FEATURE_DIM`` features (ReLU) -> class logits.

    "lenet": conv 5x5 (16) + pool, conv 5x5 (32) + pool, as LeNet on 28x28 MNIST. "small-conv":
    conv 3x3 (16) + pool, conv 3x3 (32), adaptive average pool to 4x4, for any image size.
    """

    def __init__(self, spec: dict[str, Any]):
        super().__init__()
        c = spec["event_shape"][0]
        if spec["architecture"] == "lenet":
            self.trunk = nn.Sequential(
                nn.Conv2d(c, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            )  # fmt: skip
            trunk_features = 32 * 7 * 7
        else:
            self.trunk = nn.Sequential(
                nn.Conv2d(c, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            )  # fmt: skip
            trunk_features = 32 * 4 * 4
        self.features = nn.Sequential(nn.Linear(trunk_features, spec["feature_dim"]), nn.ReLU())
        self.classifier = nn.Linear(spec["feature_dim"], spec["num_classes"])
        self.spec = spec
        self.info: dict[str, Any] = {}

    def forward(self, x: Tensor) -> Tensor:
        """Class logits [B, num_classes] for images x [B, C, H, W]."""
        return self.classifier(self.features(self.trunk(x)))

    @property
    def hash(self) -> str:
        """The extractor's name in metric keys: 12 hex digits of a sha256 over its weights."""
        digest = hashlib.sha256()
        for key, value in sorted(self.state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:12]

    @torch.inference_mode()
    def embed(self, x: Tensor, *, batch_size: int = 1000) -> Tensor:
        """Penultimate-layer features [N, FEATURE_DIM] (float64, CPU) of images x [N, C, H, W]."""
        device = next(self.parameters()).device
        self.eval()
        out = [self.features(self.trunk(b.to(device))).double().cpu() for b in x.split(batch_size)]
        return torch.cat(out)

    @torch.inference_mode()
    def accuracy(self, x: Tensor, y: Tensor, *, batch_size: int = 1000) -> float:
        """Fraction of images x whose predicted class equals y."""
        device = next(self.parameters()).device
        self.eval()
        correct = sum(
            int((self(xb.to(device)).argmax(1).cpu() == yb).sum())
            for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True)
        )
        return correct / len(y)


def train_extractor(spec: dict[str, Any], dataset: Dataset) -> FeatureExtractor:
    """Train an extractor on ``dataset.train`` with a seeded loop (Adam, cross-entropy).

    Initial weights, data order and nothing else are random, all from ``spec["seed"]``. Records
    the test accuracy and training time in ``extractor.info``.
    """
    if dataset.train.y is None or dataset.test.y is None:
        raise ValueError(f"dataset {dataset.name!r} has no labels to train a feature extractor")
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec["seed"])
        model = FeatureExtractor(spec)
    x, y = dataset.train.x, dataset.train.y
    steps_per_epoch = math.ceil(len(x) / spec["batch_size"])
    epochs = max(spec["min_epochs"], math.ceil(spec["min_steps"] / steps_per_epoch))
    optimizer = torch.optim.Adam(model.parameters(), lr=spec["lr"])
    generator = torch.Generator().manual_seed(spec["seed"])
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(len(x), generator=generator).split(spec["batch_size"]):
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()
    model.info = {
        "epochs": epochs,
        "train_seconds": round(time.perf_counter() - start, 2),
        "train_accuracy": model.accuracy(x, y),
        "test_accuracy": model.accuracy(dataset.test.x, dataset.test.y),
    }
    return model


@dataclass(frozen=True)
class ExtractorCache:
    """Trained extractors under ``root``: ``<dataset>-<identity>-<spec hash>/`` each holding
    ``extractor.safetensors`` and ``extractor.json`` (spec, dataset, accuracy, weights hash)."""

    root: Path

    def directory(self, dataset: Dataset, spec: dict[str, Any]) -> Path:
        """The cache folder of ``spec`` trained on ``dataset``."""
        return self.root / f"{dataset.name}-{dataset.identity}-{spec_hash(spec)}"

    def get(self, dataset: Dataset, spec: dict[str, Any]) -> FeatureExtractor:
        """The cached extractor, trained (and cached) first if it is not there yet."""
        folder = self.directory(dataset, spec)
        weights, meta_path = folder / "extractor.safetensors", folder / "extractor.json"
        if weights.is_file() and meta_path.is_file():
            meta = read_json(meta_path, "feature-extractor description")
            model = FeatureExtractor(meta["spec"])
            load_weights(weights, model)
            model.eval()
            if model.hash != meta.get("hash"):
                raise CheckpointError(
                    f"feature extractor {str(weights)!r} does not match its recorded hash; "
                    f"delete {str(folder)!r} to retrain it"
                )
            model.info = meta["info"]
            return model
        model = train_extractor(spec, dataset)
        save_weights(weights, model)
        meta = {
            "spec": spec,
            "spec_hash": spec_hash(spec),
            "hash": model.hash,
            "dataset": dataset.name,
            "dataset_identity": dataset.identity,
            "torch": torch.__version__,
            "info": model.info,
        }
        write_json(meta_path, meta)
        return model


def describe(extractor: FeatureExtractor) -> dict[str, Any]:
    """Provenance of an extractor for evaluation.json."""
    return {
        "hash": extractor.hash,
        "spec_hash": spec_hash(extractor.spec),
        "architecture": extractor.spec["architecture"],
        **extractor.info,
    }
