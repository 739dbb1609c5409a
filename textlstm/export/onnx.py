"""``textlstm export RUN --format onnx [--quantize int8]``: a run folder as an ONNX model plus
everything needed to go from text to ids, runnable with onnxruntime and numpy alone.

The classifier is traced by PyTorch's ONNX exporter (``torch.export``, ``dynamo=True``) with a
dynamic batch and sequence length. It takes token ids padded after each text and the lengths
(masks, not packed sequences), so each recurrent layer becomes one ONNX ``LSTM`` (or ``GRU``)
node: the backward direction reads its input reversed within each length, as in PyTorch. The
export is checked before it is kept: onnxruntime's probabilities must equal PyTorch's within
``TOLERANCE`` on texts of mixed lengths. ``--quantize int8`` then runs onnxruntime's dynamic
quantization, which turns each LSTM node into its fused int8 ``DynamicQuantizeLSTM`` and the
linear layers into int8 matrix products; what it changes is measured against fp32 and reported.

The folder is written as ``<folder>.partial`` and renamed when complete; an existing folder is
never overwritten.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import textlstm
from textlstm.errors import CheckpointError, TextLSTMError, WriteFailed, param
from textlstm.files import refusal, refused
from textlstm.predict.exported import session
from textlstm.run.decision import SINGLE, Decision
from textlstm.text.tokenizers import (
    CHAR_PATTERN,
    PTB_CLITIC,
    PTB_SYMBOL,
    PTB_SYMBOLS,
    TAG_PATTERN,
    WORD_PATTERN,
)
from textlstm.text.vocab import PAD_ID, UNK_ID

FORMAT = "textlstm-onnx"
OPSET = 18
TOLERANCE = 1e-4  # the largest difference in any probability, fp32 against PyTorch
MIN_STEPS = 4  # the graph is traced for at least this many steps; shorter batches are padded
INPUTS, OUTPUTS = ("tokens", "lengths"), ("logits", "probabilities")
CHECK_TEXTS = 48
PARTIAL = ".partial"


@dataclass
class Exported:
    folder: Path
    quantize: str | None
    parity: float  # the largest probability difference of the fp32 graph against PyTorch
    agreement: float | None  # int8: share of the check texts given fp32's label
    int8_difference: float | None  # int8: the largest probability difference against fp32
    size: int  # bytes of model.onnx
    seconds: float


class WithProbabilities(nn.Module):
    """The classifier with its calibrated scores: the logits over the run's temperature, then a
    softmax (a sigmoid per label for multi-label runs): (tokens, lengths) -> (logits,
    probabilities)."""

    def __init__(self, model: nn.Module, decision: Decision = SINGLE) -> None:
        super().__init__()
        self.model = model
        self.multi_label = decision.multi_label
        self.temperature: torch.Tensor
        self.register_buffer("temperature", torch.tensor(decision.temperature, dtype=torch.float32))

    def forward(
        self, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(tokens, lengths).float()  # (batch, classes)
        scaled = logits / self.temperature  # (batch, classes)
        return logits, scaled.sigmoid() if self.multi_label else scaled.softmax(dim=-1)


def export_onnx(
    run_dir: str | Path, out: str | Path | None = None, quantize: str | None = None
) -> Exported:
    """Export the finished run at ``run_dir`` to ``out`` (default ``<run>/onnx``, or
    ``<run>/onnx-int8`` with ``quantize="int8"``)."""
    from textlstm.predict.precision import check_quantize
    from textlstm.run.checkpoint import load

    check_quantize(quantize)
    began = time.perf_counter()
    loaded = load(run_dir, "cpu")
    folder = (
        Path(out) if out is not None else loaded.run_dir / ("onnx-int8" if quantize else "onnx")
    )
    if folder.exists():
        raise TextLSTMError(f"{folder}: already exists; remove it or give another {param('out')}")
    partial = folder.with_name(folder.name + PARTIAL)
    shutil.rmtree(partial, ignore_errors=True)  # left by an export that was killed
    try:
        partial.mkdir(parents=True)
    except OSError as exc:
        raise TextLSTMError(f"{partial}: cannot create it ({exc.strerror})") from None
    try:
        result = _write(loaded, partial, quantize)
        partial.rename(folder)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if why := refusal(exc):  # a full disk or a vanished folder: one line, nothing left
            raise WriteFailed(folder, why, "nothing was kept") from None
        raise
    result.folder, result.seconds = folder, time.perf_counter() - began
    return result


def _write(loaded: Any, folder: Path, quantize: str | None) -> Exported:
    model = WithProbabilities(loaded.model.float().eval(), loaded.decision)
    fp32 = folder / "model.onnx"
    trace(model, fp32)
    tokens, lengths = check_batch(len(loaded.vocab), loaded.recipe.tokenizer.max_length)
    freeze_recurrent_weights(fp32, tokens, lengths)
    with torch.inference_mode():
        expected = model(torch.from_numpy(tokens), torch.from_numpy(lengths))[1].numpy()
    got = run(fp32, tokens, lengths)
    parity = float(np.abs(got - expected).max())
    if not parity <= TOLERANCE:
        raise CheckpointError(
            f"{loaded.run_dir}: the ONNX graph's probabilities differ from PyTorch's by "
            f"{parity:.2e} (more than {TOLERANCE:g}); this model cannot be exported faithfully"
        )
    agreement = difference = None
    if quantize == "int8":
        int8 = folder / "model.int8.onnx"
        quantize_int8(fp32, int8)
        quantized = run(int8, tokens, lengths)
        decide = loaded.decision.chosen
        agreement = float((decide(quantized) == decide(got)).all(axis=1).mean())
        difference = float(np.abs(quantized - got).max())
        int8.replace(fp32)
    _files(loaded, folder, quantize, parity, agreement)
    return Exported(folder, quantize, parity, agreement, difference, fp32.stat().st_size, 0.0)


def trace(model: nn.Module, path: Path) -> None:
    """The ONNX graph of ``model``, with a dynamic batch and sequence length. The exporter's
    graph optimizer is left out: it folded the sequence length into a constant (onnxruntime
    optimizes the graph itself when it loads it)."""
    from torch.export import Dim

    tokens = torch.tensor([[5, 6, 7, 8, 9, 4], [4, 5, 6, 0, 0, 0]], dtype=torch.int64)
    lengths = torch.tensor([6, 3], dtype=torch.int64)
    batch, steps = Dim("batch", min=1), Dim("steps", min=MIN_STEPS)
    # the exporter registers its loop form of the LSTM and GRU for the export only, but an
    # operator caches the kernel it dispatched to, so a second export in the same process
    # would trace the step-by-step form and fix the sequence length: the caches are cleared
    for op in (torch.ops.aten.lstm.input, torch.ops.aten.gru.input):
        cache = getattr(op, "_dispatch_cache", None)
        if isinstance(cache, dict):
            cache.clear()
    chatter = io.StringIO()  # the exporter prints its progress and notes; they are not ours
    logger = logging.getLogger("torch.onnx")
    level, logger.level = logger.level, logging.ERROR
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (tokens, lengths),
                str(path),
                input_names=list(INPUTS),
                output_names=list(OUTPUTS),
                dynamic_shapes={"tokens": {0: batch, 1: steps}, "lengths": {0: batch}},
                opset_version=OPSET,
                dynamo=True,
                optimize=False,
                external_data=False,
            )
    except Exception as exc:  # the exporter raises many kinds; one line says which
        if refused(exc):  # the disk, not the model: the export folder's write names the cause
            raise
        raise CheckpointError(
            f"the ONNX exporter could not trace this model: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    finally:
        logger.level = level
    _check_dynamic(path)


def _check_dynamic(path: Path) -> None:
    """The graph must take any batch size and length; a traced constant would fail later."""
    import onnx

    for value in onnx.load(str(path), load_external_data=False).graph.input:
        fixed = [d.dim_value for d in value.type.tensor_type.shape.dim if not d.dim_param]
        if fixed:
            raise CheckpointError(
                f"the ONNX exporter fixed a size of the input {value.name!r} ({fixed}); this "
                f"torch ({torch.__version__}) cannot export the model with dynamic shapes"
            )


def freeze_recurrent_weights(path: Path, tokens: np.ndarray, lengths: np.ndarray) -> int:
    """Make the W, R and B inputs of every LSTM/GRU node constants; returns how many. The
    exporter reorders PyTorch's gate weights into ONNX's order with Slice/Concat nodes that
    depend on a shape, so they are computed at every call and onnxruntime's quantizer, which
    needs initializers, leaves the node in fp32. Their values do not depend on the input: they
    are computed once here, stored as initializers, and the nodes that made them removed."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    known = {init.name for init in graph.initializer}
    wanted = [
        name
        for node in graph.node
        if node.op_type in ("LSTM", "GRU")
        for name in node.input[1:4]
        if name and name not in known
    ]
    if not wanted:
        return 0
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in wanted)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    runner = ort.InferenceSession(probe.SerializeToString(), options, ["CPUExecutionProvider"])
    values = runner.run(wanted, {"tokens": tokens, "lengths": lengths})
    graph.initializer.extend(
        numpy_helper.from_array(np.asarray(v), name) for name, v in zip(wanted, values)
    )
    _prune(graph)
    onnx.save(model, str(path))
    return len(wanted)


