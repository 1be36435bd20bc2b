"""The assembled SMART-IQA model and ``build_model``."""

from __future__ import annotations

import torch
from torch import nn

from swiniqa.config import TrainConfig
from swiniqa.models.backbone import create_backbone
from swiniqa.models.hyper import HyperHead
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
    """

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.backbone = create_backbone(cfg)
        self.head = HyperHead(self.backbone.channels, self.backbone.reductions, cfg)
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


def build_model(cfg: TrainConfig) -> SmartIQA:
    """Build the model a config describes (timm-style factory)."""
    return SmartIQA(cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
