"""``textlstm pretrain``: a recipe in, a language-model run folder ``<out>/<name>-lm/<stamp>/`` out.

The folder holds ``model.safetensors`` (the embedding, the layers of each direction, their
projections and the softmax bias), ``recipe.toml``, ``vocab.json`` (and ``tokenizer.json`` for
subword kinds), ``metrics.jsonl`` and ``meta.json``; a classifier starts from it with
``[model] encoder``. Like ``train``, a run trains in a ``.partial`` folder renamed when complete.

A pretraining recipe may itself name ``[model] encoder``: the language model then starts from
that earlier one's weights, tokenizer and vocabulary, and goes on learning on this recipe's text
(ULMFiT's fine-tuning of a general language model on the target task's text).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from textlstm import settings, threads
from textlstm.errors import CheckpointError
from textlstm.files import append_text, atomic_path, write_text
from textlstm.lm import loop as lm_loop
from textlstm.lm.corpus import Corpus, prepare_corpus
from textlstm.lm.events import LMEpoch, PretrainEvents, PretrainResult
from textlstm.lm.loop import LMLoss, LMRun, perplexity
from textlstm.lm.model import LanguageModel
from textlstm.lm.state import FILE as STATE_FILE
from textlstm.lm.state import Position, load_state, restore, save_state
from textlstm.lm.streams import join, proposal, width
from textlstm.recipe import PretrainConfig, Recipe
from textlstm.run import checkpoint
from textlstm.runtime import (
    bf16_support,
    grad_scaler,
)
from textlstm.text.vocab import Vocab
from textlstm.training import distributed, lifecycle
from textlstm.training.distributed import SINGLE, World
from textlstm.training.state import scaler_state
from textlstm.training.transfer import absolute_encoder, encoder_folder, load_language_model

FOLDER_SUFFIX = "-lm"


def pretrain(
    recipe: Recipe,
    out_dir: str | Path = settings.RUNS_DIR,
    data_dir: str | Path | None = None,
    *,
    device: str = "auto",
    max_minutes: float | None = None,
    events: PretrainEvents | None = None,
) -> PretrainResult:
    """Pretrain the recipe's language model; ``max_minutes`` (else ``pretrain.max_minutes``)
    stops it after that much training, at a step boundary, with the schedule fitted to it.
    Launched by torchrun, the processes train it together (``textlstm.training.distributed``): each
    rank reads its share of the stream's columns, rank 0 writes the run folder."""
    return distributed.together(
        device,
        lambda world, target: _new(world, target, recipe, out_dir, data_dir, events, max_minutes),
    )


def _new(
    world: World,
    target: torch.device,
    recipe: Recipe,
    out_dir: str | Path,
    data_dir: str | Path | None,
    events: PretrainEvents | None,
    max_minutes: float | None,
) -> PretrainResult:
    events = events if world.main and events is not None else PretrainEvents()  # rank 0 reports
    lifecycle.opening(recipe, target)
    corpus = distributed.main_first(world, lambda: prepare_corpus(recipe, data_dir), target)
    for note in corpus.notes:
        events.message(note)
    minutes = max_minutes or recipe.pretrain.max_minutes
    budget = None if minutes is None else minutes * 60
    run = _build(recipe, corpus, target, budget, events, world)
    run.data_dir = _absolute(data_dir)
    events.message(_describe(run))
    start = encoder_folder(recipe)
    if start is not None:
        load_language_model(run.model, start)
        events.message(f"starting from the language model {start}: {_perplexities(run)}")
    run.folder = Path(distributed.from_main(world, lambda: str(_reserve(run, out_dir)), target))
    order = dict(np.random.default_rng(recipe.seed).bit_generator.state)
    return _run(run, Position(epoch=1, order_state=order))


def _reserve(run: LMRun, out_dir: str | Path) -> Path:
    def write(folder: Path) -> None:
        text = absolute_encoder(run.recipe).to_toml()
        (folder / "recipe.toml").write_text(text, encoding="utf-8")
        run.corpus.encoder.save(folder)

    return lifecycle.reserve(out_dir, run.recipe.name + FOLDER_SUFFIX, write)


def pretrain_or_resume(
    recipe: str | Path | None = None,
    resume_dir: str | Path | None = None,
    *,
    overrides: list[str] | None = None,
    max_minutes: float | None = None,
    out_dir: str | Path = settings.RUNS_DIR,
    data_dir: str | Path | None = None,
    device: str = "auto",
    events: PretrainEvents | None = None,
) -> PretrainResult:
    """`textlstm pretrain`: the recipe file's language model pretrained anew (with
    ``overrides``), or the pretraining in ``resume_dir`` resumed; exactly one of the two."""
    source = lifecycle.chosen(recipe, resume_dir, overrides, "pretrain")
    say = events or PretrainEvents()
    if isinstance(source, Path):
        say.message(f"resuming {source}")
        return resume(source, data_dir, device=device, max_minutes=max_minutes, events=events)
    say.message(f"pretraining {source.name}'s language model from {recipe}")
    return pretrain(
        source, out_dir, data_dir, device=device, max_minutes=max_minutes, events=events
    )


