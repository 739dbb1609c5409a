import json

import pytest
import torch

from textlstm import Events, Predictor, evaluate, load_recipe, train
from textlstm.errors import DataError, RecipeError

from conftest import write_label_folders, write_recipe


def test_run_folder_describes_itself(trained_run):
    names = sorted(p.name for p in trained_run.iterdir())
    assert {
        "model.safetensors",
        "recipe.toml",
        "vocab.json",
        "labels.json",
        "meta.json",
        "metrics.jsonl",
    } <= set(names)
    meta = json.loads((trained_run / "meta.json").read_text())
    assert meta["format_version"] == 1 and meta["seed"] == 7 and meta["name"] == "tiny"
    assert meta["split_rows"] == {"train": 48, "validation": 16, "test": 16}
    assert len(meta["data_fingerprint"]) == 32 and meta["torch"]
    lines = (trained_run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[-1])["epoch"] == 3
    assert json.loads((trained_run / "labels.json").read_text()) == ["neg", "pos"]
    assert (trained_run.parent / "latest").resolve() == trained_run.resolve()
    assert not list(trained_run.parent.glob("*.partial"))


def test_save_and_load_reproduce_the_validation_metrics(trained_run):
    meta = json.loads((trained_run / "meta.json").read_text())
    again = evaluate(trained_run, split="validation", device="cpu").report
    assert again.accuracy == meta["validation"]["accuracy"]
    assert again.loss == pytest.approx(meta["validation"]["validation_loss"], abs=1e-6)


def test_the_weights_average_is_what_validation_scores_and_the_run_keeps(tmp_path, recipe_path):
    recipe = load_recipe(recipe_path, ["train.ema_decay=0.95", "train.keep='last'"])
    run = train(recipe, tmp_path / "runs", device="cpu").run_dir
    meta = json.loads((run / "meta.json").read_text())
    again = evaluate(run, split="validation", device="cpu").report
    assert again.loss == pytest.approx(meta["validation"]["validation_loss"], abs=1e-6)


def test_the_moving_average_ramps_up_to_its_decay():
    from textlstm.training.loop import moving_average

    model = torch.nn.Linear(1, 1, bias=False)
    average = moving_average(model, 0.2)
    seen = []
    for value in (1.0, 2.0, 3.0, 4.0):
        with torch.no_grad():
            model.weight.fill_(value)
        average.update_parameters(model)
        seen.append(float(average.module.weight.detach()))
    # the first update copies; then the decay is min(0.2, (1 + n) / (10 + n)) after n updates:
    # 2 / 11 after one, then 0.2 (3 / 12 and 4 / 13 are above it)
    expected = [1.0, 2 / 11 * 1 + 9 / 11 * 2]
    expected.append(0.2 * expected[-1] + 0.8 * 3)
    expected.append(0.2 * expected[-1] + 0.8 * 4)
    assert seen == pytest.approx(expected)


def test_same_seed_gives_identical_metrics(tmp_path, recipe_path):
    first = train(load_recipe(recipe_path), tmp_path / "a", device="cpu")
    second = train(load_recipe(recipe_path), tmp_path / "b", device="cpu")
    assert [(e.train_loss, e.validation_loss, e.accuracy) for e in first.epochs] == [
        (e.train_loss, e.validation_loss, e.accuracy) for e in second.epochs
    ]
    texts = ["great superb film", "awful boring plot", ""]
    assert [p.scores for p in Predictor.load(first.run_dir, "cpu").predict(texts)] == [
        p.scores for p in Predictor.load(second.run_dir, "cpu").predict(texts)
    ]


def test_it_learns_a_separable_task(tmp_path):
    corpus = write_label_folders(tmp_path / "c", per_class=60)
    recipe = load_recipe(
        write_recipe(tmp_path / "r.toml", corpus),
        [
            "train.epochs=6",
            "model.cell=gru",
            "model.pooling=attention",
            "model.num_layers=2",
            'train.class_weights="balanced"',
        ],
    )
    result = train(recipe, tmp_path / "runs", device="cpu")
    assert max(e.accuracy for e in result.epochs) >= 0.9
    assert evaluate(result.run_dir, split="test", device="cpu").report.accuracy >= 0.9
    assert (
        Predictor.load(result.run_dir, "cpu").predict(["superb wonderful film"])[0].label == "pos"
    )


