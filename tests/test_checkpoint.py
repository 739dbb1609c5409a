"""textlstm.run.checkpoint: finished runs load strictly; damaged, partial or foreign run folders are
refused with one CheckpointError line naming the file; nothing is ever unpickled."""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
from pathlib import Path

import pytest
import torch

from textlstm.errors import CheckpointError
from textlstm.run import checkpoint


@pytest.fixture
def run(tmp_path: Path, trained_run: Path) -> Path:
    """A private copy of the session's finished run, free to damage."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def refused(run_dir: Path) -> str:
    """Load ``run_dir``, expect a CheckpointError, return its single line."""
    with pytest.raises(CheckpointError) as exc:
        checkpoint.load(run_dir, device="cpu")
    assert type(exc.value) is CheckpointError
    assert len(exc.value.lines) == 1, exc.value.lines
    assert "\n" not in str(exc.value)
    return exc.value.lines[0]


def edit_json(path: Path, change) -> None:
    """Rewrite a JSON file after ``change`` mutated its value in place."""
    value = json.loads(path.read_text(encoding="utf-8"))
    change(value)
    path.write_text(json.dumps(value), encoding="utf-8")


# --- a good run --------------------------------------------------------------------------------


def test_trained_run_has_the_expected_files(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert set(checkpoint.FILES) <= names
    assert "metrics.jsonl" in names
    assert not trained_run.name.endswith(checkpoint.PARTIAL)


def test_load_gives_an_eval_mode_model_and_matching_parts(trained_run):
    loaded = checkpoint.load(trained_run, device="cpu")
    assert loaded.run_dir == trained_run
    assert loaded.labels == ["neg", "pos"]
    assert loaded.model.training is False
    assert not any(module.training for module in loaded.model.modules())
    assert all(p.device.type == "cpu" for p in loaded.model.parameters())
    assert loaded.meta["format_version"] == checkpoint.FORMAT_VERSION
    assert loaded.meta["vocab_size"] == len(loaded.vocab)
    assert loaded.meta["num_classes"] == 2
    assert loaded.recipe.name == "tiny"
    assert loaded.model.head.out_features == 2
    assert loaded.model.embedding.num_embeddings == len(loaded.vocab)
    assert loaded.tokenizer.max_length == loaded.recipe.tokenizer.max_length == 32


def test_load_through_the_latest_link(trained_run):
    latest = trained_run.parent / "latest"
    assert latest.is_symlink() and os.readlink(latest) == trained_run.name
    loaded = checkpoint.load(latest, device="cpu")
    assert loaded.labels == ["neg", "pos"]


def test_loaded_weights_are_the_saved_weights(trained_run):
    from safetensors.torch import load_file

    saved = load_file(str(trained_run / "model.safetensors"))
    state = checkpoint.load(trained_run, device="cpu").model.state_dict()
    assert saved.keys() == state.keys()
    for name, tensor in saved.items():
        assert torch.equal(state[name], tensor), name


# --- incomplete and missing runs ---------------------------------------------------------------


@pytest.mark.parametrize("name", checkpoint.FILES)
def test_missing_file_is_named(run, name):
    (run / name).unlink()
    assert refused(run) == f"{run}: not a complete run folder: missing {name}"


def test_several_missing_files_are_all_named(run):
    (run / "vocab.json").unlink()
    (run / "meta.json").unlink()
    assert refused(run) == f"{run}: not a complete run folder: missing vocab.json, meta.json"


def test_partial_folder_is_refused(tmp_path, trained_run):
    partial = Path(shutil.copytree(trained_run, tmp_path / "20240101-000000.partial"))
    assert (
        refused(partial) == f"{partial}: this run did not finish; train again or use a finished run"
    )


def test_folder_that_does_not_exist(tmp_path):
    assert refused(tmp_path / "nope") == f"{tmp_path / 'nope'}: run folder not found"
    gone = tmp_path / "20240101-000000.partial"
    assert refused(gone) == (
        f"{gone}: run folder not found (a .partial folder is a run that did not finish)"
    )


def test_a_file_instead_of_a_folder(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x")
    assert "run folder not found" in refused(tmp_path / "model.safetensors")


# --- damaged weights ---------------------------------------------------------------------------


def test_truncated_weights(run):
    weights = run / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    message = refused(run)
    assert message.startswith(f"{weights}: not a readable safetensors file (")
    assert message.endswith("the file is truncated or damaged: train again")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(random.Random(0).randbytes(4096), id="random-bytes"),
        pytest.param(b"", id="empty"),
        pytest.param(b"abc", id="shorter-than-a-header"),
        pytest.param((12).to_bytes(8, "little") + b"{not json!!}", id="bad-header"),
    ],
)
def test_garbage_weights(run, content):
    (run / "model.safetensors").write_bytes(content)
    assert refused(run).startswith(f"{run / 'model.safetensors'}: not a readable safetensors file")


def test_weights_with_other_tensor_names(run):
    from safetensors.torch import save_file

    save_file({"something.else": torch.zeros(2)}, str(run / "model.safetensors"))
    message = refused(run)
    assert message.startswith(f"{run / 'model.safetensors'}: weights do not match the run's recipe")
    assert "something.else" in message or "embedding.weight" in message


class _Planted:
    """Unpickling this creates ``marker``: the proof that someone unpickled the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_planted_pickle_is_refused_and_never_unpickled(run, tmp_path):
    payload = pickle.dumps({"embedding.weight": _Planted(tmp_path / "pwned")})
    # the payload is live: unpickling it does create its marker
    pickle.loads(pickle.dumps(_Planted(tmp_path / "proof")))
    assert (tmp_path / "proof").exists()

    (run / "model.safetensors").write_bytes(payload)
    assert "not a readable safetensors file" in refused(run)
    assert not (tmp_path / "pwned").exists()


