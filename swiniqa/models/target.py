"""The per-image target network of HyperIQA, applied to the whole batch at once.

The hyper-network emits, for every image, the weights and biases of a small MLP
(target_in -> 112 -> 56 -> 28 -> 14 -> 1, sigmoid between layers). Instead of building a module per
image (the reference's approach), each layer is one batched matmul: ``y[b] = W[b] @ x[b] + c[b]``.
"""

from __future__ import annotations

import torch


def target_forward(x: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor]) -> torch.Tensor:
    """Apply per-image MLPs. ``x``: (B, I); ``weights[k]``: (B, O_k, I_k); ``biases[k]``: (B, O_k).

    Returns (B,) scores. Sigmoid after every layer but the last.
    """
    h = x.unsqueeze(-1)  # (B, I, 1)
    last = len(weights) - 1
    for k, (w, b) in enumerate(zip(weights, biases)):
        h = torch.baddbmm(b.unsqueeze(-1), w, h)  # (B, O, 1)
        if k != last:
            h = torch.sigmoid(h)
    return h.reshape(h.shape[0])


def target_forward_naive(x: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor]) -> torch.Tensor:
    """Reference implementation: one ``nn.Linear`` per image and layer (for tests and benchmarks)."""
    outs = []
    for i in range(x.shape[0]):
        h = x[i]
        for k, (w, b) in enumerate(zip(weights, biases)):
            layer = torch.nn.Linear(w.shape[2], w.shape[1]).to(x.device, x.dtype)
            with torch.no_grad():
                layer.weight.copy_(w[i])
                layer.bias.copy_(b[i])
            h = layer(h)
            if k != len(weights) - 1:
                h = torch.sigmoid(h)
        outs.append(h)
    return torch.stack(outs).reshape(-1)
