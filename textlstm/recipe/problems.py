"""The wording of pydantic's validation errors as one line per key: the file (or ``--set``), the
dotted key, what was expected, and the closest valid key for a typo."""

from __future__ import annotations

import difflib
import json
from typing import Any

from pydantic import BaseModel

from textlstm.errors import param
from textlstm.recipe.schema import Recipe

_TYPE_HINTS = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a table",
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
}


def describe(error: Any, raw: dict[str, Any], label: str, overridden: set[str]) -> tuple[str, str]:
    loc = _key_path(error["loc"], raw)
    key = ".".join(_shown(part) for part in loc)
    where = param("overrides") if key in overridden else label
    return key, f"{where}: {key}: {problem_of(error, raw, loc)}"


def _shown(part: str) -> str:
    """A key as the message shows it: quoted and escaped (as in TOML) when it is not printable
    text, so that a key holding a line break cannot break the message into two lines."""
    return part if part.isprintable() else json.dumps(part)


def problem_of(error: Any, raw: dict[str, Any], loc: list[str]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key{suggest(loc)}"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"unknown choice {_value_at(raw, loc)!r}; expected one of {expected}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{_value_at(raw, loc)!r} is out of range; {error['msg'].lower()}"
    if kind == "string_pattern_mismatch":
        return (
            f"{_value_at(raw, loc)!r} is not allowed; use letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    if kind == "value_error":
        return error["msg"].removeprefix("Value error, ")
    hint = _TYPE_HINTS.get(kind, error["msg"])
    return f"{hint}, got {_value_at(raw, loc)!r}"


def _key_path(loc: tuple[Any, ...], raw: dict[str, Any]) -> list[str]:
    """The error's dotted key: pydantic's loc without the union members it adds, except where
    the document itself has a key of that name (a top-level key ``"literal["``, say)."""
    node: Any = raw
    path = []
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif _is_union_tag(part):
            continue
        else:
            node = None
        path.append(str(part))
    return path


def _is_union_tag(part: Any) -> bool:
    # pydantic adds the union member it tried (e.g. 'str', "literal['none','balanced']") to locs
    return isinstance(part, str) and (
        part in {"str", "list[str]", "dict[str,float]"}
        or part.startswith(("literal[", "function-"))
    )


def _value_at(raw: dict[str, Any], loc: list[str]) -> Any:
    node: Any = raw
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def suggest(loc: list[str]) -> str:
    if not loc:
        return ""
    section: type[BaseModel] = Recipe
    for part in loc[:-1]:
        field = section.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        section = annotation
    names = [n for n in section.model_fields if n != "source"]
    close = difflib.get_close_matches(loc[-1], names, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f"; valid keys: {', '.join(names)}"
