"""A copy of a run whose model.safetensors holds the live weights instead of the weight average.

With ``train.ema_decay`` set, a run's model.safetensors holds the weight average and
training_state.pt also keeps the live (last Adam iterate) weights. This copies the run
directory (without its evaluation.json and figures) and writes the live weights as the copy's
model.safetensors, so ``vaekit evaluate`` can score both on the same protocol:

    python -m benchmarks.live_weights runs/b50-ema runs/b50-ema-live
    vaekit evaluate runs/b50-ema-live --metrics elbo,log-likelihood --num-importance-samples 5000
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from vaekit.build import build_model
from vaekit.runs import read_run_config, save_model
from vaekit.runtime import RunDir
from vaekit.training.checkpoint import load_training_state


def copy_with_live_weights(run: Path, out: Path) -> Path:
    """Copy ``run`` to ``out`` with the training state's live weights as the model file."""
    state = load_training_state(RunDir(run).training_state)
    if "average" not in state:
        raise SystemExit(f"{run} was trained without train.ema_decay: its model is the live one")
    config, event_shape = read_run_config(run)
    model = build_model(config.model, event_shape)
    model.load_state_dict(state["model"])
    shutil.copytree(run, out, ignore=shutil.ignore_patterns("evaluation.json", "*.png"))
    save_model(RunDir(out), model)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run trained with train.ema_decay")
    parser.add_argument("out", type=Path, help="the new run directory (must not exist)")
    args = parser.parse_args()
    print(copy_with_live_weights(args.run, args.out))


if __name__ == "__main__":
    main()
