"""Pretraining: the streams, the language model learning, its schedule and time budget, and
fine-tuning a classifier from it (weights taken over, saved and loaded with equal predictions)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from textlstm.cli import app
from textlstm.lm import pretrain
from textlstm.lm.loop import LR_RATIO, learning_rate
from textlstm.lm.streams import columns, steps_in, windows
from textlstm.predict.predictor import Predictor
from textlstm.recipe import PretrainConfig, load_recipe
from textlstm.training import prepare, train
from textlstm.training.setup import build_fit

from conftest import PRETRAIN, write_label_folders, write_recipe


def test_windows_read_the_stream_and_its_reverse():
    stream = np.arange(2, 42, dtype=np.int64)  # 40 tokens
    cols = columns(stream, 4)
    assert cols.shape == (10, 4) and list(cols[:, 1]) == list(range(12, 22))
    got = list(windows(stream, 4, 3, both=True))
    assert len(got) == steps_in(len(stream), 4, 3) == 3
    for window in got:  # targets are the next tokens of each column, in both directions
        for inputs, targets in zip(window.inputs, window.targets):
            assert torch.equal(targets[:-1], inputs[1:])
    first_backward = got[0].inputs[1][:, 0]
    assert first_backward.tolist() == [41, 40, 39]  # the stream read from its end
    assert sum(w.tokens for w in got) == 9 * 4


def test_slanted_triangular_schedule():
    cfg = PretrainConfig(lr=0.032, warmup_fraction=0.1)
    assert learning_rate(cfg, 0.0) == pytest.approx(0.032 / LR_RATIO)
    assert learning_rate(cfg, 0.1) == pytest.approx(0.032)
    assert learning_rate(cfg, 0.55) == pytest.approx((0.032 + 0.032 / LR_RATIO) / 2)
    assert learning_rate(cfg, 1.0) == pytest.approx(0.032 / LR_RATIO)
    assert learning_rate(cfg, 0.05) < learning_rate(cfg, 0.08) < learning_rate(cfg, 0.1)


def test_the_language_model_learns_a_repetitive_corpus(tmp_path):
    lines = ["the cat sat on the mat and the dog ran to the park ."] * 60
    folder = tmp_path / "corpus"
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i, line in enumerate(lines):
            (folder / label / f"{i}.txt").write_text(line, encoding="utf-8")
    extra = PRETRAIN.replace("epochs = 2", "epochs = 6").replace("samples = 16", "samples = 8")
    recipe = load_recipe(write_recipe(tmp_path / "r.toml", folder, extra))
    result = pretrain(recipe, tmp_path / "runs", device="cpu")
    first, last = result.epochs[0], result.epochs[-1]
    # 11 words: a model that learned nothing scores about 11; the sequence is deterministic
    assert first.perplexity > 1.5 * last.perplexity, [e.perplexity for e in result.epochs]
    assert last.perplexity < 3.0 and last.backward_perplexity < 3.0
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss
    assert result.stopped == "completed"
    assert {"model.safetensors", "recipe.toml", "vocab.json", "meta.json", "metrics.jsonl"} <= {
        p.name for p in result.run_dir.iterdir()
    }
    meta = json.loads((result.run_dir / "meta.json").read_text())
    assert meta["kind"] == "language_model" and meta["steps"] == 6 * result.epochs[0].steps
    assert (result.run_dir.parent / "latest").resolve() == result.run_dir.resolve()


def test_the_time_budget_stops_at_a_step(tmp_path, corpus):
    recipe = load_recipe(write_recipe(tmp_path / "r.toml", corpus, PRETRAIN))
    result = pretrain(recipe, tmp_path / "runs", device="cpu", max_minutes=1e-6)
    assert result.stopped == "budget"
    assert len(result.epochs) == 1 and result.epochs[0].steps == 1
    assert json.loads((result.run_dir / "meta.json").read_text())["stopped"] == "budget"


def test_finetuning_starts_from_the_language_model(tmp_path, pretrained_lm):
    path = write_recipe(tmp_path / "ft.toml", write_label_folders(tmp_path / "corpus"))
    path.write_text(
        path.read_text().replace("[model]\n", f'[model]\nencoder = "{pretrained_lm}"\n')
    )
    recipe = load_recipe(path)
    prepared = prepare(recipe)
    lm_vocab = json.loads((pretrained_lm / "vocab.json").read_text())["tokens"]
    assert prepared.vocab.tokens == lm_vocab
    fit = build_fit(recipe, prepared, torch.device("cpu"))
    weights = load_file(str(pretrained_lm / "model.safetensors"))
    state = fit.model.state_dict()
    shared = [k for k in weights if k.startswith(("embedding.", "forward_", "backward_"))]
    assert len(shared) >= 9  # embedding, and 4 tensors per direction
    for name in shared:
        assert torch.equal(state[name], weights[name]), name

    result = train(recipe, tmp_path / "runs", device="cpu")
    saved = (result.run_dir / "recipe.toml").read_text()
    assert f'encoder = "{pretrained_lm.resolve()}"' in saved
    texts = ["a great and lovely film", "an awful, boring plot", "the actor was superb"]
    before = Predictor.load(result.run_dir).probabilities(texts)
    again = Predictor.load(result.run_dir).probabilities(texts)
    np.testing.assert_array_equal(before, again)


def test_a_classifier_may_read_treebank_text_with_a_language_model_of_raw_text(
    tmp_path, pretrained_lm
):
    from textlstm.training.transfer import with_encoder

    path = write_recipe(tmp_path / "ft.toml", write_label_folders(tmp_path / "corpus"))
    text = path.read_text().replace("[model]\n", f'[model]\nencoder = "{pretrained_lm}"\n')
    path.write_text(text.replace("[tokenizer]\n", '[tokenizer]\ndetokenize = "ptb"\n'))
    recipe = with_encoder(load_recipe(path))  # the text's form is the classifier's own
    assert recipe.tokenizer.detokenize == "ptb"
    assert recipe.vocab.path == str(pretrained_lm.resolve() / "vocab.json")


def test_a_language_model_goes_on_from_an_earlier_one(tmp_path, pretrained_lm):
    """ULMFiT's second stage: the language model fine-tuned on the target task's text starts
    from the earlier one's weights, keeps its tokenizer and vocabulary, and a classifier then
    starts from it."""
    from textlstm.lm import PretrainEvents

    class Messages(PretrainEvents):
        def __init__(self):
            self.lines = []

        def message(self, text):
            self.lines.append(text)

    other = write_label_folders(tmp_path / "other", per_class=20, seed=5)
    path = write_recipe(tmp_path / "lm2.toml", other, PRETRAIN.replace("epochs = 2", "epochs = 1"))
    text = path.read_text().replace("[model]\n", f'[model]\nencoder = "{pretrained_lm}"\n')
    path.write_text(text.replace("lr = 0.01\nheld", "lr = 1e-9\nheld"))  # barely moves
    events = Messages()
    result = pretrain(load_recipe(path), tmp_path / "runs", device="cpu", events=events)
    earlier = load_file(str(pretrained_lm / "model.safetensors"))
    now = load_file(str(result.run_dir / "model.safetensors"))
    assert now.keys() == earlier.keys()
    for name in now:  # a fresh model's random weights would be far from these
        torch.testing.assert_close(now[name], earlier[name], atol=1e-5, rtol=0), name
    vocab = json.loads((result.run_dir / "vocab.json").read_text())["tokens"]
    assert vocab == json.loads((pretrained_lm / "vocab.json").read_text())["tokens"]
    assert any(
        f"starting from the language model {pretrained_lm.resolve()}" in m and "perplexity" in m
        for m in events.lines
    ), events.lines
    start = str(pretrained_lm.resolve())
    assert f'encoder = "{start}"' in (result.run_dir / "recipe.toml").read_text()
    assert json.loads((result.run_dir / "meta.json").read_text())["started_from"] == start

    classifier = write_recipe(tmp_path / "ft.toml", other)
    classifier.write_text(
        classifier.read_text().replace("[model]\n", f'[model]\nencoder = "{result.run_dir}"\n')
    )
    recipe = load_recipe(classifier)
    fit = build_fit(recipe, prepare(recipe), torch.device("cpu"))
    assert torch.equal(fit.model.state_dict()["embedding.weight"], now["embedding.weight"])


def test_a_language_model_cannot_grow_a_direction_it_never_had(tmp_path, corpus):
    from textlstm.errors import RecipeError

    forward = PRETRAIN.replace("epochs = 2", 'epochs = 1\ndirections = "forward"')
    first = pretrain(
        load_recipe(write_recipe(tmp_path / "f.toml", corpus, forward)),
        tmp_path / "a",
        device="cpu",
    ).run_dir
    path = write_recipe(tmp_path / "lm2.toml", corpus, PRETRAIN)
    path.write_text(path.read_text().replace("[model]\n", f'[model]\nencoder = "{first}"\n'))
    with pytest.raises(RecipeError) as caught:
        pretrain(load_recipe(path), tmp_path / "b", device="cpu")
    assert "pretrain.directions: the language model" in str(caught.value)
    assert 'set pretrain.directions = "forward"' in str(caught.value)
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").rglob("*.safetensors"))
    path.write_text(path.read_text() + 'directions = "forward"\n')
    again = pretrain(load_recipe(path), tmp_path / "c", device="cpu")
    assert again.stopped == "completed"


def test_two_layers_keep_a_stack_per_direction(tmp_path):
    corpus = write_label_folders(tmp_path / "corpus")
    lm_path = write_recipe(tmp_path / "lm.toml", corpus, PRETRAIN)
    lm_path.write_text(lm_path.read_text().replace("[model]\n", "[model]\nnum_layers = 2\n"))
    lm = pretrain(load_recipe(lm_path), tmp_path / "runs", device="cpu").run_dir
    path = write_recipe(tmp_path / "ft.toml", corpus)
    path.write_text(
        path.read_text().replace("[model]\n", f'[model]\nnum_layers = 2\nencoder = "{lm}"\n')
    )
    recipe = load_recipe(path)
    fit = build_fit(recipe, prepare(recipe), torch.device("cpu"))
    weights = load_file(str(lm / "model.safetensors"))
    state = fit.model.state_dict()
    for name in ("forward_layers.1.weight_ih_l0", "backward_layers.1.weight_ih_l0"):
        assert state[name].shape == (4 * 12, 12)  # reads its own direction only
        assert torch.equal(state[name], weights[name])
    logits = fit.model(torch.tensor([[2, 3, 4, 0], [5, 6, 0, 0]]), torch.tensor([3, 2]))
    assert logits.shape == (2, 2)


def test_pretrain_command(tmp_path, corpus):
    path = write_recipe(tmp_path / "r.toml", corpus, PRETRAIN)
    result = CliRunner().invoke(
        app, ["pretrain", str(path), "--out", str(tmp_path / "runs"), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert "held-out perplexity" in result.output
    assert (tmp_path / "runs" / "tiny-lm" / "latest" / "model.safetensors").is_file()


def test_discriminative_rates_and_gradual_unfreezing(tmp_path, pretrained_lm):
    path = write_recipe(tmp_path / "ft.toml", write_label_folders(tmp_path / "corpus"))
    text = path.read_text().replace("[model]\n", f'[model]\nencoder = "{pretrained_lm}"\n')
    text = text.replace("[train]\n", '[train]\nlayer_lr_decay = 2.0\nunfreeze = "gradual"\n')
    path.write_text(text.replace("lr = 0.01", "lr = 0.04\nwarmup_fraction = 0.0"))
    recipe = load_recipe(path)
    prepared = prepare(recipe)
    fit = build_fit(recipe, prepared, torch.device("cpu"))
    model = fit.model
    assert [g["initial_lr"] for g in fit.optimizer.param_groups] == [0.04, 0.02, 0.01]
    assert fit.optimizer.param_groups[2]["params"] == [model.embedding.weight]
    assert fit.scheduler.get_last_lr()[1:] == [0.0, 0.0]  # epoch 1: only the head learns
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = next(train_epochs(fit, prepared, recipe))
    assert result.epoch == 1
    after = model.state_dict()
    assert torch.equal(after["embedding.weight"], before["embedding.weight"])
    assert torch.equal(
        after["forward_layers.0.weight_hh_l0"], before["forward_layers.0.weight_hh_l0"]
    )
    assert not torch.equal(after["head.weight"], before["head.weight"])
    lrs = fit.scheduler.get_last_lr()
    assert lrs[1] > 0 and lrs[2] == 0.0  # epoch 2: the LSTM layer too, the embedding in epoch 3


def train_epochs(fit, prepared, recipe):
    from textlstm.training.events import Events
    from textlstm.training.loop import epochs

    return epochs(
        fit,
        prepared.ids["train"],
        prepared.ids["validation"],
        recipe.train,
        1,
        np.random.default_rng(0),
        torch.device("cpu"),
        "fp32",
        Events(),
    )


KILLED = """
import os, signal, sys
from textlstm.lm import PretrainEvents, pretrain
from textlstm.recipe import load_recipe

