"""ONNX export: onnxruntime gives PyTorch's probabilities on real texts of mixed lengths, for
every model shape; int8 runs fused int8 LSTMs; the export folder works without textlstm."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from textlstm.cli import app
from textlstm.export.onnx import TOLERANCE, export_onnx
from textlstm.predict.exported import OnnxPredictor
from textlstm.predict.predictor import Predictor
from textlstm.recipe import load_recipe
from textlstm.training import train

from conftest import make_texts, write_label_folders, write_recipe

# real texts of mixed lengths: empty, one word, HTML, long, unknown words
TEXTS = [
    "",
    "good",
    "<b>The</b> film was great, wasn't it? Yes!",
    "qwertyuiop zxcvbnm",
    " ".join(make_texts("pos", 20, seed=3)),  # longer than max_length: truncated
    *make_texts("neg", 12, seed=5),
    *make_texts("pos", 12, seed=9),
]

SHAPES = {
    "default": "",
    "ngrams-concat-wide": 'pooling = "concat"\nngrams = 2\nngram_combiner = "sqrtn"\n'
    'wide = "nblr"\nwide_buckets = 4096\n',
    "gru-two-layers-attention": 'cell = "gru"\nnum_layers = 2\npooling = "attention"\nngrams = 2\n',
    "gru": 'cell = "gru"\n',
    "two-layers": "num_layers = 2\n",
    "attention": 'pooling = "attention"\n',
    "forward-last-mean-bag": 'bidirectional = false\npooling = "last"\nngrams = 1\n',
}


def run_with(tmp_path, model: str, tokenizer: str = "strip_html = true\n"):
    corpus = write_label_folders(tmp_path / "corpus")
    path = write_recipe(tmp_path / "r.toml", corpus)
    text = path.read_text(encoding="utf-8")
    text = text.replace("[model]\n", "[model]\n" + model)
    text = text.replace("[tokenizer]\n", "[tokenizer]\n" + tokenizer)
    path.write_text(text.replace("epochs = 3", "epochs = 1"), encoding="utf-8")
    return train(load_recipe(path), tmp_path / "runs", device="cpu").run_dir


def standalone(folder):
    """The export folder's predict.py, imported as its own module."""
    spec = importlib.util.spec_from_file_location(f"predict_{id(folder)}", folder / "predict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Model(folder)


@pytest.mark.parametrize("shape", SHAPES)
def test_onnxruntime_gives_pytorchs_probabilities(tmp_path, shape):
    run = run_with(tmp_path, SHAPES[shape])
    done = export_onnx(run, tmp_path / "onnx")
    assert done.parity <= TOLERANCE and done.folder == tmp_path / "onnx"
    expected = Predictor.load(run, device="cpu", precision="fp32").probabilities(TEXTS)
    by_engine = Predictor.load(done.folder).probabilities(TEXTS, batch_size=7)
    by_script = standalone(done.folder).probabilities(TEXTS, batch_size=5)
    assert np.abs(by_engine - expected).max() <= TOLERANCE
    assert np.abs(by_script - expected).max() <= TOLERANCE


def test_a_language_model_encoder_exports(tmp_path, pretrained_lm):
    run = run_with(tmp_path, f'encoder = "{pretrained_lm}"\npooling = "concat"\n', "")
    done = export_onnx(run, tmp_path / "onnx")
    expected = Predictor.load(run, device="cpu").probabilities(TEXTS)
    assert np.abs(Predictor.load(done.folder).probabilities(TEXTS) - expected).max() <= TOLERANCE


def test_subword_tokenizers_make_the_same_ids(tmp_path):
    run = run_with(tmp_path, "", 'kind = "bpe"\nvocab_size = 120\nstrip_html = true\n')
    done = export_onnx(run, tmp_path / "onnx")
    assert (done.folder / "tokenizer.json").is_file()
    expected = Predictor.load(run, device="cpu").probabilities(TEXTS)
    assert np.abs(standalone(done.folder).probabilities(TEXTS) - expected).max() <= TOLERANCE


def test_int8_fuses_the_lstms_and_stays_close(tmp_path, trained_run):
    folder = tmp_path / "int8"
    args = ["export", str(trained_run), "--quantize", "int8", "-o", str(folder)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "int8: the label of fp32 on" in result.output and "WARNING" not in result.output
    ops = {node.op_type for node in onnx.load(str(folder / "model.onnx")).graph.node}
    assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops
    assert json.loads((folder / "export.json").read_text())["quantize"] == "int8"
    fp32 = Predictor.load(trained_run, device="cpu").probabilities(TEXTS)
    int8 = Predictor.load(folder).probabilities(TEXTS)
    assert np.abs(int8 - fp32).max() < 0.1
    assert (int8.argmax(1) == fp32.argmax(1)).mean() >= 0.9


BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("textlstm", "torch"):
            raise ImportError(f"{name} is not installed here")
sys.meta_path.insert(0, Block())
sys.argv = ["predict.py", sys.argv[1], "--top-k", "1"]
import runpy
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_the_export_predicts_without_textlstm_or_torch(tmp_path, trained_run):
    folder = export_onnx(trained_run, tmp_path / "onnx").folder
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS[1:6]) + "\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", BLOCK, str(tmp_path / "texts.txt")],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    expected = Predictor.load(trained_run, device="cpu").predict(TEXTS[1:6])
    assert [r["label"] for r in records] == [p.label for p in expected]
    assert [r["score"] for r in records] == pytest.approx([p.score for p in expected], abs=1e-4)
    assert all(len(r["scores"]) == 1 for r in records)
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert "pip install onnxruntime numpy" in readme and "python predict.py texts.txt" in readme


