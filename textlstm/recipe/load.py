"""Reading a recipe: the TOML file, ``--set`` overrides, validation against the schema, and the
checks across keys; every problem found is collected and raised together, one line each, naming
the file and the dotted key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from textlstm.errors import RecipeError, param
from textlstm.files import MiB, read_bytes
from textlstm.recipe.checks import cross_checks, deep_copy, space_checks
from textlstm.recipe.problems import describe
from textlstm.recipe.schema import Recipe

RECIPE_LIMIT = 1 * MiB  # a recipe is a few hundred bytes; anything this large is the wrong file


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe; raises RecipeError with every problem found."""
    path = Path(path)
    label = str(path)
    try:
        raw_bytes = read_bytes(path, "recipe .toml file", RecipeError, RECIPE_LIMIT)
    except FileNotFoundError:
        raise RecipeError(f"{label}: recipe file not found") from None
    except IsADirectoryError:
        raise RecipeError(f"{label}: is a directory; give a recipe .toml file") from None
    except OSError as exc:
        raise RecipeError(f"{label}: cannot read recipe ({exc.strerror})") from None
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except UnicodeDecodeError:
        raise RecipeError(f"{label}: not UTF-8 text; save the recipe as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{label}: TOML syntax error: {exc}") from None
    return recipe_from_dict(raw, label, overrides)


def recipe_from_dict(
    raw: dict[str, Any], label: str = "<recipe>", overrides: list[str] | None = None
) -> Recipe:
    raw = deep_copy(raw)
    problems = [p for item in overrides or [] if (p := apply_override(raw, item, label))]
    overridden = {item.partition("=")[0].strip() for item in overrides or []}
    try:
        recipe = Recipe.model_validate({**raw, "source": label if label != "<recipe>" else ""})
    except ValidationError as exc:
        by_key: dict[str, str] = {}
        for error in exc.errors():
            key, line = describe(error, raw, label, overridden)
            by_key.setdefault(key, line)  # a union reports each member; the first says enough
        raise RecipeError(*problems, *by_key.values()) from None
    problems += cross_checks(recipe, label, overridden)
    if recipe.tune is not None:
        problems += space_checks(recipe, raw, label)
    if problems:
        raise RecipeError(*problems)
    return recipe


def apply_override(raw: dict[str, Any], item: str, label: str) -> str | None:
    """Apply one ``dotted.key=value`` override in place; returns a problem line or None.

    The value is read as a TOML value (``256``, ``true``, ``[1, 2]``, ``"x"``); anything that is not
    valid TOML is taken as a plain string, so ``--set data.dataset=imdb`` works unquoted.
    """
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
        return (
            f"{param('overrides', item)}: expected KEY=VALUE, e.g. "
            f"{param('overrides', 'model.hidden_size=256')}"
        )
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    parts = key.split(".")
    node: Any = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            return f"{param('overrides', key)}: '{part}' is not a section"
    node[parts[-1]] = value
    return None
