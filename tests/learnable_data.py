"""A learnable synthetic IQA dataset for behaviour tests (not a test module).

Quality is the amount of pixel noise on smooth content, which a nano SMART-IQA learns to rank in a few
epochs; the scores are in made-up units (10..90) so tests can tell the labels' units from the
standardised scale the loss sees. Written as a ``csv`` dataset (``labels.csv`` + PNGs in one folder).
"""

from __future__ import annotations

import csv
import os

import numpy as np
from PIL import Image

from swiniqa import TrainConfig


def write_noise_dataset(root, n: int = 144, size: int = 80, seed: int = 0) -> tuple[str, dict[str, float]]:
    """Write ``n`` images of ``size`` px into ``root``; return ``(root, {file name: score})``. Deterministic."""
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = {}
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for i in range(n):
        q = (i % 12) / 11.0 * 0.9 + 0.05 + 0.01 * rng.random()
        a = rng.random(3) * 120 + 60
        fx, fy = 6 + 10 * rng.random(2)
        base = np.stack([a[c] + 50 * np.sin(xx / fx + yy / fy + c) for c in range(3)], -1)
        im = (base + rng.normal(0.0, 70.0 * (1.0 - q), base.shape)).clip(0, 255).astype(np.uint8)
        name = f"im{i:03d}.png"
        Image.fromarray(im).save(os.path.join(root, name))
        labels[name] = round(10.0 + 80.0 * q, 4)
    with open(os.path.join(root, "labels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "mos"])
        w.writerows(sorted(labels.items()))
    return str(root), labels


def noise_config(root: str, **overrides) -> TrainConfig:
    """A run config for :func:`write_noise_dataset` data: nano Swin, 64 px patches, 3 epochs, no augmentation,
    deterministic on CPU (no dropout, fixed seeds)."""
    base = dict(dataset="csv", data_root=str(root), model_size="nano", pretrained=False, patch_size=64, resize=None,
                batch_size=16, train_patches=4, test_patches=2, epochs=3, lr=2e-3, lr_ratio=1.0, warmup_epochs=0,
                weight_decay=1e-4, dropout=0.0, drop_path=0.0, amp=False, val_fraction=0.25, test_fraction=0.2,
                patience=100, content_aug=False, color_jitter=False, loader_threads=1, seed=0)
    base.update(overrides)
    return TrainConfig(**base)
