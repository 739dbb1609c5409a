"""Tokenizers: text -> list of tokens, truncated to ``max_length``.

Every kind sits behind the same small interface (``__call__`` for one text, ``batch`` for many) and
is chosen from a closed dict by the recipe's ``[tokenizer] kind``; new kinds add an entry there.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

from textlstm.recipe import TokenizerConfig

# words (keeping inner apostrophes: don't, o'clock), numbers, and each other symbol on its own
WORD_PATTERN = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")


class Tokenizer(Protocol):
    max_length: int

    def __call__(self, text: str) -> list[str]: ...

    def batch(self, texts: Iterable[str]) -> list[list[str]]: ...


class RegexTokenizer:
    """Words, numbers and punctuation, by one compiled regular expression."""

    def __init__(self, lowercase: bool = True, max_length: int = 400) -> None:
        self.lowercase = lowercase
        self.max_length = max_length
        self._findall = WORD_PATTERN.findall

    def __call__(self, text: str) -> list[str]:
        return self._findall(text.lower() if self.lowercase else text)[: self.max_length]

    def batch(self, texts: Iterable[str]) -> list[list[str]]:
        findall, limit = self._findall, self.max_length
        if self.lowercase:
            return [findall(text.lower())[:limit] for text in texts]
        return [findall(text)[:limit] for text in texts]


class WhitespaceTokenizer(RegexTokenizer):
    """Splits on runs of white space only: for text that is already tokenized (e.g. SST-2)."""

    def __init__(self, lowercase: bool = True, max_length: int = 400) -> None:
        super().__init__(lowercase, max_length)
        self._findall = str.split  # type: ignore[assignment]


TOKENIZERS: dict[str, type[RegexTokenizer]] = {
    "regex": RegexTokenizer,
    "whitespace": WhitespaceTokenizer,
}


def build_tokenizer(cfg: TokenizerConfig) -> Tokenizer:
    return TOKENIZERS[cfg.kind](lowercase=cfg.lowercase, max_length=cfg.max_length)
