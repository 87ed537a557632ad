"""The one place where names in a config become objects, by reading the registries: the
dataset (``data.py``), the model's pieces (``parts.py``) and the model (``model.py``)."""

from vaekit.build.data import MAX_SCALE_RATIO, build_dataset, check_data_fits
from vaekit.build.lookup import lookup
from vaekit.build.model import build_model, recipe_of
from vaekit.build.parts import build_likelihood, build_posterior, build_prior

__all__ = [
    "MAX_SCALE_RATIO",
    "build_dataset",
    "build_likelihood",
    "build_model",
    "build_posterior",
    "build_prior",
    "check_data_fits",
    "lookup",
    "recipe_of",
]
