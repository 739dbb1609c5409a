"""Checks across keys that a field's own type cannot express: a searched key that is no recipe
key, a setting the chosen kind does not use, folds that do not fit, a test split that would pick
its own epochs. Each returns problem lines; loading raises them together."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from textlstm.errors import param
from textlstm.recipe.problems import problem_of, suggest
from textlstm.recipe.schema import SUBWORD_KINDS, DataConfig, ModelConfig, Recipe

_UNTUNABLE = ("name", "data", "tune", "pretrain")


def space_checks(recipe: Recipe, raw: dict[str, Any], label: str) -> list[str]:
    """Every searched key must be a recipe key, and every value it can take a valid one:
    a typo in the space fails here, before the first trial."""
    problems = []
    assert recipe.tune is not None
    for key, entry in recipe.tune.space.items():
        where = f"{label}: tune.space.{key}"
        parts = key.split(".")
        if parts[0] in _UNTUNABLE or len(parts) != 2:
            problems.append(
                f"{where}: not a tunable key; use a [tokenizer], [vocab], [model] or "
                '[train] key such as "train.lr"'
            )
            continue
        section = Recipe.model_fields.get(parts[0])
        annotation = getattr(section, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            problems.append(f"{where}: unknown section '{parts[0]}'{suggest(parts[:1])}")
            continue
        if parts[1] not in annotation.model_fields:
            problems.append(f"{where}: unknown recipe key{suggest(parts)}")
            continue
        samples = entry.values if entry.kind == "choice" else list(entry.values)
        for value in samples:
            trial = deep_copy(raw)
            trial.pop("tune", None)
            trial.setdefault(parts[0], {})[parts[1]] = value
            try:
                Recipe.model_validate({**trial, "source": ""})
            except ValidationError as exc:
                error = next(
                    (e for e in exc.errors() if [str(x) for x in e["loc"]][:2] == parts),
                    exc.errors()[0],
                )
                problem = problem_of(error, trial, parts)
                if not problem.startswith((f"{value!r} ", f"{value} ")):
                    problem = f"{value!r} is not a valid value: {problem}"
                problems.append(f"{where}: {problem}")
                break
    return problems


# keys that only mean something for some tokenizer kinds: (section, key) -> kinds that use it
_KIND_KEYS = {
    ("tokenizer", "language"): ("spacy",),
    ("tokenizer", "vocab_size"): SUBWORD_KINDS,
    ("tokenizer", "min_frequency"): ("bpe", "wordpiece"),
}
# [vocab] min_freq and max_size are not in this list although subword kinds do not read them:
# every bundled recipe sets them, and `--set tokenizer.kind="bpe"` must work on any recipe


# model keys that mean nothing while their part is off: (the keys, whether it is off, the line)
_SWITCHED = (
    (
        ("ngram_dim", "ngram_buckets", "ngram_dropout", "ngram_combiner"),
        lambda m: m.ngrams == 0,
        "needs model.ngrams = 1 or 2 (the n-gram branch is off)",
    ),
    (
        ("wide_ngrams", "wide_buckets"),
        lambda m: m.wide == "none",
        "needs model.wide = 'nblr' (the linear model is off)",
    ),
)


def _model_switches(model: ModelConfig, label: str, overridden: set[str]) -> list[str]:
    """A key of a part that is off, set away from its default: one line each."""
    problems = []
    for keys, off, line in _SWITCHED:
        if not off(model):
            continue
        for key in keys:
            if getattr(model, key) != ModelConfig.model_fields[key].default:
                where = param("overrides") if f"model.{key}" in overridden else label
                problems.append(f"{where}: model.{key}: {line}")
    return problems


def _fold_checks(data: DataConfig, label: str, overridden: set[str]) -> list[str]:
    """data.folds and data.fold: a fold that exists, and no test split carved beside them."""

    def line(key: str, problem: str) -> str:
        where = param("overrides") if f"data.{key}" in overridden else label
        return f"{where}: data.{key}: {problem}"

    if data.folds == 0:
        return [line("fold", "needs data.folds (the number of folds)")] if data.fold else []
    if data.folds == 1:
        return [line("folds", "give 2 or more folds (0: no cross-validation)")]
    problems = []
    if not 1 <= data.fold <= data.folds:
        problems.append(line("fold", f"give a fold from 1 to {data.folds} (data.folds)"))
    if data.test_fraction > 0:
        problems.append(
            line("test_fraction", "the folds give the test split; remove one of the two")
        )
    return problems


def cross_checks(recipe: Recipe, label: str, overridden: set[str]) -> list[str]:
    """Keys that are valid alone but contradict each other. A key left at its default never
    counts (a resolved recipe, as saved in a run folder, spells out every default)."""
    problems = []
    kind = recipe.tokenizer.kind
    for (section, key), kinds in _KIND_KEYS.items():
        part = getattr(recipe, section)
        if kind in kinds or getattr(part, key) == type(part).model_fields[key].default:
            continue
        dotted = f"{section}.{key}"
        where = param("overrides") if dotted in overridden else label
        problems.append(
            f"{where}: {dotted}: not used by tokenizer.kind = '{kind}' (only by "
            f"{', '.join(kinds)}); remove it or change tokenizer.kind"
        )
    problems += _model_switches(recipe.model, label, overridden)
    problems += _fold_checks(recipe.data, label, overridden)
    vocab = recipe.vocab
    if recipe.model.encoder is not None:
        for key in ("path", "vectors"):
            if getattr(vocab, key) is not None:
                where = param("overrides") if f"vocab.{key}" in overridden else label
                problems.append(
                    f"{where}: vocab.{key}: model.encoder gives the vocabulary and the "
                    "embedding (the language model's); remove one of the two"
                )
    for key in ("vectors_only", "freeze_embeddings"):
        if getattr(vocab, key) and vocab.vectors is None:
            where = param("overrides") if f"vocab.{key}" in overridden else label
            problems.append(
                f"{where}: vocab.{key}: needs vocab.vectors (a pretrained vectors file)"
            )
    if vocab.vectors_only and vocab.path is not None:
        problems.append(
            f"{label}: vocab.vectors_only: a pinned vocab.path is used as it is; "
            "remove one of the two"
        )
    data = recipe.data
    if data.validation_split == data.test_split:
        key = "data.test_split" if "data.test_split" in overridden else "data.validation_split"
        where = param("overrides") if key in overridden else label
        problems.append(
            f"{where}: data.validation_split and data.test_split are both "
            f"'{data.test_split}': the test split would pick the epochs it is scored on; name a "
            'split the data lacks (validation_split = "carved") to carve validation from train'
        )
    return problems


def deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [deep_copy(v) for v in value]
    return value
