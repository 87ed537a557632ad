"""One experiment end to end: config -> data -> model -> Trainer -> a complete run directory."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaekit.build import build_dataset, build_model, check_data_fits
from vaekit.config import Config, TrainConfig, check_ranges, config_to_dict
from vaekit.data.base import Dataset
from vaekit.data.sources import TrainingData
from vaekit.errors import CheckpointError, ConfigError
from vaekit.figures import render_run_figures
from vaekit.files import atomic_write, atomic_write_many, remove_stale_temporaries, write_json
from vaekit.models.base import Autoencoder
from vaekit.models.output_bias import data_moments, has_marginal_start, init_output_bias
from vaekit.runs import (
    Run,
    condition_size,
    provenance,
    read_run_config,
    save_model,
    write_run_config,
)
from vaekit.runtime import (
    RunDir,
    choose_device,
    configure_threads,
    cpu_has_bfloat16,
    seed_everything,
    set_deterministic,
)
from vaekit.training.checkpoint import load_training_state, state_writer
from vaekit.training.distributed import World, process_group
from vaekit.training.trainer import Trainer
from vaekit.weights import read_json, weights_writer


def prepare_run_dir(path: Path, *, resume: bool, overwrite: bool) -> RunDir:
    """Refuse to clobber an existing run unless asked to resume or overwrite it."""
    run = RunDir(path)
    if resume:
        if not run.training_state.is_file():
            raise CheckpointError(
                f"cannot resume {str(path)!r}: it has no training_state.pt; train without --resume"
            )
        remove_stale_temporaries(path)  # left by a writer killed mid-checkpoint
        return run
    if path.exists() and any(path.iterdir()):
        check_new_run_dir(path, overwrite=overwrite)
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return run


def check_new_run_dir(path: Path, *, overwrite: bool) -> None:
    """Refuse a new run in a non-empty directory unless ``overwrite`` (nothing is touched)."""
    if not overwrite and path.exists() and any(path.iterdir()):
        raise CheckpointError(
            f"run directory {str(path)!r} already exists; pass --resume to continue it, "
            "--overwrite to replace it, or choose another --out"
        )


def read_metrics(run: RunDir) -> list[dict[str, float]]:
    """The per-epoch rows of metrics.jsonl ([] if the run has none yet)."""
    if not run.metrics.is_file():
        return []
    return [json.loads(line) for line in run.metrics.read_text().splitlines() if line]


def write_metrics(run: RunDir, history: Sequence[dict[str, float]]) -> None:
    """Rewrite metrics.jsonl from the history (atomic; resume-safe)."""
    text = "".join(json.dumps(record) + "\n" for record in history)
    atomic_write(run.metrics, lambda tmp: tmp.write_text(text))


def write_checkpoint(
    run: RunDir, model: nn.Module, state: dict[str, Any], history: Sequence[dict[str, float]]
) -> None:
    """Write weights, metrics and training state complete-or-absent (see ``atomic_write_many``).

    training_state.pt is renamed last: it alone is what --resume reads, so a crash at any point
    leaves the previous resumable checkpoint or the new one, never a mixture.
    """
    text = "".join(json.dumps(record) + "\n" for record in history)
    files = [
        (run.model, weights_writer(model)),
        (run.metrics, lambda tmp: tmp.write_text(text)),
        (run.training_state, state_writer(state)),
    ]
    try:
        atomic_write_many(files)
    except OSError as error:
        raise CheckpointError(
            f"could not write a checkpoint in {str(run.path)!r} ({error}); the previous "
            f"checkpoint is intact: free space and run vaekit train --resume {run.path}"
        ) from None


def config_sha256(config: Config | dict[str, Any]) -> str:
    """A hash of the resolved config, recorded with the run and in every training state."""
    tree = config if isinstance(config, dict) else config_to_dict(config)
    text = json.dumps(tree, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def recorded_config_sha256(run: RunDir) -> str:
    """``config_sha256`` of the config as the run's config.json records it.

    A resumed run is checked against this, not against the config as this vaekit resolves it:
    a setting added to vaekit since the run started (with a default that keeps the old
    behaviour) changes the resolved config's hash, and must not make the run unresumable.
    """
    meta = read_json(run.config, "run config")
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{str(run.config)!r} is not a vaekit run config")
    return config_sha256(meta["config"])


def train(
    config: Config,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    argv: list[str] | None = None,
    callbacks: Sequence[Callable[[dict[str, float]], object]] = (),
) -> Run:
    """Train ``config`` into the run directory ``out``; ``resume=True`` continues it exactly.

    ``callbacks`` receive each epoch's metrics row, as in ``vaekit.fit``; one that raises
    ``vaekit.training.StopTraining`` ends the run after that epoch (early stopping, recorded
    in provenance.json under ``stopped``; resuming a stopped run trains no further).

    Under torchrun (or in an initialised process group) every process calls this with the same
    arguments; rank 0 alone writes the run directory (see docs/how-to/distributed.md). To train a
    model object of your own on your own data, use ``vaekit.fit``.
    """
    if not isinstance(config, Config):
        raise ConfigError(
            f"vaekit.train runs a recipe and takes a Config (vaekit.load_config(path)), got "
            f"{type(config).__name__}; to train a model object use vaekit.fit(model, data, ...)"
        )
    check_ranges(config)  # a Config made in Python has not been through load_config
    device = choose_device(config.train.device)
    with process_group(device) as world:
        device = world.device(device)
        return _train(
            config,
            Path(out),
            world,
            device,
            resume=resume,
            overwrite=overwrite,
            progress=progress,
            log=log,
            argv=argv,
            callbacks=callbacks,
        )


def _train(
    config: Config,
    out: Path,
    world: World,
    device: torch.device,
    *,
    resume: bool,
    overwrite: bool,
    progress: bool | None,
    log: Callable[[str], None] | None,
    argv: list[str] | None,
    callbacks: Sequence[Callable[[dict[str, float]], object]],
) -> Run:
    out = world.broadcast_object(out)  # default names carry a time stamp: use rank 0's
    if resume:
        world.run_on_main(lambda: prepare_run_dir(out, resume=True, overwrite=False))
    else:  # created once the data and the model are built: an error leaves no directory
        world.run_on_main(lambda: check_new_run_dir(out, overwrite=overwrite))
    run = RunDir(out)
    extended = False
    if resume:
        saved, _ = read_run_config(run.path)
        # The data may have moved, or be streamed instead of held in memory (or the reverse):
        # the dataset identity, checked once they are loaded, says whether they are the same
        data = replace(
            saved.data,
            path=config.data.path,
            root=config.data.root,
            in_memory=config.data.in_memory,
        )
        same_length = replace(
            saved, data=data, train=replace(saved.train, epochs=config.train.epochs)
        )
        if config_to_dict(same_length) != config_to_dict(config):
            raise CheckpointError(
                f"the config differs from the one {str(run.path)!r} was trained with; resume "
                "with the saved config (drop --config/--set; only train.epochs may change) or "
                "start a new run"
            )
        extended = saved.train.epochs != config.train.epochs
    train_cfg = config.train
    set_deterministic(train_cfg.deterministic)
    seed_everything(train_cfg.seed)
    dataset = build_dataset(config.data, train_cfg.seed)
    check_data_fits(dataset, config.model)
    model = build_model(config.model, dataset.event_shape, num_classes=dataset.num_classes)
    if not resume and config.model.output_bias == "marginal":
        init_output_bias(model, *training_moments(dataset))
    cold_vamp = config.model.prior == "vamp" and config.model.output_bias == "default"
    noting = not resume and log is not None and world.is_main
    if cold_vamp and noting and has_marginal_start(model, *training_moments(dataset)):
        assert log is not None
        log(
            "note: a VampPrior trained from PyTorch's initialisation can collapse onto its "
            "posteriors (KL 0, the decoder at the average datapoint); set "
            "model.output_bias = 'marginal' to start the decoder at the data's marginal"
        )
    if not resume:
        world.run_on_main(lambda: prepare_run_dir(out, resume=False, overwrite=overwrite))
    num_params = sum(p.numel() for p in model.parameters())
    # ~6 FLOPs per parameter per datapoint (forward + backward) for dense layers.
    configure_threads(train_cfg.num_threads, step_flops=6.0 * num_params * train_cfg.batch_size)
    bfloat16_on_cpu = train_cfg.precision == "bfloat16" and device.type == "cpu"
    if bfloat16_on_cpu and log is not None and world.is_main and not cpu_has_bfloat16():
        log(
            "note: train.precision = bfloat16 on a CPU without AMX or AVX512-BF16 emulates "
            "bfloat16 and is much slower than float32; it is meant for GPUs (set "
            "train.precision = float32 here)"
        )

    state_hash = recorded_config_sha256(run) if resume else config_sha256(config)
    config_hash = config_sha256(config) if extended else state_hash
    if extended and log is not None and world.is_main and config.train.schedule != "constant":
        log(
            f"note: train.schedule = {config.train.schedule} spans the run's total steps, which "
            f"train.epochs = {config.train.epochs} changes: from here on the learning rate "
            "follows the schedule of the longer run"
        )
    trainer = make_trainer(
        model,
        dataset,
        train_cfg,
        run=run,
        config_hash=config_hash,
        device=device,
        world=world,
        progress=progress,
        log=log,
        callbacks=callbacks,
    )
    facts: dict[str, Any] = {"dataset": dataset.name, "dataset_identity": dataset.identity}
    if dataset.skipped:
        facts["skipped_files"] = list(dataset.skipped)
        if log is not None and world.is_main:
            log(f"note: {len(dataset.skipped)} unreadable files left out (provenance.json)")
    run_trainer(
        trainer,
        run,
        train_cfg,
        resume=resume,
        config_hash=state_hash,
        facts=facts,
        write_config=lambda: write_run_config(
            run,
            config,
            dataset.event_shape,
            standardization=dataset.standardization,
            feature_names=dataset.feature_names,
            num_classes=condition_size(model),
        ),
        argv=argv,
        extend=extended,
    )
    world.run_on_main(
        lambda: render_run_figures(
            trainer.model, dataset, run, trainer.history, seed=train_cfg.seed
        )
    )
    return Run(
        run,
        config,
        dataset.event_shape,
        trainer.model,
        dataset.standardization,
        dataset.feature_names,
    )


# A streamed training split is sampled at this many evenly spaced points for its marginal.
MARGINAL_POINTS = 10_000


def training_moments(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-value mean and standard deviation of the training split: all of it when held in
    memory, MARGINAL_POINTS evenly spaced points when streamed from disk."""
    if dataset.train_stream is None:
        return data_moments(dataset.train.x)
    n = dataset.train_size
    m = min(n, MARGINAL_POINTS)
    index = torch.arange(m) * (n - 1) // max(m - 1, 1)  # integers: exact for any n
    return data_moments(dataset.train_points(index))


