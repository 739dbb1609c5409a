"""Texts -> token ids, paid for once: the vocabulary store (``vocab/``) and the preprocessing cache.

The vocabulary comes from, in order: ``[vocab] path`` (pinned);
``<vocab_dir>/<name>-<kind>-<key>.json`` (written by ``textlstm vocab``); the cache; or it is
built on the train split. ``key`` is a fingerprint of the train texts and the tokenizer and
vocabulary settings. Encoded splits are kept
in the cache as Arrow files written by ``datasets``, keyed by the split's texts and the exact
tokenizer + vocabulary, so a second run of a recipe (or a tuning trial) skips tokenization.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from textlstm import settings
from textlstm.errors import CheckpointError, RecipeError
from textlstm.files import atomic_path
from textlstm.recipe import Recipe, TokenizerConfig, VocabConfig
from textlstm.recipe.schema import resolve_path
from textlstm.text.encoder import (
    Encoder,
    apart,
    char_lengths,
    fit_encoder,
    read_vocab_file,
    text_chunks,
    write_vocab_file,
)
from textlstm.text.subword import SubwordTokenizer
from textlstm.text.vectors import (
    Coverage,
    VectorFile,
    coverage,
    embedding_matrix,
    inspect,
    inspect_package,
    read_vectors,
)
from textlstm.text.vocab import Ragged


@dataclass
class Options:
    """Where preprocessing looks and writes. ``cache_dir=None`` turns the cache off."""

    vocab_dir: Path | None = field(default_factory=settings.vocab_dir)
    cache_dir: Path | None = field(default_factory=settings.cache_dir)
    workers: int | None = None  # None: every core


@dataclass(frozen=True)
class TextSettings:
    """What the text stage reads of a recipe, and nothing more: how texts become tokens, which
    vocabulary and vectors, and where the recipe lies (messages name it; relative paths start
    from its folder)."""

    name: str  # names a stored vocabulary file
    tokenizer: TokenizerConfig
    vocab: VocabConfig
    embedding_dim: int  # a vectors file must have this many dimensions
    seed: int  # draws the rows of words without a pretrained vector
    source: str = ""

    def resolve_path(self, value: str) -> str:
        return resolve_path(self.source, value)


def text_settings(recipe: Recipe) -> TextSettings:
    """The text stage's part of ``recipe``."""
    return TextSettings(
        recipe.name,
        recipe.tokenizer,
        recipe.vocab,
        recipe.model.embedding_dim,
        recipe.seed,
        recipe.source,
    )


@dataclass
class Preprocessed:
    encoder: Encoder
    ids: dict[str, Ragged]
    vocab_key: str
    vocab_origin: str  # "built", "cache", or the file it was read from
    cached: list[str]  # splits whose ids came from the cache
    embedding: np.ndarray | None = None  # initial embedding from pretrained vectors
    coverage: Coverage | None = None


def digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()  # the fastest hashlib hash on CPUs with SHA extensions
    for part in parts:
        data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:32]


def texts_fingerprint(texts: Sequence[str]) -> str:
    """Content hash of a split's texts: the lengths make the joined bytes unambiguous. The same
    value as ``digest(lengths, "".join(texts))``, read in two passes a chunk at a time."""
    return _measured(texts)[0]


def measure_texts(texts: Sequence[str]) -> tuple[str, np.ndarray]:
    """(fingerprint, each text's length in characters), read apart for a lazy column."""
    return apart(lambda: _measured(texts), texts)


def _measured(texts: Sequence[str]) -> tuple[str, np.ndarray]:
    lengths = char_lengths(texts)
    size = sum(len("".join(chunk).encode("utf-8", "surrogatepass")) for chunk in text_chunks(texts))
    h = hashlib.sha256()
    h.update(lengths.nbytes.to_bytes(8, "little"))
    h.update(lengths.tobytes())
    h.update(size.to_bytes(8, "little"))
    for chunk in text_chunks(texts):
        h.update("".join(chunk).encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:32], lengths


