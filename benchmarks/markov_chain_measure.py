"""The measurements of the Markov-chain study, one trained model at a time: samplers, latent
interpolation and imputation, scored on the evaluation suite's MNIST extractor.

Each public ``measure_*`` function is one resumable unit of ``benchmarks/markov_chain_study.py``:
it returns a JSON-ready dict of rows (one per sampler step, path or imputation step), and draws
its figure when asked. Scores:

- samples: FID, KID, precision and recall of the decoder means against the test images, on the
  extractor's features (``feature_scores``); the share of samples the extractor classifies with
  confidence > 0.9 and the class histogram of its predictions (mode dropping, with the total
  variation distance to the test labels' class shares); MMD² (permutation test) of the sampler's
  latents to codes z ~ q(z|x) of training images, and E‖z‖²/D;
- interpolation: FID of the path midpoints against the test images, and the extractor's mean
  confidence at every position along the paths;
- imputation: the extractor's accuracy on the completed digit (decoder mean in the missing
  pixels, as ``vaekit impute`` shows it) and the mean squared error on the missing pixels;
  Metropolis-within-Gibbs acceptance rates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vaekit import plots
from vaekit.distributions import draw
from vaekit.evaluation.extractor import FeatureExtractor
from vaekit.evaluation.latent import mmd_permutation_test
from vaekit.evaluation.sample_quality import feature_scores
from vaekit.models import Autoencoder
from vaekit.samplers import (
    FlowSampler,
    GaussianMixtureSampler,
    MarkovChainSampler,
    PriorSampler,
    Sampler,
    TwoStageSampler,
    impute,
    interpolate_images,
)
from vaekit.samplers.imputation import MASKS

CONFIDENT = 0.9  # a sample counts as a recognisable digit above this top-class probability
FIGURE_COLUMNS = 12
FIGURE_PAIRS = 4
BATCH = 1000

# Ex-post density samplers: z from a density fitted to the training codes after training, then
# decoded. A new one (a flow, a KDE, a larger mixture) is one entry here: a factory
# (model, training images [N, C, H, W], seed) -> Sampler. Each entry becomes a row of every
# sample table and a unit "samples/<model>/<name>" of the study.
LATENT_SAMPLERS: dict[str, Callable[[Autoencoder, Tensor, int], Sampler]] = {
    "prior": lambda model, x, seed: PriorSampler(model),
    "gaussian-mixture": lambda model, x, seed: GaussianMixtureSampler(model, x, seed=seed),
    "flow": lambda model, x, seed: FlowSampler(model, x, seed=seed),
    "two-stage": lambda model, x, seed: TwoStageSampler(model, x, seed=seed),
}


@dataclass(frozen=True)
class Reference:
    """What every model is scored against: the extractor, the test images, their features and
    labels, and the test set's class shares."""

    extractor: FeatureExtractor
    x: Tensor  # [N, C, H, W] test images, CPU
    y: Tensor  # [N] labels
    features: Tensor  # [N, F] extractor features of x
    class_share: Tensor  # [K] fraction of test images per class

    @classmethod
    def build(cls, extractor: FeatureExtractor, x: Tensor, y: Tensor) -> Reference:
        """Embed the test images once."""
        num_classes = extractor.spec["num_classes"]
        share = torch.bincount(y, minlength=num_classes).double() / len(y)
        return cls(extractor, x, y, extractor.embed(x), share)


@torch.no_grad()
def probabilities(extractor: FeatureExtractor, x: Tensor) -> Tensor:
    """The extractor's class probabilities [N, K] for images x (CPU)."""
    device = next(extractor.parameters()).device
    extractor.eval()
    return torch.cat([extractor(b.to(device)).softmax(1).cpu() for b in x.split(BATCH)])


@torch.no_grad()
def decode(model: Autoencoder, z: Tensor) -> Tensor:
    """Decoder means [N, C, H, W] (CPU) of latents z, in batches."""
    return torch.cat([model.decode_mean(b).cpu() for b in z.split(BATCH)])


@torch.no_grad()
def training_codes(
    model: Autoencoder, x: Tensor, num_points: int, generator: torch.Generator
) -> Tensor:
    """Draws z ~ q(z|x) of ``num_points`` random training images: the aggregate posterior."""
    device = next(model.parameters()).device
    index = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:num_points]
    return torch.cat(
        [
            draw(model.encoder(b.to(device)), generator=generator).cpu()
            for b in x[index].split(BATCH)
        ]
    )


