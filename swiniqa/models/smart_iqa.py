"""The assembled SMART-IQA model, ``build_model`` and ``unwrap``."""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from swiniqa.config import ModelConfig, TrainConfig
from swiniqa.models.backbone import create_backbone
from swiniqa.models.hyper import HyperHead, reduction_widths
from swiniqa.models.target import target_forward

#: ImageNet statistics; inputs are normalised inside the model so loaders can stay uint8.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class SmartIQA(nn.Module):
    """Backbone -> HyperIQA head -> per-image target MLP -> one score per patch.

    ``forward`` takes a float batch (B, 3, H, W) in [0, 1] (or uint8, converted here) and returns (B,)
    scores on the dataset's scale. ``score_shift``/``score_scale`` buffers map the network's
    standardised output back to that scale; they are set from the training labels and saved with the
    weights, so a checkpoint predicts in its dataset's units.

    The arguments are the architecture keys (:class:`~swiniqa.config.ModelConfig`, kept as ``model_config``),
    timm-style, plus whether to load ImageNet weights; build one with :func:`build_model`.
    """

    def __init__(self, *, backbone: str, model_size: str, patch_size: int, multiscale: bool, attention: bool,
                 drop_path: float, dropout: float, lda_out: int, hyper_in_channels: int, target_in: int,
                 target_hidden: tuple[int, ...], feature_size: int, pretrained: bool = False,
                 pretrained_path: Optional[str] = None):
        super().__init__()
        self.model_config = ModelConfig(
            backbone=backbone, model_size=model_size, patch_size=patch_size, multiscale=multiscale,
            attention=attention, drop_path=drop_path, dropout=dropout, lda_out=lda_out,
            hyper_in_channels=hyper_in_channels, target_in=target_in, target_hidden=tuple(target_hidden),
            feature_size=feature_size)
        self.backbone = create_backbone(backbone, model_size, patch_size, drop_path, pretrained, pretrained_path)
        self.head = HyperHead(
            self.backbone.channels, self.backbone.reductions,
            reduction=reduction_widths(backbone, self.backbone.channels[3]), patch_size=patch_size,
            multiscale=multiscale, attention=attention, feature_size=feature_size, lda_out=lda_out,
            hyper_in_channels=hyper_in_channels, target_in=target_in, target_hidden=tuple(target_hidden),
            dropout=dropout)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        # (x/255 - mean)/std folded into one multiply-subtract on the uint8 batch
        self.register_buffer("_in_scale", 1.0 / (255.0 * self.std), persistent=False)
        self.register_buffer("_in_bias", self.mean / self.std, persistent=False)
        self.register_buffer("score_shift", torch.zeros(()))
        self.register_buffer("score_scale", torch.ones(()))

    def set_label_scale(self, shift: float, scale: float) -> None:
        self.score_shift.fill_(float(shift))
        self.score_scale.fill_(float(scale) if scale > 0 else 1.0)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            return x.float().mul_(self._in_scale).sub_(self._in_bias)
        return (x - self.mean) / self.std

    def forward_raw(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised scores (what the loss sees)."""
        feats = self.backbone(self.normalise(x))
        target_in, weights, biases = self.head(feats)
        return target_forward(target_in, weights, biases)

    def forward(self, x: torch.Tensor, raw: bool = False) -> torch.Tensor:
        """Scores on the dataset's scale; ``raw=True`` gives the standardised output the loss sees
        (a keyword so it passes through DDP's wrapper)."""
        y = self.forward_raw(x)
        return y if raw else y * self.score_scale + self.score_shift

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone, head) parameters: the head (LDA heads included) trains at lr x lr_ratio."""
        return list(self.backbone.parameters()), list(self.head.parameters())


def build_model(cfg: Union[ModelConfig, TrainConfig], *, pretrained: Optional[bool] = None,
                pretrained_path: Optional[str] = None) -> SmartIQA:
    """Build the model a config describes (timm-style factory).

    Args:
        cfg: the architecture; a run's ``TrainConfig`` is accepted too (its architecture keys are used, and
            its ``pretrained``/``pretrained_path`` unless given here).
        pretrained: load ImageNet weights into the backbone (default: False for a ModelConfig).
        pretrained_path: a local weights file for offline clusters.
    Returns:
        The model, randomly initialised apart from pretrained backbone weights.
    Raises:
        ConfigError, CheckpointError: pretrained weights that are unavailable or do not fit.
    """
    if isinstance(cfg, TrainConfig):
        pretrained = cfg.pretrained if pretrained is None else pretrained
        pretrained_path = pretrained_path or cfg.pretrained_path
        cfg = cfg.model_config()
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"build_model takes a ModelConfig or TrainConfig, not {type(cfg).__name__}")
    return SmartIQA(**{k: getattr(cfg, k) for k in cfg.to_dict()}, pretrained=bool(pretrained),
                    pretrained_path=pretrained_path)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model under DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers, in any
    nesting, so its ``state_dict`` carries the model's own key names."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