def test_early_stopping_keeps_the_best_epoch(tmp_path, recipe_path):
    recipe = load_recipe(recipe_path, ["train.epochs=6", "train.patience=1", "train.lr=1e-9"])
    result = train(recipe, tmp_path / "runs", device="cpu")
    assert result.stopped == "early_stopping"
    assert len(result.epochs) == 2 and result.best_epoch == 1
    assert json.loads((result.run_dir / "meta.json").read_text())["best_epoch"] == 1


def test_ctrl_c_keeps_the_best_weights_so_far(tmp_path, recipe_path):
    class StopAfterTwo(Events):
        def epoch_end(self, result):
            if result.epoch == 2:
                raise KeyboardInterrupt

    result = train(load_recipe(recipe_path), tmp_path / "runs", device="cpu", events=StopAfterTwo())
    assert result.stopped == "interrupted" and len(result.epochs) == 2
    assert (result.run_dir / "model.safetensors").is_file()


def test_interrupt_before_any_epoch_leaves_nothing(tmp_path, recipe_path):
    class StopAtOnce(Events):
        def batch_end(self, loss, tokens):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(load_recipe(recipe_path), tmp_path / "runs", device="cpu", events=StopAtOnce())
    assert list((tmp_path / "runs" / "tiny").iterdir()) == []


def test_bad_input_creates_no_run_folder(tmp_path, corpus):
    recipe = load_recipe(
        write_recipe(tmp_path / "w.toml", corpus), ["train.class_weights={nope = 2.0}"]
    )
    with pytest.raises(
        RecipeError, match=r"train.class_weights: unknown label 'nope'; labels are neg, pos"
    ):
        train(recipe, tmp_path / "runs", device="cpu")
    missing = load_recipe(write_recipe(tmp_path / "m.toml", tmp_path / "missing-folder"))
    with pytest.raises(DataError, match="dataset path does not exist"):
        train(missing, tmp_path / "runs", device="cpu")
    assert not (tmp_path / "runs").exists()


def test_evaluate_finds_the_mirror_the_run_was_trained_from(tmp_path):
    root = tmp_path / "mirror"
    write_label_folders(root / "someone" / "reviews")
    recipe = load_recipe(write_recipe(tmp_path / "r.toml", "someone/reviews"))
    with pytest.raises(DataError, match="pass data_dir="):
        train(recipe, tmp_path / "runs", device="cpu")  # no mirror given: the hub is offline
    result = train(recipe, tmp_path / "runs", data_dir=root, device="cpu")
    assert json.loads((result.run_dir / "meta.json").read_text())["data_dir"] == str(root.resolve())
    assert evaluate(result.run_dir, split="test", device="cpu").report.rows == 16


def poison_the_loss_from(monkeypatch, batch):
    """From the ``batch``-th training batch on, the loss is NaN, as a too-high learning rate makes
    it (the tiny data trains 6 batches an epoch, so batch 7 is the first of epoch 2)."""
    import torch

    import textlstm.training.trainer as trainer

    real = trainer.build_fit
    calls = {"n": 0}

    class Poisoned(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, logits, targets):
            loss = self.inner(logits, targets)
            if self.training:
                calls["n"] += 1
                if calls["n"] >= batch:
                    return loss * float("nan")
            return loss

    def build(*args, **kwargs):
        fit = real(*args, **kwargs)
        fit.criterion = Poisoned(fit.criterion)
        return fit

    monkeypatch.setattr(trainer, "build_fit", build)


