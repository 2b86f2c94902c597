"""Domain errors of batch scoring and the model library.

Each message names the file, the row or column, the value and what was expected, so a failed
batch job ends with one line the user can act on.
"""

from __future__ import annotations

from components.errors import PipelineError


class ScoringError(PipelineError):
    """Base of the errors batch scoring and the library raise on bad input or a bad environment."""


class ModelLoadError(ScoringError):
    """The model could not be fetched, or breaks the artifact contract (checksum, version, format)."""


class SchemaMismatch(ScoringError):
    """The input's columns or types do not fit the model's schema; raised before any row is scored."""


class BadRow(ScoringError):
    """A row the model does not take (on_bad_row=fail); the message names its row number and why."""

    def __init__(self, message: str, row: int) -> None:
        super().__init__(message)
        self.row = row


class InputError(ScoringError):
    """The input or output location is not usable (no such file, unknown format, bad URI)."""
