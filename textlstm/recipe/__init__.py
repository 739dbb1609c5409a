"""Recipes: TOML files validated completely on load, every default filled in.

``schema`` holds the sections and their defaults (the one place defaults live), ``load`` reads a
file with ``--set`` overrides, ``checks`` looks across keys, and ``problems`` words pydantic's
errors as one line per key, naming the file and the dotted key.
"""

from textlstm.recipe.load import RECIPE_LIMIT, apply_override, load_recipe, recipe_from_dict
from textlstm.recipe.schema import (
    AUTO_MIN_EPOCHS,
    SPACE_KINDS,
    SUBWORD_KINDS,
    DataConfig,
    ModelConfig,
    PretrainConfig,
    Recipe,
    SpaceEntry,
    TokenizerConfig,
    TrainConfig,
    TuneConfig,
    VocabConfig,
)

__all__ = [
    "AUTO_MIN_EPOCHS",
    "RECIPE_LIMIT",
    "SPACE_KINDS",
    "SUBWORD_KINDS",
    "DataConfig",
    "ModelConfig",
    "PretrainConfig",
    "Recipe",
    "SpaceEntry",
    "TokenizerConfig",
    "TrainConfig",
    "TuneConfig",
    "VocabConfig",
    "apply_override",
    "load_recipe",
    "recipe_from_dict",
]
