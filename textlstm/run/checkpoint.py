"""Run folders: written so that only a finished run looks complete, loaded strictly.

A run is trained into ``<name>/<stamp>.partial/`` and renamed to ``<name>/<stamp>/`` once every
file is written, ``meta.json`` last. Weights are safetensors; nothing here unpickles.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from textlstm.errors import CheckpointError, RecipeError
from textlstm.files import MiB, atomic_path, check_file, read_bytes
from textlstm.model.classifier import LSTMClassifier
from textlstm.recipe import Recipe, load_recipe
from textlstm.run.decision import FILE as DECISION_FILE
from textlstm.run.decision import SINGLE, Decision
from textlstm.run.decision import read as decision_from
from textlstm.text.encoder import Encoder
from textlstm.text.tokenizers import Tokenizer
from textlstm.text.vocab import Vocab

FORMAT_VERSION = 1
FILES = ("model.safetensors", "recipe.toml", "vocab.json", "labels.json", "meta.json")
PARTIAL = ".partial"
JSON_LIMIT = 64 * MiB  # labels.json and meta.json are a few kilobytes


@dataclass
class Loaded:
    run_dir: Path
    recipe: Recipe
    vocab: Vocab
    labels: list[str]
    meta: dict[str, Any]
    model: LSTMClassifier
    encoder: Encoder
    decision: Decision = SINGLE

    @property
    def tokenizer(self) -> Tokenizer:
        return self.encoder.tokenizer  # type: ignore[return-value]


def reserve_run_dir(out_dir: str | Path, name: str) -> Path:
    """Create a new, empty ``<out>/<name>/<stamp>.partial`` folder; never reuses a name."""
    parent = Path(out_dir) / name
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(
            f"{parent}: cannot create the output folder ({exc.strerror})"
        ) from None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1000):
        candidate = stamp if attempt == 0 else f"{stamp}-{attempt}"
        if (parent / candidate).exists():
            continue
        try:
            (parent / (candidate + PARTIAL)).mkdir()
            return parent / (candidate + PARTIAL)
        except FileExistsError:
            continue
    raise CheckpointError(f"{parent}: could not find a free run folder name")


def finalize(partial: Path) -> Path:
    """Give the finished run its final name and point ``<name>/latest`` at it."""
    final = partial.with_name(partial.name.removesuffix(PARTIAL))
    os.replace(partial, final)  # the name is ours: reserve_run_dir saw it free
    try:
        with atomic_path(final.parent / "latest") as tmp:
            tmp.symlink_to(final.name)
    except OSError:  # a file system without symlinks: the run itself is complete
        pass
    return final


def discard(partial: Path) -> None:
    shutil.rmtree(partial, ignore_errors=True)


def versions() -> dict[str, str]:
    from textlstm import __version__

    return {
        "textlstm": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def save_identity(run_dir: Path, recipe: Recipe, encoder: Encoder, labels: list[str]) -> None:
    """The files that say what a run is, written when it starts so that it can be resumed."""
    (run_dir / "recipe.toml").write_text(recipe.to_toml(), encoding="utf-8")
    encoder.save(run_dir)
    (run_dir / "labels.json").write_text(json.dumps(labels, ensure_ascii=False), encoding="utf-8")


def check_identity(run_dir: Path, encoder: Encoder, labels: list[str]) -> None:
    """A resumed run must see the labels and vocabulary it started with."""
    saved_labels = _read_json(run_dir / "labels.json", list)
    saved_vocab = Vocab.load(run_dir / "vocab.json")
    if saved_labels != labels or saved_vocab.tokens != encoder.vocab.tokens:
        what = "labels" if saved_labels != labels else "vocabulary"
        raise CheckpointError(
            f"{run_dir}: the data now gives a different {what} than when this "
            "run started; it cannot be resumed: train it again"
        )


def resumable(run_dir: str | Path) -> Path:
    """The run folder if it can be resumed: a killed (``.partial``) or an interrupted run."""
    run = Path(run_dir)
    if not run.is_dir():
        raise CheckpointError(f"{run}: run folder not found")
    if run.name == "latest" or run.is_symlink():
        run = run.resolve()
    if run.name.endswith(PARTIAL):
        return run
    meta = _read_json(run / "meta.json", dict) if (run / "meta.json").is_file() else {}
    if meta.get("stopped") != "interrupted":
        raise CheckpointError(
            f"{run}: this run finished ({meta.get('stopped', 'unknown')}); only "
            "a killed (.partial) or interrupted run can be resumed"
        )
    return run


def reopen(run: Path) -> Path:
    """An interrupted run goes back to ``.partial`` until it finishes again."""
    if run.name.endswith(PARTIAL):
        return run
    partial = run.with_name(run.name + PARTIAL)
    os.replace(run, partial)
    return partial


def save(
    run_dir: Path,
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    recipe: Recipe,
    encoder: Encoder,
    labels: list[str],
    meta: dict[str, Any],
    decision: Decision = SINGLE,
) -> None:
    from safetensors.torch import save_file

    save_file(
        {k: v.detach().cpu().contiguous() for k, v in state.items()},
        str(run_dir / "model.safetensors"),
        metadata={"format": "textlstm"},
    )
    save_identity(run_dir, recipe, encoder, labels)
    decision.save(run_dir, labels)
    full = {
        "format_version": FORMAT_VERSION,
        **versions(),
        **meta,
        "vocab_size": len(encoder.vocab),
        "num_classes": len(labels),
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
    (run_dir / "meta.json").write_text(json.dumps(full, indent=2), encoding="utf-8")


def load(run_dir: str | Path, device: torch.device | str = "cpu") -> Loaded:
    run = Path(run_dir)
    if not run.is_dir():
        hint = (
            " (a .partial folder is a run that did not finish)"
            if run.name.endswith(PARTIAL)
            else ""
        )
        raise CheckpointError(f"{run}: run folder not found{hint}")
    if run.name.endswith(PARTIAL):
        raise CheckpointError(f"{run}: this run did not finish; train again or use a finished run")
    missing = [name for name in FILES if not (run / name).exists()]  # the rest: see the readers
    if missing:
        raise CheckpointError(f"{run}: not a complete run folder: missing {', '.join(missing)}")
    folders = [name for name in FILES if (run / name).is_dir()]
    if folders:
        raise CheckpointError(f"{run / folders[0]}: is a folder; a run folder holds it as a file")
    meta = _read_json(run / "meta.json", dict)
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{run / 'meta.json'}: unknown format_version "
            f"{meta.get('format_version')!r}; this textlstm reads version "
            f"{FORMAT_VERSION}"
        )
    labels = _read_json(run / "labels.json", list)
    if (
        len(labels) < 2
        or not all(isinstance(x, str) for x in labels)
        or len(set(labels)) != len(labels)
    ):
        raise CheckpointError(
            f"{run / 'labels.json'}: expected a list of at least two distinct label names"
        )
    try:
        recipe = load_recipe(run / "recipe.toml")
    except RecipeError as exc:
        raise CheckpointError(*exc.lines) from None
    encoder = Encoder.load(run, recipe.tokenizer)
    vocab = encoder.vocab
    model = LSTMClassifier(recipe.model, len(vocab), len(labels))
    model.load_state_dict(_read_weights(run / "model.safetensors", model))
    model.to(device).eval()
    decision = read_decision(run, labels, meta)
    return Loaded(run, recipe, vocab, labels, meta, model, encoder, decision)


def read_decision(run: Path, labels: list[str], meta: dict[str, Any]) -> Decision:
    """``decision.json`` (runs from before it existed are single-label)."""
    path = run / DECISION_FILE
    if not path.exists():
        if meta.get("multi_label"):
            raise CheckpointError(
                f"{path}: missing; a multi-label run keeps its thresholds there: train again"
            )
        return SINGLE
    return decision_from(run, labels, _read_json(path, dict))


def _read_json(path: Path, kind: type) -> Any:
    try:
        value = json.loads(read_bytes(path, f"{path.name} file", CheckpointError, JSON_LIMIT))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, kind):
        raise CheckpointError(f"{path}: expected a JSON {kind.__name__}")
    return value


def _read_weights(path: Path, model: LSTMClassifier) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_file(path, "safetensors weights file", CheckpointError)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({exc}); "
            "the file is truncated or damaged: train again"
        ) from None
    expected = model.state_dict()
    problems = [name for name in expected if name not in state]
    problems += [name for name in state if name not in expected]
    if problems:
        raise CheckpointError(
            f"{path}: weights do not match the run's recipe "
            f"(unexpected or missing: {', '.join(problems[:3])})"
        )
    for name, tensor in expected.items():
        if state[name].shape != tensor.shape:
            raise CheckpointError(
                f"{path}: weight '{name}' has shape {tuple(state[name].shape)} "
                f"but the recipe, vocab.json and labels.json need "
                f"{tuple(tensor.shape)}; the run folder's files do not belong "
                "together"
            )
    return state
