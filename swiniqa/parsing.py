"""The value parsers every layer shares: booleans, ``HEIGHT x WIDTH`` sizes and finite numbers.

One place, so ``--set resize=384x512``, ``--resize 384,512``, a roots file's ``resize: [384, 512]`` and
a reader option ``higher_is_better=no`` all accept the same spellings. Cheap to import (no torch).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

TRUE = ("1", "true", "yes", "y", "on")
FALSE = ("0", "false", "no", "n", "off")
NONE = ("none", "null", "native", "")


def finite_float(v: Any) -> Optional[float]:
    """``float(v)`` when ``v`` is a finite number (a bool counts as 0/1), else None: None, NaN, inf, a string
    that is no number, a metric a run never wrote. The one test of "is this a usable number"."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def parse_bool(raw: Any, what: str, error: Callable[[str], Exception] = ValueError) -> bool:
    """``True``/``False`` from a bool or a word (true/false, yes/no, on/off, 1/0).

    Args:
        raw: the value (bool, int 0/1 or string).
        what: how the value is named in the error (``config key 'hflip'``, ``--lower-is-better``).
        error: exception class raised with the one-line message.
    Returns:
        the boolean.
    Raises:
        ``error`` naming ``what`` when the value is not a boolean word.
    """
    if isinstance(raw, bool):
        return raw
    s = str(raw).strip().lower()
    if s in TRUE:
        return True
    if s in FALSE:
        return False
    raise error(f"{what}: expected true/false, got {raw!r}")


def parse_hw(raw: Any, what: str, error: Callable[[str], Exception] = ValueError,
             allow_none: bool = True) -> Optional[tuple[int, int]]:
    """``(height, width)`` from ``384x512``, ``384,512``, ``(384, 512)`` or a two-item list.

    Args:
        raw: the value; ``None``/``none``/``native`` mean "keep the size" when ``allow_none``.
        what: how the value is named in the error.
        error: exception class raised with the one-line message.
        allow_none: accept the "no resize" spellings.
    Returns:
        the pair of positive ints, or None.
    Raises:
        ``error`` naming ``what`` unless the value is two positive whole numbers.
    """
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in NONE):
        if allow_none:
            return None
        raise error(f"{what}: give HEIGHT,WIDTH (e.g. 384,512)")
    if isinstance(raw, str):
        parts: list[Any] = [p for p in raw.lower().replace("x", ",").strip("()[] ").split(",") if p.strip()]
    elif isinstance(raw, (list, tuple)):
        parts = list(raw)
    else:
        parts = []
    try:
        vals = tuple(int(str(p).strip()) for p in parts)
    except ValueError:
        vals = ()
    if len(vals) != 2 or min(vals) <= 0:
        none = " or none for the native size" if allow_none else ""
        raise error(f"{what}: give HEIGHT,WIDTH (e.g. 384,512){none}, got {raw!r}")
    return vals  # type: ignore[return-value]


__all__ = ["finite_float", "parse_bool", "parse_hw", "TRUE", "FALSE"]
