"""`textlstm tune`: a tiny study completes, resumes after SIGKILL with only the missing trials,
writes a best.toml that trains, and rejects a bad search space before any trial."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from textlstm.cli import app
from textlstm.errors import RecipeError
from textlstm.recipe import load_recipe
from textlstm.tuning import tune

from conftest import write_recipe

SPACE = """
[tune]
trials = 3
seed = 1
[tune.space]
"train.lr" = { log_uniform = [1e-3, 3e-2] }
"model.hidden_size" = { choice = [8, 16] }
"""

KILL_AT_TRIAL = """
import os, signal, sys
from textlstm.recipe import load_recipe
from textlstm.tuning import TuneEvents, tune

class Kill(TuneEvents):
    def trial_start(self, number, params):
        if number == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)

tune(load_recipe(sys.argv[1]), sys.argv[2], device="cpu", events=Kill())
"""


@pytest.fixture
def tune_recipe(tmp_path, corpus):
    return write_recipe(tmp_path / "tiny.toml", corpus, SPACE)


def test_tune_runs_the_trials_writes_a_leaderboard_and_a_best_recipe(tmp_path, tune_recipe):
    result = CliRunner().invoke(
        app,
        [
            "tune",
            str(tune_recipe),
            "--out",
            str(tmp_path / "runs"),
            "--device",
            "cpu",
            "--no-prune",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "leaderboard" in result.stdout and "best.toml" in result.stdout
    best = tmp_path / "runs" / "tiny-tune" / "best.toml"
    recipe = load_recipe(best)
    assert recipe.model.hidden_size in (8, 16) and 1e-3 <= recipe.train.lr <= 3e-2
    trained = CliRunner().invoke(
        app,
        ["train", str(best), "--out", str(tmp_path / "again"), "--device", "cpu"],
        catch_exceptions=False,
    )
    assert trained.exit_code == 0, trained.output


def test_a_killed_study_resumes_with_only_the_missing_trials(tmp_path, tune_recipe):
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AT_TRIAL, str(tune_recipe), str(tmp_path / "runs"), "2"],
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -9, killed.stderr
    result = tune(load_recipe(tune_recipe), tmp_path / "runs", trials=4, device="cpu")
    states = [t.state for t in result.trials]
    assert result.ran == 2  # trials 0 and 1 were done; the one killed at trial 2 is run again
    assert states.count("FAIL") == 1 and states[2] == "FAIL"
    assert sum(s in ("COMPLETE", "PRUNED") for s in states) == 4
    again = tune(load_recipe(tune_recipe), tmp_path / "runs", trials=4, device="cpu")
    assert again.ran == 0 and len(again.trials) == len(result.trials)


def test_a_misspelt_space_key_fails_before_any_trial(tmp_path, corpus):
    recipe = write_recipe(
        tmp_path / "tiny.toml", corpus, SPACE.replace("hidden_size", "hiden_size")
    )
    result = CliRunner().invoke(app, ["tune", str(recipe), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {recipe}: tune.space.model.hiden_size: unknown recipe "
        "key (did you mean 'hidden_size'?)"
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            '"model.pooling" = { choice = ["max", "maxx"] }',
            "tune.space.model.pooling: 'maxx' is not a valid value: unknown choice 'maxx'",
        ),
        (
            '"train.epochs" = { int_uniform = [3, 1] }',
            "tune.space.train.epochs: int_uniform = [low, high] needs low < high",
        ),
        (
            '"train.lr" = { log_uniform = [0, 1] }',
            "tune.space.train.lr: log_uniform needs a low bound above 0",
        ),
        ('"data.dataset" = { choice = ["x"] }', "tune.space.data.dataset: not a tunable key"),
        (
            '"train.lr" = { uniform = [0.1, 0.2], choice = [1] }',
            "tune.space.train.lr: give exactly one of choice, uniform, log_uniform, int_uniform",
        ),
    ],
)
def test_space_entries_are_validated_at_load(tmp_path, entry, message):
    path = tmp_path / "r.toml"
    path.write_text(f'name = "x"\n[data]\ndataset = "d"\n[tune]\n[tune.space]\n{entry}\n')
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert any(line.startswith(f"{path}: {message}") for line in info.value.lines), info.value.lines


def test_ctrl_c_stops_the_study_and_still_writes_the_best_recipe(tmp_path, tune_recipe):
    from textlstm.tuning import TuneEvents

    class CtrlC(TuneEvents):
        def trial_start(self, number, params):
            if number == 2:
                raise KeyboardInterrupt

    result = tune(
        load_recipe(tune_recipe),
        tmp_path / "runs",
        trials=5,
        device="cpu",
        events=CtrlC(),
        prune=False,
    )
    assert result.interrupted and [t.state for t in result.trials] == [
        "COMPLETE",
        "COMPLETE",
        "FAIL",
    ]
    assert (tmp_path / "runs" / "tiny-tune" / "best.toml").is_file()
    again = tune(load_recipe(tune_recipe), tmp_path / "runs", trials=5, device="cpu", prune=False)
    assert not again.interrupted and sum(t.state == "COMPLETE" for t in again.trials) == 5


def test_retrain_trains_on_the_carved_validation_rows_too_and_evaluates_on_the_same_test(
    tmp_path, tune_recipe
):
    """The corpus has one split: validation and test are carved from it. The retrained run
    trains on train + carved validation, and its test split is the trials' test split."""
    import json

    result = CliRunner().invoke(
        app,
        [
            "tune",
            str(tune_recipe),
            "--out",
            str(tmp_path / "runs"),
            "--device",
            "cpu",
            "--trials",
            "2",
            "--no-prune",
            "--retrain",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    folder = tmp_path / "runs" / "tiny-tune"
    trial = json.loads(next(folder.glob("trials/*/*/*/meta.json")).read_text())["split_rows"]
    retrained = json.loads(next((folder / "retrain").glob("*/*/meta.json")).read_text())
    rows = retrained["split_rows"]
    assert rows["train"] == trial["train"] + trial["validation"]
    assert rows["test"] == trial["test"] and rows["validation"] == trial["validation"]
    run_dir = next((folder / "retrain").glob("*/*/meta.json")).parent
    evaluated = CliRunner().invoke(
        app,
        ["evaluate", str(run_dir), "--split", "test"],
        catch_exceptions=False,
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert "accuracy" in evaluated.output
