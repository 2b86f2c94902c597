"""Errors both sides of the contract raise: the project's base error and the object-store ones.

components.errors re-exports these next to the pipeline's own errors, so a step catches
``PipelineError`` for every error of the project, whichever side raised it.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of the errors this project raises on bad input or a bad environment."""


class SettingError(PipelineError, ValueError):
    """A setting (environment variable or parameter) has a value it does not accept."""


class ObjectStoreError(PipelineError):
    """Base of the errors talking to MinIO / S3."""


class ObjectStoreConfigError(ObjectStoreError):
    """The object-store settings (environment or parameters) are invalid."""
