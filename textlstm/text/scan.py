"""Vectorised word scanning: many texts -> token ids with numpy, no Python object per token.

The ``regex`` kind's rule (``tokenize.WORD_PATTERN``: runs of word characters joined by inner
apostrophes, and every other non-space character on its own) and the ``whitespace`` kind's rule
(``str.split``) only ever look at one character and its two neighbours, so both can be applied to
a whole batch of texts at once: classify every code point with a lookup table, mark where tokens
start and end, and give each token a 64-bit polynomial hash from prefix sums. Vocabulary lookup is
then a binary search over the vocabulary's hashes. ``tokenizers.py`` keeps the plain regex version,
and the tests hold the two to the same output.

Creating one Python string per token is what limits the regex version (about 280 ns per token
here); this path makes none, except one per distinct token when counting a vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SPACE, WORD, APOSTROPHE, OTHER = 0, 1, 2, 3
APOSTROPHES = ("'", "’")
_BASE = np.uint64(0x100000001B3)  # an odd multiplier: invertible modulo 2**64
_BASE_INV = np.uint64(pow(int(_BASE), -1, 2**64))
_LENGTH_MIX = np.uint64(0x9E3779B97F4A7C15)
_table: np.ndarray | None = None
_cjk_table: np.ndarray | None = None
_powers = np.ones(1, dtype=np.uint64)
_inverse = np.ones(1, dtype=np.uint64)


def _classify(chars: str) -> np.ndarray:
    return np.fromiter(
        (
            SPACE
            if c.isspace()
            else WORD
            if c.isalnum() or c == "_"
            else APOSTROPHE
            if c in APOSTROPHES
            else OTHER
            for c in chars
        ),
        dtype=np.uint8,
        count=len(chars),
    )


def classes(codepoints: np.ndarray) -> np.ndarray:
    """Character class of each code point, as Python's ``re`` and ``str.split`` see it."""
    global _table
    if _table is None:  # the Basic Multilingual Plane once (~15 ms); rarer planes as they come
        _table = _classify("".join(map(chr, range(0x10000))))
    if not len(codepoints) or codepoints.max() <= 0xFFFF:
        return _table[codepoints]
    out = _table[np.minimum(codepoints, 0xFFFF)]
    astral = codepoints > 0xFFFF
    if astral.any():
        found = np.unique(codepoints[astral])
        lookup = _classify("".join(map(chr, found.tolist())))
        out[astral] = lookup[np.searchsorted(found, codepoints[astral])]
    return out


def cjk(codepoints: np.ndarray) -> np.ndarray:
    """Whether each code point is Han, kana or Hangul (``tokenizers.CJK_RANGES``)."""
    global _cjk_table
    from textlstm.text.tokenizers import CJK_RANGES

    if _cjk_table is None:  # one flag per code point up to the last range's end
        _cjk_table = np.zeros(CJK_RANGES[-1][1] + 2, dtype=bool)
        for lo, hi in CJK_RANGES:
            _cjk_table[lo : hi + 1] = True
    return _cjk_table[np.minimum(codepoints, len(_cjk_table) - 1)]


def warm_up(longest: int) -> None:
    """Build the lookup tables once, before worker processes fork and inherit them."""
    classes(np.zeros(1, dtype=np.uint32))
    cjk(np.zeros(1, dtype=np.uint32))
    _power_tables(longest)


def _power_tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    global _powers, _inverse
    if len(_powers) < n:
        size = max(n, 2 * len(_powers))
        _powers = np.concatenate([[np.uint64(1)], np.cumprod(np.full(size - 1, _BASE))])
        _inverse = np.concatenate([[np.uint64(1)], np.cumprod(np.full(size - 1, _BASE_INV))])
    return _powers[:n], _inverse[:n]