def _prune(graph: Any) -> None:
    """Drop the nodes whose outputs nothing reads any more (and initializers likewise)."""
    produced_by_initializer = {init.name for init in graph.initializer}
    while True:
        needed = {o.name for o in graph.output} | {i for n in graph.node for i in n.input}
        dead = [
            node
            for node in graph.node
            if not any(o in needed for o in node.output)
            or all(o in produced_by_initializer for o in node.output if o)
        ]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    needed = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for init in [init for init in graph.initializer if init.name not in needed]:
        graph.initializer.remove(init)


def check_batch(vocab_size: int, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids of ``CHECK_TEXTS`` texts of mixed lengths (1 token to ``max_length``), padded."""
    rng = np.random.default_rng(0)
    lengths = np.unique(np.geomspace(1, max(max_length, 1), CHECK_TEXTS).astype(np.int64))
    lengths = rng.permutation(np.concatenate([lengths, rng.integers(1, max_length + 1, 8)]))
    tokens = np.full((len(lengths), max(int(lengths.max()), MIN_STEPS)), PAD_ID, np.int64)
    for row, length in enumerate(lengths):
        tokens[row, :length] = rng.integers(UNK_ID, vocab_size, length)
    return tokens, lengths


def run(path: Path, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    result = session(path).run(["probabilities"], {"tokens": tokens, "lengths": lengths})
    return np.asarray(result[0])


def quantize_int8(source: Path, target: Path) -> None:
    """onnxruntime's dynamic quantization: int8 weights for the LSTM/GRU nodes (fused
    ``DynamicQuantizeLSTM``) and the matrix products; activations are quantized on the fly."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # it advises its pre-processing pass on the root logger; what the LSTM needs from that
    # (constant weights) freeze_recurrent_weights has done
    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(
                source,
                target,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["LSTM", "MatMul", "Gemm"],
            )
    finally:
        root.level = level