def image_scores(ref: Reference, images: Tensor, seed: int) -> dict[str, Any]:
    """FID/KID/precision/recall against the test images, confidence and class histogram."""
    scores = feature_scores(
        ref.features,
        ref.extractor.embed(images),
        ref.extractor.hash,
        generator=torch.Generator().manual_seed(seed),
    )
    probs = probabilities(ref.extractor, images)
    top, label = probs.max(1)
    share = torch.bincount(label, minlength=len(ref.class_share)).double() / len(images)
    name = ref.extractor.hash
    return {
        "fid": scores[f"fid-{name}"],
        "kid": scores[f"kid-{name}"],
        "precision": scores["precision"],
        "recall": scores["recall"],
        "confident": float((top > CONFIDENT).double().mean()),
        "class_tv": 0.5 * float((share - ref.class_share).abs().sum()),
        **{f"class_{c}": float(s) for c, s in enumerate(share)},
        "num_samples": len(images),
    }


def latent_scores(z: Tensor, codes: Tensor, seed: int) -> dict[str, float]:
    """MMD² of latents z to training codes (first min(N, M) of each), and E‖z‖²/D."""
    n = min(len(z), len(codes))
    test = mmd_permutation_test(
        z[:n].cpu().double(),
        codes[:n].double(),
        num_permutations=100,
        generator=torch.Generator().manual_seed(seed),
    )
    return {
        "mmd2": test["mmd2"],
        "mmd2_null_std": test["null_std"],
        "mmd_points": n,
        "latent_power": float(z.pow(2).mean()),
    }


def generator_for(model: Autoencoder, seed: int) -> torch.Generator:
    """A generator on the model's device."""
    return torch.Generator(next(model.parameters()).device).manual_seed(seed)


def measure_sampler(
    model: Autoencoder,
    name: str,
    train_x: Tensor,
    codes: Tensor,
    ref: Reference,
    *,
    num_samples: int,
    seed: int,
) -> dict[str, Any]:
    """Score one sampler of ``LATENT_SAMPLERS`` (``num_samples`` decoder means)."""
    sampler = LATENT_SAMPLERS[name](model, train_x, seed)
    z = sampler.sample_latent(num_samples, generator=generator_for(model, seed))
    row = {"sampler": name, "start": "-", "decode": "-", "step": None}
    row |= image_scores(ref, decode(model, z), seed) | latent_scores(z, codes, seed)
    return {"rows": [row]}


def measure_chain(
    model: Autoencoder,
    codes: Tensor,
    ref: Reference,
    *,
    start: str,
    decode_mode: str,
    steps: Sequence[int],
    num_samples: int,
    seed: int,
    figure: Path | None,
) -> dict[str, Any]:
    """Run ``num_samples`` chains from ``start`` (decode step ``decode_mode``) and score the
    decoder means at each of ``steps``; the same z_0 for both decode modes."""
    chain = MarkovChainSampler(model, start=start, decode=decode_mode)
    trajectory = chain.run(
        num_samples, max(steps), record=steps, generator=generator_for(model, seed)
    )
    rows, strips = [], []
    for t in sorted(steps):
        z = trajectory.states[t].z
        images = decode(model, z)
        row = {"sampler": "chain", "start": start, "decode": decode_mode, "step": t}
        rows.append(row | image_scores(ref, images, seed) | latent_scores(z, codes, seed))
        strips.append(images[:FIGURE_COLUMNS])
    if figure is not None:
        plots.save_rows(
            strips,
            figure,
            row_labels=[f"step {t}" for t in sorted(steps)],
            title=f"chain from the {start}, {decode_mode} decoding",
        )
    return {"rows": rows}


def path_methods(chain_steps: Sequence[int]) -> list[tuple[str, str, int]]:
    """(label, path, chain steps): linear, spherical, and spherical + k chain steps."""
    refined = [(f"slerp + {k} chain", "slerp", k) for k in chain_steps]
    return [("lerp", "lerp", 0), ("slerp", "slerp", 0), *refined]


