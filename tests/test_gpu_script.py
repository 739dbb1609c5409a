"""bench/gpu.sh, the GPU figures' one prepared call: its dry run takes every step on the CPU on tiny
generated data, so a renamed option or a moved script fails here, not on a borrowed GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu.sh"


def gpu_sh(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("OUT", None)
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, cwd=ROOT
    )


def test_dry_run_takes_every_step(tmp_path: Path) -> None:
    done = gpu_sh("--dry-run", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = (tmp_path / "summary.txt").read_text().splitlines()
    steps = {line.split(":")[0]: line for line in summary[1:]}
    assert sorted(steps) == ["imdb-evaluate", "imdb-train", "scaling", "speed"]
    assert all(": exit 0," in line for line in steps.values()), summary
    speed = (tmp_path / "speed.log").read_text()
    # every row of the table came out, the reference's and the toolkit's, on the device asked for
    assert "; cpu, " in speed
    for row in ("PyTorch reference", "textlstm fp32", "onnxruntime int8", "peak RSS, predict"):
        assert row in speed, row
    assert "| 1 |" in (tmp_path / "scaling.log").read_text()
    assert "test (" in (tmp_path / "imdb-evaluate.log").read_text()
    assert (tmp_path / "runs" / "imdb" / "latest" / "eval-test.json").is_file()


def test_without_data_or_with_a_typo_it_says_how_and_stops(tmp_path: Path) -> None:
    done = gpu_sh("--out", str(tmp_path))
    assert done.returncode == 2
    assert "needs DATA" in done.stderr and "stanfordnlp/sst2" in done.stderr
    done = gpu_sh("--dry-rn")
    assert done.returncode == 2
    assert "unknown option --dry-rn" in done.stderr
    assert not (tmp_path / "summary.txt").exists()
