"""Several processes training one model (torchrun + DistributedDataParallel, gloo on CPU).

The processes are real: torchrun starts `textlstm train` twice on a loopback rendezvous, or
torch.multiprocessing spawns two ranks that meet through a file store."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from textlstm.training.distributed import World

from conftest import write_label_folders, write_recipe

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="this torch has no distributed package"
)


def torchrun(*args: str, cwd: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", "-m", "textlstm", *args]
    # unbuffered: a test reads rank 0's table rows as they are printed
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finished(process: subprocess.Popen[str], seconds: float = 240) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=seconds)
    return process.returncode, out, err


def epoch_row(process: subprocess.Popen[str], epoch: int) -> None:
    """Read rank 0's output until the table row of ``epoch``: it is printed once that epoch's
    checkpoint is on disk. The job says when it got there; nothing waits on the clock."""
    assert process.stdout is not None
    row = re.compile(rf"\s*{epoch}\s+\d")
    for line in process.stdout:
        if row.match(line):
            return
    raise AssertionError(f"the job ended before epoch {epoch}: {process.communicate()[1][-3000:]}")


def ours(stderr: str) -> list[str]:
    """textlstm's own lines on stderr, without torchrun's warnings and failure report."""
    return [line for line in stderr.splitlines() if line.startswith(("error:", "rank "))]


# ---- the shares of a batch ------------------------------------------------------------------


@pytest.mark.parametrize("size", [2, 3, 4])
@pytest.mark.parametrize("rows", [1, 2, 5, 7, 64])
def test_the_shares_of_a_batch_weigh_to_the_whole_batch_mean(size, rows):
    batch = np.arange(100, 100 + rows)
    losses = np.random.default_rng(rows).random(200)
    shares = [World(rank, size).share(batch) for rank in range(size)]
    real = np.concatenate([s.rows for s in shares if s.real])
    assert sorted(real) == list(batch)  # every row once, on one rank
    assert sum(s.real for s in shares) == rows
    # DDP averages the ranks' gradients: the mean of weight * (mean loss of the share)
    ddp = np.mean([s.weight * losses[s.rows].mean() for s in shares])
    assert ddp == pytest.approx(losses[batch].mean(), rel=1e-12)
    assert all(len(s.rows) >= 1 for s in shares)  # a rank never gets an empty batch
    assert [s.weight for s in shares if not s.real] == [0.0] * (size - min(size, rows))


def test_a_single_process_takes_the_whole_batch():
    share = World().share(np.array([3, 1, 2]))
    assert list(share.rows) == [3, 1, 2] and share.weight == 1.0 and share.real == 3
    assert list(World(1, 3).rows(8)) == [1, 4, 7]


# ---- two ranks take the steps one process takes ---------------------------------------------


def _steps(world: World, adversarial: float = 0.0) -> dict[str, torch.Tensor]:
    """Three SGD steps of a tiny classifier (no dropout) on batches of 7, 1 and 4 rows, with a
    moving average of its weights (train.ema_decay) beside it, and adversarial training's
    pushed pass when ``adversarial`` is not 0."""
    from textlstm.model.classifier import LSTMClassifier
    from textlstm.recipe import ModelConfig, TrainConfig
    from textlstm.training.distributed import wrap
    from textlstm.training.events import Events
    from textlstm.training.loop import Fit, moving_average, train_epoch

    torch.manual_seed(0)
    cfg = ModelConfig(embedding_dim=8, hidden_size=6, dropout=0.0, pooling="mean")
    model = LSTMClassifier(cfg, 20, 3)
    rng = np.random.default_rng(0)
    ids = [rng.integers(2, 20, size=int(n)) for n in rng.integers(1, 12, size=12)]
    labels = rng.integers(0, 3, size=12)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    average = moving_average(model, 0.5)
    fit = Fit(
        model,
        torch.nn.CrossEntropyLoss(),
        optimizer,
        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
        labels,
        labels,
        3,
        world,
        wrap(model, world, torch.device("cpu")),
        average=average,
    )
    batches = [np.arange(0, 7), np.arange(7, 8), np.arange(8, 12)]
    train_cfg = TrainConfig(clip_grad_norm=0, adversarial=adversarial)
    done = train_epoch(fit, ids, batches, train_cfg, 1, torch.device("cpu"), "fp32", Events())
    averaged = {f"average.{k}": v for k, v in average.module.state_dict().items()}
    return {**model.state_dict(), **averaged, "loss": torch.tensor(done.loss / done.rows)}


def _rank(rank: int, store: str, out: str, adversarial: float) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        result = _steps(World(rank, 2, rank, "gloo"), adversarial)
        save_file({k: v.contiguous() for k, v in result.items()}, f"{out}.{rank}")
        dist.barrier()  # neither rank tears its connections down while the other still uses them
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("adversarial", [0.0, 0.3])
def test_two_ranks_take_the_same_steps_as_one_process(tmp_path, adversarial):
    import torch.multiprocessing as mp

    single = _steps(World(), adversarial)
    if adversarial:  # the pushed pass changes the steps, or this would not test it
        plain = _steps(World())
        assert not torch.allclose(single["head.weight"], plain["head.weight"], atol=1e-4)
    args = (str(tmp_path / "store"), str(tmp_path / "state"), adversarial)
    mp.spawn(_rank, args=args, nprocs=2)
    for rank in range(2):
        ranked = load_file(tmp_path / f"state.{rank}")
        assert ranked.keys() == single.keys()
        for name, value in single.items():
            torch.testing.assert_close(ranked[name], value, rtol=1e-5, atol=1e-6, msg=name)


def _finishing(rank: int, store: str, out: str, rank1_done: Any) -> None:
    import torch.distributed as dist

    from textlstm.training.distributed import together

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    written = Path(f"{out}.rank0-written")

    def work(world: World, target: torch.device) -> int:
        if world.main:  # rank 0 is still writing its run folder when rank 1 is done
            assert rank1_done.wait(timeout=120)  # the bound only limits a failure
            written.write_text("done")
        else:
            rank1_done.set()
        return world.rank

    try:
        assert together("cpu", work) == rank
        Path(f"{out}.{rank}").write_text(str(written.exists()))  # seen once together returned
    finally:
        dist.destroy_process_group()


def test_no_rank_leaves_the_job_before_rank_0_has_finished(tmp_path):
    import torch.multiprocessing as mp

    rank1_done = mp.get_context("spawn").Event()  # a gate, not a clock
    args = (str(tmp_path / "store"), str(tmp_path / "seen"), rank1_done)
    mp.spawn(_finishing, args=args, nprocs=2)
    assert [(tmp_path / f"seen.{rank}").read_text() for rank in range(2)] == ["True", "True"]


# ---- torchrun: the CLI on two processes ------------------------------------------------------


@pytest.fixture
def setup(tmp_path: Path) -> Path:
    write_label_folders(tmp_path / "corpus", per_class=50)
    write_recipe(tmp_path / "tiny.toml", tmp_path / "corpus")
    return tmp_path


def test_torchrun_trains_one_run_folder_whose_metrics_a_single_process_reproduces(setup):
    from textlstm.evaluation.evaluate import evaluate

    code, out, err = finished(torchrun("train", "tiny.toml", "--out", "runs", cwd=setup))
    assert code == 0, err[-3000:]
    assert "2 processes (gloo)" in out
    assert out.count("run folder:") == 1  # rank 0 alone reports
    assert ours(err) == []
    folders = sorted((setup / "runs" / "tiny").iterdir())
    assert [f.name for f in folders if f.name != "latest"] == [folders[0].name]  # one, finished
    run = folders[0]
    assert not run.name.endswith(".partial") and not (run / "resume.safetensors").exists()
    for name in ("model.safetensors", "recipe.toml", "vocab.json", "labels.json", "meta.json"):
        assert (run / name).is_file(), name
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").open()]
    assert epochs == [1, 2, 3]  # each epoch logged once, not once per rank
    meta = json.loads((run / "meta.json").read_text())
    # the validation metrics the two ranks computed together, against one process's
    alone = evaluate(run, split="validation", device="cpu").report
    assert meta["validation"]["accuracy"] == pytest.approx(alone.accuracy, abs=1e-12)
    assert meta["validation"]["macro_f1"] == pytest.approx(alone.macro_f1, abs=1e-12)
    assert meta["validation"]["validation_loss"] == pytest.approx(alone.loss, abs=1e-5)


def _rank_pid(parent: int, rank: int) -> int | None:
    """The pid of torchrun's worker ``rank`` (a child of its agent)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_a_killed_rank_ends_the_other_with_one_line_and_resume_finishes(setup):
    recipe = setup / "tiny.toml"
    recipe.write_text(recipe.read_text().replace("epochs = 3", "epochs = 30"), encoding="utf-8")
    process = torchrun("train", "tiny.toml", "--out", "runs", cwd=setup)
    parent = setup / "runs" / "tiny"
    epoch_row(process, 1)  # the first epoch finished
    assert list(parent.glob("*.partial/resume.safetensors"))
    victim = _rank_pid(process.pid, 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    code, _, err = finished(process, 60)  # the other rank ends, not hangs
    assert code != 0
    lines = ours(err)
    assert len(lines) == 1, err[-3000:]
    assert lines[0].startswith("error: rank 0 of 2:")
    assert "--resume" in lines[0]
    (partial,) = parent.glob("*.partial")
    code, _, err = finished(torchrun("train", "--resume", str(partial), cwd=setup))
    assert code == 0, err[-3000:]
    run = partial.with_name(partial.name.removesuffix(".partial"))
    assert (run / "model.safetensors").is_file() and not partial.exists()
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").open()]
    assert epochs == list(range(1, 31))


PRETRAIN = """
[pretrain]
epochs = {epochs}
batch_size = 4
bptt = 8
samples = 16
lr = 0.01
heldout_tokens = 200
checkpoint_minutes = 0.002
"""


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_torchrun_pretrains_and_resumes_a_language_model_after_a_killed_rank(setup):
    (setup / "lm.toml").write_text(
        (setup / "tiny.toml").read_text() + PRETRAIN.format(epochs=12), encoding="utf-8"
    )
    process = torchrun("pretrain", "lm.toml", "--out", "runs", cwd=setup)
    parent = setup / "runs" / "tiny-lm"
    epoch_row(process, 1)  # a checkpoint was written
    assert list(parent.glob("*.partial/resume.safetensors"))
    victim = _rank_pid(process.pid, 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    code, _, err = finished(process, 60)
    lines = ours(err)
    assert code != 0 and len(lines) == 1, err[-3000:]
    assert lines[0].startswith("error: rank 0 of 2:") and "pretrain --resume" in lines[0]
    (partial,) = parent.glob("*.partial")
    code, out, err = finished(torchrun("pretrain", "--resume", str(partial), cwd=setup))
    assert code == 0, err[-3000:]
    run = partial.with_name(partial.name.removesuffix(".partial"))
    assert out.count("run folder:") == 1
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").open()]
    assert epochs == list(range(1, 13))
    meta = json.loads((run / "meta.json").read_text())
    assert meta["kind"] == "language_model" and meta["processes"] == 2
    assert meta["stopped"] == "completed"


# ---- torchrun with data large enough for tokenizer worker processes ---------------------------


@pytest.fixture
def large(tmp_path: Path) -> Path:
    """Over 2,000,000 characters of training text: rank 0 tokenizes it in forked workers."""
    from textlstm.text.encoder import PARALLEL_MIN_CHARS

    rows, chars = [], 0
    rng = np.random.default_rng(0)
    words = np.array(
        [
            "the",
            "a",
            "film",
            "plot",
            "actor",
            "scene",
            "story",
            "was",
            "and",
            "good",
            "bad",
            "dull",
            "great",
        ]
    )
    while chars < PARALLEL_MIN_CHARS * 1.4:  # the train split, after carving, still over it
        label = int(rng.integers(2))
        text = " ".join(rng.choice(words, 20)) + (" great" if label else " dull")
        rows.append(json.dumps({"text": text, "label": label}))
        chars += len(text)
    (tmp_path / "big.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    write_recipe(tmp_path / "big.toml", tmp_path / "big.jsonl")
    recipe = (tmp_path / "big.toml").read_text()
    recipe = recipe.replace("epochs = 3", "epochs = 1").replace(
        "batch_size = 8", "batch_size = 512"
    )
    (tmp_path / "big.toml").write_text(recipe, encoding="utf-8")
    return tmp_path


def test_torchrun_on_data_that_forks_tokenizer_workers_finishes(large):
    code, out, err = finished(torchrun("train", "big.toml", "--out", "runs", cwd=large))
    assert code == 0, err[-3000:]
    assert out.count("run folder:") == 1 and "Traceback" not in err, err[-3000:]


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_sigterm_to_torchrun_while_rank_0_tokenizes_ends_every_rank_with_one_line(large):
    process = torchrun("train", "big.toml", "--out", "runs", cwd=large)
    assert process.stdout is not None
    for line in process.stdout:  # rank 0 says it goes on to tokenize: stop the job there
        if "validation split carved" in line:
            break
    process.send_signal(signal.SIGTERM)
    code, _, err = finished(process, 60)  # every rank ends, without SIGKILL
    assert code != 0
    # torchrun reports its own signal with a traceback; a rank or a worker of one must not
    assert "textlstm/" not in err and "Terminated:" not in err, err[-3000:]
    lines = ours(err)
    assert 1 <= len(lines) <= 2 and all("SIGTERM" in line for line in lines), err[-3000:]
    assert not list((large / "runs").glob("*/*.partial"))
