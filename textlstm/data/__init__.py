"""Where rows come from (``sources``), clean labelled splits (``splits``), and what
``textlstm check`` reports about them (``summary``)."""

from textlstm.data.splits import (
    Splits,
    column,
    data_root,
    label_names,
    load_raw,
    load_splits,
    normalize,
    texts_of,
)

__all__ = [
    "Splits",
    "column",
    "data_root",
    "label_names",
    "load_raw",
    "load_splits",
    "normalize",
    "texts_of",
]
