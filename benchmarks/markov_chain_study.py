"""The reference measurement of the Markov-chain claim (Creswell, Arulkumaran & Bharath 2016):
do decode -> (corrupt) -> encode chains improve samples, interpolations and imputations of VAEs,
AAEs and their denoising variants? A resumable study over several sessions.

    python -m benchmarks.markov_chain_study --out benchmarks/results/markov-chain-study \\
        --runs runs/markov-chain-study --budget-minutes 150

1. Trains configs/mnist-{vae,dvae,aae,daae}.toml (784-1000-1000-10) to convergence: up to
   ``--max-epochs`` (100; the cosine schedule spans them), stopping at the first epoch t with
   the best validation objective improved by less than 0.1 % over the last 10 epochs
   (``converged_at``),
   ``--seeds`` seeds each, plus ``--conv-seeds`` seeds of the same recipes with
   ``model.network = "conv"``. Training resumes exactly (``vaekit.train(..., resume=True)``).
2. Scores, on every trained model, the prior, the chain at ``--steps`` (from the prior and from
   N(0, 2² I), with mean and sampled decoding) and the Gaussian mixture fitted to the training
   codes (``benchmarks/markov_chain_measure.py``), each on ``--num-samples`` samples.
3. Interpolates ``--pairs`` pairs of test images (lerp, slerp, slerp + k chain steps) and imputes
   ``--impute-images`` test images under three masks with pseudo-Gibbs and
   Metropolis-within-Gibbs.

Every unit (one training, one sampler on one model, ...) writes ``<out>/units/<key>.json`` when
it finishes and is skipped when that file exists (so processes with disjoint ``--only`` kinds,
one per core, share one study; ``--networks`` picks and orders the networks likewise);
``--budget-minutes`` stops cleanly (exit 0, saying what is left) before the budget runs out.
Every run rewrites ``<out>/results.json`` and ``<out>/tables.md`` (mean ± std over the seeds
finished so far) from the unit files. The extractor that scores every unit is kept in
``<out>/extractor`` (another machine can train other weights from the same seed), and a model
whose run is gone is trained again by the same rule and seed before its remaining units.
Figures of the seed-0 models go to ``<out>/figures``. ``--tiny`` runs the whole study on the
8x8 digits in about 3 minutes (the test of this script).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from benchmarks import markov_chain_measure as measure
from benchmarks.common import machine, train_logged
from benchmarks.markov_chain_report import SCORED, Row, Units, summarise
from vaekit.build import build_dataset
from vaekit.config import Config, load_config
from vaekit.evaluate import extractor_data_config
from vaekit.evaluation.extractor import ExtractorCache, FeatureExtractor
from vaekit.evaluation.features import features_for
from vaekit.evaluation.sample_quality import sanity_references
from vaekit.files import atomic_write, write_json
from vaekit.runs import Run, load_run
from vaekit.runtime import RunDir, choose_device
from vaekit.training import StopTraining, TrainingInterrupted
from vaekit.training.run_files import read_metrics

ROOT = Path(__file__).parents[1]
KINDS = ("vae", "dvae", "aae", "daae")
STARTS = ("prior", "wide")
DECODES = ("mean", "sample")
# The sizes; --tiny replaces them (and the data) for a run of about 3 minutes.
FULL: dict[str, Any] = {
    "seeds": 3,
    "conv_seeds": 1,
    "max_epochs": 100,
    "window": 10,
    "tolerance": 1e-3,
    "num_samples": 10_000,
    "mmd_points": 2000,
    "steps": "0,1,2,5,10,20,50",
    "pairs": 1000,
    "num_points": 9,
    "path_chain_steps": "1,5",
    "impute_images": 1000,
    "impute_steps": "10,100,1000",
    "masks": "center,left-half,random",
    "set": [],
}
TINY: dict[str, Any] = {
    **FULL,
    "seeds": 2,
    "max_epochs": 4,
    "window": 2,
    "num_samples": 200,
    "mmd_points": 200,
    "steps": "0,1,2,5",
    "pairs": 20,
    "num_points": 5,
    "impute_images": 30,
    "impute_steps": "1,2,5",
    "set": [
        "data.name='digits'",
        "data.val_size=0.2",
        "data.limit=400",
        "model.hidden=[32]",
        "model.discriminator_hidden=[32]",
        "model.conv_channels=8",
        "train.batch_size=50",
        "train.lr=1e-2",
        "train.device='cpu'",
    ],
}
# Before the first unit of a kind has finished, a unit starts only with this much time left
# (later: 1.25 x the slowest finished one): about 1.5 x what each took on a 2-core AMD EPYC
# (train-epoch: AAE, the slower kind).
FIRST_ESTIMATE_SECONDS = {
    "train-epoch": 60.0,
    "reference": 150.0,
    "sampler": 40.0,
    "chain": 180.0,
    "interpolation": 60.0,
    "imputation": 300.0,
}
MARGIN_SECONDS = 30.0  # kept for writing the summary


class OutOfBudget(Exception):
    """The next unit (or epoch) would not finish within ``--budget-minutes``."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--out", required=True, help="unit files, results.json, tables, figures")
    parser.add_argument("--runs", required=True, help="where the models are trained")
    parser.add_argument("--budget-minutes", type=float, help="stop cleanly before this")
    parser.add_argument("--tiny", action="store_true", help="digits, small sizes: ~3 minutes")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="recipes mnist-<kind>.toml")
    parser.add_argument(
        "--only",
        help="run the units of these of --kinds only; processes with disjoint --only share one "
        "study (one core each), and the tables still cover every kind",
    )
    parser.add_argument(
        "--networks",
        default="mlp,conv",
        help="run the models of these networks only, in this order (default mlp,conv)",
    )
    sizes = parser.add_argument_group("sizes (default: the issue's; --tiny: small)")
    for name, value in FULL.items():
        flag = "--" + name.replace("_", "-")
        if name == "set":
            sizes.add_argument(flag, action="append", help="extra config override (repeatable)")
        else:
            sizes.add_argument(flag, type=type(value), help=f"default {value}")
    args = parser.parse_args(argv)
    if args.only is not None and not set(args.only.split(",")) <= set(args.kinds.split(",")):
        parser.error(f"--only {args.only} must name kinds of --kinds {args.kinds}")
    if not args.networks or not set(args.networks.split(",")) <= {"mlp", "conv"}:
        parser.error(f"--networks {args.networks}: a comma-separated list of mlp and conv")
    defaults = TINY if args.tiny else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
        elif name == "set":
            args.set = [*value, *args.set]
    return args


