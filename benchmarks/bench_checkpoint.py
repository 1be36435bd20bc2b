"""Shared by the inference benchmarks: an untrained demo-preset checkpoint to time (scores need no training)."""

from __future__ import annotations


def make_checkpoint(size: str, out: str) -> str:
    """Write a ``size`` model with the demo preset's config (label scale 50 +- 10) to ``out``; returns its path."""
    import torch

    from swiniqa.config import preset
    from swiniqa.models import build_model
    from swiniqa.checkpoints import write_checkpoint

    cfg = preset("demo").replace(model_size=size)
    torch.manual_seed(0)
    m = build_model(cfg)
    m.set_label_scale(50.0, 10.0)
    return str(write_checkpoint(out, m.state_dict(), cfg, {"val_srcc": 0.0, "epoch": 0}))