class KillAfter(PretrainEvents):
    steps = 0
    def batch_end(self, loss, tokens):  # after the step's checkpoint was written
        self.steps += 1
        if self.steps == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)

pretrain(load_recipe(sys.argv[1]), sys.argv[2], device="cpu", events=KillAfter())
"""


def test_a_killed_pretraining_resumes_to_the_same_model(tmp_path, corpus):
    import subprocess
    import sys

    from textlstm.lm import resume

    extra = PRETRAIN + "checkpoint_minutes = 1e-9\n"  # a checkpoint after every step
    path = write_recipe(tmp_path / "r.toml", corpus, extra)
    whole = pretrain(load_recipe(path), tmp_path / "whole", device="cpu")
    steps = whole.epochs[0].steps
    for kill_at in (3, steps + 2):  # within the first epoch, and within the second
        out = tmp_path / f"killed-{kill_at}"
        done = subprocess.run(
            [sys.executable, "-c", KILLED, str(path), str(out), str(kill_at)], timeout=300
        )
        assert done.returncode == -9
        (partial,) = (out / "tiny-lm").glob("*.partial")
        resumed = resume(partial, device="cpu")
        assert (
            resumed.stopped == "completed" and not (resumed.run_dir / "resume.safetensors").exists()
        )
        a = load_file(str(whole.run_dir / "model.safetensors"))
        b = load_file(str(resumed.run_dir / "model.safetensors"))
        assert a.keys() == b.keys()
        for name in a:
            assert torch.equal(a[name], b[name]), (kill_at, name)
        assert [e.perplexity for e in resumed.epochs] == [e.perplexity for e in whole.epochs]
