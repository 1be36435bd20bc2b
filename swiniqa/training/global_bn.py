"""BatchNorm over the global batch when a step's batch is split across workers.

With one worker, BatchNorm normalises with the statistics of the whole batch; with ``world`` workers each
would see only its share, so the ResNet baselines would train a different model at each worker count.
:func:`synchronise_batchnorm` swaps every ``BatchNorm2d`` for one whose training statistics are summed
over the ranks. torch's ``SyncBatchNorm`` does this on GPUs only (it refuses CPU tensors), so CUDA models
use it and CPU models use :class:`GlobalBatchNorm2d` (gloo all-reduce, autograd-aware).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training-mode mean and variance are those of every rank's inputs together.

    Per channel it all-reduces (sum, sum of squares, count) through an autograd-aware all-reduce, so the
    backward pass also sums the statistics' gradients over the ranks, as one worker's BatchNorm would.
    Evaluation mode and a single rank behave exactly like ``BatchNorm2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        xf = x.float()
        count = torch.full((1,), xf.numel() / c, device=x.device, dtype=torch.float32)
        stats = all_reduce(torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), count]))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
                self.running_mean.mul_(1 - m).add_(mean.detach() * m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1).clamp_min(1)) * m)
                self.num_batches_tracked.add_(1)
        y = (xf - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


def synchronise_batchnorm(model: nn.Module, device: torch.device) -> tuple[nn.Module, int]:
    """Make every BatchNorm of ``model`` use the global batch's statistics (call before DDP wraps it).

    Returns:
        ``(model, count)``: the model (a new root only when the root itself was a BatchNorm) and how
        many layers were swapped (0 for the Swin models, which use LayerNorm).
    """
    if device.type == "cuda":
        before = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        return nn.SyncBatchNorm.convert_sync_batchnorm(model), before
    count = 0

    def swap(module: nn.Module) -> nn.Module:
        nonlocal count
        if type(module) is nn.BatchNorm2d:
            new = GlobalBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                    module.track_running_stats)
            new.load_state_dict(module.state_dict())
            new.train(module.training)
            count += 1
            return new
        for name, child in module.named_children():
            setattr(module, name, swap(child))
        return module

    return swap(model), count
