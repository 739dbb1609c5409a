"""K-fold cross-validation: folds that partition the train split, one run per fold under one
parent, the mean and standard deviation of the held-out scores, and the baseline beside them."""

from __future__ import annotations

import json
import statistics

import pytest
from typer.testing import CliRunner

from textlstm.cli import app
from textlstm.data import load_splits
from textlstm.recipe import DataConfig, load_recipe

from conftest import write_label_folders, write_recipe


def test_the_folds_partition_the_train_split_stratified(tmp_path):
    corpus = write_label_folders(tmp_path / "corpus", per_class=30)
    held, rows = [], None
    for fold in (1, 2, 3):
        cfg = DataConfig(dataset=str(corpus), folds=3, fold=fold)
        splits = load_splits(cfg, seed=5)
        test = set(splits["test"]["text"])
        rest = set(splits["train"]["text"]) | set(splits["validation"]["text"])
        assert not test & rest and len(splits["test"]) == 20
        assert sorted(splits["test"]["label"]).count(0) == 10  # each fold holds both classes
        held.append(test)
        rows = rows or test | rest
        assert f"test split: fold {fold} of 3, 20 rows (stratified, seed 5)" in splits.notes
    assert set().union(*held) == rows and sum(map(len, held)) == len(rows) == 60


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ("fold = 2", "data.fold: needs data.folds (the number of folds)"),
        ("folds = 1", "data.folds: give 2 or more folds (0: no cross-validation)"),
        ("folds = 5\nfold = 6", "data.fold: give a fold from 1 to 5 (data.folds)"),
        (
            "folds = 5\nfold = 1\ntest_fraction = 0.1",
            "data.test_fraction: the folds give the test split; remove one of the two",
        ),
    ],
)
def test_fold_settings_that_cannot_hold_are_one_line_each(tmp_path, data, line):
    path = tmp_path / "r.toml"
    path.write_text(f'name = "x"\n[data]\ndataset = "d.csv"\n{data}\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {path}: {line}"


def test_train_folds_then_evaluate_the_folder_with_the_baseline(tmp_path):
    corpus = write_label_folders(tmp_path / "corpus", per_class=30)
    path = write_recipe(tmp_path / "tiny.toml", corpus)
    path.write_text(path.read_text().replace("test_fraction = 0.2\n", ""), encoding="utf-8")
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["train", str(path), "--folds", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    [folder] = [p for p in (out / "tiny-folds").iterdir() if p.name != "latest"]
    record = json.loads((folder / "folds.json").read_text())
    assert record["folds"] == 3 and len(record["scores"]["accuracy"]) == 3
    assert record["mean"]["accuracy"] == pytest.approx(
        statistics.fmean(record["scores"]["accuracy"])
    )
    assert record["std"]["accuracy"] == pytest.approx(
        statistics.stdev(record["scores"]["accuracy"])
    )
    for fold, run in enumerate(record["runs"], start=1):
        recipe = load_recipe(folder / run / "recipe.toml")
        assert (recipe.data.folds, recipe.data.fold, recipe.name) == (3, fold, f"tiny-fold{fold}")
        scored = json.loads((folder / run / "eval-test.json").read_text())
        assert scored["accuracy"] == pytest.approx(record["scores"]["accuracy"][fold - 1])
    shown = " ".join(result.output.split())
    assert (
        f"accuracy: mean {record['mean']['accuracy']:.2%} ± {record['std']['accuracy']:.2%}"
        in shown
    )
    again = CliRunner().invoke(app, ["evaluate", str(out / "tiny-folds" / "latest"), "--baseline"])
    assert again.exit_code == 0, again.output
    record = json.loads((folder / "folds.json").read_text())
    assert len(record["baseline"]["scores"]["accuracy"]) == 3
    assert f"TF-IDF + LR {record['baseline']['mean']['accuracy']:.2%}" in " ".join(
        again.output.split()
    )


def test_folds_beside_a_carved_test_split_is_one_line_and_writes_nothing(tmp_path):
    corpus = write_label_folders(tmp_path / "corpus", per_class=10)
    path = write_recipe(tmp_path / "tiny.toml", corpus)  # it carves test_fraction = 0.2
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["train", str(path), "--folds", "3", "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {path}: data.test_fraction: --folds gives the test split; remove "
        "data.test_fraction (or --set data.test_fraction=0)"
    )
    assert not out.exists()
