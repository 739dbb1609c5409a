"""Seeing a run: the plots every training run writes, the one-file HTML report with every
section and nothing from the network, calibration's arithmetic, and `compare` listing exactly
the recipe keys that differ."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from textlstm.cli import app
from textlstm.recipe import load_recipe
from textlstm.report.compare import compare
from textlstm.report.page import SECTIONS
from textlstm.run.plots import calibration
from textlstm.training import train

from conftest import write_label_folders, write_recipe

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


def test_every_run_writes_its_learning_curves_and_validation_confusion(trained_run):
    for name in ("learning-curves.png", "validation-confusion.png"):
        data = (trained_run / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, name


def test_the_report_has_every_section_and_loads_nothing(trained_run, tmp_path):
    run = shutil.copytree(trained_run, tmp_path / "run")  # the shared run stays as it is
    result = runner.invoke(app, ["report", str(run), "--split", "test"])
    assert result.exit_code == 0, result.output
    assert "expected calibration error" in result.output
    page = (run / "report-test.html").read_text(encoding="utf-8")
    for key, title in SECTIONS:
        assert f'<section id="{key}"><h2>{title}</h2>' in page, key
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', page)
    assert images == [
        "learning curves",
        "confusion matrix or per-label scores",
        "reliability diagram before calibration",
        "reliability diagram after calibration",
    ]
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing fetched
    assert "<script" not in page and "@import" not in page
    assert 'name = "tiny"' in page  # the recipe, as the run resolved it
    assert re.search(r"accuracy <b>\d+\.\d\d%</b>", page)
    for when in ("before", "after"):
        assert (run / f"eval-test-reliability-{when}.png").read_bytes().startswith(PNG)
    mistakes = page[page.index('<section id="mistakes">') :]
    assert "No mistakes on this split." in mistakes or "<td>" in mistakes


def test_expected_calibration_error_by_hand():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    truth = np.array([0, 1, 1, 1])
    result = calibration(probs, truth)
    # bins: 0.5-0.6 holds 0.55 (right), 0.6-0.7 holds 0.7 (right), 0.7-0.8 holds 0.8 (wrong),
    # 0.8-0.9 holds 0.9 (right): |1-0.55| + |1-0.7| + |0-0.8| + |1-0.9|, each a quarter
    assert result.ece == pytest.approx((0.45 + 0.3 + 0.8 + 0.1) / 4)
    assert [b["count"] for b in result.bins] == [1, 1, 1, 1]


def test_compare_lists_exactly_the_keys_that_differ(trained_run, tmp_path):
    corpus = write_label_folders(tmp_path / "corpus")  # the same texts as trained_run's
    path = write_recipe(tmp_path / "tiny.toml", corpus)
    path.write_text(path.read_text().replace("hidden_size = 12", "hidden_size = 8"))
    other = train(load_recipe(path), tmp_path / "runs", device="cpu").run_dir
    done = compare([trained_run, other])
    assert set(done.differing) == {"model.hidden_size", "data.dataset"}
    assert done.differing["model.hidden_size"] == ["12", "8"]
    assert set(done.scores) >= {"validation accuracy", "best epoch", "training seconds"}

    result = runner.invoke(app, ["compare", str(trained_run), str(other)])
    assert result.exit_code == 0, result.output
    assert "model.hidden_size" in result.output and "train.lr" not in result.output
    result = runner.invoke(app, ["compare", str(trained_run)])
    assert result.exit_code == 2 and "two or more run folders" in result.output
