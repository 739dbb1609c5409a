"""Bad input, table-driven: every case is one exact line on stderr, exit code 2, and no file
written or changed anywhere under the test's folder.

Each case builds its input in a fresh folder (``t``) and returns the command line; ``{t}`` in the
expected message stands for that folder. Policies that are not errors (rows with a missing text or
label are skipped and counted; a text with no tokens is read as one ``<unk>``; data files with
non-UTF-8 bytes are decoded with replacement characters and counted) are tested in test_data.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from textlstm.cli import app

from conftest import write_label_folders, write_recipe

RECIPE = "r.toml"


def recipe(t: Path, extra: str = "", replace: tuple[str, str] = ("", ""), dataset=None) -> Path:
    corpus = t / "corpus"
    if dataset is None and not corpus.exists():
        write_label_folders(corpus, per_class=10)
    path = write_recipe(t / RECIPE, dataset if dataset is not None else corpus, extra)
    if replace[0]:
        path.write_text(path.read_text().replace(*replace))
    return path


def train(t: Path, *more: str) -> list[str]:
    return ["train", str(t / RECIPE), "--out", str(t / "runs"), "--device", "cpu", *more]


def data_file(t: Path, name: str, content: bytes | str, extra: str = "") -> list[str]:
    path = t / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    recipe(t, extra, dataset=path)
    return train(t)


def copy_run(t: Path, run: Path) -> Path:
    return Path(shutil.copytree(run, t / "run"))


def tampered(t: Path, run: Path, change: Callable[[Path], None]) -> Path:
    copy = copy_run(t, run)
    change(copy)
    return copy


def predict_input(
    t: Path, run: Path, name: str, content: bytes | str | None, *more: str
) -> list[str]:
    path = t / name
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return ["predict", str(run), str(path), *more]


TUNE = (
    '[tune]\ntrials = 2\n[tune.space]\n"train.lr" = { log_uniform = [1e-3, 3e-2] }\n'
    '"model.hidden_size" = { choice = [8, 16] }\n'
)


def tune(t: Path, *more: str) -> list[str]:
    return ["tune", str(t / RECIPE), "--out", str(t / "runs"), "--device", "cpu", *more]


def set_json(path: Path, **values) -> None:
    data = json.loads(path.read_text())
    data.update(values)
    path.write_text(json.dumps(data))


def pretrain_cmd(t: Path) -> list[str]:
    return ["pretrain", str(t / RECIPE), "--out", str(t / "runs"), "--device", "cpu"]


def language_model(t: Path, extra: str = "") -> str:
    """A language model pretrained in ``t/lm``; returns its path relative to the recipe."""
    from textlstm.lm import pretrain
    from textlstm.recipe import load_recipe

    from conftest import PRETRAIN

    corpus = t / "corpus"
    if not corpus.exists():
        write_label_folders(corpus, per_class=10)
    path = write_recipe(t / "lm.toml", corpus, PRETRAIN + extra)
    pretrain(load_recipe(path), t / "lm", device="cpu")
    path.unlink()
    return "lm/tiny-lm/latest"


def finetune(t: Path, encoder: str, replace: tuple[str, str] = ("", "")) -> list[str]:
    path = recipe(t, replace=("[model]\n", f'[model]\nencoder = "{encoder}"\n'))
    if replace[0]:
        path.write_text(path.read_text().replace(*replace))
    return train(t)


def multi_label_data(
    t: Path, empty_row: int | None = None, test_label: str | None = None
) -> list[str]:
    """A multi-label data folder (train.jsonl, test.jsonl) and a recipe for it."""
    folder = t / "ml"
    folder.mkdir()
    rows = [{"text": f"great song {i}", "labels": ["joy", "music"][: 1 + i % 2]} for i in range(20)]
    if empty_row is not None:
        rows[empty_row - 1]["labels"] = []
    test = [{"text": "awful", "labels": [test_label or "joy"]}]
    for name, records in (("train", rows), ("test", test)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    path = recipe(t, dataset=folder)
    path.write_text(path.read_text().replace("[data]\n", '[data]\nlabel = "labels"\n'))
    return train(t)


CSV_HEAD = "text,label\n" + "".join(f"great film {i},pos\nawful film {i},neg\n" for i in range(6))

# (id, builder(t, run) -> argv, expected message after "error: ")
CASES: list[tuple[str, Callable[[Path, Path], list[str]], str]] = [
    # ---- recipe ------------------------------------------------------------------------------
    (
        "toml-syntax",
        lambda t, r: train(t) if recipe(t, replace=("epochs = 3", "epochs = = 3")) else [],
        "{t}/r.toml: TOML syntax error: Invalid value (at line 18, column 10)",
    ),
    (
        "unknown-key",
        lambda t, r: train(t) if recipe(t, replace=("hidden_size", "hiden_size")) else [],
        "{t}/r.toml: model.hiden_size: unknown key (did you mean 'hidden_size'?)",
    ),
    (
        "unknown-section",
        lambda t, r: train(t) if recipe(t, "[optimizer]\nlr = 1\n") else [],
        "{t}/r.toml: optimizer: unknown key; valid keys: name, seed, data, tokenizer, vocab, model, "
        "train, tune, pretrain",
    ),
    (
        "wrong-type",
        lambda t, r: train(t) if recipe(t, replace=("batch_size = 8", 'batch_size = "8"')) else [],
        "{t}/r.toml: train.batch_size: expected an integer, got '8'",
    ),
    (
        "epochs-neither-number-nor-auto",
        lambda t, r: train(t) if recipe(t, replace=("epochs = 3", 'epochs = "3"')) else [],
        "{t}/r.toml: train.epochs: '3' is not a number of epochs: give 1 to 1000, or \"auto\"",
    ),
    (
        "out-of-range",
        lambda t, r: train(t) if recipe(t, replace=("dropout = 0.1", "dropout = 1.5")) else [],
        "{t}/r.toml: model.dropout: 1.5 is out of range; input should be less than 1",
    ),
    (
        "unknown-choice",
        lambda t, r: (
            train(t) if recipe(t, replace=("[tokenizer]\n", '[tokenizer]\nkind = "nltk"\n')) else []
        ),
        "{t}/r.toml: tokenizer.kind: unknown choice 'nltk'; expected one of 'regex', 'whitespace', "
        "'char', 'jieba', 'spacy', 'bpe', 'wordpiece' or 'unigram'",
    ),
    (
        "set-missing-key",
        lambda t, r: train(t, "--set", "model.hiden_size=4") if recipe(t) else [],
        "--set: model.hiden_size: unknown key (did you mean 'hidden_size'?)",
    ),
    (
        "set-not-key-value",
        lambda t, r: train(t, "--set", "model.hidden_size") if recipe(t) else [],
        "--set model.hidden_size: expected KEY=VALUE, e.g. --set model.hidden_size=256",
    ),
    (
        "set-wrong-type",
        lambda t, r: train(t, "--set", "train.lr=fast") if recipe(t) else [],
        "--set: train.lr: expected a number, got 'fast'",
    ),
    (
        "set-bad-precision",
        lambda t, r: train(t, "--set", 'train.precision="fp8"') if recipe(t) else [],
        "--set: train.precision: unknown choice 'fp8'; expected one of 'fp32', 'bf16' or 'fp16'",
    ),
    (
        "fp16-on-a-cpu",
        lambda t, r: train(t, "--set", 'train.precision="fp16"') if recipe(t) else [],
        'train.precision = "fp16" needs a CUDA GPU (CPUs have no float16 LSTM kernels) and this '
        'run is on cpu: use "bf16" (CPUs with avx512_bf16/AMX) or "fp32", e.g. '
        "--set train.precision=bf16",
    ),
    (
        "fp16-pretraining-on-a-cpu",
        lambda t, r: [
            "pretrain",
            str(recipe(t)),
            "--out",
            str(t / "runs"),
            "--device",
            "cpu",
            "--set",
            'train.precision="fp16"',
        ],
        'train.precision = "fp16" needs a CUDA GPU (CPUs have no float16 LSTM kernels) and this '
        'run is on cpu: use "bf16" (CPUs with avx512_bf16/AMX) or "fp32", e.g. '
        "--set train.precision=bf16",
    ),
    (
        "recipe-not-found",
        lambda t, r: ["train", str(t / "missing.toml")],
        "{t}/missing.toml: recipe file not found",
    ),
    (
        "recipe-is-directory",
        lambda t, r: ["train", str(t)],
        "{t}: is a directory; give a recipe .toml file",
    ),
    (
        "recipe-not-utf8",
        lambda t, r: (
            ["check", str(t / "x.toml")]
            if (t / "x.toml").write_bytes(b'name = "caf\xe9"\n')
            else []
        ),
        "{t}/x.toml: not UTF-8 text; save the recipe as UTF-8",
    ),
    (
        "name-path-traversal",
        lambda t, r: train(t) if recipe(t, replace=('name = "tiny"', 'name = "../../x"')) else [],
        "{t}/r.toml: name: '../../x' is not allowed; use letters, digits, '.', '_' or '-', starting "
        "with a letter or digit",
    ),
    (
        "missing-dataset",
        lambda t, r: (
            ["check", str(t / "x.toml")]
            if (t / "x.toml").write_text('name = "x"\n[data]\ntext = "t"\n')
            else []
        ),
        "{t}/x.toml: data.dataset: required key is missing",
    ),
    (
        "kind-setting",
        lambda t, r: train(t, "--set", "tokenizer.vocab_size=500") if recipe(t) else [],
        "--set: tokenizer.vocab_size: not used by tokenizer.kind = 'regex' (only by bpe, wordpiece, "
        "unigram); remove it or change tokenizer.kind",
    ),
    (
        "vectors-only-alone",
        lambda t, r: train(t, "--set", "vocab.vectors_only=true") if recipe(t) else [],
        "--set: vocab.vectors_only: needs vocab.vectors (a pretrained vectors file)",
    ),
    (
        "test-split-is-validation",
        lambda t, r: train(t, "--set", 'data.test_split="validation"') if recipe(t) else [],
        "--set: data.validation_split and data.test_split are both 'validation': the test split "
        "would pick the epochs it is scored on; name a split the data lacks "
        '(validation_split = "carved") to carve validation from train',
    ),
    (
        "vectors-missing",
        lambda t, r: train(t, "--set", 'vocab.vectors="glove.txt"') if recipe(t) else [],
        "{t}/r.toml: vocab.vectors: glove.txt: file not found",
    ),
    (
        "vectors-dimension",
        lambda t, r: (
            train(t, "--set", 'vocab.vectors="v.txt"')
            if recipe(t) and (t / "v.txt").write_text("film 1 2 3\n")
            else []
        ),
        "{t}/r.toml: vocab.vectors: {t}/v.txt holds 3-dimensional vectors but model.embedding_dim "
        "is 16; set model.embedding_dim = 3",
    ),
    (
        "vocab-path-missing",
        lambda t, r: train(t, "--set", 'vocab.path="v.json"') if recipe(t) else [],
        "{t}/r.toml: vocab.path: v.json: vocabulary file not found",
    ),
    (
        "spacy-language",
        lambda t, r: (
            train(t, "--set", 'tokenizer.kind="spacy"', "--set", 'tokenizer.language="zz"')
            if recipe(t)
            else []
        ),
        "tokenizer.language: spaCy has no language 'zz'; use an ISO code spaCy knows, e.g. en, de, "
        "fr, es, nl, it, pt",
    ),
    # ---- data ----------------------------------------------------------------------------------
    (
        "dataset-not-found",
        lambda t, r: train(t) if recipe(t, dataset=t / "nowhere") else [],
        "{t}/nowhere: dataset path does not exist; check data.dataset (relative paths are resolved "
        "from the recipe's folder)",
    ),
    (
        "missing-text-column",
        lambda t, r: data_file(t, "d.csv", CSV_HEAD.replace("text,", "body,")),
        "{t}/d.csv: split 'train' has no column 'text' (columns: body, label); set data.text",
    ),
    (
        "missing-label-column",
        lambda t, r: data_file(t, "d.csv", CSV_HEAD.replace(",label", ",stars")),
        "{t}/d.csv: split 'train' has no label column 'label' (columns: text, stars); set data.label",
    ),
    ("empty-data-file", lambda t, r: data_file(t, "d.csv", b""), "{t}/d.csv: the file is empty"),
    (
        "header-only-file",
        lambda t, r: data_file(t, "d.csv", "text,label\n"),
        "{t}/d.csv: has a header line but no data rows",
    ),
    (
        "single-class",
        lambda t, r: data_file(t, "d.csv", "text,label\n" + "a b,pos\n" * 20),
        "{t}/d.csv: the train split has a single class ('pos'); a classifier needs at least two",
    ),
    (
        "all-labels-missing",
        lambda t, r: data_file(t, "d.csv", "text,label\n" + "a b,\n" * 20),
        "{t}/d.csv: the train split has no labelled rows",
    ),
    (
        "csv-ragged-row",
        lambda t, r: data_file(t, "d.csv", CSV_HEAD + "x,pos,extra,more\n"),
        "{t}/d.csv:14: 4 fields where the header has 2; quote fields that contain a comma",
    ),
    (
        "jsonl-broken-line",
        lambda t, r: data_file(
            t, "d.jsonl", '{"text": "a", "label": "pos"}\n{"text": "b", "label": \n'
        ),
        "{t}/d.jsonl:2: not valid JSON (Expecting value); fix or remove that line",
    ),
    (
        "directory-as-data-file",
        lambda t, r: train(t) if (t / "d.csv").mkdir() or recipe(t, dataset=t / "d.csv") else [],
        "{t}/d.csv: cannot load this folder as a dataset: The directory at {t}/d.csv doesn't contain "
        "any data files",
    ),
    (
        "table-labels",
        lambda t, r: data_file(
            t, "d.jsonl", "".join(f'{{"text": "t{i}", "label": {{"a": {i}}}}}\n' for i in range(20))
        ),
        "{t}/d.jsonl: label column 'label' must hold one class name or integer id per row "
        "(tables and fractions are not labels)",
    ),
    (
        "hub-unreachable",
        "HUB",
        "stanfordnlp/imdb: cannot reach the Hugging Face hub and no local copy was found at "
        "<root>/stanfordnlp/imdb; put the dataset there and pass --data-dir <root> (or set "
        "TEXTLSTM_DATA_DIR)",
    ),
    # ---- evaluation ------------------------------------------------------------------------------
    (
        "evaluate-unseen-labels",
        lambda t, r: (
            ["evaluate", str(r), "--data", str(t / "d.csv")]
            if (t / "d.csv").write_text("text,label\ngreat,pos\nhmm,maybe\n")
            else []
        ),
        "{t}/d.csv: split 'train' has labels not in the training labels: 'maybe' (1 rows); known "
        "labels: neg, pos",
    ),
    (
        "evaluate-unknown-split",
        lambda t, r: ["evaluate", str(r), "--split", "dev"],
        "{r.parent.parent.parent}/corpus: no 'dev' split to evaluate on (splits: train, validation, "
        "test); pass --split or --data",
    ),
    (
        "evaluate-missing-column",
        lambda t, r: (
            ["evaluate", str(r), "--data", str(t / "d.csv")]
            if (t / "d.csv").write_text("body,label\ngreat,pos\n")
            else []
        ),
        "{t}/d.csv: split 'train' has no column 'text' (columns: body, label); set data.text",
    ),
    # ---- run folders -------------------------------------------------------------------------------
    (
        "run-not-found",
        lambda t, r: ["predict", str(t / "runs" / "none"), "-"],
        "{t}/runs/none: run folder not found",
    ),
    (
        "run-partial",
        lambda t, r: ["evaluate", str(tampered(t, r, lambda c: None).rename(t / "x.partial"))],
        "{t}/x.partial: this run did not finish; train again or use a finished run",
    ),
    (
        "run-missing-file",
        lambda t, r: ["evaluate", str(tampered(t, r, lambda c: (c / "labels.json").unlink()))],
        "{t}/run: not a complete run folder: missing labels.json",
    ),
    (
        "weights-truncated",
        lambda t, r: [
            "evaluate",
            str(
                tampered(
                    t,
                    r,
                    lambda c: (c / "model.safetensors").write_bytes(
                        (r / "model.safetensors").read_bytes()[:200]
                    ),
                )
            ),
        ],
        "{t}/run/model.safetensors: not a readable safetensors file (Error while deserializing "
        "header: invalid header length); the file is truncated or damaged: train again",
    ),
    (
        "weights-are-pickle",
        lambda t, r: [
            "evaluate",
            str(
                tampered(
                    t,
                    r,
                    lambda c: (c / "model.safetensors").write_bytes(
                        b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94."
                    ),
                )
            ),
        ],
        "{t}/run/model.safetensors: not a readable safetensors file (Error while deserializing "
        "header: header too large); the file is truncated or damaged: train again",
    ),
    (
        "meta-unknown-version",
        lambda t, r: [
            "evaluate",
            str(tampered(t, r, lambda c: set_json(c / "meta.json", format_version=99))),
        ],
        "{t}/run/meta.json: unknown format_version 99; this textlstm reads version 1",
    ),
    (
        "meta-not-json",
        lambda t, r: ["evaluate", str(tampered(t, r, lambda c: (c / "meta.json").write_text("{")))],
        "{t}/run/meta.json: not valid JSON (Expecting property name enclosed in double quotes: line 1 "
        "column 2 (char 1))",
    ),
    (
        "labels-not-a-list",
        lambda t, r: [
            "evaluate",
            str(tampered(t, r, lambda c: (c / "labels.json").write_text('"pos"'))),
        ],
        "{t}/run/labels.json: expected a JSON list",
    ),
    (
        "vocab-size-differs",
        lambda t, r: [
            "evaluate",
            str(
                tampered(
                    t,
                    r,
                    lambda c: set_json(
                        c / "vocab.json",
                        tokens=json.loads((r / "vocab.json").read_text())["tokens"] + ["extra"],
                    ),
                )
            ),
        ],
        "{t}/run/model.safetensors: weight 'embedding.weight' has shape (25, 16) but the recipe, "
        "vocab.json and labels.json need (26, 16); the run folder's files do not belong together",
    ),
    (
        "recipe-in-run-damaged",
        lambda t, r: [
            "evaluate",
            str(tampered(t, r, lambda c: (c / "recipe.toml").write_text("name = ["))),
        ],
        "{t}/run/recipe.toml: TOML syntax error: Invalid value (at end of document)",
    ),
    (
        "resume-finished-run",
        lambda t, r: ["train", "--resume", str(copy_run(t, r))],
        "{t}/run: this run finished (completed); only a killed (.partial) or interrupted run can be "
        "resumed",
    ),
    # ---- predict and CLI input -------------------------------------------------------------------------
    (
        "predict-binary-file",
        lambda t, r: predict_input(t, r, "in.txt", bytes(range(256)) * 4),
        "{t}/in.txt: looks like a binary file, not text; give a .txt, .csv, .tsv or .jsonl file",
    ),
    (
        "predict-empty-file",
        lambda t, r: predict_input(t, r, "in.txt", b""),
        "{t}/in.txt: the input file is empty",
    ),
    (
        "predict-directory",
        lambda t, r: predict_input(t, r, "in", None),
        "{t}/in: is a folder; give a .txt, .csv, .tsv or .jsonl file",
    ),
    (
        "predict-missing-file",
        lambda t, r: ["predict", str(r), str(t / "none.txt")],
        "{t}/none.txt: input file not found",
    ),
    (
        "predict-csv-no-column",
        lambda t, r: predict_input(t, r, "in.csv", "body\nhello\n"),
        "{t}/in.csv: no column 'text' (columns: body); pass --text-column",
    ),
    (
        "predict-jsonl-broken",
        lambda t, r: predict_input(
            t, r, "in.jsonl", '{"text": "a"}\n{"text": \n', "--on-error", "fail"
        ),
        "{t}/in.jsonl:2: not valid JSON (Expecting value); fix or remove that line",
    ),
    (
        "predict-jsonl-no-key",
        lambda t, r: predict_input(t, r, "in.jsonl", '{"body": "a"}\n', "--on-error", "fail"),
        "{t}/in.jsonl:1: no key 'text'; pass --text-key",
    ),
    (
        "predict-output-is-folder",
        lambda t, r: (
            predict_input(t, r, "in.txt", "hello\n", "-o", str(t / "out.jsonl"))
            if (t / "out.jsonl").mkdir() is None
            else []
        ),
        "{t}/out.jsonl: is a folder; give an output file name",
    ),
    (
        "predict-unknown-output-type",
        lambda t, r: predict_input(t, r, "in.txt", "hello\n", "-o", str(t / "out.xlsx")),
        "{t}/out.xlsx: unknown output type; use .jsonl, .csv or .tsv",
    ),
    (
        "predict-bad-top-k",
        lambda t, r: ["SUBPROCESS", *predict_input(t, r, "in.txt", "hello\n", "--top-k", "0")],
        "Invalid value for '--top-k': Input should be greater than or equal to 1 (see: textlstm predict --help)",
    ),
    (
        "unknown-option",
        lambda t, r: ["SUBPROCESS", "train", "--epochs", "3"],
        "No such option: --epochs (see: textlstm train --help)",
    ),
    (
        "predict-bad-on-error",
        lambda t, r: predict_input(t, r, "in.txt", "hi\n", "--on-error", "ignore"),
        "--on-error ignore: use one of fail, record, skip",
    ),
    (
        "unknown-device",
        lambda t, r: ["evaluate", str(r), "--device", "tpu"],
        "--device tpu: unknown device; use one of auto, cpu, cuda",
    ),
    (
        "unknown-precision",
        lambda t, r: predict_input(t, r, "in.txt", "hi\n", "--precision", "fp8"),
        "--precision fp8: use one of auto, fp32, bf16",
    ),
    (
        "unknown-quantize",
        lambda t, r: predict_input(t, r, "in.txt", "hi\n", "--quantize", "int4"),
        "--quantize int4: use int8",
    ),
    (
        "quantize-with-bf16",
        lambda t, r: ["evaluate", str(r), "--quantize", "int8", "--precision", "bf16"],
        "--quantize int8 runs int8 weights with fp32 activations; drop --precision bf16 (or drop "
        "--quantize for bf16)",
    ),
    (
        "quantize-on-cuda",
        lambda t, r: predict_input(
            t, r, "in.txt", "hi\n", "--quantize", "int8", "--device", "cuda"
        ),
        "--quantize int8: PyTorch's dynamic int8 quantization runs on the CPU only; pass --device cpu",
    ),
    # ---- pretrain and fine-tuning ---------------------------------------------------------------
    (
        "pretrain-unknown-unlabelled",
        lambda t, r: pretrain_cmd(t) if recipe(t, '[pretrain]\nunlabelled = ["nosuch"]\n') else [],
        "{t}/r.toml: pretrain.unlabelled: 'nosuch' is neither a split of {t}/corpus (it has "
        "train) nor a text file",
    ),
    (
        "pretrain-unlabelled-not-utf8",
        lambda t, r: (
            pretrain_cmd(t)
            if (t / "u.txt").write_bytes(b"fine text\n\xff broken\n")
            and recipe(t, '[pretrain]\nunlabelled = ["u.txt"]\n')
            else []
        ),
        "{t}/u.txt: line 2 is not UTF-8 text; save the file as UTF-8",
    ),
    (
        "encoder-missing",
        lambda t, r: finetune(t, "nosuch"),
        "{t}/r.toml: model.encoder: nosuch: no such folder; give a `textlstm pretrain` run "
        "folder (relative paths are resolved from the recipe's folder)",
    ),
    (
        "encoder-is-a-classifier",
        lambda t, r: finetune(t, str(copy_run(t, r))),
        "{t}/r.toml: model.encoder: {t}/run: a classifier's run folder, not a language "
        "model's; give a `textlstm pretrain` run folder",
    ),
    (
        "encoder-tokenizer-differs",
        lambda t, r: finetune(
            t, language_model(t), ("[tokenizer]\n", "[tokenizer]\nlowercase = false\n")
        ),
        "{t}/r.toml: tokenizer.lowercase is false but the language model lm/tiny-lm/latest "
        "was pretrained with true; set tokenizer.lowercase = true",
    ),
    (
        "encoder-size-differs",
        lambda t, r: finetune(t, language_model(t), ("hidden_size = 12", "hidden_size = 10")),
        "{t}/r.toml: model.hidden_size is 10 but the language model lm/tiny-lm/latest has 12; "
        "set model.hidden_size = 12",
    ),
    (
        "encoder-without-backward-half",
        lambda t, r: finetune(t, language_model(t, 'directions = "forward"\n')),
        "{t}/r.toml: model.bidirectional: the language model lm/tiny-lm/latest has no backward "
        'half; pretrain with pretrain.directions = "both" or set model.bidirectional = false',
    ),
    (
        "encoder-with-vectors",
        lambda t, r: finetune(t, "lm", ("[model]\n", '[vocab]\nvectors = "v.txt"\n[model]\n')),
        "{t}/r.toml: vocab.vectors: model.encoder gives the vocabulary and the embedding (the "
        "language model's); remove one of the two",
    ),
    # ---- tune ----------------------------------------------------------------------------------
    (
        "tune-without-space",
        lambda t, r: tune(t) if recipe(t) else [],
        '{t}/r.toml: tune: no [tune.space] to search; add e.g. [tune.space] "train.lr" = '
        "{ log_uniform = [3e-4, 3e-3] }",
    ),
    (
        "tune-space-typo",
        lambda t, r: tune(t) if recipe(t, TUNE.replace("train.lr", "train.lrr")) else [],
        "{t}/r.toml: tune.space.train.lrr: unknown recipe key (did you mean 'lr'?)",
    ),
    (
        "tune-space-bad-value",
        lambda t, r: tune(t) if recipe(t, TUNE.replace("[8, 16]", "[8, 0]")) else [],
        "{t}/r.toml: tune.space.model.hidden_size: 0 is out of range; input should be greater "
        "than or equal to 1",
    ),
    (
        "tune-storage-dialect",
        lambda t, r: tune(t, "--storage", "nosuchdb://host/db") if recipe(t, TUNE) else [],
        "--storage nosuchdb://host/db: cannot open the study database (Can't load plugin: "
        "sqlalchemy.dialects:nosuchdb); give a URL such as postgresql://user:password@host:5432/dbname",
    ),
    # ---- label shapes ------------------------------------------------------------------------
    (
        "multi-label-unknown-label",
        lambda t, r: multi_label_data(t, test_label="fear"),
        "{t}/ml: split 'test' has labels not in the training labels: 'fear' (1 rows); known "
        "labels: joy, music",
    ),
    (
        "multi-label-empty-list",
        lambda t, r: multi_label_data(t, empty_row=3),
        "{t}/ml: split 'train' row 3: an empty label list; every row needs at least one label "
        "(give texts with none a label of their own, e.g. 'none')",
    ),
    (
        "threshold-out-of-range",
        lambda t, r: train(t) if recipe(t, "thresholds = 1.5\n") else [],
        "{t}/r.toml: train.thresholds: 1.5 is not a threshold: give a number between 0 and 1 "
        '(exclusive), or "per_label" or "global"',
    ),
    (
        "threshold-in-the-run-out-of-range",
        lambda t, r: predict_input(
            t,
            tampered(
                t,
                r,
                lambda c: (c / "decision.json").write_text(
                    json.dumps({"multi_label": True, "thresholds": {"neg": 0.5, "pos": -0.1}})
                ),
            ),
            "in.txt",
            "good\n",
        ),
        "{t}/run/decision.json: the threshold of 'pos' is -0.1; give a number between 0 and 1 "
        "(exclusive)",
    ),
    (
        "coverage-out-of-range",
        lambda t, r: predict_input(t, r, "in.txt", "good\n", "--coverage", "1.5"),
        "--coverage 1.5: give the share of texts whose set must hold the true label, between 0 "
        "and 1 (exclusive), e.g. 0.9",
    ),
    (
        "coverage-without-conformal-scores",
        lambda t, r: predict_input(
            t,
            tampered(t, r, lambda c: (c / "decision.json").write_text('{"multi_label": false}')),
            "in.txt",
            "good\n",
            "--coverage",
            "0.9",
        ),
        "{t}/run: keeps no conformal scores (trained before textlstm kept them, or on its "
        "validation rows), which --coverage needs; train it again",
    ),
    (
        "balanced-sampler-on-multi-label",
        lambda t, r: [*multi_label_data(t), "--set", 'train.sampler="balanced"'],
        '{t}/r.toml: train.sampler = "balanced" draws rows by their one class; for multi-label '
        'data use train.class_weights = "balanced" instead',
    ),
    (
        "tune-zero-jobs",
        lambda t, r: ["SUBPROCESS", *tune(t, "--jobs", "0")] if recipe(t, TUNE) else [],
        "Invalid value for '--jobs' / '-j': Input should be greater than or equal to 1 (see: textlstm tune --help)",
    ),
]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if not p.is_symlink()
    }


@pytest.mark.parametrize("name, build, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, build, expected, tmp_path, trained_run, monkeypatch):
    t = tmp_path
    if build == "HUB":  # the hub is unreachable here; fail fast instead of retrying for 25 s
        import datasets

        def unreachable(*args, **kwargs):
            raise ConnectionError(
                "Couldn't reach 'stanfordnlp/imdb' on the Hub (LocalEntryNotFoundError)"
            )

        monkeypatch.setattr(datasets, "load_dataset", unreachable)
        argv = train(t) if recipe(t, dataset="stanfordnlp/imdb") else []
    else:
        argv = build(t, trained_run)
    before, run_before = snapshot(t), snapshot(trained_run)
    if argv[0] == "SUBPROCESS":  # usage errors are shaped by textlstm's main(), outside Typer
        env = {**os.environ, "COLUMNS": "300"}
        done = subprocess.run(
            [sys.executable, "-m", "textlstm", *argv[1:]],
            capture_output=True,
            text=True,
            env=env,
            cwd=t,
            timeout=120,
        )
        code, stderr, output = done.returncode, done.stderr, done.stdout + done.stderr
    else:
        result = CliRunner().invoke(app, argv, catch_exceptions=False)
        code, stderr, output = result.exit_code, result.stderr, result.output
    lines = stderr.strip().splitlines()
    message = expected.replace("{t}", str(t)).replace(
        "{r.parent.parent.parent}", str(trained_run.parent.parent.parent)
    )
    assert code == 2, (code, output)
    assert lines == [f"error: {message}"], lines
    assert "Traceback" not in output
    assert snapshot(t) == before, "files were written or changed"
    assert snapshot(trained_run) == run_before


def test_the_table_is_large_enough():
    assert len(CASES) >= 40
