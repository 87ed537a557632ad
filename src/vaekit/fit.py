"""``vaekit.fit``: train any vaekit model on a user's own data, from Python.

The front door for models with one's own encoder and decoder and for data that are not a
recipe's: tensors, numpy arrays, ``(x, y)`` pairs, torch Datasets and DataLoaders. The options
are the ``[train]`` settings of a recipe, checked the same way; the loop is the one ``Trainer``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

from vaekit.build import recipe_of
from vaekit.config import Config, DataConfig, ModelConfig, config_to_dict, train_config
from vaekit.data.base import Binarization, Dataset, Split
from vaekit.data.sources import InMemory, LoaderStream, TrainingData
from vaekit.data.user import PYTHON_DATA, as_source, first_batch, source_identity
from vaekit.errors import CheckpointError, ConfigError, DataError
from vaekit.figures import render_run_figures
from vaekit.models.base import Autoencoder
from vaekit.runs import condition_size, read_run_config, write_run_config
from vaekit.runtime import (
    RunDir,
    choose_device,
    configure_threads,
    seed_everything,
    set_deterministic,
)
from vaekit.training.distributed import process_group
from vaekit.training.launch import make_trainer, run_trainer
from vaekit.training.run_claim import prepare_run_dir, training_into
from vaekit.training.run_files import config_sha256, recorded_config_sha256

BINARIZATIONS = ("none", "dynamic")


def fit(
    model: Autoencoder,
    train: Any,
    val: Any = None,
    *,
    out: str | Path | None = None,
    in_memory: bool = True,
    num_workers: int | None = None,
    binarize: Binarization = "none",
    callbacks: Sequence[Callable[[dict[str, float]], object]] = (),
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    class_names: Sequence[str] = (),
    **options: Any,
) -> Autoencoder:
    """Train ``model`` on ``train`` (validating on ``val`` each epoch, if given); returns it.

    Args:
        model: any vaekit model (``VAE``, ``AE``, ``AAE``) over the library's or your own
            encoder, decoder and prior modules.
        train: a Tensor or numpy array [N, *event_shape], a pair ``(x, y)``, a map-style
            ``torch.utils.data.Dataset`` yielding x or ``(x, y)``, a ``DataLoader`` or an
            ``IterableDataset``.
        val: validation data in the forms of ``train`` other than a ``DataLoader`` or
            ``IterableDataset`` (it is scored in a fixed order); None skips validation.
        out: a run directory to write (weights, metrics, figures, resumable state), as
            ``vaekit train`` does; None trains in memory only.
        in_memory: hold Datasets and DataLoaders as one tensor (fastest). False streams a
            map-style Dataset through ``num_workers`` DataLoader workers in the trainer's
            order, and reads a DataLoader in its own: data larger than RAM never need to fit.
            ``num_workers=None`` uses the cores beyond two, at most 4 (none on 2 cores). A
            conditional model reads a streamed Dataset's labels in one pass before training.
        binarize: ``"dynamic"`` draws fresh binary pixels x ~ Bernoulli(x) every step (data in
            [0, 1]).
        callbacks: callables that receive each epoch's metrics dict (``epoch``,
            ``train/...``, ``val/...``, ``lr``), e.g. to log to a tracker. One that raises
            ``vaekit.training.StopTraining`` ends training after that epoch (early stopping,
            recorded under ``stopped`` in provenance.json; a resume trains no further).
        resume: continue the run in ``out`` exactly (same model, data and options).
        overwrite: replace an existing run in ``out``.
        progress: a progress bar per epoch (default: when stderr is a terminal).
        log: receives one human-readable line per epoch (e.g. ``print``).
        class_names: the names of the labels 0..K-1, kept in the run so that figures name
            the classes and ``vaekit sample RUN --condition NAME`` finds them.
        **options: the ``[train]`` settings of a recipe: ``epochs``, ``batch_size``, ``lr``,
            ``schedule``, ``warmup_epochs``, ``precision``, ``compile``, ``accelerate``,
            ``seed``, ``device``, ... (see the configuration reference). Unknown names and
            ill-typed values raise ConfigError listing the valid ones.
    """
    train_cfg = train_config(options)
    if binarize not in BINARIZATIONS:
        raise ConfigError(f"binarize must be one of {BINARIZATIONS}, got {binarize!r}")
    if (resume or overwrite) and out is None:
        raise ConfigError("resume and overwrite need a run directory: pass out=...")
    reading = partial(
        as_source,
        in_memory=in_memory,
        batch_size=train_cfg.batch_size,
        num_workers=num_workers,
        labels=condition_size(model) is not None,
    )
    train_source = reading(train, what="train")
    val_source = None
    if val is not None:
        given = reading(val, what="val")
        if isinstance(given, LoaderStream):
            raise DataError(
                "val is scored in a fixed order: pass tensors, arrays or a map-style Dataset, "
                "not a DataLoader or IterableDataset"
            )
        val_source = given
    sample = first_batch(train_source)
    event_shape = tuple(int(n) for n in sample.shape[1:])
    if binarize == "dynamic" and not bool(((sample >= 0) & (sample <= 1)).all()):
        raise DataError("binarize='dynamic' needs data in [0, 1]; rescale the data first")
    data = TrainingData(train_source, val_source, event_shape, binarize)
    names = _check_class_names(class_names, data, condition_size(model))

    set_deterministic(train_cfg.deterministic)
    seed_everything(train_cfg.seed)
    configure_threads(train_cfg.num_threads)  # None leaves torch's setting alone
    device = choose_device(train_cfg.device)
    with process_group(device) as world:
        device = world.device(device)
        run = None if out is None else RunDir(Path(out))
        with training_into(None if run is None else run.path, main=world.is_main):
            if run is not None:
                world.run_on_main(
                    lambda: prepare_run_dir(run.path, resume=resume, overwrite=overwrite)
                )
            recipe = recipe_of(model)
            python_class = None
            if recipe is None:
                python_class = f"{type(model).__module__}.{type(model).__qualname__}"
            model_cfg = ModelConfig() if recipe is None else recipe[0]
            config = Config("python", DataConfig(name=PYTHON_DATA), model_cfg, train_cfg)
            config_hash = config_sha256(config)
            if run is not None and resume:
                _check_same_settings(run, config)
                config_hash = recorded_config_sha256(run)
            trainer = make_trainer(
                model,
                data,
                train_cfg,
                run=run,
                config_hash=config_hash,
                device=device,
                world=world,
                progress=progress,
                log=log,
                callbacks=callbacks,
            )

            def write_config() -> None:
                assert run is not None
                write_run_config(
                    run,
                    config,
                    event_shape,
                    python_class=python_class,
                    num_classes=condition_size(model),
                    class_names=names,
                )

            facts = {
                "dataset": PYTHON_DATA,
                "dataset_identity": source_identity(train_source, sample),
            }
            run_trainer(
                trainer,
                run,
                train_cfg,
                resume=resume,
                config_hash=config_hash,
                facts=facts,
                write_config=write_config,
                argv=None,
            )
            if run is not None and len(event_shape) in (1, 3):
                figures = _figure_data(data, sample, names)
                world.run_on_main(
                    lambda: render_run_figures(
                        trainer.model, figures, run, trainer.history, seed=train_cfg.seed
                    )
                )
    return trainer.model


def _check_same_settings(run: RunDir, config: Config) -> None:
    """Refuse to resume ``run`` with other options or another model config than it started
    with, naming the first difference."""
    saved, _ = read_run_config(run.path)
    old, new = config_to_dict(saved), config_to_dict(config)
    for section in ("model", "train"):
        for key in new[section]:
            if old[section].get(key) != new[section][key]:
                raise CheckpointError(
                    f"{section}.{key} is {new[section][key]!r} here but the run in "
                    f"{str(run.path)!r} was started with {old[section].get(key)!r}; resume with "
                    "the same options, or start a new run"
                )


def _check_class_names(
    class_names: Sequence[str], data: TrainingData, model_classes: int | None
) -> tuple[str, ...]:
    """``class_names`` as a tuple, refused unless they are distinct strings, one for every label
    of the data held in memory and, for a conditional model, one for each of its classes."""
    if isinstance(class_names, str):
        raise ConfigError("class_names must be a list of names, one per label, not one string")
    names = tuple(class_names)
    if not names:
        return names
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise ConfigError("class_names must be distinct strings, one per label 0..K-1")
    if model_classes is not None and len(names) != model_classes:
        raise ConfigError(
            f"the model is conditioned on {model_classes} classes but class_names names "
            f"{len(names)}; give one name per class"
        )
    for source in (data.train, data.val):
        y = source.y if isinstance(source, InMemory) else None
        if y is not None and len(y) and not 0 <= int(y.min()) <= int(y.max()) < len(names):
            raise DataError(
                f"the labels run from {int(y.min())} to {int(y.max())}, but class_names names "
                f"{len(names)} classes (0..{len(names) - 1}); give one name per label"
            )
    return names


def _figure_data(
    data: TrainingData, sample: torch.Tensor, class_names: tuple[str, ...] = ()
) -> Dataset:
    """A small in-memory Dataset for the run's figures: the data where they are in memory, with
    their labels (which colour the latent map, and condition a conditional model), else the
    first training batch."""
    val, train = data.val, data.train
    if isinstance(val, InMemory):
        figure_split = _first(val)
    elif isinstance(train, InMemory) and train.y is not None:
        figure_split = _first(train)  # labelled: a conditional model can draw them
    else:
        figure_split = Split(sample)
    train_split = _first(train) if isinstance(train, InMemory) else Split(sample)
    return Dataset(
        name=PYTHON_DATA,
        train=train_split,
        val=figure_split,
        test=figure_split,
        value_range="unit",
        binarize=data.binarize,
        identity="",
        class_names=class_names,
    )


def _first(source: InMemory) -> Split:
    """The first 5,000 datapoints of ``source`` and their labels, if any."""
    return Split(source.x[:5000], None if source.y is None else source.y[:5000])