def test_cli_export_then_predict_with_either_engine(tmp_path, trained_run):
    runner = CliRunner()
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["export", str(trained_run), "-o", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    assert "matches PyTorch within" in result.output
    torch_out = runner.invoke(app, ["predict", str(trained_run), str(texts), "--device", "cpu"])
    onnx_out = runner.invoke(app, ["predict", str(tmp_path / "e"), str(texts)])
    assert torch_out.exit_code == 0 and onnx_out.exit_code == 0, onnx_out.output
    a = [json.loads(line) for line in torch_out.output.splitlines()]
    b = [json.loads(line) for line in onnx_out.output.splitlines()]
    assert len(a) == len(TEXTS) and [r["label"] for r in a] == [r["label"] for r in b]
    assert [r["score"] for r in a] == pytest.approx([r["score"] for r in b], abs=1e-4)


def test_export_mistakes_are_one_line_and_lose_nothing(tmp_path, trained_run):
    runner = CliRunner()
    folder = tmp_path / "e"
    assert runner.invoke(app, ["export", str(trained_run), "-o", str(folder)]).exit_code == 0
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = runner.invoke(app, ["export", str(trained_run), "-o", str(folder)])
    assert (again.exit_code, again.output.strip()) == (
        2,
        f"error: {folder}: already exists; remove it or give another --out",
    )
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    cases = {
        ("predict", str(trained_run), "-", "--engine", "onnxruntime"): "is not an ONNX export",
        ("predict", str(folder), "-", "--quantize", "int8"): "runs as it was exported",
        ("predict", str(folder), "-", "--engine", "torch"): "is an ONNX export",
        ("export", str(trained_run), "--format", "tflite"): "--format tflite: use onnx",
        ("export", str(trained_run), "--quantize", "int4"): "--quantize int4: use int8",
    }
    for args, message in cases.items():
        result = runner.invoke(app, list(args), input="a text\n")
        assert result.exit_code == 2 and message in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1, result.output
    (folder / "model.onnx").write_bytes(b"not a model")
    broken = runner.invoke(app, ["predict", str(folder), "-"], input="a text\n")
    assert broken.exit_code == 2 and "onnxruntime cannot load it" in broken.output
    assert len(broken.output.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.partial")) and not (trained_run / "onnx").exists()


def test_an_export_folder_is_complete_or_absent(tmp_path, trained_run, monkeypatch):
    import textlstm.export.onnx as exporter

    def fail(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(exporter, "quantize_int8", fail)
    with pytest.raises(RuntimeError):
        export_onnx(trained_run, tmp_path / "e", quantize="int8")
    assert list(tmp_path.iterdir()) == []
    assert isinstance(
        Predictor.load(export_onnx(trained_run, tmp_path / "e").folder), OnnxPredictor
    )
