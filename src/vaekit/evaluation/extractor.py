"""The feature extractor for FID/KID on images: a small conv net vaekit trains itself on a dataset.

No downloaded weights: a LeNet-style conv net (28x28 inputs) or a generic small conv net (other
sizes) is trained with a seeded loop on the dataset's training split, and cached under the data
root, keyed by the dataset's identity and the extractor's own spec hash. Its features are the
``FEATURE_DIM`` units after the conv trunk. Numbers computed with it are named by the hash of its
weights ("FID-<hash>"), never "FID", because they are only comparable with the same extractor.

The spec's ``objective`` says what trains those features:

- "classifier" (datasets with labels): cross-entropy on the labels; the features are the
  penultimate layer, as Inception features are for Inception FID.
- "autoencoder" (datasets without labels): a denoising autoencoder (Vincent et al. 2008) whose
  bottleneck is the features, decoded by one linear layer back to the image. Reconstruction
  needs no labels and no choice of augmentations (a contrastive net's augmentations would have
  to suit 8x8 digits, faces and anything in an image folder alike), and trains in seconds. The
  masking noise matters: the bottleneck is as wide as or wider than small images, so a plain
  autoencoder could learn a near-identity map; filling in masked pixels makes the features carry
  the data's structure (which pixels go together) instead.
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
OBJECTIVES = ("classifier", "autoencoder")
FEATURE_DIM = 128
MIN_EPOCHS = 3
MIN_STEPS = 1000  # at least this many optimiser steps, however small the dataset
# The autoencoder's training length: one pass over MNIST (422 steps, about half a minute on one
# CPU core); more steps lower its reconstruction error but barely move the FID scale.
AUTOENCODER_MIN_EPOCHS = 1
AUTOENCODER_MIN_STEPS = 400
MASKING = 0.25  # the autoencoder's input corruption: each pixel is zeroed with this probability

FEATURES_TRAINED_BY = {
    "classifier": "penultimate layer of a classifier trained on the dataset's labels",
    "autoencoder": "bottleneck of a denoising autoencoder trained on the dataset without labels",
}


def extractor_spec(
    event_shape: tuple[int, ...], num_classes: int | None, *, min_steps: int | None = None
) -> dict[str, Any]:
    """Everything that defines an extractor before training; its hash names the cache entry.

    ``num_classes`` given: a classifier on the labels; None: a denoising autoencoder trained
    without labels. Training runs for MIN_EPOCHS epochs or ``min_steps`` (default MIN_STEPS)
    optimiser steps, whichever is longer (AUTOENCODER_MIN_EPOCHS and AUTOENCODER_MIN_STEPS for
    the autoencoder). Images only: vectors are compared on standardised raw features
    (``vaekit.evaluation.features``).
    """
    if len(event_shape) != 3:
        raise ValueError(
            f"the conv feature extractor needs images [C, H, W], not datapoints of shape "
            f"{tuple(event_shape)}; vectors are compared on standardised raw features"
        )
    classifier = num_classes is not None
    default_steps = MIN_STEPS if classifier else AUTOENCODER_MIN_STEPS
    spec: dict[str, Any] = {
        "version": EXTRACTOR_VERSION,
        "objective": "classifier" if classifier else "autoencoder",
        "architecture": "lenet" if tuple(event_shape[1:]) == (28, 28) else "small-conv",
        "event_shape": list(event_shape),
        "feature_dim": FEATURE_DIM,
        "min_epochs": MIN_EPOCHS if classifier else AUTOENCODER_MIN_EPOCHS,
        "min_steps": default_steps if min_steps is None else int(min_steps),
        "batch_size": 128,
        "lr": 1e-3,
        "seed": 0,
    }
    if num_classes is not None:
        spec["num_classes"] = int(num_classes)
    else:
        spec["masking"] = MASKING
    return spec


def spec_hash(spec: dict[str, Any]) -> str:
    """First 12 hex digits of a sha256 over the canonical JSON of ``spec``."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


