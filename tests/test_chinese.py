"""Text without spaces between words: the `char` and `jieba` tokenizer kinds, `init`'s choice of
them, and a Chinese run through training, prediction, explanation and export."""

from __future__ import annotations

import csv
import random
import re
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from textlstm.cli import app
from textlstm.data.starter import cjk_share, starting_recipe
from textlstm.errors import RecipeError
from textlstm.recipe import TokenizerConfig, VocabConfig, load_recipe
from textlstm.text.tokenizers import build_tokenizer

from conftest import write_recipe

CHINESE = {
    "pos": ["很好", "满意", "舒服", "推荐", "干净", "喜欢"],
    "neg": ["很差", "失望", "吵闹", "肮脏", "后悔", "难吃"],
    "neutral": [
        "酒店",
        "房间",
        "服务",
        "早餐",
        "位置",
        "我们",
        "这次",
        "的",
        "了",
        "还",
        "iPhone",
        "3天",
    ],
}


def chinese_texts(label: str, count: int, seed: int) -> list[str]:
    """Hotel reviews without spaces whose class shows in a few class words."""
    rng = random.Random(f"zh-{label}-{seed}")
    texts = []
    for _ in range(count):
        words = rng.choices(CHINESE["neutral"], k=rng.randint(4, 12))
        for _ in range(rng.randint(1, 3)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(CHINESE[label]))
        texts.append("".join(words) + rng.choice("。！，"))
    return texts


def write_chinese_csv(path, per_class: int = 40, seed: int = 0):
    rows = [(t, label) for label in ("neg", "pos") for t in chinese_texts(label, per_class, seed)]
    random.Random(seed).shuffle(rows)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def test_char_tokens_are_cjk_characters_and_whole_latin_words():
    tokenize = build_tokenizer(TokenizerConfig(kind="char"))
    assert tokenize("用iPhone拍的照片不错！Don't 3天") == [
        "用", "iphone", "拍", "的", "照", "片", "不", "错", "！", "don't", "3", "天",
    ]  # fmt: skip
    assert tokenize("日本語のテキスト、한국어") == [
        "日", "本", "語", "の", "テ", "キ", "ス", "ト", "、", "한", "국", "어",
    ]  # fmt: skip
    assert tokenize("𠀀々〇 ｶﾀ") == ["𠀀", "々", "〇", "ｶ", "ﾀ"]  # astral Han, half-width kana


def test_jieba_segments_chinese_words_and_drops_spaces():
    tokenize = build_tokenizer(TokenizerConfig(kind="jieba"))
    assert tokenize("这个酒店的服务很好， Hello  World") == [
        "这个", "酒店", "的", "服务", "很", "好", "，", "hello", "world",
    ]  # fmt: skip
    assert tokenize.batch(["", "  "]) == [[], []]


def test_jieba_missing_is_one_line_naming_the_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "jieba", None)  # import jieba now raises ImportError
    with pytest.raises(RecipeError) as caught:
        build_tokenizer(TokenizerConfig(kind="jieba"))
    assert str(caught.value) == (
        "tokenizer.kind: 'jieba' needs the jieba package: pip install 'textlstm[chinese]' "
        "(or pip install jieba), or use tokenizer.kind = 'char'"
    )
    data = write_chinese_csv(tmp_path / "zh.csv", per_class=10)
    recipe = write_recipe(tmp_path / "zh.toml", data).read_text()
    recipe = recipe.replace("[tokenizer]\n", '[tokenizer]\nkind = "jieba"\n')
    (tmp_path / "zh.toml").write_text(recipe, encoding="utf-8")
    result = CliRunner().invoke(
        app, ["train", str(tmp_path / "zh.toml"), "--out", str(tmp_path / "runs")]
    )
    assert result.exit_code == 2
    # the brackets reach the terminal: rich markup must not swallow '[chinese]'
    assert result.stderr.strip() == f"error: {caught.value!s}"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("key", ['language = "zh"', "vocab_size = 500", "min_frequency = 3"])
@pytest.mark.parametrize("kind", ["char", "jieba"])
def test_a_setting_the_kind_does_not_use_is_one_line(tmp_path, kind, key):
    path = write_recipe(tmp_path / "zh.toml", tmp_path / "zh.csv")
    text = path.read_text().replace("[tokenizer]\n", f'[tokenizer]\nkind = "{kind}"\n{key}\n')
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    name = key.split(" ")[0]
    users = {"language": "spacy", "vocab_size": "bpe, wordpiece, unigram"}
    assert result.stderr.strip() == (
        f"error: {path}: tokenizer.{name}: not used by tokenizer.kind = '{kind}' (only by "
        f"{users.get(name, 'bpe, wordpiece')}); remove it or change tokenizer.kind"
    )


@pytest.mark.parametrize("kind", ["char", "jieba"])
def test_ids_of_the_fast_path_are_the_tokens_of_the_plain_path(kind):
    from textlstm.text.encoder import fit_encoder
    from textlstm.text.vocab import build_vocab

    texts = chinese_texts("pos", 60, 1) + chinese_texts("neg", 60, 1) + ["", "ABC漢字def"]
    cfg = TokenizerConfig(kind=kind, max_length=9, truncation="head+tail")
    encoder, _ = fit_encoder(cfg, VocabConfig(max_size=30), texts)
    tokens = build_tokenizer(cfg).batch(texts)
    reference = build_vocab(tokens, VocabConfig(max_size=30))
    assert encoder.vocab.tokens == reference.tokens
    for ids, row in zip(encoder.encode(texts), tokens):
        assert ids.tolist() == reference.encode(row).tolist()


