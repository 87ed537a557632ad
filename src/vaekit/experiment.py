"""One experiment end to end: config -> data -> model -> Trainer -> a complete run directory."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from vaekit.build import build_dataset, build_model, check_data_fits
from vaekit.config import Config, config_to_dict
from vaekit.errors import CheckpointError
from vaekit.figures import render_run_figures
from vaekit.runs import Run, provenance, read_run_config, save_model, write_run_config
from vaekit.runtime import (
    RunDir,
    choose_device,
    configure_threads,
    seed_everything,
    set_deterministic,
)
from vaekit.training.checkpoint import (
    atomic_write,
    load_training_state,
    save_training_state,
    write_json,
)
from vaekit.training.trainer import Trainer


def prepare_run_dir(path: Path, *, resume: bool, overwrite: bool) -> RunDir:
    """Refuse to clobber an existing run unless asked to resume or overwrite it."""
    run = RunDir(path)
    if resume:
        if not run.training_state.is_file():
            raise CheckpointError(
                f"cannot resume {str(path)!r}: it has no training_state.pt; train without --resume"
            )
        return run
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise CheckpointError(
                f"run directory {str(path)!r} already exists; pass --resume to continue it, "
                "--overwrite to replace it, or choose another --out"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return run


def write_metrics(run: RunDir, history: Sequence[dict[str, float]]) -> None:
    """Rewrite metrics.jsonl from the history (atomic; resume-safe)."""
    text = "".join(json.dumps(record) + "\n" for record in history)
    atomic_write(run.metrics, lambda tmp: tmp.write_text(text))


def train(
    config: Config,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    argv: list[str] | None = None,
) -> Run:
    """Train ``config`` into the run directory ``out``; ``resume=True`` continues it exactly."""
    run = prepare_run_dir(Path(out), resume=resume, overwrite=overwrite)
    if resume:
        saved, _ = read_run_config(run.path)
        if config_to_dict(saved) != config_to_dict(config):
            raise CheckpointError(
                f"the config differs from the one {str(run.path)!r} was trained with; resume "
                "with the saved config (drop --config/--set) or start a new run"
            )
    train_cfg = config.train
    set_deterministic(train_cfg.deterministic)
    seed_everything(train_cfg.seed)
    device = choose_device(train_cfg.device)
    dataset = build_dataset(config.data, train_cfg.seed)
    check_data_fits(dataset, config.model)
    model = build_model(config.model, dataset.event_shape)
    num_params = sum(p.numel() for p in model.parameters())
    # ~6 FLOPs per parameter per datapoint (forward + backward) for dense layers.
    configure_threads(train_cfg.num_threads, step_flops=6.0 * num_params * train_cfg.batch_size)

    def checkpoint(trainer: Trainer) -> None:
        save_model(run, trainer.model)
        save_training_state(run.training_state, trainer.state_dict())
        write_metrics(run, trainer.history)

    def report(record: dict[str, float]) -> None:
        if log is not None:
            log(format_record(record, config.train.epochs))

    trainer = Trainer(
        model,
        dataset,
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
        eval_batch_size=train_cfg.eval_batch_size,
        seed=train_cfg.seed,
        device=device,
        progress=progress,
        on_epoch_end=report,
        on_checkpoint=checkpoint,
    )
    if resume:
        trainer.load_state_dict(load_training_state(run.training_state))
    else:
        write_run_config(run, config, dataset.event_shape)
        info = provenance(argv)
        info.update({"dataset": dataset.name, "dataset_identity": dataset.identity})
        info.update({"seed": train_cfg.seed, "device": str(device)})
        write_json(run.provenance, info)
    trainer.fit()
    if not trainer.history or trainer.cursor.epoch == 0:
        save_model(run, trainer.model)
    render_run_figures(trainer.model, dataset, run, trainer.history, seed=train_cfg.seed)
    return Run(run, config, dataset.event_shape, trainer.model)


def format_record(record: dict[str, float], epochs: int) -> str:
    """One human line per epoch: negative ELBO split into reconstruction and KL, in nats."""
    parts = [f"epoch {int(record['epoch']):>3}/{epochs}"]
    for split in ("train", "val"):
        loss = record.get(f"{split}/loss")
        if loss is None:
            continue
        text = f"{split} loss {loss:8.3f}"
        if f"{split}/kl" in record:
            text += f" (recon {record[f'{split}/recon']:.3f} + kl {record[f'{split}/kl']:.3f})"
        parts.append(text)
    if "val/bits_per_dim" in record:
        parts.append(f"{record['val/bits_per_dim']:.4f} bits/dim")
    return " | ".join(parts)