class FeatureExtractor(nn.Module):
    """Conv trunk -> ``FEATURE_DIM`` features (ReLU) -> a head that ``spec["objective"]`` picks.

    Trunk "lenet": conv 5x5 (16) + pool, conv 5x5 (32) + pool, as LeNet on 28x28 MNIST;
    "small-conv": conv 3x3 (16) + pool, conv 3x3 (32), adaptive average pool to 4x4, for any
    image size. Head: class logits (``classifier``) or a linear decoder back to the image
    (``decoder``); the other one is None.
    """

    def __init__(self, spec: dict[str, Any]):
        super().__init__()
        if spec["objective"] not in OBJECTIVES:
            raise ValueError(
                f"unknown extractor objective {spec['objective']!r}; "
                f"choose one of: {', '.join(OBJECTIVES)}"
            )
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
        # Module names are part of the weights hash: "classifier" keeps the name it always had.
        self.classifier = (
            nn.Linear(spec["feature_dim"], spec["num_classes"])
            if spec["objective"] == "classifier"
            else None
        )
        shape = tuple(spec["event_shape"])
        self.decoder = (
            nn.Sequential(nn.Linear(spec["feature_dim"], math.prod(shape)), nn.Unflatten(1, shape))
            if spec["objective"] == "autoencoder"
            else None
        )
        self.spec = spec
        self.info: dict[str, Any] = {}

    def forward(self, x: Tensor) -> Tensor:
        """Class logits [B, num_classes] (classifier) or the reconstruction [B, C, H, W]
        (autoencoder) of images x [B, C, H, W]."""
        h = self.features(self.trunk(x))  # [B, FEATURE_DIM]
        if self.classifier is not None:
            return self.classifier(h)
        assert self.decoder is not None  # one of the two heads exists (__init__)
        return self.decoder(h)

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
        """Features [N, FEATURE_DIM] (float64, CPU) of images x [N, C, H, W]."""
        device = next(self.parameters()).device
        self.eval()
        out = [self.features(self.trunk(b.to(device))).double().cpu() for b in x.split(batch_size)]
        return torch.cat(out)

    @torch.inference_mode()
    def accuracy(self, x: Tensor, y: Tensor, *, batch_size: int = 1000) -> float:
        """Fraction of images x whose predicted class equals y (classifiers only)."""
        if self.classifier is None:
            raise ValueError("an autoencoder extractor predicts no classes")
        device = next(self.parameters()).device
        self.eval()
        correct = sum(
            int((self(xb.to(device)).argmax(1).cpu() == yb).sum())
            for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True)
        )
        return correct / len(y)

    @torch.inference_mode()
    def reconstruction_error(self, x: Tensor, *, batch_size: int = 1000) -> float:
        """Mean squared error per pixel of reconstructing clean images x (autoencoders only)."""
        if self.decoder is None:
            raise ValueError("a classifier extractor reconstructs no images")
        device = next(self.parameters()).device
        self.eval()
        total = sum(
            float((self(b.to(device)).cpu() - b).double().square().sum())
            for b in x.split(batch_size)
        )
        return total / x.numel()

    def describe(self) -> dict[str, Any]:
        """Provenance for evaluation.json: hashes, what trained the features, training facts."""
        return {
            "hash": self.hash,
            "spec_hash": spec_hash(self.spec),
            "objective": self.spec["objective"],
            "architecture": self.spec["architecture"],
            "features": FEATURES_TRAINED_BY[self.spec["objective"]],
            **self.info,
        }


def _loss(
    model: FeatureExtractor, x: Tensor, y: Tensor | None, generator: torch.Generator
) -> Tensor:
    """The training loss of one batch: cross-entropy, or the denoising reconstruction error."""
    if model.classifier is not None:
        assert y is not None  # checked before training
        return F.cross_entropy(model(x), y)
    keep = torch.rand(x.shape, generator=generator) >= model.spec["masking"]  # [B, C, H, W]
    return F.mse_loss(model(x * keep), x)


def _explained_variance(model: FeatureExtractor, x: Tensor) -> float:
    """1 - reconstruction MSE / MSE of predicting each pixel's mean: 1 is perfect, 0 no better."""
    baseline = float((x.double() - x.double().mean(0)).square().mean())
    return 1 - model.reconstruction_error(x) / baseline if baseline > 0 else 0.0


def train_extractor(spec: dict[str, Any], dataset: Dataset) -> FeatureExtractor:
    """Train an extractor on ``dataset``'s training split with a seeded loop (Adam).

    Initial weights, data order, masking noise and nothing else are random, all from
    ``spec["seed"]``; a streamed training split gives the same weights as the same images in
    memory. Records the training time and the test accuracy (classifier) or the reconstruction
    error on the test split (autoencoder) in ``extractor.info``.
    """
    classifier = spec["objective"] == "classifier"
    streamed = dataset.train_stream is not None
    unlabelled = dataset.train.y is None or (streamed and dataset.train_stream_labels is None)
    if classifier and (unlabelled or dataset.test.y is None):
        raise ValueError(f"dataset {dataset.name!r} has no labels to train a classifier on")
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec["seed"])
        model = FeatureExtractor(spec)
    x, y = dataset.train.x, dataset.train.y
    num_train = dataset.train_size
    steps_per_epoch = math.ceil(num_train / spec["batch_size"])
    epochs = max(spec["min_epochs"], math.ceil(spec["min_steps"] / steps_per_epoch))
    optimizer = torch.optim.Adam(model.parameters(), lr=spec["lr"])
    generator = torch.Generator().manual_seed(spec["seed"])
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(num_train, generator=generator).split(spec["batch_size"]):
            labels = dataset.train_labels(index) if classifier else None
            loss = _loss(model, dataset.train_points(index), labels, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()
    model.info = {"epochs": epochs, "train_seconds": round(time.perf_counter() - start, 2)}
    if classifier:
        assert y is not None and dataset.test.y is not None
        model.info["train_accuracy"] = model.accuracy(x, y)
        model.info["test_accuracy"] = model.accuracy(dataset.test.x, dataset.test.y)
    else:
        model.info["test_mse"] = model.reconstruction_error(dataset.test.x)
        model.info["test_explained_variance"] = _explained_variance(model, dataset.test.x)
    return model


@dataclass(frozen=True)
class ExtractorCache:
    """Trained extractors under ``root``: ``<dataset>-<identity>-<spec hash>/`` each holding
    ``extractor.safetensors`` and ``extractor.json`` (spec, dataset, training facts, weights
    hash). The spec holds the objective, so a classifier and an autoencoder never share one."""

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
