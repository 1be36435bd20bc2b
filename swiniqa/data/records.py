"""What a dataset is: one spec per dataset (reader, display name, aliases, score ranges, eval
preprocessing) and one record per image, scores oriented higher = better.

Every per-dataset fact lives in the ``register_reader`` call beside its reader, so the data check's
range warnings, the cross-dataset suite's names and aliases, and evaluation's preprocessing all read
the same :class:`DatasetSpec`.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Union

from swiniqa.errors import DataError, did_you_mean


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
    #: The label file(s) the reader read (for the dataset fingerprint, :mod:`swiniqa.provenance`).
    label_files: list[str] = field(default_factory=list)


Reader = Callable[..., DatasetInfo]


@dataclass(frozen=True)
class DatasetSpec:
    """Everything swiniqa knows about one dataset, registered once beside its reader."""

    name: str
    reader: Reader
    #: Name in tables (``KADID-10K``).
    display_name: str
    #: One-word kind for tables (``synthetic distortions``).
    kind: str = ""
    #: Other spellings accepted wherever a dataset is named (compared lower-case, alphanumerics only).
    aliases: tuple[str, ...] = ()
    #: Expected score range per score column of the release (reader's orientation), for warnings.
    score_range: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    #: Evaluation preprocessing overriding a checkpoint's ``resize``/``resize_short`` (None: as trained).
    eval_preprocessing: Optional[Mapping[str, Any]] = None


DATASETS: dict[str, DatasetSpec] = {}
#: name -> reader function (kept for callers that only need the function).
READERS: dict[str, Reader] = {}


def _key(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def register_reader(name: str, *, display_name: Optional[str] = None, kind: str = "",
                    aliases: tuple[str, ...] = (),
                    score_range: Union[None, tuple[float, float], Mapping[str, tuple[float, float]]] = None,
                    score_column: str = "", eval_preprocessing: Optional[Mapping[str, Any]] = None
                    ) -> Callable[[Reader], Reader]:
    """Register a reader ``fn(root, **options) -> DatasetInfo`` with the dataset's facts.

    Args:
        name: the reader name users type (``kadid10k``).
        display_name: name in tables (default: ``name``).
        kind: short description for tables.
        aliases: other accepted spellings (``kadid``, ``KADID-10K``).
        score_range: ``(lo, hi)`` of ``score_column``, or ``{column: (lo, hi)}``.
        score_column: the column a bare ``score_range`` tuple applies to.
        eval_preprocessing: ``{"resize": ..., "resize_short": ...}`` used by ``eval`` for this dataset.
    Returns:
        the decorator, which returns the reader unchanged.
    Raises:
        ValueError: when ``name`` or an alias is already registered (a programming error).
    """
    if isinstance(score_range, tuple):
        ranges: dict[str, tuple[float, float]] = {score_column: score_range}
    else:
        ranges = dict(score_range or {})

    def deco(fn: Reader) -> Reader:
        taken = {_key(a): s.name for s in DATASETS.values() for a in (s.name, *s.aliases)}
        for a in (name, *aliases):
            if _key(a) in taken and not (taken[_key(a)] == name and DATASETS[name].reader is fn):
                raise ValueError(f"dataset name {a!r} is already registered (by {taken[_key(a)]!r}); "
                                 "pick another name")
        DATASETS[name] = DatasetSpec(name, fn, display_name or name, kind, tuple(aliases), ranges,
                                     dict(eval_preprocessing) if eval_preprocessing is not None else None)
        READERS[name] = fn
        return fn

    return deco


def canonical_name(name: str) -> Optional[str]:
    """The registered name for ``name`` or one of its aliases (any case/punctuation), else None."""
    k = _key(name)
    for s in DATASETS.values():
        if k == _key(s.name) or k in (_key(a) for a in s.aliases):
            return s.name
    return None


def dataset_spec(name: str, flag: str = "--dataset") -> DatasetSpec:
    """The spec of ``name`` (aliases accepted).

    Raises:
        DataError: unknown name, with the closest known names ("did you mean") and ``flag``.
    """
    canon = canonical_name(name)
    if canon is not None:
        return DATASETS[canon]
    known = sorted(DATASETS)
    hint = did_you_mean(name, known + [a for s in DATASETS.values() for a in s.aliases], cutoff=0.5)
    hint = f"{hint} " if hint else ""
    raise DataError(f"unknown dataset '{name}' ({flag}); {hint}choose one of {', '.join(known)}")


def read_dataset(name: str, root: Optional[str], **options) -> DatasetInfo:
    """Read a dataset by registered name or alias.

    Args:
        name: reader name or alias.
        root: the dataset folder (None: readers that can do without one, e.g. ``demo``, ``csv`` with labels).
        **options: reader options (``labels``, ``images``, ``score_col``, ...); None values are dropped.
    Returns:
        the :class:`DatasetInfo`.
    Raises:
        DataError: unknown dataset, missing root, broken label file.
    """
    spec = dataset_spec(name, flag=str(options.pop("_flag", "--dataset")))
    from swiniqa.data.staging import read_staged  # s3:// / gs:// locations are staged locally first

    token = _LABEL_FILES.set([])
    try:
        info = read_staged(spec.reader, root, _fit_options(spec, {k: v for k, v in options.items() if v is not None}))
        info.label_files = sorted(set(info.label_files) | set(_LABEL_FILES.get() or []))
    finally:
        _LABEL_FILES.reset(token)
    return info


#: Label files read during the current :func:`read_dataset` call (readers report them by :func:`note_label_file`).
_LABEL_FILES: ContextVar[Optional[list]] = ContextVar("swiniqa_label_files", default=None)


def note_label_file(path: Any) -> None:
    """Readers call this for each label file they read, so the run's dataset fingerprint hashes it."""
    files = _LABEL_FILES.get()
    if files is not None:
        files.append(os.path.abspath(str(path)))


