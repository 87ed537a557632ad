"""Run directories as a user sees them: save a trained model with its config, load it back."""

from __future__ import annotations

import platform
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import torch

from vaekit.build import build_dataset, build_model, recipe_of
from vaekit.config import Config, DataConfig, config_from_dict, config_to_dict
from vaekit.data import READS_NO_PATH
from vaekit.data.base import Dataset
from vaekit.data.standardize import Standardization
from vaekit.errors import CheckpointError, ConfigError, DataError, VaekitError
from vaekit.files import write_json
from vaekit.models.base import Autoencoder
from vaekit.runtime import RunDir
from vaekit.weights import RUN_FORMAT, RUN_FORMAT_VERSION, load_weights, read_json, save_weights


@dataclass(frozen=True)
class Run:
    """A loaded run: its directory, resolved config, data shape and model, the standardisation
    its data were trained with (``data.standardize``), if any, and the names of its data's
    features and classes, where the data named them."""

    dir: RunDir
    config: Config
    event_shape: tuple[int, ...]
    model: Autoencoder
    standardization: Standardization | None = None
    feature_names: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()

    def class_index(self, condition: str | int) -> int:
        """The label of a conditional model's class given as its index or, where the data named
        the classes, its name; ``VaekitError`` for a class the model does not know."""
        count = condition_size(self.model)
        if count is None:
            raise VaekitError("a class applies to a conditional model (model.conditional = true)")
        named = f" or one of: {', '.join(self.class_names[:count])}" if self.class_names else ""
        text = str(condition).strip()
        # a name first: class folders named 0, 1, ... are numbered by their value, so a name
        # that is a number is that class where the names run 0..K-1
        index = self.class_names.index(text) if text in self.class_names else None
        if index is None and re.fullmatch(r"[0-9]+", text):
            index = int(text)
        if index is None or index >= count:
            raise VaekitError(f"unknown class {text!r}: give a class index 0..{count - 1}{named}")
        return index

    def class_label(self, index: int) -> str:
        """How figures name class ``index``: "class 3", with its name where the data named
        the classes ("class 1 (square)")."""
        return class_label(index, self.class_names)

    def dataset(self, data: DataConfig | None = None) -> Dataset:
        """The run's data (``data``: other settings of them, e.g. not binarised), split as in
        training; ``DataError`` where they do not fit the model, e.g. after ``--data-path``
        pointed at other data."""
        data = data or self.config.data
        dataset = build_dataset(data, self.config.train.seed)
        where = f" at {data.path}" if data.path else ""
        if tuple(dataset.event_shape) != tuple(self.event_shape):
            raise DataError(
                f"the data{where} have points of shape {tuple(dataset.event_shape)}, but "
                f"{str(self.dir.path)!r} was trained on points of shape {self.event_shape}; "
                "point --data-path (or --data-root) at the run's data"
            )
        recorded = self._recorded_identity() if data is self.config.data else None
        if recorded is not None and recorded != dataset.identity:
            raise DataError(
                f"the data{where} differ from those {str(self.dir.path)!r} was trained on "
                f"(identity {dataset.identity}, recorded {recorded}); point --data-path (or "
                "--data-root) at the run's data"
            )
        count, found = condition_size(self.model), dataset.num_classes
        if count is not None and found is not None and found > count:
            raise DataError(
                f"the data{where} have {found} classes, but {str(self.dir.path)!r} was trained "
                f"on {count}; point --data-path (or --data-root) at the run's data"
            )
        return dataset

    def _recorded_identity(self) -> str | None:
        """The identity of the data the run was trained on, as its provenance.json records it."""
        try:
            info = read_json(self.dir.provenance, "provenance")
        except CheckpointError:  # absent or unreadable: nothing to check against
            return None
        value = info.get("dataset_identity") if isinstance(info, dict) else None
        return value if isinstance(value, str) else None


def class_label(index: int, class_names: tuple[str, ...]) -> str:
    """ "class 3", with its name where the data named the classes ("class 1 (square)")."""
    if index < len(class_names):
        return f"class {index} ({class_names[index]})"
    return f"class {index}"


# config.json's "model" entry for a model whose architecture was built in Python: the run holds
# its weights, and vaekit.load(run, model=...) loads them into a fresh instance.
BUILT_IN_PYTHON = "python"


