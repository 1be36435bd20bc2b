"""Dropout and drop-path masks drawn for the whole global batch, so they do not depend on the worker count.

``batch_size`` is the global batch and each rank trains a share of it (:func:`swiniqa.data.loader.split_batch`).
Masks drawn by each rank for its own share from a rank-seeded generator would give a patch different masks at
1 and at 2 workers, so an elastic run that changes size mid-run would change its optimisation. Here every
rank draws the masks of the *whole* global batch from one generator seeded by (seed, epoch, step) — the same
generator on every rank, consumed identically, call by call — and keeps the rows of its own patches (their
positions in the global batch). A patch's mask is therefore a function of (seed, epoch, step, its position,
the layer) only, and a run resumed mid-epoch draws what the uninterrupted run drew.

:func:`use_global_batch_masks` swaps :class:`GlobalBatchDropout` / :class:`GlobalBatchDropPath` into a built
model (no parameters or buffers: state dict keys unchanged); :func:`step_masks` is the per-step context the
train step runs its forward pass in. Outside that context (evaluation, prediction, export, in-process
inference) the swapped modules are exactly ``nn.Dropout`` and timm's ``DropPath``.

Limits: only drop-outs reached through modules are swapped (timm's fused attention reads ``attn_drop.p`` and
drops inside ``scaled_dot_product_attention``; its rate is 0 in every model here), and a swapped module must
see the batch on dim 0 (checked: a mismatch raises instead of drawing wrong masks). Under ``torch.compile``
each draw is a graph break (dynamo does not trace a ``torch.Generator``); the masks stay the eager ones.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Iterator, Optional, Sequence

import torch
from timm.layers import DropPath
from torch import nn

log = logging.getLogger(__name__)


class _Step:
    """This step's mask source: the shared generator, this rank's rows, the global batch size."""

    def __init__(self, generator: torch.Generator, rows: torch.Tensor, total: int):
        self.generator, self.rows, self.total = generator, rows, total

    def keep_mask(self, x: torch.Tensor, keep: float, per_sample: bool) -> torch.Tensor:
        """Bernoulli(``keep``) mask of the global batch (shape of ``x`` with dim 0 the global batch, or
        ``(total, 1, ..., 1)`` per sample), rows of this rank only, in ``x``'s dtype."""
        if x.shape[0] != len(self.rows):
            raise RuntimeError(f"a global-batch mask for {len(self.rows)} patches met a tensor of shape "
                               f"{tuple(x.shape)}: the module does not see the batch on dim 0")
        shape = (self.total,) + ((1,) * (x.ndim - 1) if per_sample else tuple(x.shape[1:]))
        draw = torch.rand(shape, generator=self.generator, device=x.device, dtype=torch.float32)
        return (draw < keep).index_select(0, self.rows).to(x.dtype)


_local = threading.local()


def _active() -> Optional[_Step]:
    return getattr(_local, "step", None)


@contextlib.contextmanager
def step_masks(generator: Optional[torch.Generator], positions: Optional[Sequence[int]],
               total: int) -> Iterator[None]:
    """Within this context, swapped modules in train mode draw their masks for the ``total`` patches of the
    global batch from ``generator`` and keep rows ``positions`` (this rank's patches; None: all of them).

    ``generator`` None is a no-op (the modules then draw from torch's global generator, like the originals)."""
    if generator is None:
        yield
        return
    rows = torch.arange(total) if positions is None else torch.as_tensor(positions, dtype=torch.int64)
    previous = _active()
    _local.step = _Step(generator, rows.to(generator.device), total)
    try:
        yield
    finally:
        _local.step = previous


def step_generator(key: int, device: torch.device) -> torch.Generator:
    """A generator on ``device`` (the masks are drawn where the activations are, CUDA included) seeded by
    ``key``; the caller derives ``key`` from (seed, epoch, step), never from the rank."""
    return torch.Generator(device=device).manual_seed(key % (1 << 63))


class GlobalBatchDropout(nn.Dropout):
    """``nn.Dropout`` whose training mask, inside :func:`step_masks`, is this rank's rows of the global batch's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        step = _active()
        if step is None or not self.training or self.p == 0:
            return super().forward(x)
        keep = 1.0 - self.p
        mask = step.keep_mask(x, keep, per_sample=False)
        scale = mask.div_(keep) if keep > 0 else mask
        return x.mul_(scale) if self.inplace else x * scale


class GlobalBatchDropPath(DropPath):
    """timm's ``DropPath`` (per-sample, ``scale_by_keep``) whose training mask, inside :func:`step_masks`, is
    this rank's rows of the global batch's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        step = _active()
        if step is None or not self.training or self.drop_prob == 0:
            return super().forward(x)
        keep = 1.0 - self.drop_prob
        mask = step.keep_mask(x, keep, per_sample=True)
        if keep > 0 and self.scale_by_keep:
            mask.div_(keep)
        return x * mask


def use_global_batch_masks(model: nn.Module) -> int:
    """Replace every ``nn.Dropout`` with p > 0 and every timm ``DropPath`` with drop_prob > 0 in ``model``
    (in place, before DDP wrapping or compiling) by its global-batch twin. Returns how many were replaced."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout and child.p > 0:
                new: nn.Module = GlobalBatchDropout(child.p, child.inplace)
            elif type(child) is DropPath and child.drop_prob > 0:
                new = GlobalBatchDropPath(child.drop_prob, child.scale_by_keep)
            else:
                continue
            new.train(child.training)
            setattr(parent, name, new)
            swapped += 1
    log.debug("global-batch masks: %d dropout/drop-path modules replaced", swapped)
    return swapped