def test_a_diverged_training_says_so_keeps_the_run_resumable_and_exits_with_its_own_code(
    tmp_path, recipe_path, monkeypatch
):
    from typer.testing import CliRunner

    from textlstm.cli import app
    from textlstm.errors import DIVERGED_EXIT, TextLSTMError, TrainingDiverged

    assert not issubclass(TrainingDiverged, TextLSTMError)  # not bad input: not exit code 2
    poison_the_loss_from(monkeypatch, 7)
    result = CliRunner().invoke(
        app, ["train", str(recipe_path), "--out", str(tmp_path / "runs"), "--device", "cpu"]
    )
    assert result.exit_code == DIVERGED_EXIT == 3
    (partial,) = (tmp_path / "runs" / "tiny").glob("*.partial")
    assert result.stderr.strip().splitlines() == [
        "diverged: the training loss became nan at step 1 of epoch 2: training diverged; lower "
        "train.lr (now 0.01) or train.clip_grad_norm (now 1), then train again; "
        f"{partial} keeps epoch 1 and can be resumed"
    ]
    assert "Traceback" not in result.output
    monkeypatch.undo()  # the cause fixed: the same folder resumes from its last good epoch
    resumed = CliRunner().invoke(app, ["train", "--resume", str(partial), "--device", "cpu"])
    assert resumed.exit_code == 0, resumed.output
    assert "after epoch 1 of 3" in resumed.stdout


def test_a_run_that_diverges_in_its_first_epoch_leaves_nothing(tmp_path, recipe_path, monkeypatch):
    from textlstm.errors import TrainingDiverged

    poison_the_loss_from(monkeypatch, 3)
    recipe = load_recipe(recipe_path, ["train.clip_grad_norm=0"])
    with pytest.raises(TrainingDiverged) as info:
        train(recipe, tmp_path / "runs", device="cpu")
    assert str(info.value) == (
        "the training loss became nan at step 3 of epoch 1: training diverged; lower train.lr "
        "(now 0.01) or set train.clip_grad_norm (now 0: off), e.g. to 1.0, then train again"
    )
    assert info.value.run_dir is None and list((tmp_path / "runs" / "tiny").iterdir()) == []


def test_a_label_column_mixing_numbers_and_names_is_one_line(tmp_path):
    from textlstm.data import load_splits
    from textlstm.recipe import DataConfig

    rows = [("a superb film", 1), ("a great film", "pos"), ("an awful film", "neg")] * 4
    jsonl = tmp_path / "mixed.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    csv = tmp_path / "mixed.csv"
    csv.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    for path in (jsonl, csv):
        with pytest.raises(DataError) as info:
            load_splits(DataConfig(dataset=str(path)))
        assert info.value.lines == [
            f"{path}: label column 'label' mixes numbers and names (e.g. 1 and 'neg'); make "
            "every label a class name or every label an integer id"
        ]
    numbers = tmp_path / "numbers.csv"
    numbers.write_text("text,label\n" + "".join(f"{t},{i % 2}\n" for i, (t, _) in enumerate(rows)))
    assert load_splits(DataConfig(dataset=str(numbers))).labels == ["0", "1"]


def test_a_run_with_the_ngram_branch_saves_loads_and_reproduces_its_metrics(tmp_path, recipe_path):
    recipe = load_recipe(recipe_path, ["model.ngrams=2", "model.ngram_buckets=2048"])
    result = train(recipe, tmp_path / "runs", device="cpu")
    meta = json.loads((result.run_dir / "meta.json").read_text())
    again = evaluate(result.run_dir, split="validation", device="cpu").report
    assert again.accuracy == meta["validation"]["accuracy"]
    assert again.loss == pytest.approx(meta["validation"]["validation_loss"], abs=1e-6)
    predictor = Predictor.load(result.run_dir, "cpu")
    assert predictor.loaded.model.ngram_bag is not None
    assert predictor.loaded.model.ngram_bag.embedding.num_embeddings == meta["vocab_size"] + 2048


