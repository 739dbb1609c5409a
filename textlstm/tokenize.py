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
TAG_PATTERN = re.compile(r"<[^<>]{0,200}>")


class Tokenizer(Protocol):
    max_length: int

    def __call__(self, text: str) -> list[str]: ...

    def batch(self, texts: Iterable[str]) -> list[list[str]]: ...


class RegexTokenizer:
    """Words, numbers and punctuation, by one compiled regular expression."""

    def __init__(self, lowercase: bool = True, max_length: int = 400, truncation: str = "head",
                 strip_html: bool = False) -> None:
        self.lowercase = lowercase
        self.max_length = max_length
        self.truncation = truncation
        self.strip_html = strip_html
        self._findall = WORD_PATTERN.findall

    def __call__(self, text: str) -> list[str]:
        return self.batch([text])[0]

    def batch(self, texts: Iterable[str]) -> list[list[str]]:
        findall, limit, cut = self._findall, self.max_length, self._cut
        if self.strip_html:
            texts = (TAG_PATTERN.sub(" ", text) for text in texts)
        if self.lowercase:
            texts = (text.lower() for text in texts)
        if self.truncation == "head":  # the common case, kept to one slice
            return [findall(text)[:limit] for text in texts]
        return [cut(findall(text)) for text in texts]

    def _cut(self, tokens: list[str]) -> list[str]:
        limit = self.max_length
        if len(tokens) <= limit:
            return tokens
        if self.truncation == "tail":
            return tokens[-limit:]
        head = limit // 2
        return tokens[:head] + tokens[len(tokens) - (limit - head):]


class WhitespaceTokenizer(RegexTokenizer):
    """Splits on runs of white space only: for text that is already tokenized (e.g. SST-2)."""

    def __init__(self, lowercase: bool = True, max_length: int = 400, truncation: str = "head",
                 strip_html: bool = False) -> None:
        super().__init__(lowercase, max_length, truncation, strip_html)
        self._findall = str.split  # type: ignore[assignment]


TOKENIZERS: dict[str, type[RegexTokenizer]] = {
    "regex": RegexTokenizer,
    "whitespace": WhitespaceTokenizer,
}


def build_tokenizer(cfg: TokenizerConfig) -> Tokenizer:
    return TOKENIZERS[cfg.kind](lowercase=cfg.lowercase, max_length=cfg.max_length,
                                truncation=cfg.truncation, strip_html=cfg.strip_html)
