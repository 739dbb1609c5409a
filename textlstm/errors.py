"""One error family, and messages that name parameters in the reader's own terms.

Errors are raised where input enters (recipe, data, run folder, arguments); the CLI turns each into
one red line per problem and exit code 2. A message that names a parameter writes it with
``param``: a library user reads ``device='cuda'``, the command line shows its flag,
``--device cuda`` (``for_cli``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

_MARK, _SEP = "\x1f", "\x1e"
_REF = re.compile(
    f"{_MARK}([^{_MARK}{_SEP}]*)(?:{_SEP}([^{_MARK}{_SEP}]*){_SEP}([^{_MARK}]*))?{_MARK}"
)
_UNSET = object()
_QUOTED = " \t\"'"  # a value holding these is quoted as a shell would need it


def param(name: str, value: object = _UNSET) -> str:
    """A parameter (and the value given for it) inside a message; see ``say``."""
    if value is _UNSET:
        return f"{_MARK}{name}{_MARK}"
    return f"{_MARK}{name}{_SEP}{value!r}{_SEP}{value}{_MARK}"


class Text(str):
    """A message as the library says it (the string itself); ``raw`` keeps the parameter
    references so that the CLI can say it with its flags."""

    raw: str


def say(raw: str) -> str:
    """``raw`` with its ``param`` references written as a library user names them."""
    text = Text(_REF.sub(lambda m: m[1] if m[2] is None else f"{m[1]}={m[2]}", raw))
    text.raw = raw
    return text


def for_cli(text: str, flags: Mapping[str, str]) -> str:
    """The same message with each parameter written as its command-line flag: ``flags`` maps the
    parameters whose flag is not ``--`` plus the name with dashes (``overrides`` -> ``--set``)."""
    raw = getattr(text, "raw", text)

    def flag(match: re.Match[str]) -> str:
        name = flags.get(match[1], "--" + match[1].replace("_", "-"))
        if match[2] is None:
            return name
        value = match[3]
        return f"{name} {shlex.quote(value) if any(c in value for c in _QUOTED) else value}"

    return _REF.sub(flag, raw)


class TextLSTMError(Exception):
    """Base of every error caused by user input. ``lines`` holds one message per problem."""

    def __init__(self, *lines: str) -> None:
        self.lines = [say(getattr(line, "raw", line)) for line in lines if line] or [
            "unknown error"
        ]
        super().__init__("\n".join(self.lines))

    @property
    def raw_lines(self) -> list[str]:
        """The lines with their parameter references, to build a new error from."""
        return [getattr(line, "raw", line) for line in self.lines]


class RecipeError(TextLSTMError):
    """A recipe file or an override is not valid."""


class DataError(TextLSTMError):
    """A dataset, data file or input file cannot be used."""


class CheckpointError(TextLSTMError):
    """A run folder is missing, incomplete or does not load."""


class WriteFailed(TextLSTMError):
    """The file system refused a write: no space left, a quota, a read-only or vanished
    folder. ``path`` is the file the write was for (never a temporary name)."""

    def __init__(self, path: object, reason: str, kept: str = "") -> None:
        self.path, self.reason = path, reason
        line = f"{path}: cannot write ({reason})"
        super().__init__(f"{line}; {kept}" if kept else line)


class TrainingDiverged(Exception):
    """The training loss became NaN or infinite. Not an input error: the recipe and data were
    valid, the optimisation was not (too high a learning rate, no gradient clipping). The CLI
    exits with ``DIVERGED_EXIT`` and the run folder stays resumable from its last finished epoch."""

    def __init__(self, message: str, run_dir: object = None, reason: str | None = None) -> None:
        self.run_dir = run_dir
        self.reason = reason or message  # what went wrong, without where the run was kept
        super().__init__(message)


DIVERGED_EXIT = 3


class PeerFailed(Exception):
    """In a distributed run, rank 0 stopped before this rank could go on; rank 0 says why."""


class Terminated(Exception):
    """SIGTERM arrived: torchrun ends every process of a job when one of them fails."""