def file_identity(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def vocab_key(text: TextSettings, train_fingerprint: str, vectors: VectorFile | None) -> str:
    settings: dict[str, Any] = {
        "tokenizer": text.tokenizer.model_dump(mode="json"),
        "vocab": text.vocab.model_dump(
            mode="json", include={"min_freq", "max_size", "vectors_only"}
        ),
    }
    if text.vocab.vectors_only and vectors is not None:
        settings["vectors"] = file_identity(vectors.path)
    return digest(train_fingerprint, json.dumps(settings, sort_keys=True))


def vocab_filename(text: TextSettings, key: str) -> str:
    return f"{text.name}-{text.tokenizer.kind}-{key[:12]}.json"


def encoder_key(encoder: Encoder) -> str:
    """Everything that decides the ids a text gets."""
    table = (
        encoder.tokenizer.hf.to_str()
        if isinstance(encoder.tokenizer, SubwordTokenizer)
        else json.dumps(encoder.vocab.tokens, ensure_ascii=False)
    )
    return digest(json.dumps(encoder.cfg.model_dump(mode="json"), sort_keys=True), table)


def vectors_file(text: TextSettings) -> VectorFile | None:
    """The vectors file's format and dimension, checked against the model before any work."""
    if text.vocab.vectors is None:
        return None
    where, value = text.source or "<recipe>", text.vocab.vectors
    if value.startswith("pkg:"):
        vf = inspect_package(value, where)
    else:
        vf = inspect(Path(text.resolve_path(value)), where)
    if vf.dim != text.embedding_dim:
        raise RecipeError(
            f"{where}: vocab.vectors: {vf.spec or vf.path} holds {vf.dim}-dimensional vectors "
            f"but model.embedding_dim is {text.embedding_dim}; set "
            f"model.embedding_dim = {vf.dim}"
        )
    return vf


def preprocess(
    text: TextSettings,
    texts: Mapping[str, Sequence[str]],
    options: Options | None = None,
    messages: list[str] | None = None,
) -> Preprocessed:
    """Vocabulary (reused or built on ``texts['train']``) and ids for every split in ``texts``."""
    options = options or Options()
    messages = messages if messages is not None else []
    vf = vectors_file(text)
    measured = {name: measure_texts(split) for name, split in texts.items()}
    fingerprints = {name: fingerprint for name, (fingerprint, _) in measured.items()}
    key = vocab_key(text, fingerprints["train"], vf)
    encoder, origin, found = _vocabulary(
        text, texts["train"], key, vf, options, measured["train"][1]
    )
    messages.append(
        f"vocabulary: {len(encoder.vocab):,} entries, "
        + (
            "built on the train split"
            if origin == "built"
            else "reused from the preprocessing cache"
            if origin == "cache"
            else f"reused from {origin}"
        )
    )
    ids, cached = {}, []
    ekey = encoder_key(encoder)
    for name, split in texts.items():
        chars = measured[name][1]
        ids[name], hit = _ids(encoder, split, digest(fingerprints[name], ekey), options, chars)
        if hit:
            cached.append(name)
    if cached:
        messages.append(
            f"token ids of {', '.join(cached)} read from the cache "
            f"({options.cache_dir}); tokenization skipped"
        )
    result = Preprocessed(encoder, ids, key, origin, cached)
    if vf is not None:
        _attach_vectors(result, text, vf, found, ekey, options, messages)
    return result


def _vocabulary(
    text: TextSettings,
    train: Sequence[str],
    key: str,
    vf: VectorFile | None,
    options: Options,
    chars: np.ndarray,
) -> tuple[Encoder, str, dict[str, np.ndarray] | None]:
    cfg = text.tokenizer
    if text.vocab.path is not None:
        path = Path(text.resolve_path(text.vocab.path))
        try:
            return read_vocab_file(path, cfg), str(path), None
        except CheckpointError as exc:
            raise RecipeError(
                *(f"{text.source or '<recipe>'}: vocab.path: {line}" for line in exc.raw_lines)
            ) from None
    if options.vocab_dir is not None and (options.vocab_dir / vocab_filename(text, key)).is_file():
        path = options.vocab_dir / vocab_filename(text, key)
        return read_vocab_file(path, cfg), str(path), None
    cached = options.cache_dir / "vocab" / f"{key}.json" if options.cache_dir else None
    if cached is not None and cached.is_file():
        try:
            return read_vocab_file(cached, cfg), "cache", None
        except CheckpointError:
            pass  # a damaged cache entry is rebuilt below
    found: dict[str, np.ndarray] = {}

    def with_vectors(counts: Any) -> Any:
        assert vf is not None
        found.update(read_vectors(vf, set(counts), cfg.lowercase)[0])
        return found.__contains__

    encoder, _ = fit_encoder(
        cfg,
        text.vocab,
        train,
        keep=with_vectors if text.vocab.vectors_only else None,
        workers=options.workers,
        chars=chars,
    )
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_vocab_file(encoder, cached)
    return encoder, "built", found or None


def _ids(
    encoder: Encoder, texts: Sequence[str], key: str, options: Options, chars: np.ndarray
) -> tuple[Ragged, bool]:
    folder = options.cache_dir / "ids" / key if options.cache_dir else None
    if folder is not None and folder.is_dir():
        try:
            return load_ids(folder, len(texts)), True
        except Exception:  # noqa: BLE001 - any damage to a cache entry means: rebuild it
            shutil.rmtree(folder, ignore_errors=True)
    ids = encoder.encode(texts, options.workers, chars)
    if folder is not None:
        save_ids(folder, ids)
    return ids, False


IDS_FILE = "ids.arrow"


def save_ids(folder: Path, ids: Sequence[np.ndarray]) -> None:
    """One Arrow stream file (a ``large_list<int32>`` column ``ids``, the format of the files
    ``datasets`` caches), written as one batch so that it is read back memory-mapped, without a
    copy; the folder is moved into place when whole."""
    import pyarrow as pa

    ragged = Ragged.of(ids)
    offsets = ragged.offsets - ragged.offsets[0]
    column = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(ragged.flat()))
    table = pa.table({"ids": column})
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:  # another process may finish the same entry first: theirs is as good
        with atomic_path(folder, keep_existing=True) as tmp:
            tmp.mkdir()
            with (
                pa.OSFile(str(tmp / IDS_FILE), "wb") as sink,
                pa.ipc.new_stream(sink, table.schema) as writer,
            ):
                writer.write_table(table, max_chunksize=max(1, len(table)))
    except OSError:  # a cache that cannot be written (disk full) only costs speed
        pass


