"""What a language model reads: the recipe's training texts, its ``[pretrain] unlabelled`` texts
(splits of the same dataset, or text files with a text per line), and the validation texts that
measure its perplexity; with the tokenizer and vocabulary fitted on all the texts it trains on.

The classifier truncates texts to ``tokenizer.max_length``; the language model reads them whole.
The test split is never read. A recipe with ``[model] encoder`` starts from an earlier language
model and keeps its tokenizer and vocabulary (ULMFiT's second stage: the language model
fine-tuned on the target task's text); nothing is fitted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from textlstm.data import column, load_raw, load_splits
from textlstm.errors import DataError, RecipeError
from textlstm.files import read_bytes
from textlstm.lm.streams import join
from textlstm.recipe import Recipe
from textlstm.text.encoder import Encoder, fit_encoder, read_vocab_file
from textlstm.text.subword import SubwordTokenizer
from textlstm.text.tokenizers import build_tokenizer
from textlstm.training.transfer import with_encoder

WHOLE = 100_000  # tokens kept per text when the language model reads it: all of them
TEXT_FILE_LIMIT = 4 * 1024**3


@dataclass
class Corpus:
    encoder: Encoder  # as the classifier will use it: the recipe's own max_length
    train: Sequence[np.ndarray]  # every training text, whole
    heldout: np.ndarray  # the validation texts as one stream, up to heldout_tokens
    source: str
    notes: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return int(sum(len(ids) for ids in self.train))


def prepare_corpus(recipe: Recipe, data_dir: str | Path | None = None) -> Corpus:
    base = Path(recipe.source).parent if recipe.source else None
    start = with_encoder(recipe, language_model=True)  # a contradiction fails before any data
    splits = load_splits(recipe.data, data_dir, recipe.seed, base)
    labelled = column(splits["train"], "text")
    extra, notes = [], list(splits.notes)
    for entry in recipe.pretrain.unlabelled:
        texts = unlabelled_texts(entry, recipe, data_dir)
        notes.append(f"unlabelled: {len(texts):,} texts from {entry}")
        extra.extend(texts)
    texts = labelled + extra
    if start.vocab.path is not None and recipe.model.encoder is not None:
        encoder = read_vocab_file(Path(start.vocab.path), start.tokenizer)
        notes.append(
            f"the tokenizer and the {len(encoder.vocab):,}-word vocabulary are those of the "
            f"language model {recipe.model.encoder}"
        )
    else:
        encoder, _ = fit_encoder(recipe.tokenizer, recipe.vocab, texts)
    reader = whole_texts(encoder)
    train = reader.encode(texts)
    heldout = join(reader.encode(column(splits["validation"], "text")))
    return Corpus(encoder, train, heldout[: recipe.pretrain.heldout_tokens], splits.source, notes)


def whole_texts(encoder: Encoder) -> Encoder:
    """The same tokenizer and vocabulary, keeping every token of a text."""
    cfg = encoder.cfg.model_copy(update={"max_length": WHOLE, "truncation": "head"})
    if isinstance(encoder.tokenizer, SubwordTokenizer):
        return Encoder(cfg, encoder.vocab, SubwordTokenizer(cfg, encoder.tokenizer.hf))
    return Encoder(cfg, encoder.vocab, build_tokenizer(cfg))


def unlabelled_texts(entry: str, recipe: Recipe, data_dir: str | Path | None) -> list[str]:
    """A split of ``data.dataset`` by name, else a text file (relative to the recipe)."""
    base = Path(recipe.source).parent if recipe.source else None
    raw, source, _, _ = load_raw(recipe.data.dataset, recipe.data.config, data_dir, base)
    if entry in raw:
        return _join_columns(raw[entry], recipe.data.text, source, entry)
    path = Path(recipe.resolve_path(entry))
    if not path.is_file():
        where = recipe.source or "<recipe>"
        raise RecipeError(
            f"{where}: pretrain.unlabelled: '{entry}' is neither a split of {source} "
            f"(it has {', '.join(raw)}) nor a text file"
        )
    return _text_file(path)


def _join_columns(ds: object, text: str | list[str], source: str, split: str) -> list[str]:
    names = [text] if isinstance(text, str) else text
    missing = [n for n in names if n not in getattr(ds, "column_names", [])]
    if missing:
        raise DataError(
            f"{source}: the '{split}' split has no column '{missing[0]}' (data.text); "
            "pretrain.unlabelled needs the text columns the training split has"
        )
    parts: Sequence[list[str]] = [column(ds, n) for n in names]
    return [" ".join(str(p or "") for p in row) for row in zip(*parts)]


def _text_file(path: Path) -> list[str]:
    raw = read_bytes(path, "text file", DataError, TEXT_FILE_LIMIT)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not UTF-8 text; save the file as UTF-8") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{path}: the file has no text; give a text per line")
    return lines
