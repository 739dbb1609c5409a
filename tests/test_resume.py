"""Interruptions lose nothing: a run killed mid-epoch, or stopped with Ctrl-C, resumes to exactly
the result of an uninterrupted run."""

import json
import subprocess
import sys

import pytest
import torch

from textlstm.errors import CheckpointError
from textlstm.recipe import load_recipe
from textlstm.run.checkpoint import load
from textlstm.training import Events, resume, train
from textlstm.training.state import FILE

KILLER = """
import os, signal, sys
from textlstm.recipe import load_recipe
from textlstm.training import Events, train

class KillMidEpoch(Events):
    epoch = batches = 0
    def epoch_start(self, epoch, epochs, batches):
        self.epoch, self.batches = epoch, 0
    def batch_end(self, loss, tokens):
        self.batches += 1
        if self.epoch == int(sys.argv[3]) and self.batches == 3:
            os.kill(os.getpid(), signal.SIGKILL)

train(load_recipe(sys.argv[1]), sys.argv[2], device="cpu", events=KillMidEpoch())
"""


class InterruptAt(Events):
    def __init__(self, epoch: int) -> None:
        self.at, self.epoch, self.batches, self.messages = epoch, 0, 0, []

    def message(self, text):
        self.messages.append(text)

    def epoch_start(self, epoch, epochs, batches):
        self.epoch, self.batches = epoch, 0

    def batch_end(self, loss, tokens):
        self.batches += 1
        if self.epoch == self.at and self.batches == 3:
            raise KeyboardInterrupt


