"""bench/data_scale.py end to end on a tiny generated mirror, so that the bench of data far larger
than IMDB cannot rot between its (hour-long) real runs. Its figures mean nothing here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_size_and_step_is_measured(tmp_path: Path) -> None:
    data, work = tmp_path / "data", tmp_path / "work"
    bench = ROOT / "bench"
    subprocess.run(
        [sys.executable, str(bench / "tiny_mirror.py"), str(data)], check=True, capture_output=True
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    argv = [str(bench / "data_scale.py"), str(data), "--sizes", "60,150", "--steps", "3"]
    done = subprocess.run(
        [sys.executable, *argv, "--work", str(work)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"size"')]
    assert [row["size"] for row in rows] == [60, 150]
    for row in rows:
        assert row["train"]["steps"] > 0 and row["token_bytes"] > 0
        assert {"check", "predict"} <= row.keys() and "wide_note" in row["train"]
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    steps = ("check", "preprocessing + first steps", "predict", "model.wide fit; first steps")
    for size in ("60", "150"):
        for step in steps:
            assert any(line.startswith(f"| {size} | {step}") for line in table), (size, step)
    # past the source's 96 texts come copies of them with words dropped
    lines = (work / "corpus-150" / "texts.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 150
    copies = list(zip(lines[:54], lines[96:]))
    assert sum(a != b and len(b.split()) < len(a.split()) for a, b in copies) >= 50
    assert not (work / "runs-150").exists()  # each size's run is removed once measured
