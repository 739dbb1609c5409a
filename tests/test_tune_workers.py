"""`textlstm tune` with several worker processes, a database storage, dead workers found by their
process or heartbeat, best-N folders, plots, the retrain step and the live table."""

import csv
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from textlstm.cli import TuneTable, app
from textlstm.recipe import load_recipe
from textlstm.tuning import TrialSummary, tune
from textlstm.tuning.study import open_storage
from textlstm.tuning.workers import STALE_SECONDS, fail_stale

from conftest import make_texts, write_recipe

SPACE = """
[tune]
trials = 6
seed = 3
[tune.space]
"train.lr" = { log_uniform = [1e-3, 3e-2] }
"model.hidden_size" = { choice = [8, 12, 16] }
"""


def study_of(folder, name="tiny", url=None):
    import optuna

    return optuna.load_study(study_name=name, storage=open_storage(folder, url))


def counts(study):
    trials = study.get_trials(deepcopy=False)
    done = [
        t
        for t in trials
        if t.state.name in ("COMPLETE", "PRUNED", "FAIL") and not t.user_attrs.get("orphaned")
    ]
    return len(done), [t for t in trials if t.user_attrs.get("orphaned")], trials


def wait_gone(worker, seconds=60.0):
    """Whether the worker process (``host:pid:start time``, not our child: its parent was killed)
    has ended. Waits on a pidfd, which becomes readable when the process exits: no polling;
    ``seconds`` is only a safety net. A pid now held by another process counts as gone."""
    import select

    pid, started = int(worker.split(":")[1]), worker.split(":")[2]
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        try:
            now = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        except OSError:
            return True
        if now != started:  # the worker is gone and its pid was given to another process
            return True
        return bool(select.select([fd], [], [], seconds)[0])
    finally:
        os.close(fd)


def tune_cli(recipe, out, *args):
    return [
        sys.executable,
        "-m",
        "textlstm",
        "tune",
        str(recipe),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--no-prune",
        *args,
    ]


GATED = Path(__file__).parent / "helpers" / "gated_cli.py"


