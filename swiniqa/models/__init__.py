"""SMART-IQA model: timm backbone + HyperIQA head + batched per-image target network."""

from swiniqa.models.smart_iqa import SmartIQA, build_model, count_parameters, unwrap

__all__ = ["SmartIQA", "build_model", "count_parameters", "unwrap"]