def make_trainer(
    model: Autoencoder,
    data: Dataset | TrainingData,
    train_cfg: TrainConfig,
    *,
    run: RunDir | None,
    config_hash: str,
    device: torch.device,
    world: World,
    progress: bool | None,
    log: Callable[[str], None] | None,
    callbacks: Sequence[Callable[[dict[str, float]], object]] = (),
) -> Trainer:
    """The Trainer for ``train_cfg``, checkpointing into ``run`` (if any) and logging each
    epoch's line through ``log``."""

    def checkpoint(trainer: Trainer) -> None:
        if run is None:
            return
        state = {**trainer.state_dict(), "config_sha256": config_hash}  # collective
        with trainer.averaged_weights():  # model.safetensors holds the weight average, if any
            world.run_on_main(lambda: write_checkpoint(run, trainer.model, state, trainer.history))

    def report(record: dict[str, float]) -> None:
        if log is not None and world.is_main:
            log(format_record(record, train_cfg.epochs))

    return Trainer(
        model,
        data,
        epochs=train_cfg.epochs,
        batch_size=train_cfg.batch_size,
        lr=train_cfg.lr,
        adam_betas=train_cfg.adam_betas,
        adam_eps=train_cfg.adam_eps,
        weight_decay=train_cfg.weight_decay,
        schedule=train_cfg.schedule,
        min_lr=train_cfg.min_lr,
        warmup_epochs=train_cfg.warmup_epochs,
        grad_clip=train_cfg.grad_clip,
        ema_decay=train_cfg.ema_decay,
        precision=train_cfg.precision,
        compile=train_cfg.compile,
        accelerate=train_cfg.accelerate,
        eval_batch_size=train_cfg.eval_batch_size,
        seed=train_cfg.seed,
        device=device,
        max_bad_steps=train_cfg.max_bad_steps,
        max_rollbacks=train_cfg.max_rollbacks,
        checkpoint_every=train_cfg.checkpoint_every_steps,
        progress=progress,
        on_epoch_end=report,
        on_checkpoint=checkpoint,
        callbacks=callbacks,
        world=world,
    )


