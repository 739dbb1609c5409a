"""Every runnable example in README.md runs, as printed, on tiny data: the shell commands (each
line of each ``bash`` block) and the library block. The recipes they name are replaced by tiny
ones of the same name in a scratch folder laid out like the repository (``recipes/``, ``runs/``,
``../shared/datasets``), so a documented command cannot rot unnoticed. A command that cannot run
here is listed in ``NOT_RUN`` with the reason, and a new README command that is neither run nor
listed fails the test."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_texts, write_label_folders

README = Path(__file__).resolve().parent.parent / "README.md"
NOT_RUN = {
    "make demo": "the README's own setup command; CI runs make test",
    "make test": "the README's own test command: this test runs inside it",
    ". .venv/bin/activate": "the commands here run with the venv's bin first on PATH",
    "createdb textlstm": "needs a PostgreSQL server; test_tune_workers starts one for --storage",
    "textlstm serve runs/bbc-news/latest": "serves until stopped; test_serve.py starts the "
    "server on loopback and calls it",
}
STORAGE = "--storage postgresql://user:password@dbhost:5432/textlstm"  # a server that is not here

TINY = """name = "{name}"
seed = 7

[data]
dataset = "{dataset}"
{columns}
[tokenizer]
kind = "{kind}"
max_length = 32

[model]
embedding_dim = 16
hidden_size = 12
dropout = 0.1

[train]
epochs = 2
batch_size = 8
lr = 0.01
patience = 0
{tune}"""

TUNE = """
[tune]
trials = 3
[tune.space]
"train.lr" = { log_uniform = [1e-3, 3e-2] }
"""


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def commands() -> list[str]:
    """Each command of each bash block: continuation lines joined, comments dropped."""
    found = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and not command.startswith("#"):
                found.append(re.sub(r"\s+", " ", command))
    return found


@pytest.fixture
def repository(tmp_path):
    """A scratch folder shaped like the repository: tiny recipes under their README names."""
    work = tmp_path / "work"
    (work / "recipes").mkdir(parents=True)
    corpus = write_label_folders(tmp_path / "bbc", per_class=20)
    (work / "recipes" / "bbc-news.toml").write_text(
        TINY.format(
            name="bbc-news",
            dataset=corpus,
            columns="validation_fraction = 0.2\ntest_fraction = 0.2\n",
            kind="regex",
            tune="",
        )
    )
    mirror = tmp_path / "shared" / "datasets" / "stanfordnlp" / "sst2" / "data"
    mirror.mkdir(parents=True)
    for split, count in (("train", 30), ("validation", 10)):
        with open(mirror / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sentence", "label"])
            for label, name in enumerate(("neg", "pos")):
                writer.writerows((t.lower(), label) for t in make_texts(name, count, 3))
    (work / "recipes" / "sst2.toml").write_text(
        TINY.format(
            name="sst2",
            dataset="stanfordnlp/sst2",
            columns='text = "sentence"\n',
            kind="whitespace",
            tune=TUNE,
        )
    )
    emotions = tmp_path / "shared" / "datasets" / "local" / "go_emotions" / "data"
    emotions.mkdir(parents=True)
    for split, count in (("train", 30), ("validation", 10)):
        rows = [
            {"text": t, "labels": [name, "any"][: 1 + i % 2]}
            for name in ("neg", "pos")
            for i, t in enumerate(make_texts(name, count, 5))
        ]
        (emotions / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (work / "recipes" / "go_emotions.toml").write_text(
        TINY.format(
            name="go_emotions",
            dataset="local/go_emotions",
            columns='label = "labels"\n',
            kind="regex",
            tune="",
        )
    )
    (work / "texts.txt").write_text("Shares rose after record profits\nThe striker scored\n")
    return work


def run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "COLUMNS": "200",
    }
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def killed_run(cwd: Path) -> Path:
    """A run killed (SIGKILL) in its second epoch: what `train --resume` continues."""
    script = (
        "import os, signal\nimport textlstm\n"
        "class Kill(textlstm.Events):\n"
        "    def epoch_start(self, epoch, epochs, batches):\n"
        "        if epoch == 2:\n            os.kill(os.getpid(), signal.SIGKILL)\n"
        "textlstm.train(textlstm.load_recipe('recipes/bbc-news.toml'), 'runs', device='cpu',"
        " events=Kill())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == -9, done.stderr
    (partial,) = (cwd / "runs" / "bbc-news").glob("*.partial")
    return partial


def test_every_readme_shell_command_runs_as_printed(repository):
    listed = commands()
    assert len(listed) >= 12 and "textlstm train recipes/bbc-news.toml" in listed
    ran = []
    for command in listed:
        if command in NOT_RUN:
            continue
        if STORAGE in command:
            command = command.replace(STORAGE, "")  # the same study, in the tune folder instead
        if "<timestamp>.partial" in command:
            partial = killed_run(repository)
            command = command.replace("runs/bbc-news/<timestamp>.partial", str(partial))
        if "runs/bbc-news/<timestamp> " in command:  # an earlier finished run of the recipe
            earlier = sorted((repository / "runs" / "bbc-news").glob("2*[0-9]"))[0]
            command = command.replace("runs/bbc-news/<timestamp>", str(earlier))
        assert "<" not in command.replace("<root", ""), f"a placeholder is left in: {command}"
        done = run(command, repository)
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        ran.append(command)
    assert (repository / "predictions.csv").read_text().startswith("label,score,label_1")
    assert len(ran) >= len(listed) - len(NOT_RUN)


def test_the_readme_library_example_runs_as_printed(repository):
    (code,) = blocks("python")
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=repository, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[0] in ("neg", "pos")