def test_init_chooses_characters_for_chinese_and_says_why(tmp_path):
    data = write_chinese_csv(tmp_path / "zh.csv", per_class=30)
    done = starting_recipe(str(data))
    chosen = {c.key: c for c in done.choices}
    assert chosen["tokenizer.kind"].value == "char"
    assert re.match(
        r"\d\d% of the letters are Chinese, Japanese or Korean", chosen["tokenizer.kind"].reason
    )
    assert "vocab.vectors" not in chosen  # English vectors mean nothing here
    assert cjk_share(["abc", "漢字漢"]) == 0.5 and cjk_share(["plain English"]) == 0.0


def test_a_chinese_run_trains_predicts_explains_and_exports_the_same_tokens(tmp_path):
    """One char run (with the n-gram bag and the linear model) and one jieba run, end to end;
    the export's standalone predict.py must make exactly the ids textlstm makes."""
    from test_export import standalone

    from textlstm.explain import Explainer
    from textlstm.export.onnx import TOLERANCE, export_onnx
    from textlstm.predict.predictor import Predictor
    from textlstm.training import train

    data = write_chinese_csv(tmp_path / "zh.csv", per_class=40)
    texts = [*chinese_texts("pos", 8, 7), *chinese_texts("neg", 8, 7), "", "用iPhone拍的，很好"]
    for kind, model in (
        ("char", 'ngrams = 2\nwide = "nblr"\nwide_buckets = 4096\n'),
        ("jieba", ""),
    ):
        path = write_recipe(tmp_path / f"{kind}.toml", data)
        text = path.read_text().replace("[tokenizer]\n", f'[tokenizer]\nkind = "{kind}"\n')
        path.write_text(text.replace("[model]\n", "[model]\n" + model), encoding="utf-8")
        run = train(load_recipe(path), tmp_path / "runs", device="cpu").run_dir
        predictor = Predictor.load(run, device="cpu", precision="fp32")
        labels = [p.label for p in predictor.predict(texts[:16])]
        assert np.mean([a == b for a, b in zip(labels, ["pos"] * 8 + ["neg"] * 8)]) >= 0.75
        explained = Explainer.load(run).explain(["房间很干净，我们很满意"])[0]
        assert "".join(explained.tokens) == "房间很干净，我们很满意"
        done = export_onnx(run, tmp_path / f"onnx-{kind}")
        model_ids = standalone(done.folder).encode(texts)
        ours = predictor.loaded.encoder.encode(texts)
        assert [a.tolist() for a in model_ids] == [b.tolist() or [1] for b in ours]
        expected = predictor.probabilities(texts)
        assert np.abs(standalone(done.folder).probabilities(texts) - expected).max() <= TOLERANCE


def test_a_chinese_file_with_empty_texts_and_broken_bytes_follows_the_data_policy(tmp_path):
    """Broken UTF-8 (a character cut short) is decoded with replacement characters and counted,
    an empty text is skipped and counted, as the README's data policy says; training goes on."""
    path = write_chinese_csv(tmp_path / "zh.csv", per_class=30)
    lines = path.read_bytes().split(b"\n")
    lines[3] = b'"",pos'  # an empty text
    lines[5] = "酒".encode()[:2] + lines[5]  # a character cut short: invalid UTF-8
    path.write_bytes(b"\n".join(lines))
    recipe = write_recipe(tmp_path / "zh.toml", path).read_text()
    (tmp_path / "zh.toml").write_text(
        recipe.replace("[tokenizer]\n", '[tokenizer]\nkind = "char"\n')
    )
    result = CliRunner().invoke(
        app, ["train", str(tmp_path / "zh.toml"), "--out", str(tmp_path / "runs")]
    )
    assert result.exit_code == 0, result.output
    assert (
        "zh.csv: 1 line(s) were not valid UTF-8; decoded with replacement characters"
        in " ".join(result.output.split())
    )
    assert "train: skipped 1 row(s) with a missing text or label" in result.output


def test_the_linear_baseline_reads_chinese_as_character_n_grams():
    from textlstm.evaluation.baselines import analyzer_for, fit_nbsvm, fit_tfidf_lr

    assert (analyzer_for("char"), analyzer_for("jieba"), analyzer_for("regex")) == (
        "char", "char", "word",
    )  # fmt: skip
    train = chinese_texts("pos", 60, 1) + chinese_texts("neg", 60, 1)
    labels = np.array([1] * 60 + [0] * 60)
    held = chinese_texts("pos", 30, 2) + chinese_texts("neg", 30, 2)
    truth = np.array([1] * 30 + [0] * 30)
    for fit in (fit_tfidf_lr, fit_nbsvm):
        chars = fit(train, labels, analyzer="char")
        assert chars.method.endswith(("characters 1-3 + LR", "characters 1-3"))
        assert (chars.predict(held) == truth).mean() >= 0.9
        with pytest.raises(ValueError, match="no terms remain"):
            fit(train, labels)  # a word pattern sees each clause as one word, seen once
