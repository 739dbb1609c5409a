"""Scores of a run on a split or other data (``evaluate``) and the linear baselines fitted on the
same rows (``baselines``)."""
