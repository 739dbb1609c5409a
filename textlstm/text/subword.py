"""Subword tokenizers (bpe, wordpiece, unigram), trained on the train split with Hugging Face
``tokenizers`` and saved in that library's own JSON format.

Text is cleaned by the tokenizer's own normalizers (HTML tags, lower case) and split into words by
the same pattern as the ``regex`` kind before the subword model sees it, so a subword run and a
word run see the same words. ``<pad>`` and ``<unk>`` are trained in as ids 0 and 1.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from textlstm.errors import CheckpointError
from textlstm.files import check_file
from textlstm.recipe import TokenizerConfig
from textlstm.text.tokenizers import (
    PTB_CLITIC,
    PTB_SYMBOLS,
    TAG_PATTERN,
    WORD_PATTERN,
    truncate,
)
from textlstm.text.vocab import PAD, UNK, UNK_ID, VOCAB_LIMIT, Ragged, Vocab, split_by_lengths


def _models() -> dict[str, tuple[Any, Any]]:
    from tokenizers import models, trainers

    return {
        "bpe": (models.BPE, trainers.BpeTrainer),
        "wordpiece": (models.WordPiece, trainers.WordPieceTrainer),
        "unigram": (models.Unigram, trainers.UnigramTrainer),
    }


CHUNK = 20_000  # texts encoded at a time


def train_subword(cfg: TokenizerConfig, texts: Sequence[str]) -> Any:
    """A new ``tokenizers.Tokenizer`` of ``cfg.kind`` trained on ``texts``."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers

    model_cls, trainer_cls = _models()[cfg.kind]
    options: dict[str, Any] = {
        "vocab_size": cfg.vocab_size,
        "special_tokens": [PAD, UNK],
        "show_progress": False,
    }
    if cfg.kind == "unigram":
        model, options["unk_token"] = model_cls(), UNK
    else:
        model, options["min_frequency"] = model_cls(unk_token=UNK), cfg.min_frequency
    tokenizer = Tokenizer(model)
    steps: list[Any] = (
        [normalizers.Replace(Regex(TAG_PATTERN.pattern), " ")] if cfg.strip_html else []
    )
    if cfg.detokenize == "ptb":
        steps += [normalizers.Replace(Regex(PTB_CLITIC), "")]
        steps += [normalizers.Replace(Regex(f"(?i){k}"), v) for k, v in PTB_SYMBOLS.items()]
    steps += [normalizers.Lowercase()] if cfg.lowercase else []
    if steps:
        tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Split(
        Regex(WORD_PATTERN.pattern), behavior="removed", invert=True
    )
    tokenizer.train_from_iterator(texts, trainer_cls(**options), length=len(texts))
    return tokenizer


def load_subword(path: str | Path) -> Any:
    from tokenizers import Tokenizer

    try:
        check_file(path, "tokenizer .json file", CheckpointError, VOCAB_LIMIT)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: tokenizer file not found") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a folder; give a tokenizer .json file") from None
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - the Rust side raises plain Exception with its own message
        raise CheckpointError(
            f"{path}: not a Hugging Face tokenizer JSON file ({str(exc).splitlines()[0][:200]})"
        ) from None
    if tokenizer.token_to_id(PAD) != 0 or tokenizer.token_to_id(UNK) != UNK_ID:
        raise CheckpointError(
            f"{path}: this tokenizer does not have <pad> = 0 and <unk> = 1; "
            "build it with `textlstm vocab`"
        )
    return tokenizer


def subword_kind(tokenizer: Any) -> str:
    return {"BPE": "bpe", "WordPiece": "wordpiece", "Unigram": "unigram"}.get(
        type(tokenizer.model).__name__, "unknown"
    )


def subword_vocab(tokenizer: Any) -> Vocab:
    index = tokenizer.get_vocab(with_added_tokens=True)
    tokens = sorted(index, key=index.__getitem__)
    if [index[t] for t in tokens] != list(range(len(tokens))):
        raise CheckpointError("the subword tokenizer's ids are not 0..n-1")
    return Vocab(tokens)


class SubwordTokenizer:
    """Wraps a trained ``tokenizers.Tokenizer``: subword strings (``batch``) or ids (``encode``)."""

    def __init__(self, cfg: TokenizerConfig, tokenizer: Any) -> None:
        self.cfg = cfg
        self.max_length = cfg.max_length
        self.hf = tokenizer

    def __call__(self, text: str) -> list[str]:
        return self.batch([text])[0]

    def batch(self, texts: Sequence[str]) -> list[list[str]]:
        limit, mode = self.max_length, self.cfg.truncation
        return [
            truncate(e.tokens, limit, mode)
            for e in self.hf.encode_batch(list(texts), add_special_tokens=False)
        ]

    def encode(self, texts: Sequence[str]) -> Ragged:
        """Ids per text (int32, views of one array); the Rust side tokenizes each chunk of texts
        on all cores, and a chunk at a time is held."""
        chunks = (texts[lo : lo + CHUNK] for lo in range(0, len(texts), CHUNK))
        return Ragged.join(self._encode_chunk(chunk) for chunk in chunks)

    def _encode_chunk(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        encodings = self.hf.encode_batch(list(texts), add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encodings), np.int64, len(encodings))
        flat = np.fromiter(
            itertools.chain.from_iterable(e.ids for e in encodings), np.int32, int(lengths.sum())
        )
        limit, mode = self.max_length, self.cfg.truncation
        unk = np.array([UNK_ID], dtype=np.int32)
        kept = [
            truncate(ids, limit, mode) if len(ids) else unk  # type: ignore[type-var]
            for ids in split_by_lengths(flat, lengths)
        ]
        sizes = np.fromiter(map(len, kept), np.int64, len(kept))
        return sizes, np.concatenate(kept) if kept else np.zeros(0, np.int32)