def resume(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    *,
    device: str = "auto",
    max_minutes: float | None = None,
    events: PretrainEvents | None = None,
) -> PretrainResult:
    """Continue a killed or interrupted pretraining from its last checkpoint; on the same
    device the result equals that of an uninterrupted run (without a time budget)."""
    return distributed.together(
        device,
        lambda world, target: _resumed(world, target, run_dir, data_dir, events, max_minutes),
    )


def _resumed(
    world: World,
    target: torch.device,
    run_dir: str | Path,
    data_dir: str | Path | None,
    events: PretrainEvents | None,
    max_minutes: float | None,
) -> PretrainResult:
    folder = checkpoint.resumable(run_dir)
    meta, tensors = load_state(folder)
    recipe = lifecycle.saved_recipe(folder)
    events = events if world.main and events is not None else PretrainEvents()  # rank 0 reports
    lifecycle.opening(recipe, target)
    saved = meta["run"]
    corpus = distributed.main_first(
        world, lambda: prepare_corpus(recipe, data_dir or saved["data_dir"]), target
    )
    if Vocab.load(folder / "vocab.json").tokens != corpus.encoder.vocab.tokens:
        raise CheckpointError(
            f"{folder}: the data now gives a different vocabulary than when this pretraining "
            "started; it cannot be resumed: pretrain again"
        )
    budget = max_minutes * 60 if max_minutes else saved["budget"]
    run = _build(recipe, corpus, target, budget, events, world)
    position = restore(meta, tensors, run.model, run.optimizer, len(run.model.directions))
    position.states = _columns(position.states, run.share(corpus.tokens).rows, world)
    run.step, run.seconds, run.tokens = saved["step"], saved["seconds"], saved["tokens"]
    if run.scaler is not None and saved.get("scaler"):
        run.scaler.load_state_dict(saved["scaler"])
    run.history = [LMEpoch(**row) for row in saved["history"]]
    run.data_dir = saved["data_dir"]
    rows = [asdict(row) for row in run.history]
    run.folder = Path(
        distributed.from_main(world, lambda: str(lifecycle.reopen(folder, rows)), target)
    )
    events.message(f"resuming {run.folder} at step {position.step:,} of epoch {position.epoch}")
    return _run(run, position)


def _build(
    recipe: Recipe,
    corpus: Corpus,
    target: torch.device,
    budget: float | None,
    events: PretrainEvents,
    world: World = SINGLE,
) -> LMRun:
    model = LanguageModel(recipe.model, recipe.pretrain, len(corpus.encoder.vocab)).to(target)
    log_q = proposal(join(corpus.train), len(corpus.encoder.vocab)).to(target)
    precision = recipe.train.precision if bf16_support(target) != "none" else "fp32"
    optimizer = _adamw(model, recipe.pretrain)
    run = LMRun(recipe, corpus, model, optimizer, log_q, Path(), target, precision, budget, events)
    run.world, run.steps = world, distributed.wrap(LMLoss(model), world, target) or LMLoss(model)
    run.scaler = grad_scaler(precision, target)
    return run


def _perplexities(run: LMRun) -> str:
    values = [perplexity(run, d) for d in range(len(run.model.directions))]
    shown = f"held-out perplexity {values[0]:.1f} before training"
    return shown + (f" (backward {values[1]:.1f})" if len(values) > 1 else "")


def _absolute(data_dir: str | Path | None) -> str | None:
    root = settings.data_root(data_dir)
    return str(root.resolve()) if root else None


def _run(run: LMRun, position: Position) -> PretrainResult:
    """The epochs, then the finished folder. A kill leaves the ``.partial`` folder resumable
    from its last checkpoint; Ctrl-C finishes the folder with the weights as they stand, and it
    stays resumable from its last checkpoint (``lifecycle.guarded``)."""
    if hasattr(run.events, "run_start"):  # hooks written before it existed may lack it
        run.events.run_start(run.folder, run.recipe.to_toml(), run.step)
    guard = lifecycle.Guard(
        run.folder,
        run.world,
        STATE_FILE,
        "pretrain",
        progress=lambda: "its last checkpoint",
        started=lambda: run.step > 0,
    )
    stopped = lifecycle.guarded(guard, lambda: _epochs(run, position))
    with lifecycle.completing(guard):
        return _finish(run, stopped)


