"""End to end: the CLI on a tiny recipe and tiny data made here."""

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from textlstm.cli import app

from conftest import write_recipe

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def texts(tmp_path):
    lines = [f"{w} film {i}" for i in range(300) for w in ("superb", "awful")]
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, lines


def test_train_evaluate_predict(tmp_path, recipe_path, texts):
    result = invoke("train", recipe_path, "--out", tmp_path / "runs", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "epoch  train loss" in result.stdout and "run folder:" in result.stdout
    run = tmp_path / "runs" / "tiny" / "latest"
    assert (run / "meta.json").is_file()

    result = invoke("evaluate", run, "--split", "test")
    assert result.exit_code == 0, result.output
    assert "test (fp32): 16 rows, accuracy" in result.stdout and "confusion matrix" in result.stdout
    report = json.loads((run / "eval-test.json").read_text())
    assert report["rows"] == 16 and len(report["confusion"]) == 2
    assert (run / "eval-test-confusion.png").read_bytes()[:4] == b"\x89PNG"

    path, lines = texts
    result = invoke("predict", run, path)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == len(lines)
    assert set(records[0]) == {"label", "score", "scores"}
    assert set(records[0]["scores"]) == {"neg", "pos"}
    # in input order: the same text gets the same record wherever it stands
    single = invoke("predict", run, "-", "--top-k", "1")
    assert single.exit_code == 0


def test_predict_keeps_order_on_shuffled_lengths(trained_run, tmp_path):
    from textlstm import Predictor

    lines = [("superb " * (i % 17 + 1)).strip() + f" {i}" for i in range(2000)]
    path = tmp_path / "in.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = invoke("predict", trained_run, path)
    assert result.exit_code == 0, result.output
    got = [json.loads(line)["scores"] for line in result.stdout.splitlines()]
    expected = Predictor.load(trained_run, "cpu").predict(lines[:50])
    assert len(got) == 2000
    for record, prediction in zip(got, expected):
        assert record == {k: round(v, 6) for k, v in prediction.scores.items()}


def test_predict_writes_csv_and_tsv_files(trained_run, tmp_path):
    (tmp_path / "in.jsonl").write_text('{"body": "superb"}\n{"body": "awful"}\n')
    out = tmp_path / "out.csv"
    result = invoke("predict", trained_run, tmp_path / "in.jsonl", "--text-key", "body", "-o", out)
    assert result.exit_code == 0, result.output
    rows = out.read_text().splitlines()
    assert rows[0] == "label,score,p_neg,p_pos,error" and len(rows) == 3
    assert rows[1].endswith(",")  # no error on that row
    assert not list(tmp_path.glob("*.partial"))
    out = tmp_path / "out.tsv"
    result = invoke(
        "predict",
        trained_run,
        tmp_path / "in.jsonl",
        "--text-key",
        "body",
        "-o",
        out,
        "--top-k",
        "1",
        "--on-error",
        "fail",
    )
    assert out.read_text().splitlines()[0] == "label\tscore\tlabel_1\tscore_1"


def test_check_prints_resolved_recipe_and_data_summary(recipe_path):
    result = invoke("check", recipe_path, "--set", "model.hidden_size=20")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "hidden_size = 20" in out and 'pooling = "max"' in out
    assert "validation" in out and "p95" in out and "neg" in out and "rows" in out


def test_check_counts_each_label_of_multi_label_rows_and_flags_skew(tmp_path):
    import json

    rows = [{"text": f"great song {i}", "labels": ["joy"] + ["music"] * (i % 25 == 0)}
            for i in range(100)]  # fmt: skip
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = write_recipe(tmp_path / "r.toml", tmp_path / "d.jsonl")
    recipe.write_text(recipe.read_text().replace("[data]\n", '[data]\nlabel = "labels"\n'))
    result = invoke("check", recipe)
    assert result.exit_code == 0, result.output
    said = " ".join(result.stdout.split())
    assert "(multi-label: a row counts for each of its labels)" in said
    assert "the classes are skewed: 'joy' has 60 training rows, 'music' 3; consider" in said


@pytest.mark.parametrize(
    "line, expected",
    [
        ("hiden_size = 64", "model.hiden_size: unknown key (did you mean 'hidden_size'?)"),
        ('num_layers = "two"', "model.num_layers: expected an integer, got 'two'"),
    ],
)
def test_bad_recipe_is_one_line_and_exit_2(tmp_path, corpus, line, expected):
    recipe = write_recipe(tmp_path / "bad.toml", corpus)
    recipe.write_text(recipe.read_text().replace("[model]\n", f"[model]\n{line}\n"))
    result = invoke("train", recipe, "--out", tmp_path / "runs")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"error: {recipe}: {expected}"]
    assert not (tmp_path / "runs").exists()


def test_bad_data_and_inputs_are_one_line_and_exit_2(tmp_path, corpus, trained_run):
    recipe = write_recipe(tmp_path / "r.toml", tmp_path / "no-such-folder")
    result = invoke("train", recipe, "--out", tmp_path / "runs")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "dataset path does not exist" in result.stderr

    recipe = write_recipe(tmp_path / "r2.toml", corpus, "")
    recipe.write_text(
        recipe.read_text().replace("validation_fraction", 'label = "stars"\nvalidation_fraction')
    )
    result = invoke("train", recipe, "--out", tmp_path / "runs")
    assert result.exit_code == 2 and "no label column 'stars'" in result.stderr
    assert not (tmp_path / "runs").exists()

    (tmp_path / "empty.txt").write_bytes(b"")
    result = invoke("predict", trained_run, tmp_path / "empty.txt")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'empty.txt'}: the input file is empty"

    result = invoke("evaluate", tmp_path / "not-a-run")
    assert result.exit_code == 2 and "run folder not found" in result.stderr