def run_trainer(
    trainer: Trainer,
    run: RunDir | None,
    train_cfg: TrainConfig,
    *,
    resume: bool,
    config_hash: str,
    facts: dict[str, Any],
    write_config: Callable[[], None],
    argv: list[str] | None,
    extend: bool = False,
) -> None:
    """Start ``run`` (config.json via ``write_config``, provenance with ``facts``) or resume it
    from its training state (written under ``config_hash``), train to the end and leave the
    final model in the run. ``extend``: the resumed run trains to ``train_cfg.epochs`` instead
    of its recorded length, and its config.json is rewritten to say so."""
    world = trainer.world
    if run is not None and resume:
        state = load_training_state(run.training_state)
        if state.get("config_sha256") != config_hash:
            raise CheckpointError(
                f"{str(run.training_state)!r} was written by a different config than "
                f"{str(run.config)!r}; it belongs to another run and cannot be resumed here"
            )
        info = read_json(run.provenance, "provenance") if run.provenance.is_file() else {}
        if not isinstance(info, dict):
            raise CheckpointError(f"{str(run.provenance)!r} is not a JSON object")
        identity = facts["dataset_identity"]
        if info.get("dataset_identity", identity) != identity:
            raise CheckpointError(
                f"the data differ from those {str(run.path)!r} was trained on (identity "
                f"{identity}, recorded {info['dataset_identity']}); an exact resume "
                "needs the same data"
            )
        trainer.load_state_dict(state)
        done = trainer.cursor.epoch
        if extend and train_cfg.epochs < done:
            raise CheckpointError(
                f"{str(run.path)!r} has trained {done} epochs; train.epochs = "
                f"{train_cfg.epochs} cannot shorten it (set at least {done})"
            )
        if extend:
            world.run_on_main(write_config)
        resumed = {"argv": provenance(argv)["argv"], "step": trainer.cursor.step}
        if extend:
            resumed["epochs"] = train_cfg.epochs
        info["resumes"] = [*info.get("resumes", []), {**resumed, "time": _now()}]
        world.run_on_main(lambda: write_json(run.provenance, info))
    elif run is not None:
        info = provenance(argv)
        info.update(facts)
        info.update({"seed": train_cfg.seed, "deterministic": train_cfg.deterministic})
        info.update({"device": str(trainer.device), "config_sha256": config_hash, "time": _now()})
        info["world_size"] = world.size
        info.update({"accelerate": train_cfg.accelerate, "gradients": trainer.gradient_path})
        world.run_on_main(write_config)
        world.run_on_main(lambda: write_json(run.provenance, info))
    trainer.fit()
    if run is not None and trainer.stopped is not None and info.get("stopped") != trainer.stopped:
        info["stopped"] = trainer.stopped  # a callback ended the run early (StopTraining)
        world.run_on_main(lambda: write_json(run.provenance, info))
    if trainer.average is not None:
        trainer.average.copy_to_params()  # the trained model is the weight average
    # A resume rewrites the final weights too: a finished run whose model.safetensors was
    # damaged is repaired from its training state by resuming it (same weights, same bytes).
    if run is not None and (resume or not trainer.history or trainer.cursor.epoch == 0):
        world.run_on_main(lambda: save_model(run, trainer.model))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def format_record(record: dict[str, float], epochs: int) -> str:
    """One human line per epoch, in nats per datapoint: the objective the optimiser minimised
    (``loss``), written as the sum it is (recon + KL weight × KL for a VAE), and beside it the
    unweighted negative ELBO (recon + KL)."""
    parts = [f"epoch {int(record['epoch']):>3}/{epochs}"]
    for split in ("train", "val"):
        if f"{split}/loss" in record:
            parts.append(f"{split} {_objective_text(record, split)}")
    if "val/bits_per_dim" in record:
        parts.append(f"val {record['val/bits_per_dim']:.4f} bits/dim")
    return " | ".join(parts)