def test_planted_torch_save_file_is_refused_and_never_unpickled(run, tmp_path):
    torch.save({"embedding.weight": _Planted(tmp_path / "pwned")}, str(run / "model.safetensors"))
    assert "not a readable safetensors file" in refused(run)
    assert not (tmp_path / "pwned").exists()


# --- files that do not belong together ---------------------------------------------------------


def test_unknown_format_version(run):
    edit_json(run / "meta.json", lambda meta: meta.update(format_version=99))
    assert refused(run) == (
        f"{run / 'meta.json'}: unknown format_version 99; "
        f"this textlstm reads version {checkpoint.FORMAT_VERSION}"
    )


def test_meta_without_format_version(run):
    edit_json(run / "meta.json", lambda meta: meta.pop("format_version"))
    assert "unknown format_version None" in refused(run)


@pytest.mark.parametrize("name", ["meta.json", "labels.json"])
def test_json_file_that_is_not_json(run, name):
    (run / name).write_text("{not json", encoding="utf-8")
    assert refused(run).startswith(f"{run / name}: not valid JSON (")


def test_vocab_with_a_token_removed_is_a_shape_mismatch(run):
    vocab = json.loads((run / "vocab.json").read_text(encoding="utf-8"))
    size = len(vocab["tokens"])
    edit_json(run / "vocab.json", lambda v: v["tokens"].pop())
    message = refused(run)
    assert message.startswith(
        f"{run / 'model.safetensors'}: weight 'embedding.weight' has shape "
        f"({size}, 16) but the recipe, vocab.json and labels.json need "
        f"({size - 1}, 16)"
    )
    assert message.endswith("the run folder's files do not belong together")


def test_labels_with_an_extra_label_is_a_shape_mismatch(run):
    edit_json(run / "labels.json", lambda labels: labels.append("extra"))
    message = refused(run)
    assert message.startswith(f"{run / 'model.safetensors'}: weight 'head.weight' has shape (2, ")
    assert "do not belong together" in message


def test_labels_with_a_single_label(run):
    (run / "labels.json").write_text('["neg"]', encoding="utf-8")
    assert (
        refused(run)
        == f"{run / 'labels.json'}: expected a list of at least two distinct label names"
    )