def test_real_process_exit_code_and_no_traceback(tmp_path):
    env = {**os.environ, "COLUMNS": "200"}
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[data]\ndataset = "d"\n[model]\nhiden_size = 1\n')
    done = subprocess.run(
        [sys.executable, "-m", "textlstm", "check", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == f"error: {bad}: model.hiden_size: unknown key (did you mean 'hidden_size'?)"
    )
    assert "Traceback" not in done.stderr + done.stdout


def test_evaluate_on_other_data(trained_run, tmp_path):
    data = tmp_path / "extra.csv"
    data.write_text(
        "review,sentiment\nsuperb lovely film,pos\nawful dull plot,neg\n"
        "great wonderful story,pos\n",
        encoding="utf-8",
    )
    result = invoke(
        "evaluate",
        trained_run,
        "--data",
        data,
        "--text-column",
        "review",
        "--label-column",
        "sentiment",
    )
    assert result.exit_code == 0, result.output
    assert "extra (fp32): 3 rows, accuracy" in result.stdout
    assert json.loads((trained_run / "eval-extra.json").read_text())["rows"] == 3
    (trained_run / "eval-extra.json").unlink()
    (trained_run / "eval-extra-confusion.png").unlink()

    data.write_text("review,sentiment\nsuperb film,pos\nso-so film,mixed\n", encoding="utf-8")
    result = invoke(
        "evaluate",
        trained_run,
        "--data",
        data,
        "--text-column",
        "review",
        "--label-column",
        "sentiment",
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {data}: split 'train' has labels not in the training labels: 'mixed' (1 rows); "
        "known labels: neg, pos"
    )
    assert not (trained_run / "eval-extra.json").exists()


def test_evaluate_with_baseline_fits_tfidf_lr_on_the_runs_training_rows(trained_run):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from textlstm.data import column, load_splits
    from textlstm.recipe import load_recipe

    result = invoke("evaluate", trained_run, "--baseline")
    assert result.exit_code == 0, result.output
    saved = json.loads((trained_run / "eval-test.json").read_text())
    low, high = saved["sets"]["expected"]  # where fresh rows' coverage lands in 95 % of draws
    assert 0.5 < low < 0.9 < high <= 1.0
    said = " ".join(result.stdout.split())
    assert f"({low:.1%} to {high:.1%} in 95 % of draws of rows like the validation ones)" in said
    linear = saved["baseline"]
    assert linear["method"] == "TF-IDF 1-2 grams + LR" and linear["rows"] == saved["rows"]

    recipe = load_recipe(trained_run / "recipe.toml")
    splits = load_splits(recipe.data, None, recipe.seed)
    train, test = splits["train"], splits["test"]
    assert linear["train_rows"] == len(train)  # the training rows only, not validation too
    c = float(linear["note"].split(",")[0].removeprefix("C="))
    assert c in (1.0, 4.0, 16.0, 64.0)
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    model = LogisticRegression(C=c, max_iter=2000).fit(
        vec.fit_transform(column(train, "text")), column(train, "label")
    )
    expected = (model.predict(vec.transform(column(test, "text"))) == column(test, "label")).mean()
    assert linear["accuracy"] == pytest.approx(expected)
    assert linear["accuracy"] >= 0.9  # the class words decide these texts: labels line up
    assert f"baseline TF-IDF 1-2 grams + LR (fitted on {len(train)} training rows" in result.stdout
    assert f"accuracy {linear['accuracy']:.2%}" in result.stdout.replace("\n", " ")
    assert "points" in result.stdout


def test_evaluate_shows_each_part_of_a_model_with_the_linear_model(tmp_path, recipe_path):
    runs = tmp_path / "runs"
    trained = invoke(
        "train", recipe_path, "--out", runs, "--set", "model.wide='nblr'", "--set",
        "model.wide_buckets=2048",
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    assert "model.wide: naive Bayes logistic regression on" in trained.stdout
    assert "model.wide: the network's logits weighed" in trained.stdout.replace("\n", " ")
    run = runs / "tiny" / "latest"
    result = invoke("evaluate", run, "--split", "validation")
    assert result.exit_code == 0, result.output
    parts = json.loads((run / "eval-validation.json").read_text())["parts_accuracy"]
    shown = result.stdout.replace("\n", " ")
    assert (
        f"model.wide: the network alone {parts['network']:.2%}, the linear model alone "
        f"{parts['linear']:.2%} on the same rows" in shown
    )


def test_version_from_the_command_and_the_module():
    from importlib.metadata import version

    import textlstm

    expected = f"textlstm {textlstm.__version__} (torch {version('torch')}, Python "
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith(expected), result.output
    done = subprocess.run(
        [sys.executable, "-m", "textlstm", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.startswith(expected), done.stderr
    code = (
        "import sys\nsys.argv = ['textlstm', '--version']\nfrom textlstm.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "False"  # fast: torch is not imported


def test_help_texts_read_as_whole_sentences_at_any_width():
    """Docstrings wrap at 80-odd columns in the source; the help must not keep those breaks."""
    wide = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "250"}, terminal_width=250)
    assert wide.exit_code == 0, wide.output
    lines = wide.output.splitlines()
    assert any("(and [pretrain] unlabelled ones); writes a run folder" in line for line in lines)
    assert any("labels, a predict.py that needs only onnxruntime" in line for line in lines)
    narrow = CliRunner().invoke(app, ["export", "--help"], env={"COLUMNS": "60"})
    words = " ".join(line.strip(" │") for line in narrow.output.splitlines()).split()
    assert "labels, a predict.py that needs only onnxruntime and numpy," in " ".join(words)
