"""One error family. Raised where input enters (recipe, data, run folder, CLI input); the CLI
turns each into one red line per problem and exit code 2."""
from __future__ import annotations


class TextLSTMError(Exception):
    """Base of every error caused by user input. ``lines`` holds one message per problem."""

    def __init__(self, *lines: str) -> None:
        self.lines = [line for line in lines if line] or ["unknown error"]
        super().__init__("\n".join(self.lines))


class RecipeError(TextLSTMError):
    """A recipe file or an override is not valid."""


class DataError(TextLSTMError):
    """A dataset, data file or input file cannot be used."""


class CheckpointError(TextLSTMError):
    """A run folder is missing, incomplete or does not load."""
