"""User-facing errors.

Anything the user can fix (a bad flag, a missing folder, a broken label file) is raised as
:class:`SwiniqaError` with one line saying what, where and how to fix it. The CLI prints that line
and exits non-zero; only ``--debug`` shows a traceback.
"""

from __future__ import annotations


class SwiniqaError(Exception):
    """An error caused by user input, printed as one line by the CLI."""

    exit_code = 2


class ConfigError(SwiniqaError):
    """A config key or value is invalid."""


class DataError(SwiniqaError):
    """A dataset folder, label file or image is missing or broken."""


class CheckpointError(SwiniqaError):
    """A checkpoint is missing, unsafe or of another architecture."""


class TrainingError(SwiniqaError):
    """Training stopped for a reason the user should see (e.g. a non-finite loss)."""

    exit_code = 3