def load_ids(folder: Path, rows: int) -> Ragged:
    """The ids of ``save_ids``, memory-mapped: pages are read as batches need them."""
    import pyarrow as pa

    # not closed here: the arrays below keep the mapping, which goes when they go
    batches = list(pa.ipc.open_stream(pa.memory_map(str(folder / IDS_FILE))))
    if len(batches) != 1 or batches[0].num_rows != rows:
        raise ValueError(f"{folder}: not one batch of {rows} rows")
    column = batches[0].column("ids")
    offsets = column.offsets.to_numpy()
    values = column.values.to_numpy(zero_copy_only=True)
    return Ragged(values, offsets)


def _attach_vectors(
    result: Preprocessed,
    text: TextSettings,
    vf: VectorFile,
    found: dict[str, np.ndarray] | None,
    ekey: str,
    options: Options,
    messages: list[str],
) -> None:
    vocab = result.encoder.vocab
    store = (
        options.cache_dir / "vectors" / f"{digest(file_identity(vf.path), ekey)}.npz"
        if options.cache_dir
        else None
    )
    skipped = 0
    if found is None and store is not None and store.is_file():
        with np.load(store) as saved:
            found = {vocab.tokens[i]: row for i, row in zip(saved["rows"], saved["vectors"])}
            skipped = int(saved["skipped"])
    if found is None:
        found, skipped = read_vectors(vf, set(vocab.tokens), text.tokenizer.lowercase)
        if store is not None:
            rows = [i for i, t in enumerate(vocab.tokens) if t in found]
            store.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(store) as tmp:
                np.savez(
                    tmp,
                    rows=np.array(rows, dtype=np.int64),
                    skipped=np.array(skipped),
                    vectors=np.stack([found[vocab.tokens[i]] for i in rows])
                    if rows
                    else np.zeros((0, vf.dim), np.float32),
                )
    matrix, mask = embedding_matrix(vocab, found, vf.dim, np.random.default_rng(text.seed))
    counts = np.bincount(result.ids["train"].flat(), minlength=len(vocab))
    result.embedding, result.coverage = matrix, coverage(mask, counts, skipped)
    cov = result.coverage
    messages.append(
        f"vectors: {cov.found:,} of {len(vocab) - 2:,} vocabulary words "
        f"({cov.vocab_share:.1%}) and {cov.token_share:.1%} of training tokens have a "
        f"pretrained vector in {vf.name}"
        + (f"; {skipped:,} malformed line(s) skipped" if skipped else "")
    )