@pytest.mark.parametrize(
    "cfg, per_epoch, planned",
    [
        ({"epochs": 7}, 100, 7),  # a number is taken as it is
        ({}, 352, 9),  # 25,000 reviews at 64: ceil(3,000 / 352)
        ({}, 79, 38),  # 5,000 texts train about as many steps
        ({}, 10, 40),  # the ceiling
        ({}, 5000, 2),  # very large data still gets two epochs
        ({"steps": 100, "max_epochs": 1}, 10, 1),  # a ceiling below two wins
    ],
)
def test_auto_epochs_follow_the_data(cfg, per_epoch, planned):
    from textlstm.recipe import TrainConfig

    assert TrainConfig(**cfg).planned_epochs(per_epoch) == planned


def test_auto_epochs_plan_a_step_budget_and_the_run_keeps_the_number(tmp_path, recipe_path):
    messages = []

    class Collect(Events):
        def message(self, text):
            messages.append(text)

    # 48 training rows at 8 a batch: 6 steps an epoch, so 20 steps need 4 epochs
    recipe = load_recipe(recipe_path, ['train.epochs="auto"', "train.steps=20"])
    result = train(recipe, tmp_path / "runs", device="cpu", events=Collect())
    assert len(result.epochs) == 4
    assert any(m.startswith('train.epochs = "auto": 4 epochs of 6 steps') for m in messages)
    saved = load_recipe(result.run_dir / "recipe.toml")
    assert saved.train.epochs == 4 and saved.train.steps == 20
    # the schedule spans the planned steps: the learning rate reaches zero at the last one
    from textlstm.training.setup import lr_schedule

    factor = lr_schedule(saved.train, 24)
    assert factor(23) > 0 and factor(24) == 0.0


def test_a_run_with_the_linear_model_fits_it_first_then_its_weight_and_reloads_exactly(
    tmp_path, recipe_path
):
    recipe = load_recipe(recipe_path, ["model.wide='nblr'", "model.wide_buckets=2048"])
    result = train(recipe, tmp_path / "runs", device="cpu")
    meta = json.loads((result.run_dir / "meta.json").read_text())
    wide = meta["wide"]
    assert 0.0 <= wide["scale"] <= 4.0 and set(wide["validation_accuracy_alone"]) == {
        "network",
        "linear",
    }
    evaluation = evaluate(result.run_dir, split="validation", device="cpu")
    again = evaluation.report
    assert again.accuracy == meta["validation"]["accuracy"]
    assert again.loss == pytest.approx(meta["validation"]["validation_loss"], abs=1e-5)
    assert evaluation.parts_accuracy == wide["validation_accuracy_alone"]  # each part alone
    saved = json.loads(evaluation.json_path.read_text())
    assert saved["parts_accuracy"] == wide["validation_accuracy_alone"]
    model = Predictor.load(result.run_dir, "cpu").loaded.model
    assert float(model.wide.scale) == pytest.approx(wide["scale"])
    assert float(model.wide.network) == pytest.approx(wide["network"])
    assert model.wide.weight.shape == (meta["vocab_size"] + 2048, 2)
    assert model.wide.weight.abs().sum() > 0  # fitted, saved and loaded
    int8 = Predictor.load(result.run_dir, "cpu", quantize="int8")  # buffers survive quantizing
    assert float(int8.loaded.model.wide.scale) == pytest.approx(wide["scale"])
    assert torch.equal(int8.loaded.model.wide.weight, model.wide.weight)
    texts = ["a superb and lovely film", "an awful, dull plot"]
    assert len(int8.predict(texts)) == 2


def test_linear_model_settings_without_it_are_a_recipe_error(recipe_path):
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe_path, ["model.wide_ngrams=2"])
    assert info.value.lines == [
        "overrides: model.wide_ngrams: needs model.wide = 'nblr' (the linear model is off)"
    ]


