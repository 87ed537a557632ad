"""Importance-sampled log p(x) speed: K = 5000 on the 10k MNIST test images, 784-400-20 VAE.

Times ``vaekit.evaluation.log_likelihood`` and sets it next to the matmul work it must do: the
decoder's FLOPs divided by the float32 matmul rate measured in the same run (before and after).
A breakdown on one decoder call shows where the rest goes (network vs likelihood log_prob).
With ``--matmul bfloat16x3`` it also reports that path's own floor (its bfloat16 products at
the measured bfloat16 GEMM rate). Prints one JSON object.

    python -m benchmarks.eval_importance_sampling                     # the full figure
    python -m benchmarks.eval_importance_sampling --num-images 200   # a quick look
    python -m benchmarks.eval_importance_sampling --num-images 1000 --threads 1 --compile \
        --matmul bfloat16x3                                           # a CPU with AMX
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from benchmarks.common import machine, peak_rss_mib, sgemm_gflops
from vaekit import accel
from vaekit.build import build_dataset, build_model
from vaekit.config import load_config
from vaekit.evaluation import log_likelihood
from vaekit.evaluation.likelihood import DEFAULT_ROWS_PER_CALL
from vaekit.models.base import Autoencoder
from vaekit.runs import load_run

ROOT = Path(__file__).parents[1]


def decoder_gemm_gflops(model: Autoencoder, rows: int, seconds: float = 1.0) -> float:
    """Matmul rate (GFLOP/s) of the decoder's linear layers alone on ``rows`` latents."""
    flops = 2.0 * rows * linear_macs(model.decoder)
    with torch.inference_mode():
        weights = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)]
        h = [torch.randn(rows, m.in_features) for m in weights]
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for layer, inputs in zip(weights, h, strict=True):
                layer(inputs)
            count += 1
    return flops * count / (time.perf_counter() - start) / 1e9


def linear_macs(module: torch.nn.Module) -> int:
    """Multiply-accumulates per datapoint of the Linear layers in ``module``."""
    return sum(
        m.in_features * m.out_features for m in module.modules() if isinstance(m, torch.nn.Linear)
    )


def bfloat16x3_floor(
    model: Autoencoder, rows: int, sgemm_rate: float, seconds: float
) -> dict[str, float]:
    """The bfloat16x3 path's own matmul floor: the last layer's product four times (one base,
    three split terms) at the bfloat16 GEMM rate, the other layers at the float32 rate."""
    linears = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)]
    last = linears[-1].in_features * linears[-1].out_features
    rate = sgemm_gflops(dtype=torch.bfloat16)
    floor = 2.0 * rows * (4 * last / rate + (linear_macs(model.decoder) - last) / sgemm_rate) / 1e9
    return {
        "bfloat16_gemm_gflops": rate,
        "bfloat16x3_floor_seconds": floor,
        "ratio_to_bfloat16x3_floor": seconds / floor,
    }


