"""Tokenizer kinds, encoders, the vocabulary store and the preprocessing cache."""

import json
import multiprocessing
import multiprocessing.connection
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from textlstm.cli import app
from textlstm.errors import CheckpointError, RecipeError
from textlstm.recipe import TokenizerConfig, VocabConfig, load_recipe
from textlstm.run.checkpoint import load
from textlstm.text import encoder as encoder_module
from textlstm.text.cache import Options, preprocess, text_settings, vocab_filename
from textlstm.text.encoder import Encoder, fit_encoder, read_vocab_file, write_vocab_file
from textlstm.text.tokenizers import build_tokenizer
from textlstm.text.vocab import PAD, UNK, UNK_ID
from textlstm.training import train

from conftest import make_texts, write_recipe

TEXTS = make_texts("pos", 60, 1) + make_texts("neg", 60, 1) + ["", "Zebra!"]


def with_kind(path, kind, extra=""):
    text = path.read_text().replace("[tokenizer]\n", f'[tokenizer]\nkind = "{kind}"\n{extra}')
    path.write_text(text)
    return path


def test_spacy_tokenizer_uses_the_language_rules():
    tokenize = build_tokenizer(TokenizerConfig(kind="spacy"))
    assert tokenize("Don't stop, it's U.K. time!") == [
        "do",
        "n't",
        "stop",
        ",",
        "it",
        "'s",
        "u.k.",
        "time",
        "!",
    ]
    assert build_tokenizer(TokenizerConfig(kind="spacy", lowercase=False, max_length=2))(
        "Don't stop"
    ) == ["Do", "n't"]


def test_spacy_unknown_language_is_a_recipe_error():
    with pytest.raises(RecipeError, match=r"tokenizer\.language: spaCy has no language 'zz'"):
        build_tokenizer(TokenizerConfig(kind="spacy", language="zz"))


@pytest.mark.parametrize("kind", ["bpe", "wordpiece", "unigram"])
def test_subword_kinds_train_with_pad_and_unk_first(kind):
    cfg = TokenizerConfig(kind=kind, vocab_size=80, max_length=6, strip_html=True)
    encoder, _ = fit_encoder(cfg, VocabConfig(), TEXTS)
    assert encoder.subword and encoder.vocab.tokens[:2] == [PAD, UNK]
    assert 20 <= len(encoder.vocab) <= 80
    ids = encoder.encode(["The film was superb<br />and lovely and great", "", "superb"])
    assert [len(x) for x in ids][:2] == [6, 1] and ids[1].tolist() == [UNK_ID]
    assert all(0 <= i < len(encoder.vocab) for x in ids for i in x)
    pieces = encoder.tokens(["SUPERB"])[0]  # lower-cased by the tokenizer's own normalizer
    assert "".join(p.replace("##", "").replace("▁", "") for p in pieces) == "superb"
    assert "br" not in "".join(encoder.tokens(["a<br />b"])[0])


def test_truncation_modes_apply_to_subword_ids():
    base = fit_encoder(TokenizerConfig(kind="bpe", vocab_size=80), VocabConfig(), TEXTS)[0]
    text = "great film plot actor scene story movie awful"
    full = base.encode([text])[0]
    for mode, expected in [
        ("head", full[:4]),
        ("tail", full[-4:]),
        ("head+tail", np.concatenate([full[:2], full[-2:]])),
    ]:
        cfg = base.cfg.model_copy(update={"max_length": 4, "truncation": mode})
        enc = Encoder(cfg, base.vocab, type(base.tokenizer)(cfg, base.tokenizer.hf))
        assert enc.encode([text])[0].tolist() == expected.tolist(), mode


@pytest.mark.parametrize("kind", ["regex", "whitespace", "spacy"])
def test_parallel_encoding_equals_serial(monkeypatch, kind):
    texts = TEXTS * 40  # several chunks
    monkeypatch.setattr(encoder_module, "CHUNK", 300)
    encoder, counts = fit_encoder(
        TokenizerConfig(kind=kind, max_length=9), VocabConfig(), texts, workers=1
    )
    serial = encoder.encode(texts, workers=1)
    monkeypatch.setattr(encoder_module, "PARALLEL_MIN_CHARS", 0)
    parallel_encoder, parallel_counts = fit_encoder(encoder.cfg, VocabConfig(), texts, workers=2)
    assert parallel_counts == counts and parallel_encoder.vocab.tokens == encoder.vocab.tokens
    parallel = encoder.encode(texts, workers=2)
    assert len(parallel) == len(texts)
    assert all(a.tolist() == b.tolist() for a, b in zip(serial, parallel))


