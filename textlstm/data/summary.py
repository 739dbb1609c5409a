"""What ``textlstm check`` and ``textlstm vocab`` report about a recipe's data, without training."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from textlstm import settings
from textlstm.data.labels import label_counts
from textlstm.data.splits import load_splits, texts_of
from textlstm.errors import CheckpointError
from textlstm.recipe import Recipe
from textlstm.text.cache import Options, preprocess, text_settings, vectors_file, vocab_filename
from textlstm.text.encoder import token_lengths, write_vocab_file
from textlstm.text.tokenizers import build_tokenizer
from textlstm.text.vocab import PAD_ID, UNK_ID, Ragged

PERCENTILES = (50, 90, 95, 99, 100)


@dataclass
class SplitSummary:
    name: str
    rows: int
    label_counts: dict[str, int]
    length_percentiles: dict[int, int]  # tokens before truncation
    truncated_share: float  # share of texts longer than tokenizer.max_length


@dataclass
class DataSummary:
    source: str
    labels: list[str]
    splits: list[SplitSummary]
    notes: list[str] = field(default_factory=list)
    unit: str = "tokens"  # subword kinds are measured in words: their tokenizer is not trained yet
    multi_label: bool = False  # label counts then count every label of a row


def summarize(recipe: Recipe, data_dir: str | Path | None = None) -> DataSummary:
    base = Path(recipe.source).parent if recipe.source else None
    splits = load_splits(recipe.data, data_dir, recipe.seed, base)
    cfg = recipe.tokenizer.model_copy(update={"max_length": 10**9})
    unit = "words" if cfg.subword else "tokens"
    untruncated = build_tokenizer(cfg.model_copy(update={"kind": "regex"}) if cfg.subword else cfg)
    limit = recipe.tokenizer.max_length
    out = []
    for name in splits.names:
        ds = splits[name]
        lengths = token_lengths(untruncated, texts_of(ds))
        counts = label_counts(ds, len(splits.labels))
        out.append(
            SplitSummary(
                name,
                len(ds),
                dict(zip(splits.labels, counts)),
                {p: int(np.percentile(lengths, p)) for p in PERCENTILES},
                float((lengths > limit).mean()),
            )
        )
    return DataSummary(splits.source, splits.labels, out, splits.notes, unit, splits.multi_label)


@dataclass
class VocabSummary:
    path: Path  # the file in vocab/ (or the pinned file)
    written: bool  # False when that file was already there (or is pinned)
    kind: str
    size: int
    train_tokens: int
    validation_oov: float  # share of validation tokens that map to <unk>
    top: list[tuple[str, int]]  # most frequent training tokens with their counts
    messages: list[str] = field(default_factory=list)


def build_vocabulary(
    recipe: Recipe,
    data_dir: str | Path | None = None,
    options: Options | None = None,
    top: int = 20,
) -> VocabSummary:
    """Build (or reuse) the recipe's vocabulary and keep it in ``options.vocab_dir``."""
    options = options or Options()
    base = Path(recipe.source).parent if recipe.source else None
    text = text_settings(recipe)
    vectors_file(text)
    splits = load_splits(recipe.data, data_dir, recipe.seed, base)
    texts = {name: texts_of(splits[name]) for name in ("train", "validation")}
    messages = list(splits.notes)
    done = preprocess(text, texts, options, messages)
    vocab = done.encoder.vocab
    if recipe.vocab.path is not None:
        path, written = Path(done.vocab_origin), False
    else:
        folder = options.vocab_dir or settings.vocab_dir()
        path = folder / vocab_filename(text, done.vocab_key)
        written = not path.is_file()
        if written:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                write_vocab_file(done.encoder, path, recipe=recipe.name, key=done.vocab_key)
            except OSError as exc:
                raise CheckpointError(
                    f"{folder}: cannot write the vocabulary ({exc.strerror})"
                ) from None
    counts = _id_counts(done.ids["train"], len(vocab))
    val = _id_counts(done.ids["validation"], len(vocab))
    order = [int(i) for i in np.argsort(-counts, kind="stable") if i != PAD_ID][:top]
    return VocabSummary(
        path,
        written,
        recipe.tokenizer.kind,
        len(vocab),
        int(counts.sum()),
        float(val[UNK_ID] / max(val.sum(), 1)),
        [(vocab.tokens[i], int(counts[i])) for i in order if counts[i]],
        messages,
    )


def _id_counts(ids: Ragged, size: int) -> np.ndarray:
    return np.bincount(ids.flat(), minlength=size)
