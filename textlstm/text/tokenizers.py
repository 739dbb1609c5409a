"""Word tokenizers: text -> list of tokens, truncated to ``max_length``.

Every word kind sits behind the same small interface (``batch`` for many texts, ``__call__`` for
one) and is chosen from a closed dict by the recipe's ``[tokenizer] kind``. Subword kinds (bpe,
wordpiece, unigram) are trained on data first and live in ``subword.py``; ``encoder.py`` puts
either kind together with its vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, TypeVar

from textlstm.errors import RecipeError
from textlstm.recipe import TokenizerConfig

# words (keeping inner apostrophes: don't, o'clock), numbers, and each other symbol on its own
WORD_PATTERN = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")
# the scripts written without spaces between words, as code point ranges: Han (CJK radicals,
# ideographs and their extensions, compatibility ideographs, 々〆〇 and the Suzhou numerals),
# kana (hiragana, katakana, their phonetic extensions and the half-width forms) and Hangul
# (jamo, compatibility jamo, syllables); the ``char`` kind makes each of their characters a token
CJK_RANGES = (
    (0x1100, 0x11FF), (0x2E80, 0x2FDF), (0x3005, 0x3007), (0x3021, 0x3029), (0x3038, 0x303B),
    (0x3040, 0x30FF), (0x3130, 0x318F), (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF),
    (0xA960, 0xA97F), (0xAC00, 0xD7AF), (0xD7B0, 0xD7FF), (0xF900, 0xFAFF), (0xFF66, 0xFF9F),
    (0x20000, 0x3134F),
)  # fmt: skip
CJK = "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in CJK_RANGES)
# each CJK character alone; runs of other word characters (Latin letters, digits) stay words,
# with inner apostrophes, so mixed text ("用iPhone拍的") keeps its Latin words whole
CHAR_PATTERN = re.compile(rf"[{CJK}]|[^\W{CJK}]+(?:['’][^\W{CJK}]+)*|[^\w\s]")
TAG_PATTERN = re.compile(r"<[^<>]{0,200}>")

S = TypeVar("S", bound=Sequence[Any])


class Tokenizer(Protocol):
    max_length: int

    def __call__(self, text: str) -> list[str]: ...

    def batch(self, texts: Iterable[str]) -> list[list[str]]: ...


def truncate(tokens: S, limit: int, mode: str) -> S:
    """Keep ``limit`` tokens: the first ones (head), the last ones (tail) or half of each."""
    if len(tokens) <= limit:
        return tokens
    if mode == "head":
        return tokens[:limit]  # type: ignore[return-value]
    if mode == "tail":
        return tokens[len(tokens) - limit :]  # type: ignore[return-value]
    head = limit // 2
    tail = tokens[len(tokens) - (limit - head) :]
    if isinstance(tokens, list):
        return tokens[:head] + list(tail)  # type: ignore[return-value]
    import numpy as np

    return np.concatenate([tokens[:head], tail])  # type: ignore[return-value]


# detokenize = "ptb": the space before a clitic goes, and the bracket and quote tokens become the
# characters they stand for (the same rules as tokenizers' normalizers in subword.py)
PTB_CLITIC = r"(?i) (?=(?:n't|'s|'re|'ve|'ll|'d|'m)(?![\w'’]))"
PTB_SYMBOLS = {
    "-lrb-": "(", "-rrb-": ")", "-lsb-": "[", "-rsb-": "]", "-lcb-": "{", "-rcb-": "}",
    "``": '"', "''": '"',
}  # fmt: skip
PTB_SYMBOL = r"(?i)-[lr][rsc]b-|``|''"
_PTB_CLITIC, _PTB_SYMBOL = re.compile(PTB_CLITIC), re.compile(PTB_SYMBOL)


def detokenize_ptb(text: str) -> str:
    """Penn Treebank-tokenized text back as written: ``it does n't -LRB- sic -RRB-`` ->
    ``it doesn't ( sic )``."""
    text = _PTB_CLITIC.sub("", text)
    return _PTB_SYMBOL.sub(lambda m: PTB_SYMBOLS[m.group(0).lower()], text)


def clean(texts: Iterable[str], cfg: TokenizerConfig) -> Iterable[str]:
    """The text-level steps every kind shares: HTML tags out, Penn Treebank tokens put back
    together (``detokenize``), then lower case."""
    if cfg.strip_html:
        texts = (TAG_PATTERN.sub(" ", text) for text in texts)
    if cfg.detokenize == "ptb":
        texts = (detokenize_ptb(text) for text in texts)
    if cfg.lowercase:
        texts = (text.lower() for text in texts)
    return texts


