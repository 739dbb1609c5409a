"""Word vocabularies: ``<pad>`` = 0, ``<unk>`` = 1, then tokens by falling frequency; and the id
arrays every text kind produces, as views of one flat array."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from textlstm.errors import CheckpointError
from textlstm.files import MiB, read_bytes
from textlstm.recipe import VocabConfig

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
VOCAB_LIMIT = 1024 * MiB  # a vocabulary or tokenizer file: a million entries take about 30 MiB


class Vocab:
    def __init__(self, tokens: list[str]) -> None:
        if tokens[:2] != [PAD, UNK] or len(set(tokens)) != len(tokens):
            raise ValueError("a vocabulary starts with <pad>, <unk> and has no repeats")
        self.tokens = tokens
        self.index = {token: i for i, token in enumerate(tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: list[str]) -> np.ndarray:
        """Token ids; an empty text becomes a single <unk> so every sequence has a step."""
        get = self.index.get
        ids = [get(token, UNK_ID) for token in tokens] or [UNK_ID]
        return np.asarray(ids, dtype=np.int64)

    def to_json(self, **about: Any) -> str:
        """``about`` (e.g. the tokenizer settings) is kept beside the tokens for people to read."""
        return json.dumps(
            {"format": "textlstm-vocab", "version": 1, **about, "tokens": self.tokens},
            ensure_ascii=False,
        )

    def save(self, path: str | Path, **about: Any) -> None:
        Path(path).write_text(self.to_json(**about), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        try:
            raw = json.loads(
                read_bytes(path, "vocabulary .json file", CheckpointError, VOCAB_LIMIT)
            )
            tokens = raw["tokens"]
            if raw.get("format") != "textlstm-vocab" or not isinstance(tokens, list):
                raise ValueError("not a textlstm vocabulary")
            return cls([str(t) for t in tokens])
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: not a valid vocabulary file ({exc})") from None


def build_vocab(tokenized: Iterable[list[str]], cfg: VocabConfig) -> Vocab:
    counts: Counter[str] = Counter()
    for tokens in tokenized:
        counts.update(tokens)
    return vocab_from_counts(counts, cfg)


def vocab_from_counts(
    counts: Mapping[str, int], cfg: VocabConfig, keep: Callable[[str], bool] | None = None
) -> Vocab:
    """Tokens seen at least ``min_freq`` times (and passing ``keep``), most frequent first;
    ties go in code-point order so the same counts always give the same ids."""
    kept = [
        t
        for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if n >= cfg.min_freq and t not in (PAD, UNK) and (keep is None or keep(t))
    ]
    return Vocab([PAD, UNK, *kept[: cfg.max_size - 2]])


class Ragged(Sequence[np.ndarray]):
    """Each text's token ids as a view of one flat array, found by offsets: no array object per
    text, so a million texts cost their ids (int32) and 8 bytes each. ``ids[i]`` is text i's ids;
    a slice is a Ragged of those texts. The flat array may be memory-mapped (the Arrow cache)."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray) -> None:
        self.values, self.offsets = values, offsets.astype(np.int64, copy=False)

    @classmethod
    def from_lengths(cls, values: np.ndarray, lengths: np.ndarray) -> Ragged:
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(values, offsets)

    @classmethod
    def join(
        cls, parts: Iterable[tuple[np.ndarray, np.ndarray]], capacity: int | None = None
    ) -> Ragged:
        """Chunks of (lengths, flat ids) in order, as one Ragged of int32 ids. With
        ``capacity`` (at least the ids to come) each chunk is copied as it arrives into an
        array of that size, whose pages past the last id are never touched, so no memory
        goes to the chunks; without it they are gathered first."""
        if capacity is not None:
            return cls._streamed(parts, capacity)
        chunks = list(parts)
        total = sum(len(flat) for _, flat in chunks)
        chunks.reverse()  # each chunk is let go once copied: popped from the end
        return cls._streamed((chunks.pop() for _ in range(len(chunks))), total)

    @classmethod
    def _streamed(cls, parts: Iterable[tuple[np.ndarray, np.ndarray]], capacity: int) -> Ragged:
        values = np.empty(capacity, dtype=np.int32)
        lengths, at = [], 0
        for n, flat in parts:
            if at + len(flat) > len(values):  # more than promised: grow (a copy)
                values = np.concatenate([values[:at], np.empty(at + len(flat), np.int32)])
            values[at : at + len(flat)] = flat
            at += len(flat)
            lengths.append(np.asarray(n, dtype=np.int64))
        return cls.from_lengths(values[:at], np.concatenate(lengths) if lengths else np.zeros(0))

    @classmethod
    def of(cls, rows: Sequence[np.ndarray]) -> Ragged:
        """Any sequence of id arrays (a Ragged is returned as it is)."""
        if isinstance(rows, Ragged):
            return rows
        lengths = np.fromiter(map(len, rows), np.int64, len(rows))
        flat = np.concatenate(list(rows)) if len(rows) else np.zeros(0, np.int32)
        return cls.from_lengths(flat.astype(np.int32, copy=False), lengths)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @overload
    def __getitem__(self, i: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, i: slice) -> Ragged: ...

    def __getitem__(self, i: int | slice) -> np.ndarray | Ragged:
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step != 1:
                raise ValueError("a Ragged slice takes contiguous texts")
            stop = max(start, stop)
            return Ragged(self.values, self.offsets[start : stop + 1])
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        values, ends = self.values, self.offsets.tolist()
        return (values[a:b] for a, b in itertools.pairwise(ends))

    def flat(self) -> np.ndarray:
        """Every text's ids one after another (a view where the texts are contiguous)."""
        return self.values[self.offsets[0] : self.offsets[-1]]


def split_by_lengths(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """Views of ``flat``, one per length (np.split is ~10x slower for many small pieces)."""
    ends = np.cumsum(lengths).tolist()
    return [flat[start:end] for start, end in zip([0, *ends[:-1]], ends)]