def numbers(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def converged_at(values: list[float], *, window: int, tolerance: float) -> int | None:
    """The first epoch t (1-based) at which the best objective so far improved by less than
    ``tolerance`` (relative) over the last ``window`` epochs: b(t - window) - b(t) <
    tolerance · |b(t - window)| with b(t) = min(values[:t]), where ``values[i]`` is the objective
    after epoch i + 1 (lower is better); None if there is none yet. The first epoch that can
    qualify is window + 1. Comparing the best values, not two single epochs, keeps a noisy
    validation curve that happens to return to an earlier value from counting as converged."""
    best = [min(values[: t + 1]) for t in range(len(values))]
    for t in range(window + 1, len(values) + 1):
        now, before = best[t - 1], best[t - 1 - window]
        if before - now < tolerance * abs(before):
            return t
    return None


def objective(record: dict[str, float]) -> float:
    """The objective the convergence rule follows: validation, else training."""
    return record["val/loss"] if "val/loss" in record else record["train/loss"]


@dataclass(frozen=True)
class ModelSpec:
    """One model of the study: a recipe kind, a network and a training seed."""

    kind: str
    network: str
    seed: int

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.network}-s{self.seed}"


def models_of(args: argparse.Namespace) -> list[ModelSpec]:
    """MLP models seed-major (every kind of seed 0 first), then the conv models."""
    kinds = args.kinds.split(",")
    mlp = [ModelSpec(k, "mlp", s) for s in range(args.seeds) for k in kinds]
    return mlp + [ModelSpec(k, "conv", s) for s in range(args.conv_seeds) for k in kinds]


