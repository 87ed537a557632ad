"""One experiment end to end: config -> data -> model -> Trainer -> a complete run directory."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from vaekit.build import build_dataset, build_model, check_data_fits
from vaekit.config import Config, check_ranges, config_to_dict
from vaekit.data.base import Dataset
from vaekit.errors import CheckpointError, ConfigError
from vaekit.figures import render_run_figures
from vaekit.models.output_bias import data_moments, has_marginal_start, init_output_bias
from vaekit.runs import Run, condition_size, read_run_config, write_run_config
from vaekit.runtime import (
    RunDir,
    choose_device,
    configure_threads,
    cpu_has_bfloat16,
    seed_everything,
    set_deterministic,
)
from vaekit.training.distributed import World, process_group
from vaekit.training.launch import make_trainer, run_trainer
from vaekit.training.run_claim import check_new_run_dir, prepare_run_dir, training_into
from vaekit.training.run_files import config_sha256, recorded_config_sha256


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
        with training_into(Path(out), main=world.is_main):
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
            class_names=dataset.class_names,
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
        dataset.class_names,
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
