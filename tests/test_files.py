"""Files: written whole or not at all (``files.atomic_path``), and every file the toolkit reads by
path (recipe, vocabulary, tokenizer, labels, meta, weights, resume checkpoint, vectors) refused
in one line when it is not a regular file or is far larger than its kind can be. A FIFO must
never make a command wait: an alarm fails the test instead of letting it hang."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from textlstm.cli import app
from textlstm.errors import CheckpointError, RecipeError
from textlstm.files import MiB, atomic_path, read_bytes, write_text

from conftest import write_label_folders, write_recipe


@pytest.fixture(autouse=True)
def no_hang():
    def hung(signum, frame):
        raise TimeoutError("a read blocked: a FIFO or device was opened as a file")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def fifo(path: Path) -> Path:
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    return path


def device(path: Path) -> Path:
    path.unlink(missing_ok=True)
    path.symlink_to("/dev/zero")
    return path


def sparse(path: Path, size: int) -> Path:
    path.unlink(missing_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)  # takes no disk space
    return path


def one_line(*args: object) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- writing ----------------------------------------------------------------------------------


def test_atomic_path_replaces_the_target_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "report.json"
    write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and sorted(tmp_path.iterdir()) == [target]
    with atomic_path(target, durable=True) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".json" and tmp != target
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(tmp_path.iterdir()) == [target]


def test_atomic_path_keeps_a_folder_another_process_finished_first(tmp_path):
    target = tmp_path / "ids"
    target.mkdir()
    (target / "theirs").write_text("x")
    with atomic_path(target, keep_existing=True) as tmp:
        tmp.mkdir()
        (tmp / "ours").write_text("y")
    assert [p.name for p in target.iterdir()] == ["theirs"] and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(OSError), atomic_path(target) as tmp:  # without keep_existing: an error
        tmp.mkdir()
        (tmp / "ours").write_text("y")
    assert len(list(tmp_path.iterdir())) == 1


# --- reading: the checks themselves ---------------------------------------------------------------


def test_read_bytes_refuses_fifos_devices_and_oversized_files_without_reading_them(tmp_path):
    cases = {
        fifo(tmp_path / "pipe"): "is a named pipe (FIFO), not a regular file; give a recipe",
        device(tmp_path / "zero"): "is a device, not a regular file; give a recipe",
        sparse(tmp_path / "big", 3 * MiB): "3 MiB is far larger than a recipe can be (at most "
        "2 MiB); check the path",
    }
    for path, message in cases.items():
        with pytest.raises(RecipeError) as info:
            read_bytes(path, "recipe", RecipeError, 2 * MiB)
        assert info.value.lines == [f"{path}: {message}"]
    (tmp_path / "small").write_bytes(b"abc")
    assert read_bytes(tmp_path / "small", "recipe", RecipeError, 2 * MiB) == b"abc"
    with pytest.raises(FileNotFoundError):
        read_bytes(tmp_path / "absent", "recipe", RecipeError, 2 * MiB)


# --- reading: every file the toolkit reads by path ------------------------------------------------


def test_a_recipe_that_is_a_fifo_a_device_or_huge_is_one_line(tmp_path):
    pipe = fifo(tmp_path / "pipe.toml")
    assert one_line("check", pipe) == (
        f"error: {pipe}: is a named pipe (FIFO), not a regular file; give a recipe .toml file"
    )
    zero = device(tmp_path / "zero.toml")
    assert one_line("train", zero, "--out", tmp_path / "runs") == (
        f"error: {zero}: is a device, not a regular file; give a recipe .toml file"
    )
    big = sparse(tmp_path / "big.toml", 5 * MiB)
    assert one_line("check", big) == (
        f"error: {big}: 5 MiB is far larger than a recipe .toml file can be (at most 1 MiB); "
        "check the path"
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "name, make, message",
    [
        (
            "labels.json",
            fifo,
            "is a named pipe (FIFO), not a regular file; give a labels.json file",
        ),
        (
            "meta.json",
            lambda p: sparse(p, 65 * MiB),
            "65 MiB is far larger than a meta.json file can be (at most 64 MiB); check the path",
        ),
        ("vocab.json", device, "is a device, not a regular file; give a vocabulary .json file"),
        (
            "model.safetensors",
            fifo,
            "is a named pipe (FIFO), not a regular file; give a safetensors weights file",
        ),
        (
            "recipe.toml",
            fifo,
            "is a named pipe (FIFO), not a regular file; give a recipe .toml file",
        ),
    ],
)
def test_a_run_folder_file_that_is_not_a_regular_file_is_one_line(
    tmp_path, trained_run, name, make, message
):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    path = make(run / name)
    assert one_line("evaluate", run) == f"error: {path}: {message}"
    assert one_line("predict", run, "-") == f"error: {path}: {message}"


def test_a_pinned_vocabulary_or_vectors_file_that_is_a_fifo_is_one_line(tmp_path):
    corpus = write_label_folders(tmp_path / "corpus", per_class=10)
    pipe = fifo(tmp_path / "vocab.json")
    recipe = write_recipe(tmp_path / "r.toml", corpus, f'[vocab]\npath = "{pipe}"\n')
    assert one_line("train", recipe, "--out", tmp_path / "runs", "--no-cache") == (
        f"error: {recipe}: vocab.path: {pipe}: is a named pipe (FIFO), not a regular file; give a "
        "vocabulary .json file"
    )
    vectors = fifo(tmp_path / "vectors.txt")
    recipe = write_recipe(tmp_path / "r.toml", corpus, f'[vocab]\nvectors = "{vectors}"\n')
    assert one_line("train", recipe, "--out", tmp_path / "runs") == (
        f"error: {recipe}: vocab.vectors: {vectors}: is a named pipe (FIFO), not a regular file; "
        "give a vectors file"
    )
    assert not (tmp_path / "runs").exists()


def test_a_vectors_file_without_line_breaks_is_refused_and_long_lines_are_never_held(tmp_path):
    from textlstm.text.vectors import LINE_LIMIT, inspect, read_vectors

    flat = tmp_path / "flat.txt"
    flat.write_text("x" * (LINE_LIMIT + 10))
    with pytest.raises(RecipeError) as info:
        inspect(flat, "r.toml")
    assert info.value.lines == [
        f"r.toml: vocab.vectors: {flat}: the first line is over {LINE_LIMIT:,} characters long; "
        "not a vectors file"
    ]
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("good 1 2\n" + "junk " * (LINE_LIMIT // 2) + "\nfine 3 4\n")
    found, _ = read_vectors(inspect(mixed, "r.toml"), {"good", "fine", "junk"}, lowercase=False)
    assert sorted(found) == ["fine", "good"]  # the overlong line is passed over, not parsed


def test_a_resume_checkpoint_that_is_a_fifo_is_one_line(tmp_path):
    from textlstm.training.state import FILE, load_state

    run = tmp_path / "run.partial"
    run.mkdir()
    pipe = fifo(run / FILE)
    with pytest.raises(CheckpointError) as info:
        load_state(run)
    assert info.value.lines == [
        f"{pipe}: is a named pipe (FIFO), not a regular file; give a resume checkpoint"
    ]


def _files_over_1000_bytes_refused() -> None:
    """In the child: the kernel refuses any file past 1,000 bytes (EFBIG, as a full disk gives
    ENOSPC), and the write fails instead of the process being signalled."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))


@pytest.mark.parametrize("command", ["predict", "export"])
def test_a_refused_write_of_predict_or_export_is_one_line_and_leaves_nothing(
    tmp_path, trained_run, command
):
    import subprocess
    import sys

    texts = tmp_path / "texts.txt"
    texts.write_text("".join(f"a lovely film and a dull plot, number {i}\n" for i in range(60)))
    target = tmp_path / ("out.jsonl" if command == "predict" else "export")
    args = [str(texts), "-o", str(target)] if command == "predict" else ["-o", str(target)]
    done = subprocess.run(
        [sys.executable, "-m", "textlstm", command, str(trained_run), *args],
        capture_output=True,
        text=True,
        preexec_fn=_files_over_1000_bytes_refused,
    )
    assert done.returncode == 2, done.stderr
    kept = "" if command == "predict" else "; nothing was kept"
    assert done.stderr.strip().splitlines() == [
        f"error: {target}: cannot write (File too large){kept}"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["texts.txt"]