#: Reader option -> the flag (and TrainConfig key) that sets it, for messages.
FLAGS = {"labels": "--labels", "images": "--images", "score_col": "--score-col", "image_col": "--image-col",
         "group_col": "--group-col", "higher_is_better": "--lower-is-better"}
#: The shared option names official-layout readers spell their own way.
_SYNONYMS = {"score_col": "score_column", "images": "image_dir"}


def _fit_options(spec: DatasetSpec, options: dict[str, Any]) -> dict[str, Any]:
    """Map the shared option names onto the reader's own, and refuse those the reader does not take."""
    import inspect

    params = inspect.signature(spec.reader).parameters
    named = {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    out: dict[str, Any] = {}
    if "lower_is_better" in options:  # the config key / roots-file spelling of --lower-is-better
        options["higher_is_better"] = not _is_true(options.pop("lower_is_better"))
    for k, v in options.items():
        if k not in named and _SYNONYMS.get(k) in named:
            k = _SYNONYMS[k]
        elif k not in named:
            flag = FLAGS.get(k, k)
            if k == "higher_is_better" and not _is_true(v):
                raise DataError(f"{flag} does not apply to dataset {spec.name}: its reader knows the score "
                                "direction; drop the flag, or use --dataset csv for your own label file")
            if k in FLAGS:
                raise DataError(f"{flag} does not apply to dataset {spec.name} (it reads the official layout "
                                "under --data-root); drop the flag, or use --dataset csv for your own label file")
        out[k] = v
    return out


def _is_true(v: Any) -> bool:
    return v is True or str(v).strip().lower() in ("1", "true", "yes", "y", "on")


def eval_preprocessing_table() -> dict[str, dict[str, Any]]:
    """``{dataset: {"resize": ..., "resize_short": ...}}`` of every spec with evaluation preprocessing."""
    return {s.name: dict(s.eval_preprocessing) for s in DATASETS.values() if s.eval_preprocessing is not None}


def display_table() -> dict[str, tuple[str, str]]:
    """``{dataset: (display name, kind)}`` of every registered dataset, for tables."""
    return {s.name: (s.display_name, s.kind) for s in DATASETS.values()}


#: TrainConfig keys that are reader options (the one dataset interface of every verb).
OPTION_KEYS = ("labels", "images", "score_col", "image_col", "group_col")


def config_reader_options(cfg: Any) -> dict[str, Any]:
    """Reader options carried by a config (``labels``, ``images``, columns, ``lower_is_better``)."""
    opts = {k: getattr(cfg, k, None) for k in OPTION_KEYS if getattr(cfg, k, None) not in (None, "")}
    if getattr(cfg, "lower_is_better", False):
        opts["higher_is_better"] = False
    return opts


def read_config_dataset(cfg: Any) -> DatasetInfo:
    """Read the dataset a run config names (``dataset``, ``data_root`` and the reader options)."""
    return read_dataset(cfg.dataset, cfg.data_root, **config_reader_options(cfg))


__all__ = ["Record", "DatasetInfo", "DatasetSpec", "DATASETS", "READERS", "register_reader", "dataset_spec",
           "canonical_name", "read_dataset", "eval_preprocessing_table", "display_table", "read_config_dataset",
           "config_reader_options", "OPTION_KEYS"]