def _handlers(state, texts):
    import signal

    return [(signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))]


def test_tokenizer_workers_drop_the_ranks_sigterm_handler(monkeypatch):
    """A torchrun rank raises on SIGTERM; the pool's workers, forked from it, must not: the
    pool ends them with SIGTERM, and a worker raising there can hold its lock forever."""
    import signal

    from textlstm.training import distributed

    monkeypatch.setattr(encoder_module, "CHUNK", 2)
    monkeypatch.setattr(encoder_module, "PARALLEL_MIN_CHARS", 0)
    before = signal.getsignal(signal.SIGTERM)
    try:
        distributed.stop_on_sigterm()
        seen = list(encoder_module._map_chunks(_handlers, None, ["a b", "c d", "e f", "g h"], 2))
    finally:
        signal.signal(signal.SIGTERM, before)
    assert [pair for chunk in seen for pair in chunk] == [(signal.SIG_DFL, signal.SIG_IGN)] * 2


_HOLD: list[int] = []  # a pipe that a process forked in the test below waits on, once


def _wait_in_child():
    if _HOLD:
        os.read(_HOLD[0], 1)


os.register_at_fork(after_in_child=_wait_in_child)


def test_a_worker_sent_sigterm_before_its_start_still_ends_by_it():
    """A pool that ends before a worker has started (a short job, a slow fork) sends SIGTERM
    to a worker that still has the rank's raising handler. Held back until the worker has
    dropped that handler, SIGTERM ends it; reaching the handler, it would leave the worker
    alive, waiting for the ending pool's lock (a hang seen once in the whole suite)."""
    import signal

    from textlstm.training import distributed

    before = signal.getsignal(signal.SIGTERM)
    read, write = os.pipe()
    _HOLD.append(read)
    try:
        distributed.stop_on_sigterm()
        pool = encoder_module._forked_pool(1)
    finally:
        _HOLD.clear()
        signal.signal(signal.SIGTERM, before)
    try:
        (worker,) = pool._pool
        os.kill(worker.pid, signal.SIGTERM)  # while it waits in its after-fork hook
        os.write(write, b"x")
        ended = multiprocessing.connection.wait([worker.sentinel], timeout=60)
        assert ended, "the worker lived on after SIGTERM"
        worker.join()
        assert worker.exitcode == -signal.SIGTERM
    finally:
        pool.terminate()
        os.close(read)
        os.close(write)


@pytest.mark.parametrize("kind", ["regex", "whitespace", "spacy", "bpe", "wordpiece", "unigram"])
def test_each_kind_trains_saves_and_predicts_end_to_end(tmp_path, recipe_path, kind):
    extra = "vocab_size = 60\n" if kind in ("bpe", "wordpiece", "unigram") else ""
    recipe = load_recipe(with_kind(recipe_path, kind, extra))
    result = train(recipe, tmp_path / "runs", device="cpu")
    loaded = load(result.run_dir)
    subword = kind in ("bpe", "wordpiece", "unigram")
    assert loaded.encoder.cfg.kind == kind and loaded.encoder.subword == subword
    assert (result.run_dir / "tokenizer.json").is_file() == subword
    from textlstm.predict.predictor import Predictor

    probs = Predictor(loaded).probabilities(["superb lovely film", "awful dull film"])
    assert probs.shape == (2, 2) and np.allclose(probs.sum(1), 1.0)


def test_subword_run_with_a_foreign_tokenizer_json_fails_to_load(tmp_path, recipe_path):
    recipe = load_recipe(with_kind(recipe_path, "bpe", "vocab_size = 60\n"))
    run = train(recipe, tmp_path / "runs", device="cpu").run_dir
    other = fit_encoder(
        TokenizerConfig(kind="bpe", vocab_size=70), VocabConfig(), ["other words entirely"] * 30
    )[0]
    other.tokenizer.hf.save(str(run / "tokenizer.json"))
    with pytest.raises(CheckpointError, match=r"tokenizer\.json and vocab\.json do not match"):
        load(run)
    (run / "tokenizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a Hugging Face tokenizer JSON file"):
        load(run)
    (run / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=r"missing tokenizer\.json"):
        load(run)


