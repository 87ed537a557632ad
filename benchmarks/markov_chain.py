"""Does the encode-decode Markov chain improve samples? VAE, DVAE, AAE and DAAE on MNIST.

Trains the four recipes configs/mnist-{vae,dvae,aae,daae}.toml (shortened: ``--epochs``,
``--hidden``), then runs ``--num-samples`` parallel chains from the prior (Creswell,
Arulkumaran & Bharath 2016) and scores the decoded means at each of ``--steps``:

- FID / KID / precision / recall against the 10k test images, on the features of vaekit's
  locally trained MNIST extractor (numbers are keyed by its hash; not Inception FID);
- the aggregate-posterior mismatch of the chain's latents: MMD² (Gaussian kernel, median
  bandwidth, permutation null) between z_t and draws z ~ q(z|x) of the test images, the
  distribution the chain should approach, and ``latent_power`` = mean ||z_t||² / D.

A Gaussian-mixture sampler fitted to the training codes is scored as a reference row. Prints
one JSON object; with ``--out`` also writes results.json, tables.md and one figure per model and
decode mode (one row per chain step).

    python -m benchmarks.markov_chain --out benchmarks/results/markov-chain
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from benchmarks.common import machine
from vaekit import plots
from vaekit.build import build_dataset
from vaekit.config import load_config
from vaekit.distributions import draw
from vaekit.evaluate import extractor_loader
from vaekit.evaluation.features import Features
from vaekit.evaluation.latent import mmd_permutation_test
from vaekit.evaluation.sample_quality import feature_scores, sanity_references
from vaekit.experiment import train
from vaekit.models import Autoencoder
from vaekit.runs import load_run, read_run_config
from vaekit.samplers import GaussianMixtureSampler, MarkovChainSampler

ROOT = Path(__file__).parents[1]
MODELS = ("vae", "dvae", "aae", "daae")
MMD_POINTS = 2000
FIGURE_COLUMNS = 12


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--hidden", default="512,512", help="MLP sizes (recipes: 1000,1000)")
    parser.add_argument("--steps", default="0,1,5,10,50")
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--start", choices=["prior", "wide"], default="prior")
    parser.add_argument(
        "--chain-decode", default="mean,sample", help="decode step(s) inside the chain"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default="runs/markov-chain", help="where the models are trained")
    parser.add_argument("--retrain", action="store_true", help="retrain existing runs")
    parser.add_argument("--out", help="folder for results.json, tables.md and figures")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def trained_run(name: str, args: argparse.Namespace) -> Path:
    """Train configs/mnist-<name>.toml with the benchmark's budget (or reuse the same run)."""
    recipe = ROOT / "configs" / f"mnist-{name}.toml"
    hidden = f"model.hidden=[{args.hidden}]"
    overrides = [f"train.epochs={args.epochs}", f"train.seed={args.seed}", hidden]
    if load_config(recipe).model.kind.startswith("aae"):
        overrides.append(f"model.discriminator_hidden=[{args.hidden}]")
    config = load_config(recipe, overrides)
    path = Path(args.runs) / name
    reusable = (path / "model.safetensors").is_file() and not args.retrain
    if reusable and read_run_config(path)[0] == config:
        log(f"{name}: reusing {path}")
        return path
    start = time.perf_counter()
    train(config, path, overwrite=True, progress=False, log=lambda line: log(f"{name}: {line}"))
    log(f"{name}: trained in {time.perf_counter() - start:.0f} s")
    return path


@torch.no_grad()
def posterior_draws(model: Autoencoder, x: Tensor, generator: torch.Generator) -> Tensor:
    """One z ~ q(z|x) per image: draws from the aggregate posterior q(z) [N, D]."""
    return torch.cat([draw(model.encoder(b), generator=generator) for b in x.split(1000)])


def mismatch(z: Tensor, reference: Tensor, seed: int) -> dict[str, float]:
    """MMD² between the first MMD_POINTS latents and reference draws, with its null scale."""
    n = min(MMD_POINTS, len(z), len(reference))
    test = mmd_permutation_test(
        z[:n].double(),
        reference[:n].double(),
        num_permutations=100,
        generator=torch.Generator().manual_seed(seed),
    )
    return {"mmd2": test["mmd2"], "mmd2_null_std": test["null_std"]}


@torch.no_grad()
def decode(model: Autoencoder, z: Tensor) -> Tensor:
    """Decoder means [N, C, H, W] in batches."""
    return torch.cat([model.decode_mean(b) for b in z.split(1000)])


