"""HyperIQA head: LDA heads, multi-scale/attention fusion and the hyper-network.

Shapes follow HyperIQA (Su et al., 2020) with the SMART-IQA extensions; every width below is derived
from the backbone's stage channels and the head sizes passed in (the keys of ``ModelConfig``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LDAHeads(nn.Module):
    """Local-distortion-aware heads: stage maps -> the target network's input vector.

    Stages 1-3: 1x1 conv to ``lda_out * 2**i`` channels, average-pool to a (g, g) grid with
    g = stage size / feature_size (8, 4, 2 at 224), flatten, linear to ``lda_out``. Stage 4: global pool,
    linear to the rest of ``target_in``. Adaptive pooling keeps it valid for other patch sizes.
    """

    def __init__(self, channels: list[int], reductions: list[int], *, patch_size: int, feature_size: int,
                 lda_out: int, target_in: int):
        super().__init__()
        self.grids = [max(1, patch_size // r // feature_size) for r in reductions[:3]]
        self.convs = nn.ModuleList()
        self.fcs = nn.ModuleList()
        for i, (c, g) in enumerate(zip(channels[:3], self.grids)):
            width = lda_out * 2**i
            self.convs.append(nn.Conv2d(c, width, kernel_size=1, bias=False))
            self.fcs.append(nn.Linear(width * g * g, lda_out))
        self.last = nn.Linear(channels[3], target_in - 3 * lda_out)
        _kaiming(self)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        parts = []
        for conv, fc, g, f in zip(self.convs, self.fcs, self.grids, feats[:3]):
            parts.append(fc(F.adaptive_avg_pool2d(conv(f), g).flatten(1)))
        parts.append(self.last(feats[3].mean(dim=(2, 3))))
        return torch.cat(parts, dim=1)


class StageAttention(nn.Module):
    """Softmax weights over the four stages, predicted from the last stage's pooled feature."""

    def __init__(self, last_channels: int, n_stages: int = 4, hidden: int = 256, dropout: float = 0.0):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(last_channels, hidden), nn.ReLU(inplace=True),
                                 nn.Dropout(dropout), nn.Linear(hidden, n_stages))

    def forward(self, last: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.mlp(last.mean(dim=(2, 3))), dim=1)


class HyperNetwork(nn.Module):
    """Semantic feature map -> weights and biases of the per-image target MLP."""

    def __init__(self, in_channels: int, reduction: tuple[int, ...], *, hyper_in_channels: int, feature_size: int,
                 target_in: int, target_hidden: tuple[int, ...], dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        widths = [in_channels, *reduction, hyper_in_channels]
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(a, b, kernel_size=1), nn.ReLU(inplace=True)]
        self.reduce = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        h, s2 = hyper_in_channels, feature_size**2
        self.sizes = [target_in, *target_hidden]
        # Hidden layers: weights from a 3x3 conv over the 7x7 map (reshaped), biases from the pooled vector.
        self.w_convs = nn.ModuleList(
            nn.Conv2d(h, i * o // s2, kernel_size=3, padding=1) for i, o in zip(self.sizes[:-1], self.sizes[1:]))
        self.b_fcs = nn.ModuleList(nn.Linear(h, o) for o in self.sizes[1:])
        # Output layer (hidden[-1] -> 1): weights and bias from the pooled vector.
        self.w_out = nn.Linear(h, self.sizes[-1])
        self.b_out = nn.Linear(h, 1)
        for m in (self.w_convs, self.b_fcs, self.w_out, self.b_out):
            _kaiming(m)

    def forward(self, feat: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        x = self.dropout(self.reduce(feat))
        pooled = x.mean(dim=(2, 3))
        B = x.shape[0]
        weights, biases = [], []
        for conv, fc, i, o in zip(self.w_convs, self.b_fcs, self.sizes[:-1], self.sizes[1:]):
            weights.append(conv(x).reshape(B, o, i))
            biases.append(fc(pooled))
        weights.append(self.w_out(pooled).reshape(B, 1, self.sizes[-1]))
        biases.append(self.b_out(pooled))
        return weights, biases


class HyperHead(nn.Module):
    """Everything after the backbone: fusion, LDA target input and hyper-network.

    ``reduction``: the 1x1-conv widths between the fused map and ``hyper_in_channels``
    (see :func:`reduction_widths`)."""

    def __init__(self, channels: list[int], reductions: list[int], *, reduction: tuple[int, ...], patch_size: int,
                 multiscale: bool, attention: bool, feature_size: int, lda_out: int, hyper_in_channels: int,
                 target_in: int, target_hidden: tuple[int, ...], dropout: float = 0.0):
        super().__init__()
        self.multiscale = multiscale
        self.feature_size = feature_size
        self.lda = LDAHeads(channels, reductions, patch_size=patch_size, feature_size=feature_size, lda_out=lda_out,
                            target_in=target_in)
        self.attention = StageAttention(channels[3], len(channels), dropout=dropout) if attention else None
        in_ch = sum(channels) if multiscale else channels[3]
        self.hyper = HyperNetwork(in_ch, reduction, hyper_in_channels=hyper_in_channels, feature_size=feature_size,
                                  target_in=target_in, target_hidden=tuple(target_hidden), dropout=dropout)

    def fuse(self, feats: list[torch.Tensor]) -> torch.Tensor:
        s = self.feature_size
        if not self.multiscale:
            last = feats[3]
            if self.attention is not None:  # single-scale + attention: re-weights nothing useful; scale only
                last = last * (self.attention(last)[:, 3:4, None, None] * len(feats))
            return F.adaptive_avg_pool2d(last, s) if last.shape[-1] != s else last
        pooled = [F.adaptive_avg_pool2d(f, s) for f in feats]
        if self.attention is not None:
            # x n_stages so uniform weights leave the features' scale unchanged.
            w = self.attention(feats[3]) * len(feats)
            pooled = [p * w[:, i, None, None, None] for i, p in enumerate(pooled)]
        return torch.cat(pooled, dim=1)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        target_in = self.lda(feats)
        weights, biases = self.hyper(self.fuse(feats))
        return target_in, weights, biases


def _kaiming(module: nn.Module) -> None:
    """HyperIQA's init for its randomly initialised parts: Kaiming-normal weights. PyTorch's default
    (uniform, a=sqrt(5)) is ~2.5x smaller and leaves the generated target weights too small to pass
    a useful gradient back through the four target layers."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)


def reduction_widths(backbone: str, last_channels: int) -> tuple[int, ...]:
    """1x1-conv widths between the fused map and ``hyper_in_channels``.

    The two published heads differ: HyperIQA's ResNets halve the last stage twice (2048 -> 1024 -> 512),
    SMART-IQA's Swin uses a fixed C -> 512 -> 256. Keep each so parameter counts match the papers.
    """
    if backbone == "swin":
        return (512, 256)
    return (last_channels // 2, last_channels // 4)
