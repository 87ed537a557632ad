"""Typed, frozen experiment configs: TOML recipes plus ``--set key=value`` overrides.

The defaults are the default experiment (a VAE on the embedded digits), spelled out in
configs/digits.toml.

Unknown keys and ill-typed values are errors that name the valid choices. Configs are read at
the edge (cli.py, build.py) and saved with every run as ``config.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vaekit.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    """Which data and how they are prepared (see ``vaekit.data.load_dataset``)."""

    name: str = "digits"
    path: str | None = None
    root: str | None = None
    image_size: int | None = None
    channels: int | None = None
    binarize: Literal["none", "dynamic", "static"] = "none"
    val_size: float = 0.1
    val_from: Literal["random", "tail"] = "random"
    limit: int | None = None
    download: bool = True
    skip_bad_files: bool = False
    label_column: str | None = None
    standardize: bool = False
    in_memory: bool | Literal["auto"] = "auto"


@dataclass(frozen=True)
class ModelConfig:
    """Model kind, networks, likelihood and the objective's variants."""

    kind: str = "vae"
    latent_dim: int = 8
    network: Literal["mlp", "conv"] = "mlp"
    hidden: tuple[int, ...] = (256, 128)
    activation: str = "leaky_relu"
    conv_channels: int = 32
    batch_norm: bool = False
    likelihood: str = "bernoulli"
    sigma: float = 0.1
    min_scale: float = 1e-3
    prior: str = "standard-normal"
    beta: float = 1.0
    num_particles: int = 1
    analytic_kl: bool = True
    gradient_estimator: Literal["reparam", "dreg"] = "reparam"
    corruption: str = "none"
    corruption_level: float = 0.5
    adversarial_weight: float = 1.0
    discriminator_hidden: tuple[int, ...] = (256, 256)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and run-time settings of the one training loop."""

    epochs: int = 60
    batch_size: int = 64
    lr: float = 2e-3
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    adam_eps: float = 1e-8
    schedule: Literal["constant", "cosine", "iwae-stages"] = "cosine"
    min_lr: float = 0.0
    warmup_epochs: float = 5.0
    grad_clip: float | None = None
    ema_decay: float | None = None
    eval_batch_size: int = 1000
    seed: int = 0
    device: str = "auto"
    deterministic: bool = False
    num_threads: int | None = None
    precision: Literal["float32", "bfloat16"] = "float32"
    compile: bool = False
    accelerate: Literal["auto", "off"] = "auto"
    checkpoint_every_steps: int | None = None
    max_bad_steps: int = 20
    max_rollbacks: int = 3


@dataclass(frozen=True)
class Config:
    """A whole experiment: data, model and training."""

    name: str = "digits-vae"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "none")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert lists/ints where lossless."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (value is None or value in ("none", "null")):
            return None  # TOML has no null: "none" clears an optional value
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as error:
                errors.append(str(error))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        expected = " or ".join(_type_name(a) for a in args if a is not type(None))
        raise ConfigError(f"{key}: invalid value {value!r}; expected {expected}")
    if origin is Literal:
        if value not in args:
            valid = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{key}: {value!r} is not valid; choose one of: {valid}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args, strict=True))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        where = f"[{prefix.rstrip('.')}]" if prefix else "the top level"
        raise ConfigError(
            f"unknown key '{prefix}{unknown[0]}' in {where}; valid keys: {', '.join(names)}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix}{name} must be a table, got {value!r}")
            kwargs[name] = _build(tp, value, f"{prefix}{name}.")  # type: ignore[arg-type]
        else:
            kwargs[name] = _coerce(value, tp, prefix + name)
    return cls(**kwargs)


def _positive(v: float) -> bool:
    return v > 0 and math.isfinite(v)


def _non_negative(v: float) -> bool:
    return v >= 0 and math.isfinite(v)


def _at_least(low: int) -> Callable[[int], bool]:
    return lambda v: v >= low


def _unit_open(v: float) -> bool:
    return 0 < v < 1


# What each numeric setting allows, checked before anything is created: (test, description).
# A None value (where the type allows it) is always allowed; a tuple's items are each checked.
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "data.image_size": (_at_least(1), "a positive number of pixels"),
    "data.channels": (lambda v: v in (1, 3), "1 (grey) or 3 (RGB)"),
    "data.val_size": (
        lambda v: v == 0 or 0 < v < 1 or (v >= 1 and float(v).is_integer()),
        "0, a fraction in (0, 1) or a whole number of points",
    ),
    "data.limit": (_at_least(2), "at least 2 points"),
    "model.latent_dim": (_at_least(1), "at least 1"),
    "model.hidden": (_at_least(1), "layer widths of at least 1"),
    "model.conv_channels": (_at_least(1), "at least 1"),
    "model.sigma": (_positive, "positive"),
    "model.min_scale": (_positive, "positive"),
    "model.beta": (_non_negative, "non-negative"),
    "model.num_particles": (_at_least(1), "at least 1"),
    "model.corruption_level": (_non_negative, "non-negative"),
    "model.adversarial_weight": (_non_negative, "non-negative"),
    "model.discriminator_hidden": (_at_least(1), "layer widths of at least 1"),
    "train.epochs": (_at_least(1), "at least 1"),
    "train.batch_size": (_at_least(1), "at least 1"),
    "train.lr": (_positive, "positive"),
    "train.adam_betas": (lambda v: 0 <= v < 1, "two numbers in [0, 1)"),
    "train.weight_decay": (_non_negative, "non-negative"),
    "train.adam_eps": (_positive, "positive"),
    "train.min_lr": (_non_negative, "non-negative"),
    "train.warmup_epochs": (_non_negative, "non-negative"),
    "train.grad_clip": (_positive, "positive, or none"),
    "train.ema_decay": (_unit_open, "strictly between 0 and 1 (e.g. 0.999), or none"),
    "train.eval_batch_size": (_at_least(1), "at least 1"),
    "train.seed": (_at_least(0), "a non-negative integer"),
    "train.num_threads": (_at_least(1), "at least 1, or none"),
    "train.checkpoint_every_steps": (_at_least(1), "at least 1, or none"),
    "train.max_bad_steps": (_at_least(1), "at least 1"),
    "train.max_rollbacks": (_at_least(0), "non-negative"),
}
# Settings that must not be empty lists
NON_EMPTY = ("model.hidden",)
PROBABILITY_CORRUPTIONS = ("salt-and-pepper", "masking")


def check_ranges(config: Config) -> None:
    """Raise ConfigError, naming the key, its value and what it allows, for the first setting
    out of its range (``RANGES``)."""
    tree = config_to_dict(config)
    for key, (test, allowed) in RANGES.items():
        section, name = key.split(".")
        value = tree[section][name]
        if value is None:
            continue
        if key in NON_EMPTY and not value:
            raise ConfigError(f"{key} must not be empty; give {allowed}, e.g. [256, 128]")
        items = value if isinstance(value, list) else [value]
        if not all(test(item) for item in items):
            raise ConfigError(f"{key} = {_show(value)} is out of range: it must be {allowed}")
    model = config.model
    if model.corruption in PROBABILITY_CORRUPTIONS and not model.corruption_level <= 1:
        raise ConfigError(
            f"model.corruption_level = {model.corruption_level} is a probability for "
            f"{model.corruption!r} corruption: it must lie in [0, 1]"
        )


def _show(value: Any) -> str:
    return json.dumps(value).replace("NaN", "nan").replace("Infinity", "inf")


def train_config(options: dict[str, Any]) -> TrainConfig:
    """A validated TrainConfig from keyword settings (``vaekit.fit``'s options); unknown names,
    ill-typed values and values out of range raise ConfigError saying what is allowed."""
    config: TrainConfig = _build(TrainConfig, dict(options), "train.")
    check_ranges(Config(train=config))
    return config


def _parse_value(text: str) -> Any:
    """A TOML value (``2``, ``1e-3``, ``true``, ``[200, 200]``, ``"x"``), else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _apply_override(tree: dict[str, Any], override: str) -> None:
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} must look like section.key=value")
    parts = key.strip().split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = _parse_value(text.strip())


def config_from_dict(tree: dict[str, Any], overrides: Sequence[str] = ()) -> Config:
    """A validated Config from nested plain values plus ``section.key=value`` overrides."""
    if not isinstance(tree, dict):
        raise ConfigError(f"a config is a table of sections, got {type(tree).__name__}")
    tree = json.loads(json.dumps(tree))  # deep copy of plain values
    for override in overrides:
        _apply_override(tree, override)
    config: Config = _build(Config, tree, "")
    check_ranges(config)
    return config


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read a TOML recipe (defaults when ``path`` is None) and apply overrides."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} not found; see the recipes in configs/")
        try:
            tree = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path} is not valid TOML: {error}") from None
    return config_from_dict(tree, overrides)


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested values (tuples as lists), ready for JSON."""
    tree: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(config)))
    return tree
