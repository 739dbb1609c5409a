"""``textlstm serve``: a model behind an HTTP JSON API, on loopback unless told otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from textlstm.cli.app import Device, Engine, app, guarded, out

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.command()
@guarded
def serve(
    run: Annotated[Path, typer.Argument(help="A finished run folder, or an ONNX export of one.")],
    host: Annotated[
        str, typer.Option(help="Interface to listen on; 0.0.0.0 for every one.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    max_batch: Annotated[int, typer.Option(min=1, help="Texts in one shared forward pass.")] = 64,
    max_wait_ms: Annotated[
        float,
        typer.Option(min=0, help="How long a request waits for others to share its batch."),
    ] = 5.0,
    batching: Annotated[
        bool, typer.Option(help="--no-batching runs every request alone, one at a time.")
    ] = True,
    max_texts: Annotated[int, typer.Option(min=1, help="Texts in one request.")] = 256,
    max_chars: Annotated[int, typer.Option(min=1, help="Characters in one text.")] = 100_000,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="Bytes in one request.")] = 1 << 20,
    engine: Engine = "auto",
    device: Device = "auto",
) -> None:
    """Serve POST /predict, GET /health and GET /metadata (JSON) with FastAPI on uvicorn;
    concurrent requests are batched together."""
    import uvicorn

    from textlstm.predict.predictor import Predictor
    from textlstm.serve.app import Limits, create_app

    predictor = Predictor.load(run, device=device, engine=engine)
    limits = Limits(max_body_bytes, max_texts, max_chars, max_batch, max_wait_ms, batching)
    api = create_app(predictor, limits, {"model": str(run)})
    where = (
        "loopback only: other machines cannot reach it (--host 0.0.0.0 listens on every interface)"
        if host in LOOPBACK
        else "[yellow]reachable from other machines[/yellow]: there is no authentication"
    )
    batched = f"batches of up to {max_batch} texts" if batching else "no batching"
    out.print(f"serving {run} on http://{host}:{port} ({where}); {batched}", soft_wrap=True)
    out.print('POST /predict {"texts": [...]}, GET /health, GET /metadata; Ctrl-C stops')
    uvicorn.run(api, host=host, port=port, log_level="warning")