def breakdown(model: Autoencoder, x: torch.Tensor, rows: int, reps: int = 20) -> dict[str, float]:
    """Milliseconds per decoder call of ``rows`` rows: network only, and network + log_prob."""
    z = torch.randn(rows, model.latent_dim)
    x_rows = x[:1].expand(rows, *x.shape[1:]).contiguous()
    timings = {}
    with torch.inference_mode():
        for name, step in (
            ("network_ms", lambda: model.decoder.network(z)),
            ("network_and_log_prob_ms", lambda: model.decoder(z).log_prob(x_rows)),
        ):
            step()
            start = time.perf_counter()
            for _ in range(reps):
                step()
            timings[name] = 1e3 * (time.perf_counter() - start) / reps
    timings["matmul_floor_ms"] = (
        2e3 * rows * linear_macs(model.decoder) / 1e9 / sgemm_gflops(seconds=0.5)
    )
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=10_000)
    parser.add_argument("--num-samples", type=int, default=5000, help="K")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--run", help="a trained 784-400-20 run (default: untrained weights)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--compile", action="store_true", help="log_likelihood(compile=True)")
    parser.add_argument(
        "--matmul", choices=accel.MATMUL_PRECISIONS, default="float32",
        help="log_likelihood(matmul=)",
    )  # fmt: skip
    parser.add_argument(
        "--accelerate", choices=accel.ACCELERATE_MODES, default="auto",
        help='log_likelihood(accelerate=): "off" scores decoder(z).log_prob(x)',
    )  # fmt: skip
    args = parser.parse_args()
    retained = accel.retain_freed_memory()  # as the CLI does
    if args.threads:
        torch.set_num_threads(args.threads)

    config = load_config(ROOT / "configs" / "pytorch-examples.toml")
    if args.run:
        model = load_run(args.run).model
    else:
        torch.manual_seed(0)  # the cost does not depend on the weights
        model = build_model(config.model, (1, 28, 28)).eval()
    dataset = build_dataset(config.data, config.train.seed)
    grey = dataset.test.x[: args.num_images]
    x = torch.bernoulli(grey, generator=torch.Generator().manual_seed(0))  # binary, as in papers

    result: dict[str, object] = {"benchmark": "eval_importance_sampling", "machine": machine()}
    result["retain_freed_memory"] = retained
    result["settings"] = {
        "num_images": len(x), "num_importance_samples": args.num_samples,
        "batch_size": args.batch_size, "chunk_size": args.chunk_size,
        "rows_per_decoder_call": (args.chunk_size or DEFAULT_ROWS_PER_CALL // args.batch_size)
        * args.batch_size,
        "model": "784-400-20 ReLU, Bernoulli p(x|z)", "compile": args.compile,
        "matmul": args.matmul, "accelerate": args.accelerate,
    }  # fmt: skip
    rows = int(result["settings"]["rows_per_decoder_call"])  # type: ignore[index]
    before = sgemm_gflops()
    decoder_flops = 2.0 * len(x) * args.num_samples * linear_macs(model.decoder)
    encoder_flops = 2.0 * len(x) * linear_macs(model.encoder)
    if args.compile:  # compile for the timed shapes first; reported on its own
        start = time.perf_counter()
        log_likelihood(model, x[: args.batch_size], num_samples=rows // args.batch_size,
                       batch_size=args.batch_size, compile=True, matmul=args.matmul,
                       accelerate=args.accelerate)  # fmt: skip
        result["compile_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    values = log_likelihood(
        model, x, num_samples=args.num_samples, batch_size=args.batch_size,
        chunk_size=args.chunk_size, generator=torch.Generator().manual_seed(0),
        compile=args.compile, matmul=args.matmul, accelerate=args.accelerate,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    after = sgemm_gflops()
    rate = 0.5 * (before + after)
    floor = decoder_flops / 1e9 / rate
    gemm_rate = decoder_gemm_gflops(model, rows)
    result.update(
        {
            "sgemm_gflops_before": before,
            "sgemm_gflops_after": after,
            "decoder_gemm_gflops": gemm_rate,
            # The same work at the rate the decoder's own GEMM shapes reach (no elementwise work).
            "decoder_gemm_floor_seconds": decoder_flops / 1e9 / gemm_rate,
            "ratio_to_decoder_gemm_floor": seconds / (decoder_flops / 1e9 / gemm_rate),
            "decoder_tflop": decoder_flops / 1e12,
            "encoder_gflop": encoder_flops / 1e9,
            "seconds": seconds,
            "matmul_floor_seconds": floor,
            "ratio_to_floor": seconds / floor,
            "effective_gflops": decoder_flops / 1e9 / seconds,
            "mean_log_likelihood": float(values.mean()),
            "finite": bool(torch.isfinite(values).all()),
            **(
                bfloat16x3_floor(model, len(x) * args.num_samples, rate, seconds)
                if args.matmul == "bfloat16x3"
                else {}
            ),
            "per_call": breakdown(model, x, rows),
            "peak_rss_mib": peak_rss_mib(),
            "load_average_1min_after": os.getloadavg()[0],
        }
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
