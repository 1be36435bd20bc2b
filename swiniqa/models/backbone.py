"""Backbones: timm feature extractors returning four NCHW stage maps.

Channel widths and strides come from timm's ``feature_info``; nothing downstream tabulates them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import timm
import torch
from torch import nn

from swiniqa.config import SWIN_SIZES
from swiniqa.errors import CheckpointError, ConfigError

_SWIN_TEMPLATE = "swin_tiny_patch4_window7_224"


class Backbone(nn.Module):
    """Wraps a timm ``features_only`` model; ``forward`` returns four NCHW maps, shallow to deep."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        info = net.feature_info
        self.channels: list[int] = list(info.channels())
        self.reductions: list[int] = list(info.reduction())
        # timm's Swin emits NHWC; CNNs emit NCHW.
        self.nhwc = getattr(net, "output_fmt", "NCHW") == "NHWC"
        if len(self.channels) != 4:
            raise ConfigError(f"backbone gives {len(self.channels)} stages; the head needs 4")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.net(x)
        if self.nhwc:
            feats = [f.permute(0, 3, 1, 2) for f in feats]
        return [f.contiguous(memory_format=torch.channels_last) if f.is_cuda else f for f in feats]


def _timm_args(backbone: str, model_size: str, patch_size: int, drop_path: float) -> tuple[str, dict]:
    if backbone != "swin":
        return backbone, dict(out_indices=(1, 2, 3, 4), drop_path_rate=drop_path)
    spec = dict(SWIN_SIZES[model_size])
    name = spec.pop("timm_name", None)
    kwargs = dict(drop_path_rate=drop_path, img_size=patch_size, **spec)
    if name is None:
        # CPU sizes: one window covers the last stage (patch/32), so any multiple of 32 works: 224 -> 7.
        name = _SWIN_TEMPLATE
        kwargs["window_size"] = max(1, patch_size // 32)
    return name, kwargs


def create_backbone(backbone: str, model_size: str, patch_size: int, drop_path: float, pretrained: bool = False,
                    pretrained_path: Optional[str] = None) -> Backbone:
    """Build a backbone (timm name, or ``swin`` of ``model_size``) taking ``patch_size`` patches.

    Args:
        pretrained: load ImageNet weights (timm's hub, or ``pretrained_path`` on offline clusters).
    Raises:
        ConfigError: a CPU size asked with pretrained weights but no ``pretrained_path``, or a missing file.
        CheckpointError: the weights cannot be loaded (offline, wrong file).
    """
    name, kwargs = _timm_args(backbone, model_size, patch_size, drop_path)
    custom = backbone == "swin" and "timm_name" not in SWIN_SIZES[model_size]
    if pretrained and custom and not pretrained_path:
        raise ConfigError(
            f"model_size '{model_size}' has no published ImageNet weights; set pretrained=false "
            "or give pretrained_path to a weights file of that shape")
    overlay = None
    if pretrained and pretrained_path:
        p = Path(pretrained_path)
        if not p.is_file():
            raise ConfigError(f"pretrained_path not found: {p}; give a .safetensors/.pth file of {name} weights")
        overlay = dict(file=str(p))
    try:
        net = timm.create_model(name, pretrained=pretrained, features_only=True,
                                pretrained_cfg_overlay=overlay, **kwargs)
    except (OSError, RuntimeError, ValueError) as e:
        if not pretrained:
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(
            f"cannot load ImageNet weights for {name} ({msg}); on an offline machine download them once "
            "and pass pretrained_path=/path/to/weights.safetensors (or pretrained=false)") from None
    if not pretrained and backbone == "swin":
        scratch_init(net)
    return Backbone(net)


def scratch_init(net: nn.Module) -> None:
    """Kaiming-normal Linear weights for a Swin trained from scratch.

    timm's trunc_normal(std=0.02) suits long ImageNet schedules; for a short from-scratch run it leaves
    every block close to the identity, so pooled features stay nearly linear in the patch pixels and
    cannot see noise or blur energy. Measured on the demo data (nano, patch 128, 6 epochs): val SRCC
    ~0.1 with timm's init vs ~0.5 with this one. Pretrained weights overwrite it anyway.
    """
    for m in net.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