class Scorer:
    """Sample quality against fixed real images (embedded once) and latents against q(z)."""

    def __init__(self, extractor: Features, real: Tensor, seed: int):
        self.extractor, self.seed = extractor, seed
        self.real_features = extractor.embed(real)

    def __call__(self, images: Tensor, z: Tensor, aggregate: Tensor) -> dict[str, float]:
        name = self.extractor.hash
        scores = feature_scores(
            self.real_features,
            self.extractor.embed(images),
            name,
            generator=torch.Generator().manual_seed(self.seed),
        )
        return {
            "fid": scores[f"fid-{name}"],
            "kid": scores[f"kid-{name}"],
            "precision": scores["precision"],
            "recall": scores["recall"],
            **mismatch(z, aggregate, self.seed),
            "latent_power": float(z.pow(2).mean()),
        }


def evaluate_model(
    name: str, path: Path, args: argparse.Namespace, score: Scorer, real: Tensor
) -> list[dict[str, Any]]:
    """Rows for chain steps under each decode mode, and the Gaussian-mixture reference."""
    run = load_run(path)
    model = run.model.eval()
    steps = sorted({int(s) for s in args.steps.split(",")})
    generator = torch.Generator().manual_seed(args.seed)
    aggregate = posterior_draws(model, real, generator)  # q(z) draws from the test images
    rows: list[dict[str, Any]] = []
    for decode_mode in args.chain_decode.split(","):
        chain = MarkovChainSampler(model, start=args.start, decode=decode_mode)
        generator = torch.Generator().manual_seed(args.seed)  # same z_0 for every mode
        start = time.perf_counter()
        trajectory = chain.run(args.num_samples, steps[-1], record=steps, generator=generator)
        seconds = round(time.perf_counter() - start, 1)
        figure_rows = []
        for t in steps:
            z = trajectory.states[t].z
            images = decode(model, z)
            row = {"model": name, "decode": decode_mode, "sampler": f"chain step {t}", "step": t}
            rows.append({**row, **score(images, z, aggregate), "chain_seconds": seconds})
            figure_rows.append(images[:FIGURE_COLUMNS].cpu())
            log(f"{name} ({decode_mode}): step {t}: FID {rows[-1]['fid']:.1f}")
        if args.out:
            plots.save_rows(
                figure_rows,
                Path(args.out) / f"{name}-{decode_mode}.png",
                row_labels=[f"step {t}" for t in steps],
                title=f"{name.upper()}: chain from the {args.start}, {decode_mode} decoding",
            )
    train_x = build_dataset(run.config.data, run.config.train.seed).train.x
    mixture = GaussianMixtureSampler(model, train_x, seed=args.seed)
    z = mixture.sample_latent(args.num_samples, generator=generator)
    row = {"model": name, "decode": "-", "sampler": "gaussian-mixture", "step": None}
    rows.append({**row, **score(decode(model, z), z, aggregate)})
    return rows


def table(rows: list[dict[str, Any]], decode: str) -> str:
    """A markdown table of the chain rows with ``decode`` and the reference rows."""
    header = "| model | sampler | FID | KID | precision | recall | MMD² to q(z) ×10³ | E‖z‖²/D |"
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["decode"] not in (decode, "-"):
            continue
        lines.append(
            f"| {r['model'].upper()} | {r['sampler']} | {r['fid']:.1f} | {r['kid']:.1f} "
            f"| {r['precision']:.3f} | {r['recall']:.3f} | {1e3 * r['mmd2']:.2f} "
            f"| {r['latent_power']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    paths = {name: trained_run(name, args) for name in MODELS}
    train_seconds = time.perf_counter() - start
    config = load_run(paths["vae"]).config
    extractor = extractor_loader(config.data)()
    real = build_dataset(config.data, config.train.seed).test.x
    score = Scorer(extractor, real, args.seed)
    rows: list[dict[str, Any]] = []
    for name, path in paths.items():
        rows += evaluate_model(name, path, args, score, real)
    report = {
        "benchmark": "markov-chain",
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "retrain")},
        "extractor": extractor.describe(),
        "reference": sanity_references(
            extractor, real, score.real_features, generator=torch.Generator().manual_seed(0)
        ),
        "rows": rows,
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "machine": machine(),
    }
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
        tables = [f"decode = {d}\n\n{table(rows, d)}\n" for d in args.chain_decode.split(",")]
        (out / "tables.md").write_text("\n".join(tables))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
