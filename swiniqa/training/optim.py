"""AdamW with two parameter groups and a cosine schedule whose floor is relative to each base lr."""

from __future__ import annotations

import math

import torch

from swiniqa.config import TrainConfig


def make_optimizer(backbone_params, head_params, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """Backbone at ``lr``; head (hyper-network, fusion *and* the randomly initialised LDA heads) at
    ``lr * lr_ratio``. The reference left the LDA heads at the tiny backbone lr."""
    groups = [{"params": list(backbone_params), "lr": cfg.lr, "name": "backbone"},
              {"params": list(head_params), "lr": cfg.head_lr, "name": "head"}]
    kwargs = dict(weight_decay=cfg.weight_decay)
    if device.type == "cuda":
        kwargs["fused"] = True
    return torch.optim.AdamW(groups, **kwargs)


def lr_factor(step: int, total: int, warmup: int, floor: float, schedule: str) -> float:
    """Multiplier of the base lr at ``step``: linear warm-up, then cosine down to ``floor`` x base."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


def make_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Per-step LambdaLR; the same factor scales both groups, so neither group is ever dropped."""
    total = cfg.epochs * steps_per_epoch
    warm = cfg.warmup_epochs * steps_per_epoch
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total, warm, cfg.min_lr_ratio, cfg.schedule))