class RegexTokenizer:
    """Words, numbers and punctuation, by one compiled regular expression."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        self.cfg = cfg
        self.max_length = cfg.max_length
        self._split = WORD_PATTERN.findall

    def __call__(self, text: str) -> list[str]:
        return self.batch([text])[0]

    def batch(self, texts: Iterable[str]) -> list[list[str]]:
        split, limit, mode = self._split, self.max_length, self.cfg.truncation
        if mode == "head":  # the common case, kept to one slice
            return [split(text)[:limit] for text in clean(texts, self.cfg)]
        return [truncate(split(text), limit, mode) for text in clean(texts, self.cfg)]

    def scan(self, texts: Sequence[str]) -> Any:
        """The same tokens as ``batch``, found for all texts at once (see ``scan.py``)."""
        from textlstm.text.scan import Scan

        return Scan(list(clean(texts, self.cfg)), whitespace_only=self._split is str.split)


class CharTokenizer(RegexTokenizer):
    """Each Han, kana or Hangul character is a token; other text as the ``regex`` kind splits it:
    for languages written without spaces between words (Chinese, Japanese)."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__(cfg)
        self._split = CHAR_PATTERN.findall

    def scan(self, texts: Sequence[str]) -> Any:
        from textlstm.text.scan import Scan

        return Scan(list(clean(texts, self.cfg)), whitespace_only=False, cjk_alone=True)


class JiebaTokenizer(RegexTokenizer):
    """Chinese word segmentation by ``jieba`` (its default dictionary and HMM for unseen words);
    white space is dropped. An optional dependency: ``pip install 'textlstm[chinese]'``."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__(cfg)
        self._jieba = load_jieba()

    scan = None  # type: ignore[assignment]  # a dictionary and a model, not a character rule

    def batch(self, texts: Iterable[str]) -> list[list[str]]:
        cut, limit, mode = self._jieba.lcut, self.max_length, self.cfg.truncation
        return [
            truncate([w for w in cut(text) if not w.isspace()], limit, mode)
            for text in clean(texts, self.cfg)
        ]


def load_jieba() -> Any:
    """jieba's default tokenizer, its dictionary loaded now (once per process) and quietly."""
    try:
        import jieba
    except ImportError:
        raise RecipeError(
            "tokenizer.kind: 'jieba' needs the jieba package: pip install 'textlstm[chinese]' "
            "(or pip install jieba), or use tokenizer.kind = 'char'"
        ) from None
    import logging

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


class WhitespaceTokenizer(RegexTokenizer):
    """Splits on runs of white space only: for text that is already tokenized (e.g. SST-2)."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__(cfg)
        self._split = str.split  # type: ignore[assignment]


class SpacyTokenizer(RegexTokenizer):
    """spaCy's rule-based tokenizer for ``language`` (``spacy.blank``: no model to download)."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__(cfg)
        self.nlp = blank_spacy(cfg.language)

    scan = None  # type: ignore[assignment]  # spaCy's rules are not a one-character rule

    def batch(self, texts: Iterable[str]) -> list[list[str]]:
        # case is kept for spaCy's exception rules ("Don't" -> "Do", "n't") and lowered after
        texts = clean(texts, self.cfg.model_copy(update={"lowercase": False}))
        lower, limit, mode = self.cfg.lowercase, self.max_length, self.cfg.truncation
        out = []
        for doc in self.nlp.pipe(texts, batch_size=256):
            words = [t.lower_ if lower else t.text for t in doc if not t.is_space]
            out.append(truncate(words, limit, mode))
        return out


def blank_spacy(language: str) -> Any:
    import spacy

    try:
        return spacy.blank(language)
    except (ImportError, ValueError, KeyError):
        raise RecipeError(
            f"tokenizer.language: spaCy has no language '{language}'; use an ISO "
            "code spaCy knows, e.g. en, de, fr, es, nl, it, pt"
        ) from None


TOKENIZERS: dict[str, type[RegexTokenizer]] = {
    "regex": RegexTokenizer,
    "whitespace": WhitespaceTokenizer,
    "char": CharTokenizer,
    "jieba": JiebaTokenizer,
    "spacy": SpacyTokenizer,
}


def build_tokenizer(cfg: TokenizerConfig) -> Tokenizer:
    """A word tokenizer; subword kinds need training data, see ``encoder.fit_encoder``."""
    if cfg.kind not in TOKENIZERS:
        raise ValueError(f"{cfg.kind} is a subword kind: build it with encoder.fit_encoder")
    return TOKENIZERS[cfg.kind](cfg)