def write_run_config(
    run: RunDir,
    config: Config,
    event_shape: tuple[int, ...],
    *,
    python_class: str | None = None,
    standardization: Standardization | None = None,
    feature_names: tuple[str, ...] = (),
    num_classes: int | None = None,
    class_names: tuple[str, ...] = (),
) -> None:
    """Write config.json: the fully resolved config plus what is needed to rebuild the model.

    ``python_class`` (the model's qualified class name) marks a model built in Python, which
    the config cannot rebuild: ``vaekit.load`` then needs the architecture passed in.
    ``standardization`` (the training split's feature statistics) lets commands map samples
    back to the data's units without loading the data; ``feature_names`` name the columns of
    vectors in figures and exported samples. ``num_classes`` is the size of a conditional
    model's condition (its label count); ``class_names`` name the data's labels 0..K-1.
    """
    meta: dict[str, Any] = {
        "format": RUN_FORMAT,
        "version": RUN_FORMAT_VERSION,
        "event_shape": list(event_shape),
        "config": config_to_dict(config),
        # data.path and data.root as absolute paths, beside the strings as given in the config:
        # commands run from another directory find the data (see ``read_run_config``)
        "data_paths": {key: _absolute(getattr(config.data, key)) for key in DATA_PATH_KEYS},
    }
    if python_class is not None:
        meta["model"] = {"built": BUILT_IN_PYTHON, "class": python_class}
    if standardization is not None:
        meta["standardization"] = standardization.to_json()
    if feature_names:
        meta["feature_names"] = list(feature_names)
    if num_classes is not None:
        meta["num_classes"] = int(num_classes)
    if class_names:
        meta["class_names"] = list(class_names)
    write_json(run.config, meta)


def condition_size(model: Autoencoder) -> int | None:
    """The label count (condition size) of a conditional model, else None."""
    condition = model.condition
    return None if condition is None else condition.dim


def run_num_classes(path: str | Path) -> int | None:
    """The label count a conditional run's model was built for, or None."""
    value = _read_meta(path).get("num_classes")
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def run_standardization(path: str | Path) -> Standardization | None:
    """The feature statistics a run's data were standardised with, or None."""
    entry = _read_meta(path).get("standardization")
    return None if entry is None else Standardization.from_json(entry)


def run_feature_names(path: str | Path) -> tuple[str, ...]:
    """The names of a vector run's features (its CSV header), or () where none were recorded."""
    return _names(path, "feature_names")


def run_class_names(path: str | Path) -> tuple[str, ...]:
    """The names of a run's classes (text labels, class folders), or () where none were
    recorded."""
    return _names(path, "class_names")