def test_vocab_that_is_not_a_textlstm_vocabulary(run):
    (run / "vocab.json").write_text('{"tokens": ["a", "b"]}', encoding="utf-8")
    assert refused(run).startswith(f"{run / 'vocab.json'}: not a valid vocabulary file (")


def test_damaged_recipe(run):
    (run / "recipe.toml").write_text("name = = 'x'\n", encoding="utf-8")
    assert refused(run).startswith(f"{run / 'recipe.toml'}: TOML syntax error")


# --- run folder names --------------------------------------------------------------------------


def test_reserve_run_dir_never_reuses_a_name_within_one_second(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint.time, "strftime", lambda fmt, *args: "20250101-120000")
    first = checkpoint.reserve_run_dir(tmp_path, "exp")
    second = checkpoint.reserve_run_dir(tmp_path, "exp")
    assert first == tmp_path / "exp" / "20250101-120000.partial"
    assert second == tmp_path / "exp" / "20250101-120000-1.partial"
    assert first.is_dir() and second.is_dir() and not any(first.iterdir())

    final_first = checkpoint.finalize(first)
    final_second = checkpoint.finalize(second)
    assert (final_first.name, final_second.name) == ("20250101-120000", "20250101-120000-1")
    assert not first.exists() and not second.exists()
    latest = tmp_path / "exp" / "latest"
    assert os.readlink(latest) == final_second.name
    assert latest.resolve() == final_second.resolve()

    # a finished name is not reused either, and `latest` follows whichever run finished last
    third = checkpoint.reserve_run_dir(tmp_path, "exp")
    assert third.name == "20250101-120000-2.partial"
    fourth = checkpoint.reserve_run_dir(tmp_path, "exp")
    checkpoint.finalize(fourth)
    final_third = checkpoint.finalize(third)
    assert os.readlink(latest) == final_third.name == "20250101-120000-2"
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == [
        "20250101-120000",
        "20250101-120000-1",
        "20250101-120000-2",
        "20250101-120000-3",
        "latest",
    ]


def test_reserve_run_dir_twice_at_real_time(tmp_path):
    first = checkpoint.reserve_run_dir(tmp_path, "exp")
    second = checkpoint.reserve_run_dir(tmp_path, "exp")
    assert first != second
    final_first, final_second = checkpoint.finalize(first), checkpoint.finalize(second)
    assert final_first != final_second and final_first.is_dir() and final_second.is_dir()
    assert (tmp_path / "exp" / "latest").resolve() == final_second.resolve()


def test_reserve_run_dir_where_a_file_blocks_the_folder(tmp_path):
    (tmp_path / "exp").write_text("not a folder")
    with pytest.raises(CheckpointError) as exc:
        checkpoint.reserve_run_dir(tmp_path, "exp")
    assert exc.value.lines == [f"{tmp_path / 'exp'}: cannot create the output folder (File exists)"]


def test_discard_removes_the_partial_folder(tmp_path):
    partial = checkpoint.reserve_run_dir(tmp_path, "exp")
    (partial / "model.safetensors").write_bytes(b"half")
    checkpoint.discard(partial)
    assert not partial.exists()
    assert list((tmp_path / "exp").iterdir()) == []


def test_save_finalize_load_round_trip(tmp_path, trained_run):
    loaded = checkpoint.load(trained_run, device="cpu")
    partial = checkpoint.reserve_run_dir(tmp_path, "copy")
    extra = {key: loaded.meta[key] for key in ("vocab_size",) if key in loaded.meta}
    checkpoint.save(
        partial,
        loaded.model,
        loaded.model.state_dict(),
        loaded.recipe,
        loaded.encoder,
        loaded.labels,
        extra,
    )
    with pytest.raises(CheckpointError):  # not finished yet
        checkpoint.load(partial)
    again = checkpoint.load(checkpoint.finalize(partial), device="cpu")
    assert again.labels == loaded.labels
    assert again.vocab.tokens == loaded.vocab.tokens
    assert again.recipe.model == loaded.recipe.model
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[name], tensor), name
