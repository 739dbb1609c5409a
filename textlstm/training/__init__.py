"""Training: the epoch loop, a run from recipe to run folder, and the state that resumes it."""
from textlstm.training.trainer import (EpochResult, Events, Prepared, TrainResult, prepare,
                                       resume, train)

__all__ = ["EpochResult", "Events", "Prepared", "TrainResult", "prepare", "resume", "train"]