def _names(path: str | Path, key: str) -> tuple[str, ...]:
    names = _read_meta(path).get(key, [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{str(RunDir(Path(path)).config)!r}: {key} is malformed")
    return tuple(names)


DATA_PATH_KEYS = ("path", "root")


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def _read_meta(path: str | Path) -> dict[str, Any]:
    run = RunDir(Path(path))
    if not run.path.is_dir():
        what = "a file, not a folder" if run.path.exists() else "not found"
        raise CheckpointError(
            f"run directory {str(run.path)!r} is {what}; give the folder vaekit train wrote"
        )
    meta = read_json(run.config, "run config")
    if not isinstance(meta, dict) or meta.get("format") != RUN_FORMAT:
        raise CheckpointError(f"{str(run.config)!r} is not a vaekit run config")
    if meta.get("version") != RUN_FORMAT_VERSION:
        raise CheckpointError(
            f"{str(run.config)!r} has run format version {meta.get('version')!r}; "
            f"this vaekit reads version {RUN_FORMAT_VERSION}"
        )
    return meta


def read_run_config(
    path: str | Path, *, data_path: str | None = None, data_root: str | None = None
) -> tuple[Config, tuple[int, ...]]:
    """Read and check a run's config.json: (config, event shape of one datapoint).

    A relative ``data.path`` / ``data.root`` is replaced by the absolute path recorded when the
    run started, so that the run finds its data from any directory; ``data_path`` /
    ``data_root`` point it at data that moved since.
    """
    meta = _read_meta(path)
    try:
        config = config_from_dict(meta["config"])
        event_shape = tuple(int(v) for v in meta["event_shape"])
    except (ConfigError, KeyError, TypeError, ValueError, OverflowError) as error:
        raise CheckpointError(f"{str(RunDir(Path(path)).config)!r} is invalid: {error}") from None
    if data_path is not None and config.data.name in READS_NO_PATH:
        cache = "" if config.data.name == "ppca" else "; a moved data cache is --data-root"
        raise ConfigError(
            f"--data-path: the run at {str(path)!r} trains on the built-in dataset "
            f"{config.data.name!r}, which reads no file or folder; leave --data-path out{cache}"
        )
    recorded = meta.get("data_paths")
    recorded = recorded if isinstance(recorded, dict) else {}
    given = {"path": data_path, "root": data_root}
    paths: dict[str, Any] = {}
    for key in DATA_PATH_KEYS:
        value, override = getattr(config.data, key), given[key]
        if override is not None:
            paths[key] = str(Path(override).expanduser())
        elif value is not None and not Path(value).expanduser().is_absolute():
            absolute = recorded.get(key)
            paths[key] = absolute if isinstance(absolute, str) else value
    if paths:
        config = replace(config, data=replace(config.data, **paths))
    return config, event_shape


def python_model_class(path: str | Path) -> str | None:
    """The class name of a run's model built in Python, or None where its config builds it."""
    entry = _read_meta(path).get("model")
    if isinstance(entry, dict) and entry.get("built") == BUILT_IN_PYTHON:
        return str(entry.get("class", "an unknown class"))
    return None


def save_model(run: RunDir, model: Autoencoder) -> None:
    """Write the model's weights as ``model.safetensors``."""
    save_weights(run.model, model)


def load_run(
    path: str | Path,
    *,
    device: torch.device | str = "cpu",
    data_path: str | None = None,
    data_root: str | None = None,
) -> Run:
    """Rebuild a run's model from config.json and model.safetensors (no pickles involved);
    ``data_path`` / ``data_root`` point the run's config at data that moved."""
    config, event_shape = read_run_config(path, data_path=data_path, data_root=data_root)
    python_class = python_model_class(path)
    if python_class is not None:
        raise CheckpointError(
            f"{str(path)!r} holds a model built in Python ({python_class}), which its config "
            "cannot rebuild; load it in Python with vaekit.load(run, model=<a fresh instance>)"
        )
    run = RunDir(Path(path))
    model = build_model(config.model, event_shape, num_classes=run_num_classes(path))
    load_weights(run.model, model)
    model.eval()
    return Run(
        run,
        config,
        event_shape,
        model.to(device),
        run_standardization(path),
        run_feature_names(path),
        run_class_names(path),
    )


def load(
    path: str | Path, model: Autoencoder | None = None, *, device: torch.device | str = "cpu"
) -> Autoencoder:
    """The trained model of a run directory (or of ``vaekit.save``), in eval mode on ``device``.

    Without ``model`` the architecture is rebuilt from config.json (models built from a config
    or recipe). With ``model``, a fresh instance of the run's architecture (a model with your
    own modules), its weights are loaded into it with a strict check of every name and shape;
    a mismatch raises CheckpointError naming the first difference. Nothing is imported or
    unpickled from the directory.
    """
    if model is None:
        return load_run(path, device=device).model
    _read_meta(path)
    load_weights(RunDir(Path(path)).model, model, against="the model passed to vaekit.load")
    return model.eval().to(device)


def save(
    model: Autoencoder, path: str | Path, *, event_shape: tuple[int, ...] | None = None
) -> Path:
    """Write ``model`` as a run directory that ``vaekit.load`` reads: config.json and
    model.safetensors (safetensors: loading runs no code).

    A model made by ``build_model`` (from a config or recipe) is saved with its config, so
    ``vaekit.load(path)`` and every CLI command rebuild it. A model with your own modules is
    saved with its class name: load it with ``vaekit.load(path, model=<a fresh instance>)``.
    """
    run = RunDir(Path(path))
    run.path.mkdir(parents=True, exist_ok=True)
    recipe = recipe_of(model)
    if recipe is not None:
        config, shape = Config(model=recipe[0]), recipe[1]
        write_run_config(run, config, shape, num_classes=condition_size(model))
    else:
        name = f"{type(model).__module__}.{type(model).__qualname__}"
        write_run_config(
            run, Config(), event_shape or (), python_class=name, num_classes=condition_size(model)
        )
    save_model(run, model)
    return run.path


def provenance(argv: list[str] | None = None) -> dict[str, Any]:
    """Versions, platform and the command line, recorded with every run."""
    from vaekit import __version__

    return {
        "vaekit": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "argv": _portable(list(sys.argv if argv is None else argv)),
    }


def _portable(argv: list[str]) -> list[str]:
    """``argv`` with a script path inside the working directory made relative to it
    (``python -m benchmarks.x`` puts an absolute path first), so that provenance names the
    command the same on every machine."""
    script, here = Path(argv[0]) if argv else Path(), Path.cwd()
    if script.is_absolute() and script.is_relative_to(here):
        return [str(script.relative_to(here)), *argv[1:]]
    return argv