def _hashes(codepoints: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Hash of each span: sum of (code point + 1) * BASE**(offset in the span), mixed with its
    length; the same characters give the same hash wherever they are."""
    powers, inverse = _power_tables(len(codepoints))
    prefix = np.zeros(len(codepoints) + 1, dtype=np.uint64)
    terms = codepoints.astype(np.uint64)
    terms += np.uint64(1)
    terms *= powers
    np.cumsum(terms, out=prefix[1:])
    return (prefix[ends] - prefix[starts]) * inverse[starts] ^ (ends - starts).astype(
        np.uint64
    ) * _LENGTH_MIX


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def hash_strings(strings: Sequence[str]) -> np.ndarray:
    """The hash each whole string gets as a token (for vocabulary lookup tables)."""
    if not strings:
        return np.zeros(0, dtype=np.uint64)
    lengths = np.fromiter(map(len, strings), np.int64, len(strings))
    ends = np.cumsum(lengths)
    return _hashes(_codepoints("".join(strings)), ends - lengths, ends)


class Scan:
    """Token spans of a batch of (already cleaned) texts, joined by newlines."""

    def __init__(
        self, texts: Sequence[str], whitespace_only: bool, cjk_alone: bool = False
    ) -> None:
        self.joined = "\n".join(texts)  # the separator is a space: no token crosses two texts
        codepoints = _codepoints(self.joined)
        kind = classes(codepoints)
        if cjk_alone:  # the char kind: a Han, kana or Hangul character is a token on its own
            kind[cjk(codepoints)] = OTHER
        if whitespace_only:
            word = kind != SPACE
            other = np.zeros_like(word)
        else:
            # an apostrophe between two word characters belongs to the word (don't, o'clock)
            inner = np.flatnonzero(kind[1:-1] == APOSTROPHE) + 1
            inner = inner[(kind[inner - 1] == WORD) & (kind[inner + 1] == WORD)]
            kind[inner] = WORD
            word, other = kind == WORD, kind >= APOSTROPHE
        # a token starts where a word starts or at any other symbol, and ends likewise; both
        # come out in text order and pair up one to one
        word_before = np.zeros_like(word)
        word_before[1:] = word[:-1]
        word_after = np.zeros_like(word)
        word_after[:-1] = word[1:]
        self.starts = np.flatnonzero((word & ~word_before) | other)
        self.ends = np.flatnonzero((word & ~word_after) | other) + 1
        self.hashes = _hashes(codepoints, self.starts, self.ends)
        text_ends = np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)) + 1) - 1
        bounds = np.searchsorted(self.starts, text_ends)  # few queries into the sorted starts
        self.counts = np.diff(bounds, prepend=0)  # tokens per text

    def counter(self, mask: np.ndarray) -> dict[str, int]:
        """Distinct tokens among ``mask`` and how often each occurs (one string per token)."""
        _, first, counts = np.unique(self.hashes[mask], return_index=True, return_counts=True)
        starts, ends = self.starts[mask][first].tolist(), self.ends[mask][first].tolist()
        return {self.joined[s:e]: n for s, e, n in zip(starts, ends, counts.tolist())}

    def keep(self, limit: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
        """Which tokens survive truncation, and how many per text."""
        counts = self.counts
        first = np.cumsum(counts) - counts
        owner = np.repeat(np.arange(len(counts)), counts)
        rank = np.arange(len(self.hashes)) - first[owner]
        if mode == "head":
            mask = rank < limit
        elif mode == "tail":
            mask = rank >= counts[owner] - limit
        else:
            head = limit // 2
            mask = (rank < head) | (rank >= counts[owner] - (limit - head))
        return mask, np.minimum(counts, limit)


class HashLookup:
    """Token hash -> vocabulary id through an open-addressing table (at most a quarter full);
    unknown hashes get ``unk``. A gather per probe, where a binary search would need ~15."""

    def __init__(self, tokens: Sequence[str], unk: int) -> None:
        self.bits = max(4, (4 * len(tokens)).bit_length())
        mask = (1 << self.bits) - 1
        self.keys = np.zeros(1 << self.bits, dtype=np.uint64)
        self.ids = np.full(1 << self.bits, -1, dtype=np.int64)
        self.unk = unk
        hashes = hash_strings(tokens)
        for token_id, (key, slot) in enumerate(zip(hashes.tolist(), self._slots(hashes).tolist())):
            while self.ids[slot] >= 0:
                slot = (slot + 1) & mask
            self.keys[slot], self.ids[slot] = key, token_id

    def _slots(self, hashes: np.ndarray) -> np.ndarray:
        # the top bits of a multiplicative mix spread even the low-entropy hashes of short tokens
        return ((hashes * _LENGTH_MIX) >> np.uint64(64 - self.bits)).astype(np.int64)

    def __call__(self, hashes: np.ndarray) -> np.ndarray:
        out = np.full(len(hashes), self.unk, dtype=np.int64)
        pending = np.arange(len(hashes))
        slots = self._slots(hashes)
        mask = len(self.ids) - 1
        while len(pending):
            ids = self.ids[slots]
            hit = (ids >= 0) & (self.keys[slots] == hashes)
            out[pending[hit]] = ids[hit]
            going = ~hit & (ids >= 0)  # an occupied slot with another key: probe the next one
            pending, hashes, slots = pending[going], hashes[going], (slots[going] + 1) & mask
        return out
