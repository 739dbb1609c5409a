"""Fine-tuning from a language model: ``[model] encoder`` names a ``textlstm pretrain`` run
folder, and the classifier takes its tokenizer, its vocabulary, and its embedding and layer
weights (ULMFiT's transfer, Howard & Ruder 2018).

Whatever contradicts the folder is a one-line error naming both sides: a tokenizer setting, a
size, or a backward half the language model never trained. ``max_length`` and ``truncation`` are
the classifier's own (the language model read whole texts), and so is ``detokenize``: it puts
the data set's text in the form the language model read.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from textlstm.errors import CheckpointError, RecipeError
from textlstm.files import check_file
from textlstm.recipe import Recipe, load_recipe
from textlstm.text.encoder import SUBWORD_FILE

LM_FILES = ("model.safetensors", "recipe.toml", "vocab.json", "meta.json")
SHARED_MODEL_KEYS = ("cell", "embedding_dim", "hidden_size", "num_layers")
# the classifier's own: how many tokens it keeps, and the form its data set's text comes in
OWN_TOKENIZER_KEYS = ("max_length", "truncation", "detokenize")


def encoder_folder(recipe: Recipe) -> Path | None:
    """The language-model run folder ``model.encoder`` names, checked to be one."""
    value = recipe.model.encoder
    if value is None:
        return None
    where = f"{recipe.source or '<recipe>'}: model.encoder"
    folder = Path(recipe.resolve_path(value))
    if folder.is_symlink() or folder.name == "latest":
        folder = folder.resolve()
    if not folder.is_dir():
        raise RecipeError(
            f"{where}: {value}: no such folder; give a `textlstm pretrain` run folder "
            "(relative paths are resolved from the recipe's folder)"
        )
    missing = [name for name in LM_FILES if not (folder / name).is_file()]
    if missing:
        raise RecipeError(
            f"{where}: {value}: not a finished `textlstm pretrain` run folder "
            f"(missing {', '.join(missing)})"
        )
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{folder / 'meta.json'}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("kind") != "language_model":
        raise RecipeError(
            f"{where}: {value}: a classifier's run folder, not a language model's; give a "
            "`textlstm pretrain` run folder"
        )
    return folder


def absolute_encoder(recipe: Recipe) -> Recipe:
    """``model.encoder`` as an absolute path, as run folders keep it: ``--resume`` and later
    fine-tuning read the recipe from the run folder, not from the recipe's own folder."""
    if recipe.model.encoder is None:
        return recipe
    start = str(Path(recipe.resolve_path(recipe.model.encoder)).resolve())
    return recipe.model_copy(update={"model": recipe.model.model_copy(update={"encoder": start})})


def with_encoder(recipe: Recipe, language_model: bool = False) -> Recipe:
    """The recipe to preprocess with: the language model's vocabulary as ``vocab.path``, after
    checking that its tokenizer and sizes agree with the language model's. ``language_model``:
    the recipe pretrains a language model from that one (ULMFiT's fine-tuning of the language
    model on the target task's text), so its directions must be there, not a classifier's."""
    folder = encoder_folder(recipe)
    if folder is None:
        return recipe
    try:
        lm = load_recipe(folder / "recipe.toml")
    except RecipeError as exc:
        raise CheckpointError(*exc.lines) from None
    where, named = recipe.source or "<recipe>", recipe.model.encoder
    for key, ours in recipe.tokenizer.model_dump().items():
        theirs = getattr(lm.tokenizer, key)
        if key not in OWN_TOKENIZER_KEYS and ours != theirs:
            raise RecipeError(
                f"{where}: tokenizer.{key} is {json.dumps(ours)} but the language model "
                f"{named} was pretrained with {json.dumps(theirs)}; set tokenizer.{key} = "
                f"{json.dumps(theirs)}"
            )
    for key in SHARED_MODEL_KEYS:
        ours, theirs = getattr(recipe.model, key), getattr(lm.model, key)
        if ours != theirs:
            raise RecipeError(
                f"{where}: model.{key} is {json.dumps(ours)} but the language model {named} "
                f"has {json.dumps(theirs)}; set model.{key} = {json.dumps(theirs)}"
            )
    if language_model:
        backward = recipe.pretrain.directions == "both"
        key, fix = "pretrain.directions", '"forward"'
    else:
        backward, key, fix = recipe.model.bidirectional, "model.bidirectional", "false"
    if backward and lm.pretrain.directions != "both":
        raise RecipeError(
            f"{where}: {key}: the language model {named} has no backward half; pretrain "
            f'with pretrain.directions = "both" or set {key} = {fix}'
        )
    vocab_file = folder / (SUBWORD_FILE if recipe.tokenizer.subword else "vocab.json")
    vocab = recipe.vocab.model_copy(update={"path": str(vocab_file)})
    return recipe.model_copy(update={"vocab": vocab})


def _weights(folder: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = folder / "model.safetensors"
    check_file(path, "safetensors weights file", CheckpointError)
    try:
        return path, load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({exc}); pretrain again"
        ) from None


def load_encoder(model: nn.Module, folder: Path) -> list[str]:
    """Copy the language model's embedding and layers into ``model``; returns the names."""
    path, weights = _weights(folder)
    own = model.state_dict()
    shared = [
        k for k in weights if k in own and k.startswith(("embedding.", "forward_", "backward_"))
    ]
    _copy(path, weights, own, shared, "the classifier")
    return shared


def load_language_model(model: nn.Module, folder: Path) -> None:
    """Start a language model from an earlier one's weights, every one of them: the same
    vocabulary and sizes, and the directions it has (checked by ``with_encoder``)."""
    path, weights = _weights(folder)
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    if missing:
        raise CheckpointError(
            f"{path}: has no weight '{missing[0]}' that this language model needs; the "
            "folder's files do not belong together"
        )
    _copy(path, weights, own, list(own), "this language model")


def _copy(
    path: Path,
    weights: dict[str, torch.Tensor],
    own: dict[str, torch.Tensor],
    shared: list[str],
    who: str,
) -> None:
    for name in shared:
        if weights[name].shape != own[name].shape:
            raise CheckpointError(
                f"{path}: weight '{name}' has shape {tuple(weights[name].shape)} but {who} "
                f"needs {tuple(own[name].shape)}; the folder's files do not belong together"
            )
    with torch.no_grad():
        for name in shared:
            own[name].copy_(weights[name])
