"""bench/train_ab.py on the tiny generated mirror: a variant at another git revision (in a worktree
of its own, removed after) and one with a recipe override both train, and the table compares
them. Its figures mean nothing here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_two_variants_train_interleaved_and_leave_no_worktree(tmp_path: Path) -> None:
    bench = ROOT / "bench"
    subprocess.run(
        [sys.executable, str(bench / "tiny_mirror.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    before = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True
    ).stdout
    variants = ["--variant", "now", ".", "--variant", "head", "HEAD", "model.embedding_dropout=0"]
    argv = [str(bench / "train_ab.py"), str(tmp_path), *variants, "--rows", "60", "--pairs", "1"]
    done = subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {
        line.split("|")[1].strip(): line
        for line in done.stdout.splitlines()
        if line.startswith("| ")
    }
    assert "| 1.00x | 1.00 |" in rows["now"]
    assert rows["head"].split("|")[2].strip().replace(",", "").isdigit()  # its median tokens/s
    after = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True
    ).stdout
    assert after == before


def test_one_variant_is_refused_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "train_ab.py"), str(tmp_path), "--variant", "a", "."],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "give two variants or more" in done.stderr
