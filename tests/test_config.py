"""Configs: recipes parse, the default recipe equals the defaults, bad keys and values fail well."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from vaekit.config import Config, config_from_dict, config_to_dict, load_config
from vaekit.errors import ConfigError

RECIPES = sorted(Path(__file__).parents[1].joinpath("configs").glob("*.toml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_parses_and_round_trips(recipe: Path) -> None:
    config = load_config(recipe)
    assert config_from_dict(config_to_dict(config)) == config


def test_default_recipe_is_the_dataclass_defaults() -> None:
    recipe = Path(__file__).parents[1] / "configs" / "digits.toml"
    assert load_config(recipe) == Config()


def test_overrides_parse_toml_values() -> None:
    config = load_config(
        None,
        ["model.latent_dim=2", "model.hidden=[200, 200]", "train.lr=1e-4", "train.grad_clip=none"],
    )
    assert config.model.latent_dim == 2
    assert config.model.hidden == (200, 200)
    assert config.train.lr == 1e-4
    assert config.train.grad_clip is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.latnt_dim=2", "valid keys: kind, latent_dim"),
        ("modle.latent_dim=2", "valid keys: name, data, model, train"),
        ("model.latent_dim=two", "expected an integer"),
        ("model.latent_dim=2.5", "expected an integer"),
        ("data.binarize=maybe", "choose one of: 'none', 'dynamic', 'static'"),
        ("train.adam_betas=[0.9]", "list of 2 values"),
        ("train.deterministic=1", "expected true or false"),
        ("latent_dim", "section.key=value"),
    ],
)
def test_bad_overrides_name_the_valid_choices(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(None, [override])


def test_missing_and_malformed_recipe_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nlatent_dim = 2")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


@pytest.mark.parametrize("recipe", [r for r in RECIPES if r.stem != "digits"], ids=lambda p: p.stem)
def test_recipes_spell_out_their_optimisation_protocol(recipe: Path) -> None:
    """Defaults are the digits experiment: a protocol recipe must not inherit its schedule."""
    train = tomllib.loads(recipe.read_text()).get("train", {})
    for key in ("epochs", "batch_size", "lr", "schedule", "warmup_epochs"):
        assert key in train, f"{recipe.name} must set train.{key}"
