"""What a dataset reader returns: one record per image, scores oriented higher = better."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from swiniqa.errors import DataError


@dataclass(frozen=True)
class Record:
    """One labelled image.

    ``score`` is always oriented so that higher means better quality (readers of DMOS-style sets
    negate). ``group`` names the content (reference image / source photo) so splits never put the
    same content on both sides; for authentic sets it is the image itself.
    """

    path: str
    score: float
    group: str


@dataclass
class DatasetInfo:
    """Records plus what the reader knows about the release (its official split, score column)."""

    name: str
    root: str
    records: list[Record]
    score_column: str = ""
    higher_is_better: bool = True
    #: Official split, image path -> "train"/"val"/"test", when the release ships one.
    official_split: Optional[dict[str, str]] = None
    notes: list[str] = field(default_factory=list)


Reader = Callable[..., DatasetInfo]
READERS: dict[str, Reader] = {}


def register_reader(name: str) -> Callable[[Reader], Reader]:
    """Register a reader ``fn(root, **options) -> DatasetInfo`` under ``name``."""

    def deco(fn: Reader) -> Reader:
        READERS[name] = fn
        return fn

    return deco


def read_dataset(name: str, root: Optional[str], **options) -> DatasetInfo:
    """Read a dataset by registered name; unknown names and missing roots are user errors."""
    import swiniqa.data.readers  # noqa: F401  (registers the built-in readers)

    if name not in READERS:
        raise DataError(f"unknown dataset '{name}'; choose one of {', '.join(sorted(READERS))}")
    return READERS[name](root, **options)
