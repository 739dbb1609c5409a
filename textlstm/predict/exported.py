"""``textlstm predict EXPORT_FOLDER`` (``--engine onnxruntime``): an ONNX export run by
onnxruntime, with textlstm's own (vectorised) text-to-ids on the export's files. Torch is never
imported on this path."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from textlstm.errors import CheckpointError, TextLSTMError, param
from textlstm.files import MiB, read_bytes
from textlstm.predict.predictor import Predictor
from textlstm.text.vocab import PAD_ID

FORMAT, VERSION = "textlstm-onnx", 1
FILES = ("model.onnx", "export.json", "recipe.toml", "vocab.json", "labels.json")


def is_export(folder: str | Path) -> bool:
    return (Path(folder) / "export.json").is_file()


class OnnxPredictor(Predictor):
    """The ``Predictor`` interface over an export folder; batches are sorted by length."""

    # onnxruntime's LSTM ran 1.27x faster in batches of 32 than of 256 (IMDB, model only)
    batch_size = 32

    def __init__(self, folder: Path, labels: list[str], encoder: Any, session: Any, about: Any):
        from textlstm.run.decision import FILE, SINGLE, read

        self.folder, self.labels, self.encoder, self.session = folder, labels, encoder, session
        given = folder / FILE
        self.decision = read(folder, labels, _read(given)) if given.is_file() else SINGLE
        self.coverage: float | None = None
        self.about: dict[str, Any] = about
        self.mode = about.get("quantize") or "fp32"
        self.min_steps = int(about["min_steps"])

    @classmethod
    def open(cls, folder: str | Path, threads: int = 0) -> OnnxPredictor:
        """An export folder, checked: every file present, the format one this version reads."""
        from textlstm.recipe import load_recipe
        from textlstm.text.encoder import Encoder

        folder = Path(folder)
        missing = [name for name in FILES if not (folder / name).is_file()]
        if missing:
            raise CheckpointError(
                f"{folder}: not a complete ONNX export: missing {', '.join(missing)}; "
                "export the run again (textlstm export RUN)"
            )
        about = _about(folder / "export.json")
        recipe = load_recipe(folder / "recipe.toml")
        encoder = Encoder.load(folder, recipe.tokenizer)
        labels = _read(folder / "labels.json")
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise CheckpointError(f"{folder / 'labels.json'}: expected a JSON list of labels")
        try:
            onnx = session(folder / "model.onnx", threads)
        except Exception as exc:  # noqa: BLE001  # onnxruntime's own errors: one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"{folder / 'model.onnx'}: onnxruntime cannot load it ({first[:200]}); "
                "export the run again"
            ) from None
        return cls(folder, labels, encoder, onnx, about)

    def probabilities(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        batch_size = batch_size or self.batch_size
        ids = self.encoder.encode(texts)
        out = np.zeros((len(ids), len(self.labels)), dtype=np.float32)
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            steps = max(int(lengths[rows].max()), self.min_steps)
            tokens = np.full((len(rows), steps), PAD_ID, dtype=np.int64)
            for i, row in enumerate(rows):
                tokens[i, : lengths[row]] = ids[row]
            feed = {"tokens": tokens, "lengths": lengths[rows]}
            out[rows] = self.session.run(["probabilities"], feed)[0]
        return out


def session(path: Path, threads: int = 0) -> Any:
    """An onnxruntime session on the CPU (``threads`` 0: its default, every core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: its notes on constant folding are not ours
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _read(path: Path) -> Any:
    try:
        return json.loads(read_bytes(path, f"{path.name} file", CheckpointError, 64 * MiB))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None


def _about(path: Path) -> dict[str, Any]:
    about = _read(path)
    if not isinstance(about, dict) or about.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a textlstm ONNX export")
    if about.get("version") != VERSION or not isinstance(about.get("min_steps"), int):
        raise CheckpointError(
            f"{path}: export format version {about.get('version')!r}; this textlstm reads "
            f"version {VERSION}: export the run again"
        )
    return about


ENGINES = ("auto", "torch", "onnxruntime")


def pick(folder: str | Path, engine: str, device: str, precision: str, quantize: str | None) -> str:
    """Which engine runs ``folder``: onnxruntime for an export folder, torch for a run folder;
    a choice that cannot hold is one line saying what to do instead."""
    if engine not in ENGINES:
        raise TextLSTMError(f"{param('engine', engine)}: use one of {', '.join(ENGINES)}")
    export = is_export(folder)
    if engine == "auto":
        engine = "onnxruntime" if export else "torch"
    if engine == "onnxruntime" and not export:
        raise TextLSTMError(
            f"{folder}: is not an ONNX export, which {param('engine', 'onnxruntime')} runs; "
            f"export it first: textlstm export {folder} [--quantize int8]"
        )
    if engine == "torch" and export:
        raise TextLSTMError(
            f"{folder}: is an ONNX export; run it with {param('engine', 'onnxruntime')} "
            "(or give the run folder it came from)"
        )
    if engine == "onnxruntime" and (
        quantize or precision not in ("auto", "fp32") or device == "cuda"
    ):
        raise TextLSTMError(
            f"{folder}: an ONNX export runs as it was exported, on the CPU: drop "
            f"{param('quantize')}, {param('precision')} and {param('device')} (int8 is chosen "
            "when exporting: textlstm export RUN --quantize int8)"
        )
    return engine