def _describe(run: LMRun) -> str:
    cfg, corpus = run.cfg, run.corpus
    threads.for_run(run.world.many)
    params = sum(p.numel() for p in run.model.parameters())
    return (
        f"{corpus.tokens:,} tokens in {len(corpus.train):,} texts; {len(corpus.encoder.vocab):,} "
        f"words; {params:,} parameters; {run.steps_per_epoch:,} steps of {cfg.batch_size} x "
        f"{cfg.bptt} tokens per epoch, {cfg.directions} direction(s); device {run.target}"
        f"{threads.device_note(run.target)}, "
        f"{run.precision}"
        + (
            f"; {run.world.size} processes ({run.world.backend}), each reading 1/{run.world.size}"
            " of the columns"
            if run.world.many
            else ""
        )
    )


def _adamw(model: nn.Module, cfg: PretrainConfig) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    # ULMFiT's betas: a shorter memory of the gradient than Adam's default 0.9
    try:
        return torch.optim.AdamW(
            params, lr=cfg.lr, betas=(0.8, 0.99), weight_decay=cfg.weight_decay, fused=True
        )
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(
            params, lr=cfg.lr, betas=(0.8, 0.99), weight_decay=cfg.weight_decay
        )


def _epochs(run: LMRun, position: Position) -> str:
    """The loop's epochs, each logged, checkpointed and reported; how the run stopped."""
    for result, after, cut in lm_loop.epochs(run, position, lambda at: _checkpoint(run, at)):
        run.history.append(result)
        if run.world.main:
            append_text(run.folder / "metrics.jsonl", json.dumps(asdict(result)) + "\n")
        _checkpoint(run, after)
        run.events.lm_epoch_end(result)
        if cut and run.budget is not None:
            run.events.message(f"stopping: the time budget of {run.budget / 60:g} min is spent")
            return "budget"
    return "completed"


def _checkpoint(run: LMRun, position: Position) -> None:
    """The resumable state, written by rank 0; the recurrent states of every rank's columns
    are gathered into it first, so any number of processes can resume it."""
    states = _gather_states(run, position.states)
    if not run.world.main:
        return
    summary = {
        "step": run.step,
        "seconds": run.seconds,
        "tokens": run.tokens,
        "budget": run.budget,
        "data_dir": run.data_dir,
        "history": [asdict(row) for row in run.history],
        "scaler": scaler_state(run.scaler),
    }
    whole = Position(**{**position.__dict__, "states": states})
    save_state(run.folder, whole, summary, run.model, run.optimizer)


def _gather_states(run: LMRun, states: list[Any]) -> list[Any]:
    if not run.world.many:
        return states
    total = width(run.corpus.tokens, run.cfg.batch_size)

    def gather(t: torch.Tensor) -> torch.Tensor:  # (layers, columns, hidden), columns gathered
        local = t.detach().transpose(0, 1).float().cpu().numpy()
        whole = distributed.gather_rows(run.world, local, total, run.target)
        return torch.from_numpy(whole).transpose(0, 1).to(t.dtype).contiguous()

    return [_map_state(state, gather) for state in states]


def _columns(states: list[Any], rows: np.ndarray, world: World) -> list[Any]:
    """This rank's columns of saved recurrent states (all of them for a single process)."""
    if not world.many:
        return states
    index = torch.from_numpy(rows)
    return [_map_state(state, lambda t: t.index_select(1, index)) for state in states]


def _map_state(state: Any, fn: Any) -> Any:
    if state is None:
        return None
    return [tuple(fn(t) for t in part) if isinstance(part, tuple) else fn(part) for part in state]


def _finish(run: LMRun, stopped: str) -> PretrainResult:
    """The run folder made complete (by rank 0), and the result (on every rank)."""
    final = distributed.from_main(run.world, lambda: str(_complete(run, stopped)), run.target)
    return PretrainResult(Path(final), run.history, stopped, run.seconds, run.tokens)


def _complete(run: LMRun, stopped: str) -> Path:
    from safetensors.torch import save_file

    with atomic_path(run.folder / "model.safetensors") as tmp:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in run.model.state_dict().items()},
            str(tmp),
            metadata={"format": "textlstm-lm"},
        )
    meta = {
        "format_version": checkpoint.FORMAT_VERSION,
        "kind": "language_model",
        **checkpoint.versions(),
        "name": run.recipe.name,
        "seed": run.recipe.seed,
        "device": str(run.target),
        "processes": run.world.size,
        "threads": threads.meta(),
        "precision": run.precision,
        "data_source": run.corpus.source,
        "texts": len(run.corpus.train),
        "tokens_per_epoch": run.corpus.tokens,
        "tokens_trained": run.tokens,
        "steps": run.step,
        "directions": run.cfg.directions,
        "vocab_size": len(run.corpus.encoder.vocab),
        "stopped": stopped,
        "train_seconds": round(run.seconds, 2),
        "perplexity": run.history[-1].perplexity if run.history else None,
        "started_from": absolute_encoder(run.recipe).model.encoder,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_text(run.folder / "meta.json", json.dumps(meta, indent=2))
    if stopped != "interrupted":
        (run.folder / STATE_FILE).unlink(missing_ok=True)  # finished: nothing left to resume
    return checkpoint.finalize(run.folder)