def _objective_text(record: dict[str, float], split: str) -> str:
    def get(name: str) -> float | None:
        return record.get(f"{split}/{name}")

    loss, recon, kl, weight = get("loss"), get("recon"), get("kl"), get("kl_weight")
    text = f"objective {loss:.3f}"
    if recon is not None and kl is not None:
        trained = next((b for b in ("miwae", "ciwae", "piwae") if get(b) is not None), None)
        iwae = get("iwae")
        if trained is not None and iwae is not None:  # another bound (PIWAE: the encoder's)
            text += f" (-{trained} bound, kl weight {weight or 1.0:.4g}; -iwae {-iwae:.3f})"
        elif get("iwae") is not None:  # k > 1: minus the IWAE bound, not a sum of two terms
            text += f" (-iwae bound, kl weight {weight or 1.0:.4g})"
        elif weight is not None:
            text += f" = recon {recon:.3f} + {weight:.4g} × kl {kl:.3f}"
        elif get("weighted_kl") is not None:
            text += f" = recon {recon:.3f} + weighted kl {get('weighted_kl'):.3f}"
        else:  # rows written before the KL weight was logged
            text += f" (recon {recon:.3f}, kl {kl:.3f})"
        text += f"; -elbo {recon + kl:.3f}"
    elif recon is not None and get("adversarial") is not None:
        text += f" (recon {recon:.3f}, adversarial {get('adversarial'):.3f})"
    return text
