"""One run folder's life, shared by `train` and `pretrain`: what was asked for, what a stop
keeps, and how a write the file system refuses is said."""

import errno
from pathlib import Path

import pytest

from textlstm.errors import RecipeError, WriteFailed
from textlstm.files import refusal, refused
from textlstm.training.distributed import World
from textlstm.training.lifecycle import Guard, chosen, guarded, reserve

from conftest import write_recipe


def test_a_recipe_or_a_run_to_resume_exactly_one(tmp_path):
    recipe = write_recipe(tmp_path / "r.toml", "unused")
    assert chosen(recipe, None, ["model.hidden_size=9"], "train").model.hidden_size == 9
    assert chosen(None, tmp_path / "run.partial", None, "pretrain") == tmp_path / "run.partial"
    for args in ((None, None, None), (recipe, tmp_path, None)):
        with pytest.raises(RecipeError, match=r"train: give a recipe file, or resume='RUN_"):
            chosen(*args, "train")
    with pytest.raises(RecipeError, match="overrides: a resumed run keeps the recipe"):
        chosen(None, tmp_path, ["seed=1"], "train")


def test_refused_writes_are_told_from_other_errors():
    assert refused(OSError(errno.ENOSPC, "No space left on device")) == errno.ENOSPC
    assert refused(OSError(errno.EEXIST, "File exists")) is None
    assert refused(ValueError("os error 28")) is None  # only a writer's own error type counts

    class SafetensorError(Exception):  # the Rust writer's error, by its name
        pass

    rust = SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")
    assert refused(rust) == errno.ENOSPC and refusal(rust) == "No space left on device"
    assert refusal(WriteFailed("x", "Read-only file system")) == "Read-only file system"


def _guard(folder: Path, started: bool = True) -> Guard:
    return Guard(folder, World(), "resume.safetensors", "train", lambda: "epoch 2", lambda: started)


@pytest.mark.parametrize("resumable", [True, False])
def test_a_refused_write_keeps_a_resumable_folder_and_says_how_to_continue(tmp_path, resumable):
    folder = tmp_path / "run.partial"
    folder.mkdir()
    if resumable:
        (folder / "resume.safetensors").write_bytes(b"x")

    def full() -> str:
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "model.safetensors"))

    with pytest.raises(WriteFailed) as info:
        guarded(_guard(folder), full)
    kept = (
        f"{folder} keeps epoch 2: continue with `textlstm train --resume {folder}`"
        if resumable
        else "nothing had been checkpointed, so nothing was kept: train again"
    )
    assert info.value.lines == [
        f"{folder / 'model.safetensors'}: cannot write (No space left on device); {kept}"
    ]
    assert folder.exists() == resumable


def test_ctrl_c_before_anything_is_kept_removes_the_folder_after_it_keeps_it(tmp_path):
    folder = tmp_path / "run.partial"
    folder.mkdir()

    def stop() -> str:
        raise KeyboardInterrupt

    assert guarded(_guard(folder, started=True), stop) == "interrupted" and folder.exists()
    with pytest.raises(KeyboardInterrupt):
        guarded(_guard(folder, started=False), stop)
    assert not folder.exists()


def test_a_folder_whose_identity_cannot_be_written_is_not_left_behind(tmp_path):
    def write(folder: Path) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(folder / "recipe.toml"))

    with pytest.raises(WriteFailed, match="cannot write \\(Read-only file system\\); nothing"):
        reserve(tmp_path / "runs", "tiny", write)
    assert list((tmp_path / "runs" / "tiny").iterdir()) == []
