"""Metrics, the one inference path, evaluation of a dataset, the cross-dataset suite, complexity and
prediction. Importing the package is cheap: the metric functions load numpy/scipy on first use."""

from __future__ import annotations

from typing import Any

__all__ = ["srcc", "plcc", "krcc", "all_metrics"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from swiniqa.evaluation import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module 'swiniqa.evaluation' has no attribute {name!r}")
