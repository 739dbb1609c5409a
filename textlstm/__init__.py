"""textlstm: LSTM text classification from TOML recipes.

    import textlstm
    recipe = textlstm.load_recipe("recipes/bbc-news.toml")
    result = textlstm.train(recipe)
    report = textlstm.evaluate(result.run_dir, split="test").report
    folds = textlstm.train_folds(recipe, folds=10)  # cross-validation: folds.mean("accuracy")
    predictions = textlstm.Predictor.load(result.run_dir).predict(["Shares rose sharply today"])
    textlstm.predict_files(result.run_dir, ["texts.txt"], "predictions.jsonl")
    lm = textlstm.pretrain(textlstm.load_recipe("recipes/imdb-lm.toml"), max_minutes=30)
    study = textlstm.tune(textlstm.load_recipe("recipes/sst2.toml"), trials=12, jobs=2)

Names are imported on first use, so ``import textlstm`` (and ``textlstm --help``) stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_recipe": "textlstm.recipe",
    "Recipe": "textlstm.recipe",
    "train": "textlstm.training",
    "TrainResult": "textlstm.training",
    "Events": "textlstm.training",
    "evaluate": "textlstm.evaluation.evaluate",
    "Evaluation": "textlstm.evaluation.evaluate",
    "Predictor": "textlstm.predict.predictor",
    "Prediction": "textlstm.predict.predictor",
    "predict_files": "textlstm.predict.files",
    "FilesPredicted": "textlstm.predict.files",
    "resume": "textlstm.training",
    "train_folds": "textlstm.tuning.folds",
    "evaluate_folds": "textlstm.tuning.folds",
    "FoldsResult": "textlstm.tuning.folds",
    "pretrain": "textlstm.lm",
    "PretrainResult": "textlstm.lm",
    "PretrainEvents": "textlstm.lm",
    "tune": "textlstm.tuning",
    "TuneResult": "textlstm.tuning",
    "TuneEvents": "textlstm.tuning",
    "summarize": "textlstm.data.summary",
    "load_splits": "textlstm.data",
    "TextLSTMError": "textlstm.errors",
    "RecipeError": "textlstm.errors",
    "DataError": "textlstm.errors",
    "CheckpointError": "textlstm.errors",
    "TrainingDiverged": "textlstm.errors",
}
__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'textlstm' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
