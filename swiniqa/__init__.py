"""swiniqa: SMART-IQA (HyperIQA head on a Swin backbone) trained and studied at scale on Ray.

Importing the package is cheap (no torch, timm or Ray): the names below load their modules on first use,
so ``swiniqa --help`` answers at once.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> module that defines it (imported on first access).
_LAZY = {
    "TrainConfig": "swiniqa.config",
    "load_config": "swiniqa.config",
    "preset": "swiniqa.config",
    "build_model": "swiniqa.models",
    "count_parameters": "swiniqa.models",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'swiniqa' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