def model_config(spec: ModelSpec, args: argparse.Namespace) -> Config:
    """The recipe configs/mnist-<kind>.toml with the study's length, seed, network and
    ``--set`` overrides (the critic's sizes only where the recipe has a critic)."""
    recipe = ROOT / "configs" / f"mnist-{spec.kind}.toml"
    critic = load_config(recipe).model.kind.startswith("aae")
    extra = [o for o in args.set if critic or not o.startswith("model.discriminator_hidden")]
    overrides = [f"train.epochs={args.max_epochs}", f"train.seed={spec.seed}", *extra]
    if spec.network == "conv":
        overrides.append("model.network='conv'")
    return load_config(recipe, overrides)


class Budget:
    """Seconds left before ``--budget-minutes`` (less a margin for the summary)."""

    def __init__(self, minutes: float | None):
        self.deadline = math.inf if minutes is None else time.monotonic() + 60 * minutes

    def left(self) -> float:
        return self.deadline - time.monotonic() - MARGIN_SECONDS

    def check(self, what: str, seconds: float) -> None:
        """Raise OutOfBudget unless ``seconds`` more fit."""
        if seconds > self.left():
            raise OutOfBudget(
                f"{what} needs about {seconds / 60:.1f} min, {self.left() / 60:.1f} left"
            )


class EpochGuard:
    """The study's training callback: stops a converged run (StopTraining, a finished run) and
    an epoch that would overrun the budget (OutOfBudget, after the epoch's checkpoint), and
    records the wall time of every epoch in ``progress`` (kept across sessions)."""

    def __init__(
        self, args: argparse.Namespace, budget: Budget, progress: Path, history: list[float]
    ):
        self.args, self.budget, self.progress = args, budget, progress
        self.history = history
        saved = json.loads(progress.read_text()) if progress.is_file() else {}
        self.seconds: list[float] = saved.get("epoch_seconds", [])[: len(history)]
        self.last = time.perf_counter()

    def __call__(self, record: dict[str, float]) -> None:
        now = time.perf_counter()
        self.seconds.append(round(now - self.last, 2))
        self.last = now
        self.history.append(objective(record))
        self.progress.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.progress, {"epoch_seconds": self.seconds})
        args = self.args
        if converged_at(self.history, window=args.window, tolerance=args.tolerance) is not None:
            raise StopTraining(
                f"validation objective changed by less than {args.tolerance:g} (relative) over "
                f"{args.window} epochs"
            )
        if len(self.history) < args.max_epochs:
            self.budget.check("the next epoch", 1.25 * max(self.seconds[-3:]))


def trained_so_far(run: RunDir, args: argparse.Namespace) -> tuple[list[float], bool]:
    """The objectives of ``run``'s finished epochs (none without a training state to resume
    from) and whether its training is over: converged, or at ``--max-epochs``."""
    history = [objective(r) for r in read_metrics(run)] if run.training_state.is_file() else []
    done = len(history) >= args.max_epochs or (
        converged_at(history, window=args.window, tolerance=args.tolerance) is not None
    )
    return history, done


