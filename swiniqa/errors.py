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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by the CLI's handler: a verb stops as on Ctrl-C (every ``except
    KeyboardInterrupt`` / ``finally`` cleanup runs) and the CLI exits 143."""


def did_you_mean(name: object, choices, n: int = 3, cutoff: float = 0.6) -> str:
    """``"did you mean a or b?"`` for the known ``choices`` closest to a name the user typed, else ``""``.

    The one "did you mean" of every verb (config keys, presets, studies, readers, metrics, ``--format``
    values, ...): :func:`difflib.get_close_matches`, case-insensitive, the original spelling shown.
    """
    import difflib

    by_lower: dict[str, str] = {}
    for c in choices:
        by_lower.setdefault(str(c).lower(), str(c))
    close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=n, cutoff=cutoff)
    if not close:
        return ""
    names = [by_lower[c] for c in close]
    return "did you mean " + (names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]) + "?"
