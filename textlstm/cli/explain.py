"""``textlstm explain``: which tokens drove a run's decisions, as coloured text, JSON or HTML."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from textlstm.cli.app import Device, app, err, guarded, out

if TYPE_CHECKING:
    from textlstm.explain import Explanation


@app.command()
@guarded
def explain(
    run: Annotated[Path, typer.Argument(help="A finished run folder.")],
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to explain.")] = None,
    input_file: Annotated[
        str | None,
        typer.Option(
            "--input", help="Texts from a file: .txt (a text per line), .csv/.tsv, .jsonl, or -."
        ),
    ] = None,
    text_column: Annotated[str, typer.Option(help="Text column of .csv/.tsv input.")] = "text",
    text_key: Annotated[str, typer.Option(help="Text key of .jsonl input.")] = "text",
    label: Annotated[
        str | None,
        typer.Option(help="Explain this label (default: each text's predicted label)."),
    ] = None,
    steps: Annotated[
        int, typer.Option(min=1, max=1024, help="Integration steps (more: a smaller error).")
    ] = 64,
    top: Annotated[int, typer.Option(min=0, help="Strongest tokens listed per text.")] = 10,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON record per text on stdout, for programs.")
    ] = False,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML view here.")
    ] = None,
    device: Device = "cpu",
) -> None:
    """Token scores by integrated gradients on the embeddings (through Captum); they add up
    to the label's logit minus the baseline's, and the error of that sum is printed."""
    from textlstm.errors import TextLSTMError
    from textlstm.explain import Explainer
    from textlstm.explain.views import to_html
    from textlstm.predict.files import read_inputs

    given = list(texts or [])
    if input_file is not None:
        given += list(read_inputs(input_file, text_column, text_key, on_error="fail"))
    if not given:
        raise TextLSTMError('explain: give texts ("a text" ...) or --input FILE')
    explanations = Explainer.load(run, device, steps).explain(given, label)
    if html is not None:
        tmp = html.with_name(html.name + ".tmp")
        tmp.write_text(to_html(explanations, f"textlstm explain {run}"), encoding="utf-8")
        tmp.replace(html)
    if as_json:
        for e in explanations:
            out.print_json(json.dumps(e.to_dict()), indent=None)
    else:
        _show(explanations, top)
    if html is not None:
        err.print(f"wrote {html}", soft_wrap=True, markup=False)


def _show(explanations: list[Explanation], top: int) -> None:
    from textlstm.explain.views import coloured, parts_note, summary

    for e in explanations:
        out.print(summary(e), soft_wrap=True)
        out.print(coloured(e))
        if top:
            table = Table("token", "score", box=None, pad_edge=False)
            for token, score in e.strongest(top):
                colour = "green" if score >= 0 else "red"
                table.add_row(token, f"[{colour}]{score:+.4f}[/{colour}]")
            out.print(table)
        if e.attention is not None:
            best = sorted(zip(e.attention, e.tokens), reverse=True)[: top or 5]
            shown = ", ".join(f"{t} {w:.3f}" for w, t in best)
            out.print(f"attention weights, largest: {shown}", soft_wrap=True)
        if e.parts:
            out.print(f"[dim]{parts_note(e)}[/dim]", soft_wrap=True)
        out.print()