def train_unit(spec: ModelSpec, args: argparse.Namespace, budget: Budget) -> Row:
    """Train (or resume) one model to convergence; the unit's row."""
    config = model_config(spec, args)
    path = Path(args.runs) / spec.id
    resume = RunDir(path).training_state.is_file()
    history, done = trained_so_far(RunDir(path), args)
    guard = EpochGuard(args, budget, Path(args.out) / "progress" / f"{spec.id}.json", history)
    if not done:
        budget.check(
            f"an epoch of {spec.id}", estimate(args, f"train-epoch-{spec.network}", guard.seconds)
        )
        action = "resuming" if resume else "training"
        log(f"{spec.id}: {action} at epoch {len(history)}")
        try:
            train_logged(config, path, resume=resume, label=spec.id, callbacks=[guard], log=log)
        except OutOfBudget:
            log(f"{spec.id}: stopping after epoch {len(guard.history)} (budget)")
            raise
    converged = converged_at(guard.history, window=args.window, tolerance=args.tolerance)
    return {
        "kind": spec.kind,
        "network": spec.network,
        "seed": spec.seed,
        "run": str(path),
        "epochs": len(guard.history),
        "converged": converged is not None,
        "converged_epoch": converged,
        "max_epochs": args.max_epochs,
        "final_val_objective": guard.history[-1],
        "val_objective": guard.history,
        "epoch_seconds": guard.seconds,
        "seconds": round(sum(guard.seconds), 1),
    }


def retrain_if_lost(
    spec: ModelSpec, args: argparse.Namespace, budget: Budget, units: Units
) -> None:
    """Train ``spec`` again if its training finished in an earlier process but its run is gone
    or unfinished (a new machine without the runs folder): same recipe, seed and stopping rule,
    before the model's remaining units. ``retrain/<id>`` records the new run and how far its
    validation curve lies from the first one's (0 when training is bitwise reproducible)."""
    first = units.get(f"train/{spec.id}")
    run = RunDir(Path(args.runs) / spec.id)
    _, finished = trained_so_far(run, args)
    if first is None or (finished and run.model.is_file()):
        return
    log(f"{spec.id}: its run is gone or unfinished; training it again")
    started = time.perf_counter()
    row = train_unit(spec, args, budget)
    again, before = row["val_objective"], first["val_objective"]
    shared = min(len(again), len(before))
    row["first_run"] = {"epochs": first["epochs"], "final_val_objective": before[-1]}
    row["max_relative_difference"] = max(
        (abs(a - b) / abs(b) for a, b in zip(again[:shared], before[:shared], strict=True)),
        default=0.0,
    )
    row["seconds"] = round(time.perf_counter() - started, 1)
    units.put(f"retrain/{spec.id}", {"group": "retrain", **row})


def estimate(args: argparse.Namespace, group: str, seen: list[float] | None = None) -> float:
    """Seconds the next unit of ``group`` (for training: the next epoch) is expected to take:
    1.25 x the slowest finished one (``seen``: epochs of this run so far), else a first guess
    at the study's sizes (none for --tiny or without a budget)."""
    training = group.startswith("train-epoch")
    past = list(seen or [])
    for row in Units(Path(args.out)).finished().values():
        if row.get("group") == group:
            past += row.get("epoch_seconds", []) if training else [row["seconds"]]
    if past:
        return 1.25 * max(past)
    if args.budget_minutes is None or args.tiny:
        return 0.0
    return FIRST_ESTIMATE_SECONDS["train-epoch" if training else group]


