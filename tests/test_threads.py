"""The thread policy: cores from affinity and quota, the load other work puts on them, the count
chosen and followed, and a count the user sets."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from textlstm import threads
from textlstm.cli import app
from textlstm.errors import TextLSTMError


@pytest.fixture(autouse=True)
def fresh_policy(monkeypatch):
    """Each test starts with no policy chosen and leaves torch's threads as it found them."""
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_policy", None)
    monkeypatch.delenv("TEXTLSTM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    yield
    torch.set_num_threads(before)


def test_cpu_quota_from_cgroup_v2_and_v1(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cpu_quota(tmp_path) == 3.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cpu_quota(tmp_path) is None
    assert threads.cpu_quota(tmp_path / "missing") is None


def test_cores_are_the_affinity_cut_to_the_quota():
    assert threads.usable_cores([0, 1, 2, 3], None) == 4
    assert threads.usable_cores([0, 1, 2, 3], 1.5) == 1  # a second thread would be throttled
    assert threads.usable_cores([0, 1, 2, 3], 2.0) == 2
    assert threads.usable_cores([0, 1], 8.0) == 2
    assert threads.usable_cores([0, 1], 0.5) == 1


def test_settle_drops_a_thread_per_busy_core_and_comes_back_with_hysteresis():
    assert threads.settle(2, 2, 0.0) == 2
    assert threads.settle(2, 2, 0.67) == 1  # one busy process sharing the two cores
    assert threads.settle(1, 2, 1.0) == 1
    assert threads.settle(1, 2, 0.35) == 1  # between the lines: no switch back yet
    assert threads.settle(1, 2, 0.1) == 2  # the other work ended
    assert threads.settle(2, 2, 0.35) == 2  # ... nor a switch down
    assert threads.settle(4, 4, 2.6) == 1
    assert threads.settle(1, 4, 1.1) == 3
    assert threads.settle(2, 2, 5.0) == 1  # never below one


def write_stat(path, busy: list[int], idle: list[int]) -> None:
    total = [sum(busy), 0, 0, sum(idle), 0, 0, 0, 0, 0, 0]
    lines = ["cpu " + " ".join(map(str, total))]
    for i, (b, d) in enumerate(zip(busy, idle)):
        lines.append(f"cpu{i} {b} 0 0 {d} 0 0 0 0 0 0")
    path.write_text("\n".join(lines) + "\nintr 1 2 3\n")


def test_load_is_other_work_on_our_cpus_minus_our_own(tmp_path):
    stat = tmp_path / "stat"
    clock, own = iter([100.0, 102.0]), iter([1.0, 2.5])  # this process: 1.5 s of CPU in 2 s

    class Timed(threads.Load):
        def clock(self):
            return next(clock)

        def own_seconds(self):
            return next(own)

    write_stat(stat, [1000, 1000, 5000], [0, 0, 0])
    load = Timed([0, 1], stat)
    tick = load.tick
    # cpu0 and cpu1 busy for the 2 s (4 CPU-seconds); cpu2 is not ours
    write_stat(stat, [1000 + 2 * tick, 1000 + 2 * tick, 5000 + 2 * tick], [0, 0, 0])
    others, seconds = load.since_last()
    assert seconds == 2.0
    assert others == pytest.approx((4.0 - 1.5) / 2.0)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_load_sees_a_busy_process_beside_this_one():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        load = threads.Load(threads.usable_cpus())
        start = cpu_seconds(busy.pid)
        while cpu_seconds(busy.pid) < start + 1.0:  # this loop is this process's own work
            pass
        others, seconds = load.since_last()
    finally:
        busy.kill()
        busy.wait()
    # the busy process's second of CPU, over the window (at least that second long)
    assert others >= 0.5 and others * seconds >= 0.9


def test_a_count_the_user_sets_is_kept_and_not_followed(monkeypatch):
    policy = threads.choose(3)
    assert (policy.threads, policy.chosen_by, policy.following) == (3, "--threads", False)
    assert torch.get_num_threads() == 3
    monkeypatch.setattr(threads, "_policy", None)
    monkeypatch.setenv("TEXTLSTM_THREADS", "2")
    assert threads.choose().chosen_by == "TEXTLSTM_THREADS"
    assert torch.get_num_threads() == 2
    monkeypatch.setenv("TEXTLSTM_THREADS", "auto")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert (threads.choose().threads, threads.current().chosen_by) == (1, "OMP_NUM_THREADS")
    assert threads.meta() == {"threads": 1, "cores": threads.current().cores,
                              "chosen_by": "OMP_NUM_THREADS"}  # fmt: skip


@pytest.mark.parametrize("value", ["two", "0", "-1", "1.5"])
def test_a_bad_thread_count_in_the_environment_is_one_line(monkeypatch, value):
    monkeypatch.setenv("TEXTLSTM_THREADS", value)
    with pytest.raises(TextLSTMError) as caught:
        threads.choose()
    assert caught.value.lines == [
        f"TEXTLSTM_THREADS={value!r}: not a thread count; set a whole number of 1 or more, or auto"
    ]


class FakeLoad:
    def __init__(self, samples):
        self.samples = list(samples)
        self.last = None

    def since_last(self):
        return (self.samples.pop(0), 2.0)


def test_following_moves_the_threads_with_the_load(monkeypatch):
    load = FakeLoad([0.0, 0.9, 0.9, 0.3, 0.05])
    policy = threads._first_look(2, None, load)  # type: ignore[arg-type]
    assert (policy.threads, policy.others, policy.following) == (2, 0.0, True)
    monkeypatch.setattr(threads, "_policy", policy)
    policy.seen.append(2)
    counts = []
    for _ in range(4):
        policy.next_look = 0.0  # due
        threads.follow()
        counts.append(torch.get_num_threads())
    assert counts == [1, 1, 1, 2]
    assert policy.seen == [2, 1, 2]
    assert threads.meta()["followed"] == [2, 1, 2]
    policy.next_look = float("inf")  # not due: no look, nothing moves
    threads.follow()
    assert load.samples == [] and torch.get_num_threads() == 2


def test_train_records_the_threads_with_the_device(tmp_path, recipe_path):
    result = CliRunner().invoke(
        app,
        ["train", str(recipe_path), "--out", str(tmp_path / "runs"), "--threads", "1"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "device cpu, 1 thread (set by --threads), fp32" in result.stdout
    meta = json.loads((tmp_path / "runs" / "tiny" / "latest" / "meta.json").read_text())
    assert meta["threads"]["threads"] == 1 and meta["threads"]["chosen_by"] == "--threads"
    assert "lanes" not in meta["threads"]  # one thread set by the user: no second lane


def test_train_chooses_by_load_and_says_so(tmp_path, recipe_path):
    result = CliRunner().invoke(
        app, ["train", str(recipe_path), "--out", str(tmp_path / "runs")], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "runs" / "tiny" / "latest" / "meta.json").read_text())
    chosen = meta["threads"]
    assert chosen["chosen_by"] == "load" and 1 <= chosen["threads"] <= chosen["cores"]
    said = re.search(
        r"device cpu, (\d) threads? \((\d) cores[^)]*; followed\)"
        r"(, the two directions side by side \(1 \+ 1\))?, fp32",
        result.stdout,
    )
    assert said is not None, result.stdout
    assert (int(said[1]), int(said[2])) == (chosen["threads"], chosen["cores"])
    # the recipe's BiLSTM runs its directions as two lanes of one thread where there are 2 cores
    side_by_side = chosen["cores"] >= 2
    assert (said[3] is not None) == side_by_side
    assert chosen.get("lanes") == ([1, 1] if side_by_side else None)


def test_a_bad_thread_count_on_the_command_line_is_refused(tmp_path, recipe_path, monkeypatch):
    result = CliRunner().invoke(
        app, ["train", str(recipe_path), "--out", str(tmp_path / "runs"), "--threads", "0"]
    )
    assert result.exit_code == 2 and "--threads" in result.output
    monkeypatch.setenv("TEXTLSTM_THREADS", "many")
    result = CliRunner().invoke(app, ["train", str(recipe_path), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "TEXTLSTM_THREADS='many': not a thread count" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()
