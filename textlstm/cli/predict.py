"""``textlstm predict``: texts from files or stdin in, one prediction record each out."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from textlstm.cli.app import (
    BatchSize,
    Device,
    Engine,
    Precision,
    Quantize,
    Threads,
    app,
    cli_text,
    err,
    guarded,
)

Coverage = Annotated[
    float | None,
    typer.Option(
        help="Also give each text's prediction set: the labels that hold the true one for "
        "this share of texts like the validation ones (split conformal), e.g. 0.9.",
    ),
]


@app.command()
@guarded
def predict(
    run: Annotated[Path, typer.Argument(help="A finished run folder, or an ONNX export of one.")],
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Files to classify: .txt (a text per line), .csv/.tsv, .jsonl, or - for stdin."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Write here (.jsonl, .csv or .tsv) instead of stdout."),
    ] = None,
    text_column: Annotated[str, typer.Option(help="Text column of .csv/.tsv input.")] = "text",
    text_key: Annotated[str, typer.Option(help="Text key of .jsonl input.")] = "text",
    top_k: Annotated[
        int | None, typer.Option(min=1, help="Keep only the k likeliest classes in the output.")
    ] = None,
    batch_size: BatchSize = None,
    on_error: Annotated[
        str,
        typer.Option(
            help="A record that cannot be read (broken JSON line, ragged CSV row): "
            "record (write an error record in its place), skip, or fail."
        ),
    ] = "record",
    device: Device = "auto",
    precision: Precision = "auto",
    quantize: Quantize = None,
    engine: Engine = "auto",
    coverage: Coverage = None,
    threads: Threads = None,
) -> None:
    """Classify texts; one output record per input text, in input order."""
    from textlstm import threads as cpu
    from textlstm.predict.files import predict_files

    cpu.choose(threads)
    done = predict_files(
        run, inputs, output if output is not None else sys.stdout, text_column=text_column,
        text_key=text_key, top_k=top_k, batch_size=batch_size, on_error=on_error, device=device,
        precision=precision, quantize=quantize, wording=cli_text, engine=engine, coverage=coverage,
    )  # fmt: skip
    if output is not None:
        err.print(f"wrote {done.predictions:,} predictions to {output}")
    if done.bad:
        what = "wrote an error record for each" if on_error == "record" else "skipped them"
        err.print(
            f"[yellow]warning:[/yellow] {done.bad:,} input record(s) could not be read; {what}"
        )