class Evaluation:
    """What the evaluation units share, loaded on first use: the extractor and test images
    (``Reference``), each seed's training images, each model and its training codes."""

    def __init__(self, args: argparse.Namespace, budget: Budget, units: Units):
        self.args, self.budget, self.units = args, budget, units
        self.device = choose_device("auto")
        self._ref: measure.Reference | None = None
        self._train_x: dict[int, torch.Tensor] = {}
        self._model: tuple[ModelSpec, Run, torch.Tensor] | None = None

    def ref(self, config: Config) -> measure.Reference:
        if self._ref is None:
            # The study keeps its own extractor beside its results: every later process, on any
            # machine, scores with the same weights (a new machine would train its own copy,
            # which float rounding makes differ)
            dataset = build_dataset(extractor_data_config(config.data), 0)
            extractor = features_for(dataset, ExtractorCache(Path(self.args.out) / "extractor"))
            assert isinstance(extractor, FeatureExtractor)  # images with labels: a classifier
            test = build_dataset(config.data, config.train.seed).test
            assert test.y is not None
            self._ref = measure.Reference.build(extractor, test.x, test.y)
        return self._ref

    @property
    def extractor_hash(self) -> str:
        """The hash of the extractor ``ref`` loaded (the one every scored unit used)."""
        assert self._ref is not None, "no unit has been scored yet"
        return self._ref.extractor.hash

    def model(self, spec: ModelSpec) -> tuple[Run, torch.Tensor, torch.Tensor]:
        """(run, training images, training codes z ~ q(z|x)) of ``spec``."""
        if self._model is None or self._model[0] != spec:
            retrain_if_lost(spec, self.args, self.budget, self.units)
            run = load_run(Path(self.args.runs) / spec.id, device=self.device)
            if spec.seed not in self._train_x:
                self._train_x[spec.seed] = build_dataset(run.config.data, spec.seed).train.x
            generator = measure.generator_for(run.model, spec.seed)
            codes = measure.training_codes(
                run.model, self._train_x[spec.seed], self.args.mmd_points, generator
            )
            self._model = (spec, run, codes)
        _, run, codes = self._model
        return run, self._train_x[spec.seed], codes


@dataclass(frozen=True)
class Unit:
    """One resumable unit: its key (file under <out>/units), its estimate group, its model and
    what it measures."""

    key: str
    group: str
    spec: ModelSpec | None = None
    params: tuple[str, ...] = ()


def plan(args: argparse.Namespace) -> list[Unit]:
    """Every unit this process runs (the study's, or those of ``--only``'s kinds and
    ``--networks``' networks), in the order it runs them; each model's units follow its
    training."""
    only = None if args.only is None else set(args.only.split(","))
    networks = args.networks.split(",")
    units = [Unit("reference/extractor", "reference")]
    chosen = [s for s in models_of(args) if s.network in networks]
    for spec in sorted(chosen, key=lambda s: networks.index(s.network)):
        if only is not None and spec.kind not in only:
            continue
        units.append(Unit(f"train/{spec.id}", f"train-epoch-{spec.network}", spec))
        units += [
            Unit(f"samples/{spec.id}/{name}", "sampler", spec, (name,))
            for name in measure.LATENT_SAMPLERS
        ]
        units += [
            Unit(f"samples/{spec.id}/chain-{start}-{decode}", "chain", spec, (start, decode))
            for start in STARTS
            for decode in DECODES
        ]
        units.append(Unit(f"interpolation/{spec.id}", "interpolation", spec))
        units += [
            Unit(f"imputation/{spec.id}/{mask}-{method}", "imputation", spec, (mask, method))
            for mask in args.masks.split(",")
            for method in ("pseudo-gibbs", "mwg")
        ]
    return units


