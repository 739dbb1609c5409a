"""Text -> token ids: a tokenizer and its vocabulary, fitted together, saved together.

Word kinds (regex, whitespace, spacy) count tokens on the train split and keep a ``Vocab``; subword
kinds train a Hugging Face tokenizer whose own vocabulary is the ``Vocab``. Large inputs are
tokenized on every core: word kinds in forked worker processes that return counts or id arrays
(cheap to send back), subword kinds in the tokenizers library's own Rust threads.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from textlstm.errors import CheckpointError
from textlstm.files import atomic_path, read_bytes
from textlstm.recipe import TokenizerConfig, VocabConfig
from textlstm.text.scan import HashLookup, warm_up
from textlstm.text.subword import (
    SubwordTokenizer,
    load_subword,
    subword_kind,
    subword_vocab,
    train_subword,
)
from textlstm.text.tokenizers import Tokenizer, build_tokenizer
from textlstm.text.vocab import UNK_ID, VOCAB_LIMIT, Ragged, Vocab, vocab_from_counts

T = TypeVar("T")
CHUNK = 2048  # texts per unit of work
PASS_CHUNK = 20_000  # texts read at a time when a pass goes over all of them
PARALLEL_MIN_CHARS = 2_000_000  # below this, starting worker processes costs more than it saves
SUBWORD_FILE = "tokenizer.json"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class Encoder:
    cfg: TokenizerConfig
    vocab: Vocab
    tokenizer: Tokenizer | SubwordTokenizer

    @property
    def subword(self) -> bool:
        return isinstance(self.tokenizer, SubwordTokenizer)

    def tokens(self, texts: Sequence[str]) -> list[list[str]]:
        """Token strings, as the model sees them (before the vocabulary maps them to ids)."""
        return self.tokenizer.batch(texts)

    def encode(
        self, texts: Sequence[str], workers: int | None = None, chars: np.ndarray | None = None
    ) -> Ragged:
        """Each text's ids (int32, views of one array); a text with no tokens is a single <unk>.
        ``texts`` may be a lazy column: it is read a chunk at a time. ``chars``: the texts'
        lengths in characters, where the caller has them."""
        if isinstance(self.tokenizer, SubwordTokenizer):
            return self.tokenizer.encode(texts)
        chars = lengths_apart(texts) if chars is None else chars
        if getattr(self.tokenizer, "scan", None) is not None:
            state: Any = (self.tokenizer, HashLookup(self.vocab.tokens, UNK_ID))
            warm_up(_longest_chunk(chars))
            parts = _map_chunks(_encode_scan, state, texts, workers, chars)
        else:
            state = (self.tokenizer, self.vocab.index)
            parts = _map_chunks(_encode_chunk, state, texts, workers, chars)
        # a token is at least one character, and a text keeps max_length of them (or one <unk>)
        capacity = int(np.minimum(np.maximum(chars, 1), self.cfg.max_length).sum())
        return Ragged.join(parts, capacity)

    def save(self, run_dir: Path) -> None:
        self.vocab.save(run_dir / "vocab.json", tokenizer=self.cfg.kind)
        if isinstance(self.tokenizer, SubwordTokenizer):
            self.tokenizer.hf.save(str(run_dir / SUBWORD_FILE))

    @classmethod
    def load(cls, run_dir: Path, cfg: TokenizerConfig) -> Encoder:
        vocab = Vocab.load(run_dir / "vocab.json")
        if not cfg.subword:
            return cls(cfg, vocab, build_tokenizer(cfg))
        if not (run_dir / SUBWORD_FILE).is_file():
            raise CheckpointError(f"{run_dir}: not a complete run folder: missing {SUBWORD_FILE}")
        encoder = cls.from_subword(
            cfg, load_subword(run_dir / SUBWORD_FILE), run_dir / SUBWORD_FILE
        )
        if encoder.vocab.tokens != vocab.tokens:
            raise CheckpointError(
                f"{run_dir}: {SUBWORD_FILE} and vocab.json do not match; the "
                "run folder's files do not belong together"
            )
        return encoder

    @classmethod
    def from_subword(cls, cfg: TokenizerConfig, hf: Any, source: Path | str) -> Encoder:
        kind = subword_kind(hf)
        if kind != cfg.kind:
            raise CheckpointError(
                f"{source}: is a {kind} tokenizer but tokenizer.kind is '{cfg.kind}'"
            )
        return cls(cfg, subword_vocab(hf), SubwordTokenizer(cfg, hf))


def fit_encoder(
    tok_cfg: TokenizerConfig,
    vocab_cfg: VocabConfig,
    texts: Sequence[str],
    keep: Callable[[Counter[str]], Callable[[str], bool]] | None = None,
    workers: int | None = None,
    chars: np.ndarray | None = None,
) -> tuple[Encoder, Counter[str]]:
    """Train the tokenizer (subword) or count tokens (word kinds) on ``texts``.

    ``keep`` sees the token counts and returns a filter for the vocabulary (pretrained vectors
    use it to keep only words that have a vector). Returns the encoder and the token counts
    (empty for subword kinds, whose trainer counts internally).
    """
    if tok_cfg.subword:
        hf = train_subword(tok_cfg, texts)
        return Encoder(tok_cfg, subword_vocab(hf), SubwordTokenizer(tok_cfg, hf)), Counter()
    tokenizer = build_tokenizer(tok_cfg)
    counts: Counter[str] = Counter()
    work: Callable[[Any, Sequence[str]], Mapping[str, int]] = _count_chunk
    chars = lengths_apart(texts) if chars is None else chars
    if getattr(tokenizer, "scan", None) is not None:
        work = _count_scan
        warm_up(_longest_chunk(chars))
    for part in _map_chunks(work, tokenizer, texts, workers, chars):
        counts.update(part)
    vocab = vocab_from_counts(counts, vocab_cfg, keep(counts) if keep else None)
    return Encoder(tok_cfg, vocab, tokenizer), counts


def token_lengths(
    tokenizer: Tokenizer, texts: Sequence[str], workers: int | None = None
) -> np.ndarray:
    """How many tokens ``tokenizer`` makes of each text, counted on every core a chunk at a
    time (no list of every text's tokens is kept)."""
    chars = lengths_apart(texts)
    work: Callable[[Any, Sequence[str]], np.ndarray] = _length_chunk
    if getattr(tokenizer, "scan", None) is not None:
        work = _length_scan
        warm_up(_longest_chunk(chars))
    parts = list(_map_chunks(work, tokenizer, texts, workers, chars))
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def read_vocab_file(path: Path, cfg: TokenizerConfig) -> Encoder:
    """A vocabulary file from ``vocab/`` or ``[vocab] path``: ours (word kinds) or a tokenizer
    JSON (subword kinds); a file of the wrong family is an error naming both."""
    try:
        head = json.loads(read_bytes(path, "vocabulary .json file", CheckpointError, VOCAB_LIMIT))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: vocabulary file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a valid vocabulary file ({exc})") from None
    is_word = isinstance(head, dict) and head.get("format") == "textlstm-vocab"
    if is_word and cfg.subword:
        raise CheckpointError(
            f"{path}: is a word vocabulary but tokenizer.kind is '{cfg.kind}'; "
            f"give a {cfg.kind} tokenizer JSON (made by `textlstm vocab`)"
        )
    if is_word:
        return Encoder(cfg, Vocab.load(path), build_tokenizer(cfg))
    if not cfg.subword:
        raise CheckpointError(
            f"{path}: is not a textlstm word vocabulary (tokenizer.kind is "
            f"'{cfg.kind}'); build one with `textlstm vocab`"
        )
    return Encoder.from_subword(cfg, load_subword(path), path)


def write_vocab_file(encoder: Encoder, path: Path, **about: Any) -> None:
    """Atomically: a half-written file must never be picked up as a matching vocabulary."""
    with atomic_path(path) as tmp:
        if isinstance(encoder.tokenizer, SubwordTokenizer):
            encoder.tokenizer.hf.save(str(tmp))
        else:
            encoder.vocab.save(tmp, tokenizer=encoder.cfg.kind, **about)


# ---- worker processes -----------------------------------------------------------------------

_SHARED: tuple[Any, Sequence[str]] | None = None  # (state, texts), inherited by forked workers
_APART: Callable[[], Any] | None = None  # the work of ``apart``, inherited by its process


def _count_chunk(tokenizer: Tokenizer, texts: Sequence[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for tokens in tokenizer.batch(texts):
        counts.update(tokens)
    return counts


def _length_chunk(tokenizer: Tokenizer, texts: Sequence[str]) -> np.ndarray:
    return np.fromiter(map(len, tokenizer.batch(texts)), np.int64, len(texts))


def _length_scan(tokenizer: Any, texts: Sequence[str]) -> np.ndarray:
    _, lengths = tokenizer.scan(texts).keep(tokenizer.max_length, tokenizer.cfg.truncation)
    return np.asarray(lengths)


def _count_scan(tokenizer: Any, texts: Sequence[str]) -> dict[str, int]:
    scan = tokenizer.scan(texts)
    mask, _ = scan.keep(tokenizer.max_length, tokenizer.cfg.truncation)
    return scan.counter(mask)


def _encode_scan(
    state: tuple[Any, HashLookup], texts: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    tokenizer, lookup = state
    scan = tokenizer.scan(texts)
    mask, lengths = scan.keep(tokenizer.max_length, tokenizer.cfg.truncation)
    flat = lookup(scan.hashes[mask]).astype(np.int32)  # half the bytes to send back
    empty = np.flatnonzero(lengths == 0)
    if len(empty):  # a text with no tokens is read as one <unk>
        flat = np.insert(flat, (np.cumsum(lengths) - lengths)[empty], UNK_ID)
        lengths = np.where(lengths == 0, 1, lengths)
    return lengths, flat


def _encode_chunk(
    state: tuple[Tokenizer, dict[str, int]], texts: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    tokenizer, index = state
    get = index.get
    batch = [[get(t, UNK_ID) for t in tokens] or [UNK_ID] for tokens in tokenizer.batch(texts)]
    lengths = np.fromiter(map(len, batch), np.int64, len(batch))
    flat = np.fromiter((i for ids in batch for i in ids), np.int64, int(lengths.sum()))
    return lengths, flat


def text_chunks(texts: Sequence[str], size: int = PASS_CHUNK) -> Iterator[Sequence[str]]:
    """``texts`` a slice at a time: a lazy column (data read from an Arrow file) is never held
    whole in memory."""
    for lo in range(0, len(texts), size):
        yield texts[lo : lo + size]


def char_lengths(texts: Sequence[str]) -> np.ndarray:
    """Each text's length in characters (int64), read a chunk at a time."""
    out = np.empty(len(texts), dtype=np.int64)
    at = 0
    for chunk in text_chunks(texts):
        out[at : at + len(chunk)] = np.fromiter(map(len, chunk), np.int64, len(chunk))
        at += len(chunk)
    return out


def apart(work: Callable[[], T], texts: Sequence[str]) -> T:
    """``work()``, in a forked process where ``texts`` is a lazy column (a list: here). A pass
    over memory-mapped texts then maps their pages into that process, not into this one, whose
    memory stays that of the token ids."""
    return work() if isinstance(texts, list) else forked(work)


def forked(work: Callable[[], T]) -> T:
    """``work()`` in a forked process (here, where there is no fork), its result (or error)
    sent back: whatever memory it maps or allocates goes with that process."""
    global _APART
    if "fork" not in multiprocessing.get_all_start_methods():
        return work()
    _APART = work
    try:
        with _forked_pool(1) as pool:
            return pool.apply(_run_apart)
    finally:
        _APART = None


def lengths_apart(texts: Sequence[str]) -> np.ndarray:
    """``char_lengths``, read in a forked process for a lazy column (see ``apart``)."""
    return apart(lambda: char_lengths(texts), texts)


def _run_apart() -> Any:
    assert _APART is not None
    return _APART()


def _longest_chunk(chars: np.ndarray) -> int:
    lengths = chars + 1
    return max(
        (int(lengths[lo : lo + CHUNK].sum()) for lo in range(0, len(lengths), CHUNK)), default=0
    )


def _forked_pool(workers: int) -> Any:
    """A pool of ``workers`` forked processes, forked with SIGTERM held back (``_quiet_worker``).
    The calling thread holds it back only while the workers are forked: one sent to this
    process meanwhile arrives after."""
    held = {signal.SIGTERM}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        return multiprocessing.get_context("fork").Pool(workers, _quiet_worker)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _quiet_worker() -> None:
    """A forked worker drops the signal handlers it inherited: the pool ends its workers with
    SIGTERM, and a handler that raised there (a torchrun rank's) could stop a worker while it
    holds the pool's lock, leaving the others and the rank waiting forever. The worker is forked
    with SIGTERM held back and lets it in only now: a pool that ends before its worker got this
    far (a short job, a slow start) would otherwise reach the inherited handler, whose exception
    multiprocessing's after-fork hooks swallow, and the worker would live on, waiting for a
    lock the ending pool holds. Ctrl-C is the parent's to handle; it then ends the pool."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _run_range(job: tuple[Callable[[Any, Sequence[str]], Any], int, int]) -> Any:
    work, lo, hi = job
    assert _SHARED is not None
    state, texts = _SHARED
    return work(state, texts[lo:hi])


def _map_chunks(
    work: Callable[[Any, Sequence[str]], Any],
    state: Any,
    texts: Sequence[str],
    workers: int | None,
    chars: np.ndarray | None = None,
) -> Iterator[Any]:
    """``work(state, chunk)`` for each chunk of texts, in order, on up to ``workers`` cores,
    yielded as they come (a caller that merges them, as token counts are, holds a few at a
    time).

    Workers are forked, so they inherit ``state`` and the texts instead of receiving copies;
    each gets only a (start, stop) range and sends back a small result. ``chars``: the texts'
    lengths in characters.
    """
    global _SHARED
    ranges = [(lo, min(lo + CHUNK, len(texts))) for lo in range(0, len(texts), CHUNK)]
    workers = min(cores() if workers is None else workers, len(ranges))
    if (
        workers <= 1
        or int((char_lengths(texts) if chars is None else chars).sum()) < PARALLEL_MIN_CHARS
        or "fork" not in multiprocessing.get_all_start_methods()
    ):
        yield from (work(state, texts[lo:hi]) for lo, hi in ranges)
        return
    _SHARED = (state, texts)
    try:
        with _forked_pool(workers) as pool:
            jobs = [(work, lo, hi) for lo, hi in ranges]
            yield from pool.imap(_run_range, jobs, chunksize=1)
    finally:
        _SHARED = None
