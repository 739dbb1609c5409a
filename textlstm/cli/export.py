"""``textlstm export``: a run folder as an ONNX model that runs without textlstm."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from textlstm.cli.app import app, guarded, out


@app.command()
@guarded
def export(
    run: Annotated[Path, typer.Argument(help="A finished run folder.")],
    format: Annotated[str, typer.Option("--format", help="onnx (the one format).")] = "onnx",
    quantize: Annotated[
        str | None,
        typer.Option(
            "--quantize",
            help="int8: onnxruntime's dynamic quantization (fused int8 LSTM, int8 matrix "
            "products); its effect is measured against fp32 and printed.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--out", help="The export folder (default: onnx or onnx-int8 in the run)."
        ),
    ] = None,
) -> None:
    """Export a run as an ONNX model with its vocabulary, tokenizer settings, labels, a
    predict.py that needs only onnxruntime and numpy, and a README; checked against PyTorch."""
    from textlstm.errors import TextLSTMError, param
    from textlstm.export.onnx import TOLERANCE, export_onnx

    if format != "onnx":
        raise TextLSTMError(f"{param('format', format)}: use onnx")
    done = export_onnx(run, output, quantize)
    out.print(
        f"exported in {done.seconds:.0f}s: model.onnx {done.size / 2**20:.1f} MiB; onnxruntime "
        f"fp32 matches PyTorch within {done.parity:.1e} (limit {TOLERANCE:g})"
    )
    if done.agreement is not None and done.int8_difference is not None:
        out.print(
            f"int8: the label of fp32 on {done.agreement:.1%} of the check texts; probabilities "
            f"within {done.int8_difference:.3f} (measure accuracy: textlstm predict on a "
            "labelled file, or bench/speed.py)"
        )
    out.print(f"export folder: [bold]{done.folder}[/bold]", soft_wrap=True)
    out.print(
        f"next: textlstm predict {done.folder} texts.txt, or without textlstm: "
        f"python {done.folder / 'predict.py'} texts.txt (see its README.md)",
        soft_wrap=True,
    )