def start_held_at(recipe, out, held, gate, **env):
    """`tune --jobs 2` in the background with every trial from number ``held`` on waiting at its
    start (tests/helpers/gated_cli.py); returned once both workers wait there, so exactly
    ``held`` trials have finished and trials ``held`` and ``held + 1`` are running."""
    gate.mkdir()
    os.mkfifo(gate / "reached")
    os.mkfifo(gate / "release")
    reached = os.open(gate / "reached", os.O_RDWR)  # read and write: the gates never wait on it
    command = subprocess.Popen(
        [sys.executable, str(GATED), *tune_cli(recipe, out, "--jobs", "2")[3:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TEXTLSTM_TEST_GATE": f"{gate}:{held}", **env},
    )
    seen, pending = set(), b""
    while seen != {held, held + 1}:  # the gates say when the workers got there
        ready, _, _ = select.select([reached], [], [], 900)  # the bound only limits a failure
        assert ready and command.poll() is None, "the workers never reached the held trials"
        *lines, pending = (pending + os.read(reached, 256)).split(b"\n")
        seen.update(int(line) for line in lines)
    os.close(reached)
    return command, out / "tiny-tune"


def test_two_workers_killed_with_sigkill_resume_the_same_study_and_best_toml_trains(
    tmp_path, corpus
):
    recipe = write_recipe(tmp_path / "tiny.toml", corpus, SPACE)
    out = tmp_path / "runs"
    first, folder = start_held_at(recipe, out, 2, tmp_path / "gate")
    first.send_signal(signal.SIGKILL)
    first.wait()
    finished, _, trials = counts(study_of(folder))
    assert finished == 2 and sorted(t.number for t in trials if t.state.name == "RUNNING") == [2, 3]
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2  # two processes claimed trials
    for worker in workers:  # each worker notices its parent is gone and exits
        assert wait_gone(worker), f"worker {worker} outlived its parent"

    again = subprocess.run(
        tune_cli(recipe, out, "--jobs", "2"), capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    finished_after, orphans, trials = counts(study_of(folder))
    assert finished_after == 6  # the same study: only the missing trials ran, not 6 new ones
    assert len(trials) == 8 and sorted(t.number for t in orphans) == [2, 3]
    assert all(t.user_attrs["reason"] == "its worker died; the trial is run again" for t in orphans)
    assert "leaderboard" in again.stdout
    trained = CliRunner().invoke(
        app,
        ["train", str(folder / "best.toml"), "--out", str(tmp_path / "again"), "--device", "cpu"],
    )
    assert trained.exit_code == 0, trained.output


def test_a_running_trial_is_stale_when_its_process_is_gone_or_its_heartbeat_is_old(tmp_path):
    import optuna

    folder = tmp_path / "t"
    folder.mkdir()
    study = optuna.create_study(study_name="s", storage=open_storage(folder, None))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    start = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19]
    here = socket.gethostname()
    cases = {
        "dead process here": {"worker": f"{here}:{dead.pid}:1"},
        "pid reused by another process": {"worker": f"{here}:{os.getpid()}:{int(start) + 1}"},
        "live process here": {"worker": f"{here}:{os.getpid()}:{start}"},
        "other machine, fresh heartbeat": {"worker": "elsewhere:1:1", "heartbeat": time.time()},
        "other machine, old heartbeat": {
            "worker": "elsewhere:1:1",
            "heartbeat": time.time() - STALE_SECONDS - 5,
        },
    }
    for name, attrs in cases.items():
        trial = study.ask()
        trial.set_user_attr("case", name)
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
    fail_stale(study)
    states = {
        t.user_attrs["case"]: (t.state.name, t.user_attrs.get("orphaned", False))
        for t in study.get_trials()
    }
    assert states == {
        "dead process here": ("FAIL", True),
        "pid reused by another process": ("FAIL", True),
        "live process here": ("RUNNING", False),
        "other machine, fresh heartbeat": ("RUNNING", False),
        "other machine, old heartbeat": ("FAIL", True),
    }


def test_keep_best_n_folders_plots_and_a_trial_that_raises_does_not_stop_the_study(
    tmp_path, corpus, monkeypatch
):
    import textlstm.tuning.study as tuning

    real_train = tuning.train

    def flaky(recipe, out, *args, **kwargs):
        if out.name == "0001":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_train(recipe, out, *args, **kwargs)

    monkeypatch.setattr(tuning, "train", flaky)
    recipe = load_recipe(
        write_recipe(
            tmp_path / "tiny.toml", corpus, SPACE.replace("trials = 6", "trials = 4\nkeep = 2")
        )
    )
    result = tune(recipe, tmp_path / "runs", device="cpu", prune=False)
    folder = tmp_path / "runs" / "tiny-tune"
    states = [t.state for t in result.trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert result.trials[1].reason == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    complete = sorted(
        (t for t in result.trials if t.state == "COMPLETE"), key=lambda t: (-t.value, t.number)
    )
    kept = sorted(p.name for p in (folder / "trials").iterdir())
    assert kept == sorted(f"{t.number:04d}" for t in complete[:2])  # only the best two
    assert [t.run_dir is not None for t in complete] == [True, True, False]
    for name in ("history.png", "importances.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    board = json.loads((folder / "leaderboard.json").read_text())
    assert [row["number"] for row in board] == [t.number for t in complete]


def write_split_csvs(root):
    root.mkdir()
    for split, count, seed in (("train", 30, 0), ("validation", 10, 1), ("test", 10, 2)):
        with open(root / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            for label in ("neg", "pos"):
                writer.writerows([text, label] for text in make_texts(label, count, seed))
    return root


def test_retrain_fits_train_plus_validation_for_the_best_trials_epochs(tmp_path):
    data = write_split_csvs(tmp_path / "data")
    text = write_recipe(tmp_path / "tiny.toml", data, SPACE.replace("trials = 6", "trials = 2"))
    text.write_text(
        text.read_text().replace("validation_fraction = 0.2\ntest_fraction = 0.2\n", "")
    )
    result = CliRunner().invoke(
        app,
        [
            "tune",
            str(text),
            "--out",
            str(tmp_path / "runs"),
            "--device",
            "cpu",
            "--no-prune",
            "--retrain",
        ],
    )
    assert result.exit_code == 0, result.output
    runs = [
        p
        for p in (tmp_path / "runs" / "tiny-tune" / "retrain" / "tiny").iterdir()
        if not p.is_symlink()
    ]  # and `latest`
    assert len(runs) == 1
    meta = json.loads((runs[0] / "meta.json").read_text())
    best = load_recipe(tmp_path / "runs" / "tiny-tune" / "best.toml")
    retrained = load_recipe(runs[0] / "recipe.toml")
    assert meta["split_rows"]["train"] == 80 and meta["split_rows"]["validation"] == 20
    assert retrained.data.train_on_validation and retrained.data.train_split == "train"
    assert retrained.train.keep == "last"
    assert retrained.model == best.model and retrained.train.lr == best.train.lr
    board = json.loads((tmp_path / "runs" / "tiny-tune" / "leaderboard.json").read_text())
    assert meta["best_epoch"] == retrained.train.epochs == board[0]["best_epoch"]
    assert "retrained" in result.stdout and "textlstm evaluate" in result.stdout


def test_two_workers_share_a_sqlite_database_storage(tmp_path, corpus):
    recipe = write_recipe(tmp_path / "tiny.toml", corpus, SPACE.replace("trials = 6", "trials = 4"))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    done = subprocess.run(
        tune_cli(recipe, tmp_path / "runs", "--jobs", "2", "--storage", url),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    study = study_of(None, url=url)
    finished, orphans, trials = counts(study)
    assert finished == 4 and not orphans and len(trials) == 4
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    assert not (tmp_path / "runs" / "tiny-tune" / "study.log").exists()


def test_a_storage_url_that_does_not_open_is_one_line_and_creates_nothing(tmp_path, corpus):
    recipe = write_recipe(tmp_path / "tiny.toml", corpus, SPACE)
    result = CliRunner().invoke(
        app,
        [
            "tune",
            str(recipe),
            "--out",
            str(tmp_path / "runs"),
            "--storage",
            "postgresql://me:secret@127.0.0.1:1/nodb",
        ],
    )
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert (
        line.startswith("error: --storage postgresql://me:***@127.0.0.1:1/nodb: ")
        and "\n" not in line
    )
    assert "secret" not in line
    assert not (tmp_path / "runs").exists()


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL server on loopback, when this machine has one to start."""
    pytest.importorskip("psycopg")
    import glob

    path = os.pathsep.join(
        [os.environ.get("PATH", ""), *sorted(glob.glob("/usr/lib/postgresql/*/bin"))]
    )
    initdb, pg_ctl = shutil.which("initdb", path=path), shutil.which("pg_ctl", path=path)
    if not (initdb and pg_ctl):
        pytest.skip("no PostgreSQL server programs (initdb, pg_ctl) here")
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="textlstm-pg-"))  # pytest's folders are root-only
    data = root / "data"
    prefix = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user")
        os.chmod(root, 0o777)
        prefix = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *prefix,
            pg_ctl,
            "-D",
            str(data),
            "-w",
            "-l",
            str(root / "log"),
            "-o",
            f"-p {port} -k {root} -h 127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


def test_workers_on_two_machines_share_a_postgresql_study(tmp_path, corpus, postgres):
    """Two `tune` commands with separate folders (as on two machines) and one database."""
    recipe = write_recipe(tmp_path / "tiny.toml", corpus, SPACE.replace("trials = 6", "trials = 5"))
    commands = [
        subprocess.Popen(
            tune_cli(recipe, tmp_path / f"machine{i}", "--storage", postgres),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (1, 2)
    ]
    for command in commands:
        _stdout, stderr = command.communicate(timeout=300)
        assert command.returncode == 0, stderr
    finished, orphans, trials = counts(study_of(None, url=postgres))
    assert finished == 5 and len(trials) == 5 + len(orphans)
    assert all("not needed" in t.user_attrs["reason"] for t in orphans)
    assert len({t.user_attrs["worker"] for t in trials}) == 2


def test_the_live_table_shows_running_and_finished_trials():
    from io import StringIO

    from rich.console import Console

    console = Console(file=StringIO(), width=120, force_terminal=False)
    table = TuneTable(["train.lr", "model.hidden_size"], "accuracy", live=False, console=console)
    table.trial_start(0, {"train.lr": 0.01, "model.hidden_size": 8})
    table.trial_epoch(0, 1, 0.75)
    table.trial_start(1, {"train.lr": 0.002, "model.hidden_size": 16})
    table.trial_end(
        TrialSummary(
            0, {"train.lr": 0.01, "model.hidden_size": 8}, 0.8125, "COMPLETE", 12.0, best_epoch=2
        )
    )
    render = Console(file=StringIO(), width=120, record=True)
    render.print(table)
    text = render.export_text()
    rows = [line for line in text.splitlines() if line.strip()[:1] in "│┃" or "0.01" in line]
    assert any("complete" in r and "0.8125" in r and "0.01" in r for r in rows), text
    assert any("running" in r and "0.002" in r and "16" in r for r in rows), text
    assert "trial 0: complete 0.8125" in console.file.getvalue()


def test_a_joined_train_split_reads_both_and_says_validation_is_not_held_out(tmp_path):
    from textlstm.data import load_splits
    from textlstm.recipe import DataConfig

    data = write_split_csvs(tmp_path / "data")
    splits = load_splits(DataConfig(dataset=str(data), train_split="train+validation"))
    assert [len(splits[n]) for n in splits.names] == [80, 20, 20]
    assert (
        "the validation rows are also training rows here: its scores are not held out"
        in splits.notes
    )
    with pytest.raises(Exception) as info:
        load_splits(DataConfig(dataset=str(data), train_split="train+dev"))
    assert "no 'dev' split" in str(info.value)


@pytest.mark.parametrize("as_error", [False, True], ids=["interrupt", "interrupt-as-error"])
def test_ctrl_c_with_two_workers_stops_both_and_still_writes_the_best_recipe(
    tmp_path, corpus, as_error
):
    """``as_error``: the stop reaches the worker inside code that turns KeyboardInterrupt into
    its own error (optuna's journal lock does); it is still a stop, and no other trial starts."""
    recipe = write_recipe(
        tmp_path / "tiny.toml", corpus, SPACE.replace("trials = 6", "trials = 40")
    )
    env = {"TEXTLSTM_TEST_GATE_AS_ERROR": "1"} if as_error else {}
    command, folder = start_held_at(recipe, tmp_path / "runs", 1, tmp_path / "gate", **env)
    command.send_signal(signal.SIGINT)  # as Ctrl-C does to the command (it passes it on)
    # a safety net for a hang, not a timing condition: after Ctrl-C both workers stop, the study
    # is closed and the plots are drawn, which in a full suite run has taken over 120 s
    stdout, stderr = command.communicate(timeout=420)
    assert command.returncode == 130, stderr
    finished, orphans, trials = counts(study_of(folder))
    assert finished == 1 and not any(t.state.name == "RUNNING" for t in trials)
    assert len(trials) == 3 and sorted(t.number for t in orphans) == [1, 2]
    assert all(t.user_attrs["reason"] == "interrupted; the trial is run again" for t in orphans)
    assert (folder / "best.toml").is_file() and "interrupted" in stdout + stderr
    for worker in {t.user_attrs["worker"] for t in trials}:
        assert wait_gone(worker)


def test_the_library_tune_with_retrain_trains_the_best_configuration(tmp_path):
    """README: textlstm.tune(recipe, ..., retrain=True) returns the retrained run too."""
    import textlstm

    data = write_split_csvs(tmp_path / "data")
    text = write_recipe(tmp_path / "tiny.toml", data, SPACE.replace("trials = 6", "trials = 2"))
    text.write_text(
        text.read_text().replace("validation_fraction = 0.2\ntest_fraction = 0.2\n", "")
    )
    result = textlstm.tune(
        textlstm.load_recipe(text), tmp_path / "runs", device="cpu", prune=False, retrain=True
    )
    assert result.retrained is not None
    assert result.retrained.run_dir.parent.parent == tmp_path / "runs" / "tiny-tune" / "retrain"
    assert textlstm.load_recipe(result.retrained.run_dir / "recipe.toml").data.train_on_validation


def test_a_failed_trials_reason_keeps_the_flag_names_for_the_cli_and_no_run_folder_for_divergence():
    from io import StringIO

    from rich.console import Console

    from textlstm.errors import TextLSTMError, TrainingDiverged, param
    from textlstm.tuning.results import summary
    from textlstm.tuning.study import reason

    diverged = TrainingDiverged(
        "the loss became nan; runs/x.partial keeps epoch 1", None, "the loss became nan"
    )
    assert reason(diverged) == "the loss became nan"
    stored = reason(TextLSTMError(f"{param('device', 'cuda')}: no CUDA GPU is available here"))

    from types import SimpleNamespace

    trial = SimpleNamespace(  # what Optuna keeps of a failed trial
        number=3,
        params={},
        value=None,
        state=SimpleNamespace(name="FAIL"),
        datetime_start=None,
        datetime_complete=None,
        user_attrs={"reason": stored},
    )

    failed = summary(trial)
    assert failed.reason == "device='cuda': no CUDA GPU is available here"  # the library's words
    console = Console(file=StringIO(), width=120)
    TuneTable([], "accuracy", live=False, console=console).trial_end(failed)
    assert (
        "trial 3: fail - (--device cuda: no CUDA GPU is available here)" in console.file.getvalue()
    )