def preprocess(cfg: Any) -> dict[str, Any]:
    """The tokenizer settings and the rules that ``predict.py`` needs to make the same ids."""
    return {
        "kind": cfg.kind,
        "lowercase": cfg.lowercase,
        "max_length": cfg.max_length,
        "truncation": cfg.truncation,
        "strip_html": cfg.strip_html,
        "detokenize": cfg.detokenize,
        "language": cfg.language,
        "word_pattern": (CHAR_PATTERN if cfg.kind == "char" else WORD_PATTERN).pattern,
        "tag_pattern": TAG_PATTERN.pattern,
        "ptb_clitic": PTB_CLITIC,
        "ptb_symbol": PTB_SYMBOL,
        "ptb_symbols": PTB_SYMBOLS,
        "pad_id": PAD_ID,
        "unk_id": UNK_ID,
        "min_steps": MIN_STEPS,
    }


def _files(
    loaded: Any, folder: Path, quantize: str | None, parity: float, agreement: float | None
) -> None:
    from textlstm.export import readme, standalone
    from textlstm.text.encoder import SUBWORD_FILE

    run_dir = loaded.run_dir
    for name in ("vocab.json", "labels.json", "recipe.toml"):
        shutil.copyfile(run_dir / name, folder / name)
    loaded.decision.save(folder, loaded.labels)
    if (run_dir / SUBWORD_FILE).is_file():
        shutil.copyfile(run_dir / SUBWORD_FILE, folder / SUBWORD_FILE)
    _json(folder / "preprocess.json", preprocess(loaded.recipe.tokenizer))
    about = {
        "format": FORMAT,
        "version": 1,
        "run": str(run_dir),
        "name": loaded.recipe.name,
        "labels": loaded.labels,
        "inputs": {
            "tokens": "int64 (batch, steps), 0 after each text",
            "lengths": "int64 (batch,)",
        },
        "outputs": {
            "logits": "float32 (batch, labels)",
            "probabilities": "float32 (batch, labels)"
            + (": a sigmoid per label" if loaded.decision.multi_label else ": a softmax"),
        },
        "multi_label": loaded.decision.multi_label,
        "min_steps": MIN_STEPS,
        "quantize": quantize,
        "opset": OPSET,
        "parity": parity,
        "int8_agreement": agreement,
        "textlstm": textlstm.__version__,
        "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _json(folder / "export.json", about)
    shutil.copyfile(standalone.__file__, folder / "predict.py")
    (folder / "README.md").write_text(readme.text(loaded, about), encoding="utf-8")


def _json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
