"""The naive Bayes log-count ratio (Wang & Manning 2012), the one copy that the NB-LR beside the
network (``model.wide``) and the NBSVM baseline both scale their features by. Torch-free, so the
baselines load without it."""

from __future__ import annotations

from typing import Any

import numpy as np


def nb_ratio(x: Any, positive: np.ndarray) -> np.ndarray:
    """The log-count ratio of each column of ``x`` (rows: texts, a sparse or dense count matrix)
    between the rows where ``positive`` holds and the rest, with add-one smoothing (alpha 1)."""
    p = np.asarray(x[positive].sum(axis=0)).ravel() + 1.0
    q = np.asarray(x[~positive].sum(axis=0)).ravel() + 1.0
    return np.log((p / p.sum()) / (q / q.sum()))