@pytest.mark.parametrize(
    "line, message",
    [
        (
            '[tokenizer]\nkind = "regex"\nvocab_size = 500\n',
            "tokenizer.vocab_size: not used by tokenizer.kind = 'regex' (only by bpe, wordpiece, unigram)",
        ),
        (
            '[tokenizer]\nkind = "unigram"\nmin_frequency = 5\n',
            "tokenizer.min_frequency: not used by tokenizer.kind = 'unigram'",
        ),
        (
            '[tokenizer]\nlanguage = "de"\n',
            "tokenizer.language: not used by tokenizer.kind = 'regex'",
        ),
        ('[tokenizer]\nkind = "sentencepiece"\n', "tokenizer.kind: unknown choice 'sentencepiece'"),
        ("[vocab]\nfreeze_embeddings = true\n", "vocab.freeze_embeddings: needs vocab.vectors"),
        ("[vocab]\nvectors_only = true\n", "vocab.vectors_only: needs vocab.vectors"),
    ],
)
def test_settings_for_another_kind_are_recipe_errors(tmp_path, line, message):
    path = tmp_path / "r.toml"
    path.write_text('name = "x"\n[data]\ndataset = "d"\n' + line)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert any(
        message in problem and problem.startswith(str(path)) for problem in info.value.lines
    ), info.value.lines


def test_second_preprocess_reads_the_cache_and_no_cache_rebuilds(tmp_path, monkeypatch):
    recipe = load_recipe(write_recipe(tmp_path / "r.toml", "unused"))
    texts = {"train": TEXTS, "validation": TEXTS[:10]}
    options = Options(vocab_dir=tmp_path / "vocab", cache_dir=tmp_path / "cache")
    first_messages: list[str] = []
    first = preprocess(text_settings(recipe), texts, options, first_messages)
    assert first.vocab_origin == "built" and first.cached == []
    assert any((tmp_path / "cache" / "ids").iterdir())

    calls = []
    monkeypatch.setattr(Encoder, "encode", lambda self, *a, **k: calls.append(1))
    messages: list[str] = []
    second = preprocess(text_settings(recipe), texts, options, messages)
    assert calls == [] and second.cached == ["train", "validation"]
    assert (
        second.vocab_origin == "cache" and second.encoder.vocab.tokens == first.encoder.vocab.tokens
    )
    assert all(a.tolist() == b.tolist() for a, b in zip(first.ids["train"], second.ids["train"]))
    assert any("tokenization skipped" in m for m in messages)

    monkeypatch.undo()
    changed = preprocess(text_settings(recipe), {"train": TEXTS, "validation": TEXTS[:9]}, options)
    assert changed.cached == ["train"]  # another validation split is tokenized afresh
    uncached = preprocess(text_settings(recipe), texts, Options(vocab_dir=None, cache_dir=None))
    assert uncached.cached == [] and uncached.vocab_origin == "built"


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path / "r.toml", "unused"))
    texts = {"train": TEXTS, "validation": TEXTS[:10]}
    options = Options(vocab_dir=None, cache_dir=tmp_path / "cache")
    first = preprocess(text_settings(recipe), texts, options)
    for arrow in (tmp_path / "cache" / "ids").rglob("*.arrow"):
        arrow.write_bytes(b"garbage")
    again = preprocess(text_settings(recipe), texts, options)
    assert again.cached == []
    assert all(a.tolist() == b.tolist() for a, b in zip(first.ids["train"], again.ids["train"]))


