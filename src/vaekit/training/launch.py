"""The Trainer of a ``TrainConfig``, started in or resumed from a run directory and trained to
the end: what ``vaekit.train`` (recipes) and ``vaekit.fit`` (a user's model) share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import torch

from vaekit.config import TrainConfig
from vaekit.data.base import Dataset
from vaekit.data.sources import TrainingData
from vaekit.errors import CheckpointError
from vaekit.files import write_json
from vaekit.models.base import Autoencoder
from vaekit.runs import provenance, save_model
from vaekit.runtime import RunDir
from vaekit.training.checkpoint import load_training_state
from vaekit.training.distributed import World
from vaekit.training.epoch_line import format_record
from vaekit.training.run_files import write_checkpoint
from vaekit.training.trainer import Trainer
from vaekit.weights import read_json


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
                "needs the same data: point --data-path (or --data-root) at them, or train a "
                "new run"
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
