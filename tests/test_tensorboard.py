"""``--tensorboard DIR`` on train and pretrain: the event files hold what metrics.jsonl holds."""

from __future__ import annotations

import json
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from textlstm.cli import app
from textlstm.report.tensorboard import TensorBoardEvents

from conftest import PRETRAIN, write_recipe


def read(folder):
    (run,) = [p for p in folder.iterdir() if p.is_dir()]
    (stamp,) = list(run.iterdir())
    events = EventAccumulator(str(stamp), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return run.name, stamp, events


def values(events, tag):
    return [(e.step, e.value) for e in events.Scalars(tag)]


def metrics(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_train_writes_the_epochs_and_steps_it_logs(tmp_path, recipe_path):
    board = tmp_path / "board"
    args = ["train", str(recipe_path), "--out", str(tmp_path / "runs"), "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--tensorboard", str(board)])
    assert result.exit_code == 0, result.output
    run_dir = (tmp_path / "runs" / "tiny" / "latest").resolve()
    name, stamp, events = read(board)
    assert (name, stamp.name) == ("tiny", run_dir.name)
    assert f"TensorBoard logs: {stamp}" in result.output
    rows = metrics(run_dir)
    for tag, key in [
        ("epoch/validation_accuracy", "accuracy"),
        ("epoch/validation_macro_f1", "macro_f1"),
        ("epoch/validation_loss", "validation_loss"),
        ("epoch/train_loss", "train_loss"),
        ("epoch/learning_rate", "learning_rate"),
    ]:
        assert values(events, tag) == [
            (row["epoch"], pytest.approx(row[key], rel=1e-6)) for row in rows
        ], tag
    steps = [step for step, _ in values(events, "batch/train_loss")]
    assert len(rows) == 3 and steps == list(range(1, len(steps) + 1))
    assert len(steps) % 3 == 0  # the same batches each epoch
    (recipe,) = events.Tensors("recipe/text_summary")
    assert b'name = "tiny"' in recipe.tensor_proto.string_val[0]


def test_pretrain_writes_perplexity_per_epoch(tmp_path, corpus):
    path = write_recipe(tmp_path / "r.toml", corpus, PRETRAIN + 'directions = "both"\n')
    board = tmp_path / "board"
    args = ["pretrain", str(path), "--out", str(tmp_path / "runs"), "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--tensorboard", str(board)])
    assert result.exit_code == 0, result.output
    name, _, events = read(board)
    rows = metrics(tmp_path / "runs" / "tiny-lm" / "latest")
    assert name == "tiny-lm" and len(rows) == 2
    for tag, key in [("epoch/perplexity", "perplexity"), ("epoch/train_loss", "train_loss")]:
        assert values(events, tag) == [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in rows]
    backward = values(events, "epoch/backward_perplexity")
    assert [v for _, v in backward] == [pytest.approx(r["backward_perplexity"]) for r in rows]
    assert len(values(events, "batch/train_loss")) == sum(r["steps"] for r in rows)


def test_a_resumed_run_goes_on_in_the_same_folder_from_its_step(tmp_path):
    board = TensorBoardEvents(tmp_path / "board")
    board.run_start(tmp_path / "runs" / "x-lm" / "20260101-000000.partial", 'name = "x"', 7)
    board.epoch_start(2, 3, 5)  # a language model resumed mid-epoch: its own step count holds
    board.batch_end(1.5, 10)
    board.epoch_start(3, 3, 5)
    board.batch_end(1.25, 10)
    board.close()
    assert board.folder == tmp_path / "board" / "x-lm" / "20260101-000000"
    _, _, events = read(tmp_path / "board")
    assert values(events, "batch/train_loss") == [(8, 1.5), (11, 1.25)]


def test_without_the_package_it_is_one_line_and_nothing_is_written(
    tmp_path, recipe_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    args = ["train", str(recipe_path), "--out", str(tmp_path / "runs"), "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--tensorboard", str(tmp_path / "board")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --tensorboard: the tensorboard package is not installed; "
        "pip install 'textlstm[tensorboard]'"
    ]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "board").exists()
