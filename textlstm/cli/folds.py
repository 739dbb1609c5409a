"""The cross-validation table that ``train --folds`` and ``evaluate`` on a folds folder print."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from textlstm.cli.app import out


def show_folds(result: Any) -> None:
    """Each fold's test scores, then their mean and standard deviation."""
    linear = bool(result.baseline)
    columns = ["fold", "accuracy", "macro-F1"] + (["TF-IDF + LR accuracy"] if linear else [])
    table = Table(
        *columns,
        title=f"{len(result.runs)}-fold cross-validation: each fold's run on its held-out rows",
        title_justify="left",
    )
    for i in range(len(result.runs)):
        row = [
            str(i + 1),
            f"{result.scores['accuracy'][i]:.2%}",
            f"{result.scores['macro_f1'][i]:.2%}",
        ]
        if linear:
            row.append(f"{result.baseline['accuracy'][i]:.2%}")
        table.add_row(*row)
    out.print(table)
    for name, label in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
        line = (
            f"{label}: mean [bold]{result.mean(name):.2%}[/bold] ± {result.std(name):.2%} "
            "(sample std over the folds)"
        )
        if linear:
            line += f"; TF-IDF + LR {result.mean(name, True):.2%} ± {result.std(name, True):.2%}"
        out.print(line)
    out.print(f"folds folder: [bold]{result.folder}[/bold]", soft_wrap=True)