def metrics(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [
        {k: v for k, v in row.items() if k not in ("seconds", "tokens_per_second")} for row in rows
    ]


def assert_same_run(a, b):
    assert metrics(a) == metrics(b)
    wa, wb = load(a).model.state_dict(), load(b).model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    meta_a, meta_b = (json.loads((r / "meta.json").read_text()) for r in (a, b))
    assert meta_a["best_epoch"] == meta_b["best_epoch"] and meta_a["stopped"] == meta_b["stopped"]


@pytest.fixture
def reference(tmp_path, recipe_path):
    return train(load_recipe(recipe_path), tmp_path / "reference", device="cpu").run_dir


def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(
    tmp_path, recipe_path, reference
):
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, str(recipe_path), str(tmp_path / "runs"), "2"],
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -9, killed.stderr
    (partial,) = (tmp_path / "runs" / "tiny").glob("*.partial")
    assert (partial / FILE).is_file() and len(metrics(partial)) == 1  # epoch 1 was saved
    with pytest.raises(CheckpointError, match="did not finish"):
        load(partial)

    done = subprocess.run(
        [sys.executable, "-m", "textlstm", "train", "--resume", str(partial), "--device", "cpu"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stdout and "after epoch 1 of 3" in done.stdout
    final = partial.with_name(partial.name.removesuffix(".partial"))
    assert final.is_dir() and not partial.exists() and not (final / FILE).exists()
    assert (tmp_path / "runs" / "tiny" / "latest").resolve() == final
    assert_same_run(final, reference)


def test_ctrl_c_keeps_best_weights_and_the_run_resumes_exactly(tmp_path, recipe_path, reference):
    events = InterruptAt(epoch=3)
    stopped = train(load_recipe(recipe_path), tmp_path / "runs", device="cpu", events=events)
    assert stopped.stopped == "interrupted" and stopped.best_epoch in (1, 2)
    assert (stopped.run_dir / FILE).is_file() and load(stopped.run_dir).model is not None
    assert (
        f"interrupted: kept the best weights so far (epoch {stopped.best_epoch}) in "
        f"{stopped.run_dir}; it can be resumed" in events.messages
    )

    result = resume(stopped.run_dir, device="cpu")
    assert result.run_dir == stopped.run_dir and result.stopped == "completed"
    assert [e.epoch for e in result.epochs] == [1, 2, 3]
    assert_same_run(result.run_dir, reference)


def test_ctrl_c_before_any_epoch_leaves_nothing(tmp_path, recipe_path):
    with pytest.raises(KeyboardInterrupt):
        train(load_recipe(recipe_path), tmp_path / "runs", device="cpu", events=InterruptAt(1))
    assert list((tmp_path / "runs" / "tiny").iterdir()) == []


def test_a_finished_run_or_a_foreign_folder_is_not_resumed(tmp_path, trained_run):
    with pytest.raises(CheckpointError, match=r"this run finished \(completed\)"):
        resume(trained_run, device="cpu")
    empty = tmp_path / "x.partial"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=f"no {FILE} here"):
        resume(empty, device="cpu")
    with pytest.raises(CheckpointError, match="run folder not found"):
        resume(tmp_path / "nope", device="cpu")


def test_damaged_resume_file_is_one_line(tmp_path, recipe_path):
    events = InterruptAt(epoch=2)
    run = train(load_recipe(recipe_path), tmp_path / "runs", device="cpu", events=events).run_dir
    (run / FILE).write_bytes((run / FILE).read_bytes()[:100])
    with pytest.raises(CheckpointError) as info:
        resume(run, device="cpu")
    assert len(info.value.lines) == 1 and "not a readable resume checkpoint" in info.value.lines[0]


def test_cli_needs_a_recipe_or_resume_but_not_both(recipe_path, trained_run):
    from typer.testing import CliRunner

    from textlstm.cli import app

    for args in ([], [str(recipe_path), "--resume", str(trained_run)]):
        result = CliRunner().invoke(app, ["train", *args])
        assert result.exit_code == 2
        assert "give a recipe file, or --resume RUN_FOLDER (not both)" in result.output


def test_concurrent_runs_of_one_recipe_never_clobber_each_other(tmp_path, recipe_path):
    """Three processes train the same recipe into the same runs/<name>/ at the same moment."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "textlstm",
                "train",
                str(recipe_path),
                "--out",
                str(tmp_path / "runs"),
                "--device",
                "cpu",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
    folder = tmp_path / "runs" / "tiny"
    runs = sorted(p for p in folder.iterdir() if p.name != "latest")
    assert len(runs) == 3 and not any(p.name.endswith(".partial") for p in runs)
    assert (folder / "latest").resolve() in runs
    first = metrics(runs[0])
    for run in runs:
        assert (
            load(run).labels == ["neg", "pos"] and metrics(run) == first
        )  # same seed, same result


def test_planted_pickle_as_resume_checkpoint_is_refused_and_never_unpickled(tmp_path, recipe_path):
    import pickle

    class Planted:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    run = train(
        load_recipe(recipe_path), tmp_path / "runs", device="cpu", events=InterruptAt(epoch=2)
    ).run_dir
    torch.save({"model.embedding.weight": Planted()}, str(run / FILE))
    with pytest.raises(CheckpointError, match="not a readable resume checkpoint"):
        resume(run, device="cpu")
    (run / FILE).write_bytes(pickle.dumps(Planted()))
    with pytest.raises(CheckpointError, match="not a readable resume checkpoint"):
        resume(run, device="cpu")
    assert not (tmp_path / "pwned").exists()


def test_the_package_has_no_way_to_unpickle_or_evaluate_strings():
    """A guard on the source itself: safetensors, JSON and TOML are the only formats read."""
    import re
    from pathlib import Path

    import textlstm

    banned = re.compile(
        r"\bimport pickle\b|\bpickle\.|\btorch\.load\(|\bjoblib\b|\bdill\b|"
        r"(?<![.\w])eval\(|(?<![.\w])exec\(|\b__import__\(|\bmarshal\b"
    )
    for path in Path(textlstm.__file__).parent.glob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            assert not banned.search(code), f"{path.name}:{number}: {line.strip()}"


def test_resumed_tensors_are_aligned_like_freshly_allocated_ones(tmp_path, recipe_path):
    """Tensors read straight from the file sit at offsets set by the header's length; vector
    kernels round differently on them, and a resumed run drifted from the uninterrupted one."""
    from textlstm.training.state import load_state

    run = train(
        load_recipe(recipe_path), tmp_path / "runs", device="cpu", events=InterruptAt(epoch=2)
    ).run_dir
    _, raw = load_state(run)
    assert {t.data_ptr() % 64 for t in raw["tensors"].values()} == {0}


def test_a_run_with_the_linear_model_resumes_to_the_uninterrupted_result(tmp_path, recipe_path):
    overrides = ["model.wide='nblr'", "model.wide_buckets=2048"]
    reference = train(load_recipe(recipe_path, overrides), tmp_path / "ref", device="cpu")
    stopped = train(
        load_recipe(recipe_path, overrides), tmp_path / "runs", device="cpu", events=InterruptAt(2)
    )
    assert stopped.stopped == "interrupted"
    result = resume(stopped.run_dir, device="cpu")  # the linear model comes back from the file
    assert_same_run(result.run_dir, reference.run_dir)
    wide = load(result.run_dir).model.wide
    assert wide.weight.abs().sum() > 0 and float(wide.network) > 0


def test_a_run_averaging_its_weights_resumes_to_the_uninterrupted_result(
    tmp_path, recipe_path, reference
):
    overrides = ["train.ema_decay=0.9"]
    averaged = train(load_recipe(recipe_path, overrides), tmp_path / "ref", device="cpu")
    stopped = train(
        load_recipe(recipe_path, overrides), tmp_path / "runs", device="cpu", events=InterruptAt(2)
    )
    assert stopped.stopped == "interrupted"
    result = resume(stopped.run_dir, device="cpu")  # the average comes back from the file
    assert_same_run(result.run_dir, averaged.run_dir)
    # and it is not the plain run: validation scored other weights
    assert metrics(averaged.run_dir) != metrics(reference)


FULL_DISK = """
import resource, signal, sys
from textlstm.cli import main
from textlstm.cli.progress import TrainProgress

after, limit = int(sys.argv.pop()), int(sys.argv.pop())
real = TrainProgress.epoch_end

def epoch_end(self, result):
    real(self, result)
    if result.epoch == after:  # from now on the kernel refuses any file past `limit` bytes
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

TrainProgress.epoch_end = epoch_end
sys.argv = ["textlstm", *sys.argv[1:]]
main()
"""


def test_a_refused_write_is_one_line_and_the_run_resumes_to_the_uninterrupted_result(
    tmp_path, recipe_path, reference
):
    """After epoch 1 the file system refuses files over 4 KiB (a real EFBIG from the kernel, as
    a full disk gives ENOSPC): epoch 2's resume checkpoint cannot be written. One line naming it,
    exit 2, no temporary file left, and the folder resumes from epoch 1 to the same run."""
    command = ["train", str(recipe_path), "--out", str(tmp_path / "runs"), "--device", "cpu"]
    failed = subprocess.run(
        [sys.executable, "-c", FULL_DISK, *command, "4096", "1"], capture_output=True, text=True
    )
    assert failed.returncode == 2, failed.stderr
    (partial,) = (tmp_path / "runs" / "tiny").glob("*.partial")
    lines = failed.stderr.strip().splitlines()
    assert lines == [
        f"error: {partial / FILE}: cannot write (File too large); {partial} keeps epoch 1: "
        f"continue with `textlstm train --resume {partial}`"
    ], failed.stderr
    assert sorted(p.name for p in partial.iterdir() if p.name.startswith(".")) == []
    assert len(metrics(partial)) == 2  # epoch 2 was logged; its checkpoint was not written

    done = subprocess.run(
        [sys.executable, "-m", "textlstm", "train", "--resume", str(partial), "--device", "cpu"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "after epoch 1 of 3" in done.stdout
    assert_same_run(partial.with_name(partial.name.removesuffix(".partial")), reference)
