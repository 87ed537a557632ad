"""How far FID and KID move when the locally trained feature extractor is trained again.

vaekit scores samples with a classifier it trains on the dataset itself (no downloaded
Inception weights). Its weights depend on the training seed, and on the machine: float rounding
differs between CPUs, so another machine trains other weights from the same seed. This script
trains the extractor with ``--seeds`` seeds and scores one fixed set of samples of a trained run
under each: the prior, the Markov chain after ``--chain-steps`` steps from the prior (mean
decoding), and half the test images against the other half. The spread over seeds says how much
of a difference between two FIDs scored with different extractors is the extractor's, and
whether the ranking of two samplers survives a change of extractor.

    python -m benchmarks.extractor_seeds --run RUN --seeds 3 \\
        --out benchmarks/results/extractor-seeds.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks import markov_chain_measure as measure
from benchmarks.common import machine
from benchmarks.markov_chain_report import mean_std
from vaekit.build import build_dataset
from vaekit.evaluate import extractor_data_config
from vaekit.evaluation.extractor import ExtractorCache, extractor_spec
from vaekit.evaluation.sample_quality import sanity_references
from vaekit.files import write_json
from vaekit.runs import load_run
from vaekit.samplers import MarkovChainSampler, PriorSampler


def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample std (0 for one value) and std relative to the mean."""
    mean, std = mean_std(values)
    std = std or 0.0
    return {"mean": mean, "std": std, "relative_std": std / abs(mean)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--run", required=True, help="a trained run on labelled images")
    parser.add_argument("--seeds", type=int, default=3, help="extractor training seeds")
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--chain-steps", type=int, default=10)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--out", help="write the JSON here too")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    run = load_run(Path(args.run), device="cpu")
    data = extractor_data_config(run.config.data)
    dataset = build_dataset(data, 0)
    test = build_dataset(run.config.data, run.config.train.seed).test
    assert test.y is not None, "the extractor is a classifier: the run's data need labels"
    model, n = run.model, args.num_samples
    prior_z = PriorSampler(model).sample_latent(n, generator=measure.generator_for(model, 0))
    chain = MarkovChainSampler(model, start="prior", decode="mean")
    trajectory = chain.run(
        n, args.chain_steps, record=[args.chain_steps], generator=measure.generator_for(model, 0)
    )
    samples = {
        "prior": measure.decode(model, prior_z),
        f"chain step {args.chain_steps}": measure.decode(
            model, trajectory.states[args.chain_steps].z
        ),
    }
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as cache:  # never the user's cached extractor
        for seed in range(args.seeds):
            spec = extractor_spec(dataset.event_shape, dataset.num_classes) | {"seed": seed}
            extractor = ExtractorCache(Path(cache)).get(dataset, spec)
            ref = measure.Reference.build(extractor, test.x, test.y)
            sanity = sanity_references(
                extractor, ref.x, ref.features, generator=torch.Generator().manual_seed(0)
            )
            row: dict[str, Any] = {
                "seed": seed,
                "hash": extractor.hash,
                "test_accuracy": extractor.info["test_accuracy"],
                "fid_half_vs_half": sanity["fid_half_vs_half"],
            }
            for name, images in samples.items():
                scores = measure.image_scores(ref, images, seed=0)
                row[name] = {k: scores[k] for k in ("fid", "kid", "precision", "recall")}
            rows.append(row)
    summary: dict[str, Any] = {"fid_half_vs_half": spread([r["fid_half_vs_half"] for r in rows])}
    names = list(samples)
    for name in names:
        summary[name] = {m: spread([r[name][m] for r in rows]) for m in ("fid", "kid")}
    gain = [r[names[1]]["fid"] - r[names[0]]["fid"] for r in rows]
    summary["chain_minus_prior_fid"] = {"per_seed": gain, **spread(gain)}
    report = {
        "benchmark": "extractor-seeds",
        "run": {"name": run.config.name, "kind": run.config.model.kind},
        "num_samples": n,
        "chain_steps": args.chain_steps,
        "extractors": rows,
        "summary": summary,
        "machine": machine(),
    }
    if args.out:
        write_json(Path(args.out), report)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
