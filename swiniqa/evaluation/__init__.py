"""Metrics, patch-averaged evaluation, cross-dataset suite, complexity and prediction."""

from swiniqa.evaluation.metrics import all_metrics, krcc, plcc, srcc

__all__ = ["srcc", "plcc", "krcc", "all_metrics"]