def test_the_fp16_gradient_scaler_steps_as_plain_fp32_does_and_skips_an_overflow():
    """fp16 trains on GPUs only; its scaler's arithmetic (scale the loss up by a power of two,
    unscale the gradients before clipping, skip a step whose gradients overflowed) is checked here
    with fp32 on the CPU, where scaling by a power of two is exact."""
    from textlstm.runtime import optimizer_step

    def stepped(scaler, poison=False):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 3)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        loss = model(torch.randn(8, 4)).pow(2).mean() * (float("inf") if poison else 1.0)
        optimizer_step(loss, model, optimizer, 0.5, scaler)
        return model, scaler

    plain, _ = stepped(None)
    scaled, scaler = stepped(torch.amp.GradScaler("cpu", init_scale=2.0**12))
    for a, b in zip(plain.parameters(), scaled.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    assert scaler.get_scale() == 2.0**12  # no overflow: the scale holds
    torch.manual_seed(0)
    before = torch.nn.Linear(4, 3).weight.detach().clone()
    poisoned, scaler = stepped(torch.amp.GradScaler("cpu", init_scale=2.0**12), poison=True)
    assert torch.equal(poisoned.weight.detach(), before)  # the overflowing step was skipped
    assert scaler.get_scale() == 2.0**11  # and the scale halved


def test_the_adversarial_push_is_a_set_fraction_of_each_text_and_raises_its_loss():
    from textlstm.model.classifier import LSTMClassifier
    from textlstm.recipe import ModelConfig, TrainConfig
    from textlstm.training.loop import Fit, adversarial_loss, embedding_probe

    torch.manual_seed(0)
    model = LSTMClassifier(ModelConfig(embedding_dim=8, hidden_size=6, dropout=0.0), 30, 3)
    pushes = []

    class Recorder(torch.nn.Module):  # the wrapped model, as DDP would be
        def __init__(self):
            super().__init__()
            self.module = model

        def forward(self, tokens, lengths, perturbation=None):
            pushes.append(perturbation)
            return model(tokens, lengths, perturbation)

    tokens = torch.randint(2, 30, (4, 6))
    lengths = torch.tensor([6, 3, 5, 1])
    tokens[torch.arange(6) >= lengths.unsqueeze(1)] = 0  # padding
    targets = torch.tensor([0, 1, 2, 1])
    criterion = torch.nn.CrossEntropyLoss(reduction="none")
    fit = Fit(model, criterion, None, None, None, None, 3)  # type: ignore[arg-type]
    probe = embedding_probe(model, tokens)
    clean = criterion(model(tokens, lengths, probe), targets)  # (batch,) losses
    eps = 0.2
    pushed = adversarial_loss(
        fit,
        Recorder(),
        tokens,
        lengths,
        targets,
        clean.sum(),
        probe,
        TrainConfig(adversarial=eps),
        "fp32",
    )
    push = pushes[-1]  # (seq_len, batch, dim)
    embedded = model.embedding(tokens.t()).detach()
    torch.testing.assert_close(push.norm(dim=(0, 2)), eps * embedded.norm(dim=(0, 2)))
    assert torch.all(push[lengths[3] :, 3] == 0)  # nothing pushes the padding
    assert torch.all(pushed > clean)  # each text's loss went up
    assert pushed.requires_grad  # the pushed loss trains the weights


def test_class_weights_balanced_and_their_square_root():
    import numpy as np

    from textlstm.recipe import TrainConfig
    from textlstm.training.setup import class_weights

    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    names = ["a", "b", "c"]
    full = class_weights(TrainConfig(class_weights="balanced"), labels, names, "")
    root = class_weights(TrainConfig(class_weights="sqrt"), labels, names, "")
    assert full is not None and root is not None
    assert full.tolist() == pytest.approx([1000 / 2700, 1000 / 270, 1000 / 30])
    assert (root[2] / root[0]).item() == pytest.approx(90**0.5)  # the ratio's square root
    assert float((root[torch.from_numpy(labels)]).mean()) == pytest.approx(1.0)  # a row weighs 1
    multi = np.zeros((100, 2), dtype=np.float32)
    multi[:10, 0], multi[:50, 1] = 1, 1
    assert class_weights(TrainConfig(class_weights="balanced"), multi, ["x", "y"], "").tolist() == (
        pytest.approx([9.0, 1.0])
    )