def measure_interpolation(
    model: Autoencoder,
    ref: Reference,
    *,
    pairs: int,
    num_points: int,
    chain_steps: Sequence[int],
    seed: int,
    figure: Path | None,
) -> dict[str, Any]:
    """Paths between ``pairs`` random pairs of test images (the same pairs for every model of a
    seed): midpoint FID and the extractor's confidence along the paths, per method."""
    order = torch.randperm(len(ref.x), generator=torch.Generator().manual_seed(seed))
    device = next(model.parameters()).device
    x0, x1 = (ref.x[order[i * pairs : (i + 1) * pairs]].to(device) for i in (0, 1))
    rows, strips, labels = [], [], []
    for label, method, k in path_methods(chain_steps):
        path = interpolate_images(  # [T, P, D]
            model,
            x0,
            x1,
            method=method,
            num_points=num_points,
            chain_steps=k,
            generator=generator_for(model, seed),
        )
        images = decode(model, path.flatten(0, 1)).view(*path.shape[:2], *ref.x.shape[1:])
        top = probabilities(ref.extractor, images.flatten(0, 1)).max(1).values
        confidence = top.view(num_points, pairs).mean(1)  # [T]
        midpoint = image_scores(ref, images[num_points // 2], seed)
        row = {"path": label, "midpoint_fid": midpoint["fid"], "num_pairs": pairs}
        row["midpoint_confident"] = midpoint["confident"]
        rows.append(row | {f"confidence_{i}": float(c) for i, c in enumerate(confidence)})
        for i in range(min(FIGURE_PAIRS, pairs)):
            strips.append(images[:, i])
            labels.append(f"pair {i + 1}: {label}")
    if figure is not None:
        order_by_pair = sorted(range(len(strips)), key=lambda j: labels[j].split(":")[0])
        plots.save_rows(
            [strips[j] for j in order_by_pair],
            figure,
            row_labels=[labels[j] for j in order_by_pair],
            title="interpolation between test images, without and with the chain",
        )
    return {"rows": rows}


def measure_imputation(
    model: Autoencoder,
    ref: Reference,
    *,
    mask: str,
    method: str,
    num_images: int,
    steps: Sequence[int],
    seed: int,
    figure: Path | None,
) -> dict[str, Any]:
    """Impute the ``mask`` pixels of the first ``num_images`` test images with ``method``;
    per recorded step: extractor accuracy on the completed digit, MSE on missing pixels,
    acceptance rate up to that step."""
    device = next(model.parameters()).device
    x, y = ref.x[:num_images], ref.y[:num_images]
    shape = tuple(int(n) for n in x.shape[1:])
    missing = MASKS[mask](len(x), shape, torch.Generator().manual_seed(seed))
    try:
        trajectory = impute(
            model,
            x.to(device),
            missing.to(device),
            method=method,
            num_steps=max(steps),
            record=steps,
            generator=generator_for(model, seed),
        )
    except ValueError as error:  # Metropolis-within-Gibbs with a deterministic (AAE) encoder
        if "density" not in str(error):
            raise
        return {"rows": [], "not_applicable": str(error)}
    acceptance = trajectory.diagnostics.get("acceptance")
    rows, strips = [], [x[:FIGURE_COLUMNS], torch.where(missing, 0.5, x)[:FIGURE_COLUMNS]]
    for t in sorted(steps):
        completed = torch.where(missing, decode(model, trajectory.states[t].z), x)
        predicted = probabilities(ref.extractor, completed).argmax(1)
        row: dict[str, Any] = {"mask": mask, "method": method, "step": t}
        row["accuracy"] = float((predicted == y).double().mean())
        row["mse"] = float((completed - x)[missing].square().mean())
        accepted = acceptance[:t] if isinstance(acceptance, list) and t > 0 else None
        row["acceptance"] = sum(accepted) / len(accepted) if accepted else None
        rows.append(row | {"num_images": len(x)})
        strips.append(completed[:FIGURE_COLUMNS])
    if figure is not None:
        labels = ["original", "observed", *[f"step {t}" for t in sorted(steps)]]
        title = f"{method} imputation, {mask} mask (decoder mean in the missing pixels)"
        plots.save_rows(strips, figure, row_labels=labels, title=title)
    return {"rows": rows}