def compute(unit: Unit, args: argparse.Namespace, ev: Evaluation, budget: Budget) -> Row:
    """Run one unit of ``plan``; its row."""
    spec = unit.spec
    if spec is None:  # the reference: the extractor and the FID/KID scale of real data
        ref = ev.ref(model_config(models_of(args)[0], args))
        generator = torch.Generator().manual_seed(0)
        return {
            "extractor": ref.extractor.describe(),
            "num_test": len(ref.x),
            "test_class_share": ref.class_share.tolist(),
            "sanity": sanity_references(ref.extractor, ref.x, ref.features, generator=generator),
        }
    if unit.group.startswith("train-epoch"):
        return train_unit(spec, args, budget)
    ref = ev.ref(model_config(spec, args))
    run, train_x, codes = ev.model(spec)
    name = "-".join([spec.id, unit.group, *unit.params])  # vae-mlp-s0-chain-prior-mean, ...
    figure = Path(args.out) / "figures" / f"{name}.png" if spec.seed == 0 else None
    if unit.group == "sampler":
        return measure.measure_sampler(
            run.model, unit.params[0], train_x, codes, ref,
            num_samples=args.num_samples, seed=spec.seed,
        )  # fmt: skip
    if unit.group == "chain":
        start, decode = unit.params
        return measure.measure_chain(
            run.model, codes, ref, start=start, decode_mode=decode, steps=numbers(args.steps),
            num_samples=args.num_samples, seed=spec.seed, figure=figure,
        )  # fmt: skip
    if unit.group == "interpolation":
        return measure.measure_interpolation(
            run.model, ref, pairs=args.pairs, num_points=args.num_points,
            chain_steps=numbers(args.path_chain_steps), seed=spec.seed, figure=figure,
        )  # fmt: skip
    mask, method = unit.params
    return measure.measure_imputation(
        run.model, ref, mask=mask, method=method, num_images=args.impute_images,
        steps=numbers(args.impute_steps), seed=spec.seed, figure=figure,
    )  # fmt: skip


MEASUREMENT = [*FULL, "kinds"]  # the options whose change makes earlier units incomparable


def check_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The measurement settings, recorded in <out>/study.json by the first run; a later run
    with other settings is refused (its units would mix with incomparable ones)."""
    settings = {name: getattr(args, name) for name in MEASUREMENT} | {"tiny": args.tiny}
    path = Path(args.out) / "study.json"
    if path.is_file():
        recorded = json.loads(path.read_text())
        if recorded != settings:
            changed = sorted(k for k in settings if recorded.get(k) != settings[k])
            raise SystemExit(
                f"markov_chain_study: {args.out} holds a study with other settings ({changed}); "
                "use the same options to continue it, or another --out"
            )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, settings)
    return settings


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = check_settings(args)
    out = Path(args.out)
    units, budget = Units(out), Budget(args.budget_minutes)
    ev = Evaluation(args, budget, units)
    todo = plan(args)
    stopped: str | None = None

    def run_unit(unit: Unit) -> Row:
        row = {"group": unit.group, **compute(unit, args, ev, budget)}
        if unit.key.split("/")[0] in SCORED:
            row["extractor"] = ev.extractor_hash
        return row

    def before(unit: Unit) -> None:  # only for a unit that runs
        if not unit.group.startswith("train-epoch"):  # training checks per epoch
            budget.check(unit.key, estimate(args, unit.group))
        log(f"unit {unit.key}")

    try:
        for unit in todo:
            units.run(unit.key, partial(run_unit, unit), before=partial(before, unit))
    except (OutOfBudget, TrainingInterrupted) as error:
        stopped = str(error)
    finished = units.finished()
    left = [unit.key for unit in todo if unit.key not in finished]
    report = summarise(finished, models_of(args), args)
    markdown = report.pop("markdown")
    report |= {"settings": settings, "machine": machine(), "left": left}
    write_json(out / "results.json", report)
    atomic_write(out / "tables.md", lambda tmp: tmp.write_text(markdown))
    if left:
        groups: dict[str, int] = {}
        for key in left:
            groups[key.split("/")[0]] = groups.get(key.split("/")[0], 0) + 1
        why = f" ({stopped})" if stopped else ""
        log(
            f"stopped{why}: {len(left)} of {len(todo)} units left "
            f"({', '.join(f'{g} {n}' for g, n in groups.items())}); run the same command again "
            "to continue"
        )
    else:
        share = args.only is not None or args.networks != "mlp,conv"  # a part of the study
        what = "this process's share (--only, --networks)" if share else "study"
        log(f"{what} complete: {len(todo)} units ({units.ran} run now, {units.skipped} found done)")
    log(f"wrote {out / 'results.json'} and {out / 'tables.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
