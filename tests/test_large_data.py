"""Data larger than memory should hold: texts read a slice at a time from Arrow, labelled rows
converted a chunk at a time into a memory-mapped file, token ids kept as one flat int32 array
(``Ragged``) and read back from the cache memory-mapped. Each lazy path is checked against the
in-memory one on tiny data, with the sizes that switch between them made tiny."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from textlstm.data import labels as labels_module
from textlstm.data import sources as sources_module
from textlstm.data import texts_of
from textlstm.data.sources import TextColumn, column
from textlstm.errors import DataError
from textlstm.recipe import DataConfig, TokenizerConfig, VocabConfig, load_recipe
from textlstm.text import encoder as encoder_module
from textlstm.text import subword as subword_module
from textlstm.text.cache import (
    Options,
    digest,
    load_ids,
    preprocess,
    save_ids,
    text_settings,
    texts_fingerprint,
)
from textlstm.text.encoder import fit_encoder, token_lengths
from textlstm.text.tokenizers import build_tokenizer
from textlstm.text.vocab import Ragged

from conftest import make_texts, write_recipe

TEXTS = make_texts("pos", 30, 1) + make_texts("neg", 30, 2) + ["", "ünïcödé 字 text"]


def shuffled(texts: list[str]) -> datasets.Dataset:
    """A split with an indices mapping over its table, as a carved split has."""
    ds = datasets.Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(len(texts))]})
    return ds.shuffle(seed=3)


def test_ragged_rows_slices_and_flat_ids():
    rows = [np.array([5, 6, 7]), np.array([2]), np.array([], dtype=np.int64), np.array([9, 9])]
    ids = Ragged.of(rows)
    assert ids.values.dtype == np.int32 and len(ids) == 4
    assert [r.tolist() for r in ids] == [r.tolist() for r in rows]
    assert ids[-1].tolist() == [9, 9] and ids.lengths.tolist() == [3, 1, 0, 2]
    middle = ids[1:3]
    assert isinstance(middle, Ragged) and [r.tolist() for r in middle] == [[2], []]
    assert middle.flat().tolist() == [2] and ids[2:].flat().tolist() == [9, 9]
    with pytest.raises(IndexError):
        ids[4]
    joined = Ragged.join([(np.array([2, 1]), np.array([1, 2, 3])), (np.array([1]), np.array([4]))])
    assert [r.tolist() for r in joined] == [[1, 2], [3], [4]]
    parts = [(np.array([2, 1]), np.array([1, 2, 3])), (np.array([1]), np.array([4]))]
    for capacity in (4, 100, 2):  # exact, ample (pages left untouched), too small (it grows)
        streamed = Ragged.join(iter(parts), capacity)
        assert [r.tolist() for r in streamed] == [[1, 2], [3], [4]] and len(streamed.flat()) == 4
    assert Ragged.of(ids) is ids


def test_text_column_reads_slices_in_the_splits_order(monkeypatch):
    monkeypatch.setattr(sources_module, "SLICE", 7)
    ds = shuffled(TEXTS)
    lazy = TextColumn(ds)
    whole = column(ds, "text")
    assert whole != TEXTS  # the indices mapping is followed
    assert len(lazy) == len(whole) and list(lazy) == whole
    assert lazy[3:20] == whole[3:20] and lazy[5] == whole[5] and lazy[60:] == whole[60:]
    monkeypatch.setattr(sources_module, "LARGE_BYTES", 0)
    assert isinstance(texts_of(ds), TextColumn)
    monkeypatch.setattr(sources_module, "LARGE_BYTES", 2**40)
    assert texts_of(ds) == whole


def test_fingerprint_is_the_same_read_in_slices(monkeypatch):
    lengths = np.fromiter(map(len, TEXTS), np.int64, len(TEXTS))
    expected = digest(lengths.tobytes(), "".join(TEXTS))
    assert texts_fingerprint(TEXTS) == expected
    monkeypatch.setattr(encoder_module, "PASS_CHUNK", 5)
    ds = datasets.Dataset.from_dict({"text": TEXTS})
    assert texts_fingerprint(TextColumn(ds)) == expected
    assert texts_fingerprint(TEXTS[:-1]) != expected


@pytest.mark.parametrize("kind", ["regex", "whitespace", "bpe"])
def test_a_lazy_column_encodes_as_a_list_does(monkeypatch, kind):
    monkeypatch.setattr(encoder_module, "CHUNK", 4)
    monkeypatch.setattr(encoder_module, "PASS_CHUNK", 9)
    monkeypatch.setattr(subword_module, "CHUNK", 5)
    monkeypatch.setattr(sources_module, "SLICE", 6)
    cfg = TokenizerConfig(kind=kind, max_length=6, truncation="head+tail", vocab_size=120)
    ds = shuffled(TEXTS)
    texts, lazy = column(ds, "text"), TextColumn(ds)
    encoder, counts = fit_encoder(cfg, VocabConfig(), texts, workers=1)
    lazy_encoder, lazy_counts = fit_encoder(cfg, VocabConfig(), lazy, workers=1)
    assert lazy_encoder.vocab.tokens == encoder.vocab.tokens and lazy_counts == counts
    expected = encoder.encode(texts, workers=1)
    assert isinstance(expected, Ragged) and expected.values.dtype == np.int32
    assert max(expected.lengths) == 6 and min(expected.lengths) == 1  # the empty text: one <unk>
    monkeypatch.setattr(encoder_module, "PARALLEL_MIN_CHARS", 0)
    for workers in (1, 2):
        got = encoder.encode(lazy, workers=workers)
        assert got.lengths.tolist() == expected.lengths.tolist()
        assert got.flat().tolist() == expected.flat().tolist()


@pytest.mark.parametrize("kind", ["regex", "spacy"])  # the numpy scanner, and not
def test_token_lengths_count_every_token_untruncated(monkeypatch, kind):
    monkeypatch.setattr(encoder_module, "CHUNK", 4)
    monkeypatch.setattr(encoder_module, "PARALLEL_MIN_CHARS", 0)
    tokenizer = build_tokenizer(TokenizerConfig(kind=kind, max_length=100_000))
    ds = shuffled(TEXTS)
    got = token_lengths(tokenizer, TextColumn(ds), workers=2)
    assert got.tolist() == [len(tokenizer(t)) for t in column(ds, "text")]


def test_saved_ids_come_back_memory_mapped(tmp_path):
    ids = Ragged.of([np.arange(5), np.array([7]), np.arange(3)])
    save_ids(tmp_path / "entry", ids[1:])  # a slice: its offsets do not start at 0
    back = load_ids(tmp_path / "entry", 2)
    assert [r.tolist() for r in back] == [[7], [0, 1, 2]]
    assert not back.values.flags.owndata and not back.values.flags.writeable
    with pytest.raises(ValueError):
        load_ids(tmp_path / "entry", 3)


def test_preprocessing_a_lazy_column_equals_the_list_and_caches_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sources_module, "SLICE", 8)
    monkeypatch.setattr(encoder_module, "PASS_CHUNK", 8)
    recipe = load_recipe(write_recipe(tmp_path / "r.toml", "unused"))
    ds = shuffled(TEXTS)
    eager = {"train": column(ds, "text"), "validation": TEXTS[:10]}
    lazy = {"train": TextColumn(ds), "validation": TEXTS[:10]}
    options = Options(vocab_dir=None, cache_dir=tmp_path / "cache")
    first = preprocess(text_settings(recipe), lazy, options)
    assert first.cached == []
    again = preprocess(text_settings(recipe), eager, options)  # the same texts: the same keys
    assert again.cached == ["train", "validation"]
    assert again.ids["train"].flat().tolist() == first.ids["train"].flat().tolist()
    plain = preprocess(text_settings(recipe), eager, Options(vocab_dir=None, cache_dir=None))
    assert plain.encoder.vocab.tokens == first.encoder.vocab.tokens
    assert plain.ids["train"].lengths.tolist() == first.ids["train"].lengths.tolist()


def table(rows: int) -> datasets.Dataset:
    texts = make_texts("pos", rows, 5)
    labels = ["pos" if i % 3 else "neg" for i in range(rows)]
    texts[4], labels[7] = None, None  # type: ignore[call-overload]  # two rows to skip
    return datasets.Dataset.from_dict({"body": texts, "stars": labels})


def test_a_large_split_is_converted_in_chunks_to_a_mapped_file(monkeypatch):
    cfg = DataConfig(dataset="unused", text="body", label="stars")
    notes: list[str] = []
    memory = labels_module.normalize(table(50), cfg, ["neg", "pos"], "src", "train", notes)
    monkeypatch.setattr(labels_module, "NORMALIZE_CHUNK", 6)
    monkeypatch.setattr(labels_module, "LARGE_BYTES", 0)
    spill_notes: list[str] = []
    spilled = labels_module.normalize(table(50), cfg, ["neg", "pos"], "src", "train", spill_notes)
    assert memory.cache_files == [] and len(spilled.cache_files) == 1
    assert spilled["text"] == memory["text"] and spilled["label"] == memory["label"]
    assert len(spilled) == 48 and spill_notes == notes == [
        "train: skipped 2 row(s) with a missing text or label"
    ]
    assert spilled.features == memory.features


def test_an_empty_label_list_is_named_by_its_row_in_any_chunk(monkeypatch):
    monkeypatch.setattr(labels_module, "NORMALIZE_CHUNK", 4)
    monkeypatch.setattr(labels_module, "LARGE_BYTES", 0)
    ds = datasets.Dataset.from_dict(
        {"text": [f"text {i}" for i in range(10)], "tags": [["a"]] * 6 + [[]] + [["b"]] * 3}
    )
    cfg = DataConfig(dataset="unused", label="tags")
    with pytest.raises(DataError, match=r"split 'train' row 7: an empty label list"):
        labels_module.normalize(ds, cfg, ["a", "b"], "src", "train", [])


def test_the_linear_model_is_fitted_on_a_bounded_sample(monkeypatch):
    from textlstm.model import wide as wide_module

    rng = np.random.default_rng(0)
    ids = Ragged.of([rng.integers(2, 40, size=int(n)) for n in rng.integers(3, 12, size=200)])
    labels = (np.arange(200) % 2).astype(np.int64)
    assert wide_module.sample_rows(ids, 3, 10**9) is None
    rows = wide_module.sample_rows(ids, 3, 600)
    assert rows is not None and (np.diff(rows) > 0).all()
    assert int(ids.lengths[rows].sum()) * 3 <= 600 < int(ids.lengths.sum()) * 3
    assert (wide_module.sample_rows(ids, 3, 600) == rows).all()  # the same draw each time
    monkeypatch.setattr(wide_module, "WIDE_MAX_NGRAMS", 600)
    model = wide_module.WideNgrams(40, 3, 1024, 2)
    done = wide_module.fit(model, ids, labels, ids[:50], labels[:50])
    assert done.of_rows == 200 and done.rows == len(rows)


@pytest.mark.parametrize("fraction", [0.1, 0.25])
def test_stratified_carve_takes_the_rows_datasets_takes(fraction):
    from textlstm.data.splits import stratified_rows

    labels = [0] * 30 + [1] * 12 + [2] * 6
    ds = datasets.Dataset.from_dict(
        {"text": [f"t{i}" for i in range(48)], "label": labels},
        features=datasets.Features(
            {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["a", "b", "c"])}
        ),
    )
    parts = ds.train_test_split(test_size=fraction, seed=13, stratify_by_column="label")
    held, rest = stratified_rows(np.asarray(labels), fraction, 13)
    assert ds.select(held)["text"] == parts["test"]["text"]
    assert ds.select(rest)["text"] == parts["train"]["text"]


def test_a_pass_over_a_lazy_column_runs_in_a_forked_process():
    import os

    from textlstm.text.encoder import apart, lengths_apart

    lazy = TextColumn(shuffled(TEXTS))
    assert apart(os.getpid, lazy) != os.getpid()
    assert apart(os.getpid, list(lazy)) == os.getpid()
    assert lengths_apart(lazy).tolist() == [len(t) for t in lazy]
