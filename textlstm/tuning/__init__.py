"""Hyperparameter search on Optuna: the study, the worker processes that share it, and its
results (leaderboard, best.toml, plots, the retrained run)."""
from textlstm.tuning.study import TrialSummary, TuneEvents, TuneResult, tune

__all__ = ["TrialSummary", "TuneEvents", "TuneResult", "tune"]