def test_vocab_command_writes_a_file_that_train_reuses(tmp_path, recipe_path):
    runner = CliRunner()
    vocab_dir = tmp_path / "vocab"
    result = runner.invoke(
        app,
        ["vocab", str(recipe_path), "--vocab-dir", str(vocab_dir), "--no-cache", "--top", "3"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    files = list(vocab_dir.iterdir())
    assert len(files) == 1 and files[0].name.startswith("tiny-regex-")
    assert f"wrote {files[0]}" in " ".join(result.stdout.split())
    assert "out of vocabulary" in result.stdout and "most frequent" in result.stdout
    saved = json.loads(files[0].read_text())
    assert saved["tokens"][:2] == [PAD, UNK] and saved["tokenizer"] == "regex"

    again = runner.invoke(
        app,
        ["vocab", str(recipe_path), "--vocab-dir", str(vocab_dir), "--no-cache"],
        catch_exceptions=False,
    )
    assert "up to date:" in again.stdout

    result = runner.invoke(
        app,
        [
            "train",
            str(recipe_path),
            "--out",
            str(tmp_path / "runs"),
            "--device",
            "cpu",
            "--vocab-dir",
            str(vocab_dir),
            "--no-cache",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert f"reused from {files[0]}" in " ".join(result.stdout.split())
    run = tmp_path / "runs" / "tiny" / "latest"
    assert json.loads((run / "vocab.json").read_text())["tokens"] == saved["tokens"]
    assert json.loads((run / "meta.json").read_text())["vocabulary"]["origin"] == str(files[0])


def test_vocab_file_name_changes_with_settings_and_data(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path / "r.toml", "unused"))
    options = Options(vocab_dir=None, cache_dir=None)
    base = preprocess(text_settings(recipe), {"train": TEXTS, "validation": TEXTS[:5]}, options)
    other_data = preprocess(
        text_settings(recipe), {"train": TEXTS[:-1], "validation": TEXTS[:5]}, options
    )
    bigger = load_recipe(tmp_path / "r.toml", ["vocab.min_freq=2"])
    other_settings = preprocess(
        text_settings(bigger), {"train": TEXTS, "validation": TEXTS[:5]}, options
    )
    same_model = load_recipe(tmp_path / "r.toml", ["model.hidden_size=99"])
    same = preprocess(text_settings(same_model), {"train": TEXTS, "validation": TEXTS[:5]}, options)
    names = {
        vocab_filename(text_settings(recipe), p.vocab_key)
        for p in (base, other_data, other_settings)
    }
    assert len(names) == 3 and same.vocab_key == base.vocab_key


@pytest.mark.parametrize("kind", ["regex", "bpe"])
def test_pinned_vocab_path_is_used_and_checked(tmp_path, kind):
    extra = "vocab_size = 60\n" if kind == "bpe" else ""
    recipe_file = with_kind(write_recipe(tmp_path / "r.toml", "unused"), kind, extra)
    recipe = load_recipe(recipe_file)
    encoder = fit_encoder(recipe.tokenizer, recipe.vocab, TEXTS[:50])[0]
    write_vocab_file(encoder, tmp_path / "pinned.json")
    pinned = load_recipe(recipe_file, ['vocab.path="pinned.json"'])  # relative to the recipe
    done = preprocess(
        text_settings(pinned),
        {"train": TEXTS, "validation": TEXTS[:5]},
        Options(vocab_dir=None, cache_dir=None),
    )
    assert done.encoder.vocab.tokens == encoder.vocab.tokens
    assert done.vocab_origin == str(tmp_path / "pinned.json")
    other = "bpe" if kind == "regex" else "regex"
    wrong = load_recipe(
        with_kind(
            write_recipe(tmp_path / "w.toml", "unused"),
            other,
            "vocab_size = 60\n" if other == "bpe" else "",
        ),
        ['vocab.path="pinned.json"'],
    )
    with pytest.raises(
        RecipeError, match=r"w.toml: vocab.path: .*pinned.json: is (a word|not a textlstm)"
    ):
        preprocess(
            text_settings(wrong),
            {"train": TEXTS, "validation": TEXTS[:5]},
            Options(vocab_dir=None, cache_dir=None),
        )


def test_missing_pinned_vocab_is_one_line(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path / "r.toml", "unused"), ['vocab.path="nope.json"'])
    with pytest.raises(RecipeError) as info:
        preprocess(
            text_settings(recipe), {"train": TEXTS, "validation": TEXTS[:5]}, Options(None, None)
        )
    assert info.value.lines == [
        f"{tmp_path / 'r.toml'}: vocab.path: nope.json: vocabulary file not found"
    ]


def test_read_vocab_file_rejects_damaged_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe not json")
    with pytest.raises(CheckpointError, match="not a valid vocabulary file"):
        read_vocab_file(bad, TokenizerConfig())


def test_check_measures_subword_recipes_in_words(recipe_path):
    result = CliRunner().invoke(
        app, ["check", str(with_kind(recipe_path, "bpe"))], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "text length in words (before truncation)" in result.stdout
