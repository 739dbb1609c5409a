"""Property-based tests (hypothesis), with a fixed, bounded number of examples so CI time is stable.

- The recipe loader, fed arbitrary TOML documents and arbitrary bytes, returns a Recipe or raises
  RecipeError, nothing else.
- Tokenizers and encoders, fed arbitrary Unicode (control characters, astral planes, very long
  lines, empty strings), return one result per input, and every id is in the vocabulary.
- Predict's input readers return exactly one text per input line.
"""

from __future__ import annotations

import string

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textlstm.errors import RecipeError
from textlstm.predict.files import read_inputs
from textlstm.recipe import Recipe, TokenizerConfig, VocabConfig, load_recipe, recipe_from_dict
from textlstm.text.encoder import fit_encoder

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

KEYS = [
    "name",
    "seed",
    "data",
    "tokenizer",
    "vocab",
    "model",
    "train",
    "dataset",
    "text",
    "label",
    "kind",
    "max_length",
    "hidden_size",
    "epochs",
    "lr",
    "pooling",
    "vectors",
    "class_weights",
    "truncation",
    "vocab_size",
    "x",
    "hiden_size",
    "",
]
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.text(max_size=20),
    st.floats(allow_nan=True),
    st.sampled_from(["regex", "bpe", "max", "tiny"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)
    ),
    max_leaves=20,
)
documents = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), values, max_size=8)


@FUZZ
@given(documents)
def test_any_toml_document_gives_a_recipe_or_a_recipe_error(document):
    try:
        result = recipe_from_dict(document, "fuzz.toml")
    except RecipeError as exc:
        assert exc.lines and all(isinstance(line, str) and "\n" not in line for line in exc.lines)
    else:
        assert isinstance(result, Recipe)


@FUZZ
@given(documents, st.lists(st.text(max_size=30), max_size=3))
def test_any_toml_file_with_overrides(tmp_path, document, overrides):
    path = tmp_path / "fuzz.toml"
    try:
        path.write_text(tomli_w.dumps(document), encoding="utf-8")
    except (TypeError, ValueError):  # not every dict is writable as TOML (e.g. NaN keys)
        return
    try:
        load_recipe(path, overrides)
    except RecipeError:
        pass


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_as_a_recipe(tmp_path, raw):
    path = tmp_path / "fuzz.toml"
    path.write_bytes(raw)
    try:
        load_recipe(path)
    except RecipeError:
        pass


texts = st.lists(
    st.one_of(
        st.text(max_size=60),
        st.text(alphabet=string.printable + "’'\u00a0\u2028\x1c\x85\x00é日😀", max_size=60),
        st.text(alphabet="ab '", min_size=2000, max_size=5000),  # very long lines
    ),
    min_size=1,
    max_size=12,
)


@pytest.fixture(scope="module")
def encoders():
    corpus = ["the film was great", "an awful, boring plot!", "Don't stop: it's 42"] * 30
    made = {}
    for kind in ("regex", "whitespace", "spacy", "bpe", "wordpiece", "unigram"):
        extra = {"vocab_size": 60} if kind in ("bpe", "wordpiece", "unigram") else {}
        cfg = TokenizerConfig(kind=kind, max_length=50, truncation="head+tail", **extra)
        made[kind] = fit_encoder(cfg, VocabConfig(), corpus)[0]
    return made


@FUZZ
@given(texts)
def test_every_tokenizer_and_encoder_survives_any_text(encoders, batch):
    for kind, encoder in encoders.items():
        tokens = encoder.tokens(batch)
        ids = encoder.encode(batch)
        assert len(tokens) == len(ids) == len(batch), kind
        for row in ids:
            assert 1 <= len(row) <= 50, kind
            assert int(row.min()) >= 0 and int(row.max()) < len(encoder.vocab), kind


@FUZZ
@given(texts)
def test_scanner_and_regex_agree_on_any_text(encoders, batch):
    regex = encoders["regex"]
    by_string = [regex.vocab.encode(tokens).tolist() for tokens in regex.tokens(batch)]
    assert [row.tolist() for row in regex.encode(batch)] == by_string


lines = st.lists(
    st.text(
        alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
        max_size=80,
    ),
    min_size=1,
    max_size=30,
)


@FUZZ
@given(lines)
def test_text_input_gives_one_text_per_line(tmp_path, rows):
    path = tmp_path / "in.txt"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    if "\x00" in "".join(rows):  # refused as a binary file, in one clear line
        with pytest.raises(Exception, match="binary file"):
            list(read_inputs(str(path)))
        return
    assert list(read_inputs(str(path))) == rows


@FUZZ
@given(lines)
def test_jsonl_and_csv_inputs_give_one_text_per_record(tmp_path, rows):
    import csv
    import json

    rows = [r for r in rows if "\x00" not in r]
    if not rows:
        return
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("".join(json.dumps({"text": r}) + "\n" for r in rows), encoding="utf-8")
    assert list(read_inputs(str(jsonl))) == rows
    table = tmp_path / "in.csv"
    with open(table, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows([i, r] for i, r in enumerate(rows))
    assert list(read_inputs(str(table))) == rows


def test_a_key_with_a_line_break_is_shown_escaped_on_one_line():
    with pytest.raises(RecipeError) as info:
        recipe_from_dict({"name": "x", "data": {"dataset": "d"}, "\n": 1}, "fuzz.toml")
    assert info.value.lines == [
        'fuzz.toml: "\\n": unknown key; valid keys: name, seed, data, tokenizer, vocab, model, '
        "train, tune, pretrain"
    ]
