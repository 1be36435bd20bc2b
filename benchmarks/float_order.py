#!/usr/bin/env python
"""How far float summation order moves training: one global batch trained as 1 share or as 2 shares.

The DDP sum of 2 workers' gradients is the 1-worker gradient up to float rounding (tests/test_ddp.py: 2e-6).
This measures what the optimiser makes of that rounding over a few steps, in one process (no Ray): the demo
study's model (``swiniqa config --preset demo-tune``) trains the same batches with each batch's gradient
computed whole, or as the sum of two halves (what 2 workers compute), with AdamW or plain SGD. It prints,
per step, the largest weight difference (the attention ``qkv.bias`` apart: its key part has an exactly zero
gradient, so its noise moves nothing) and, at the end, the largest difference of the validation predictions.

    python benchmarks/float_order.py --steps 24 --json                    # AdamW, lr 1e-3
    python benchmarks/float_order.py --steps 24 --optimizer sgd --json    # plain SGD, lr 0.005

Measured on the 2-core dev CPU (2026-12-03): AdamW 8.0e-5 after the first step, 1.2e-2 after 24, validation
predictions 1.7e-2 apart; SGD at lr 0.005 1.2e-7 at every step (predictions 1.0e-6); SGD at lr 0.01 1.2e-3
after 24 (predictions 3.1e-2): the faster the optimiser moves, the faster rounding grows.

Why it matters (docs/cluster.md §8): a trial that changes size mid-run takes the same steps, and AdamW's
normalised update turns the rounding of near-zero gradient entries into whole-lr steps, so whole-run metrics
move like a run on another machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def trajectory(run, batches, shares: int, optimizer: str, lr: float):
    """Weights after each step and the final validation predictions, gradients summed over ``shares``."""
    import torch

    from swiniqa.models import unwrap

    model = unwrap(run.model)
    model.train()
    opt = (torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4) if optimizer == "adamw"
           else torch.optim.SGD(model.parameters(), lr=lr))
    shift, scale = run.label_stats
    weights = []
    for b in batches:
        n = len(b.scores)
        parts = [torch.arange(n)] if shares == 1 else [torch.arange(k, n, shares) for k in range(shares)]
        total = None
        for idx in parts:
            model.zero_grad(set_to_none=True)
            pred = model(b.patches[idx], raw=True)
            y = ((b.scores[idx] - shift) / scale).float()
            (torch.nn.functional.l1_loss(pred.float(), y, reduction="sum") / n).backward()
            grads = [p.grad.clone() for p in model.parameters()]
            total = grads if total is None else [t + g for t, g in zip(total, grads)]
        for p, g in zip(model.parameters(), total):
            p.grad = g
        opt.step()
        weights.append({k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()})
    model.eval()
    with torch.no_grad():
        val = model(torch.cat([b.patches for b in batches[:3]]), raw=True)
    return weights, val


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    ap.add_argument("--lr", type=float, default=None, help="default: 1e-3 (AdamW, the demo's), 0.005 (SGD)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    from swiniqa.config import DEMO_TUNE_OVERRIDES, apply_overrides, preset
    from swiniqa.models import unwrap
    from swiniqa.training.loop import setup
    from swiniqa.training.session import LocalSession
    from swiniqa.training.trainer import worker_input

    torch.set_num_threads(1)
    cfg = apply_overrides(preset("demo"), DEMO_TUNE_OVERRIDES).replace(
        batch_size=args.batch_size, train_patches=4, max_images=24, warmup_epochs=0)
    run = setup(worker_input(cfg, check=False), LocalSession(None))
    start = copy.deepcopy(unwrap(run.model).state_dict())
    batches = []
    epoch = 0
    while len(batches) < args.steps:
        batches += list(run.train.epoch(epoch))
        epoch += 1
    batches = batches[:args.steps]
    lr = args.lr or (1e-3 if args.optimizer == "adamw" else 0.005)
    out = {}
    for shares in (1, 2):
        unwrap(run.model).load_state_dict(start)
        out[shares] = trajectory(run, batches, shares, args.optimizer, lr)
    per_step = [max(float((a[k] - b[k]).abs().max()) for k in a if "qkv.bias" not in k)
                for a, b in zip(out[1][0], out[2][0])]
    result = {"optimizer": args.optimizer, "lr": lr, "batch_size": args.batch_size, "steps": args.steps,
              "max_weight_diff_per_step": [float(f"{d:.3g}") for d in per_step],
              "val_prediction_max_diff": float(f"{float((out[1][1] - out[2][1]).abs().max()):.3g}")}
    if args.json:
        print(json.dumps(result))
    else:
        for i, d in enumerate(per_step, 1):
            print(f"step {i:3d}: max |weights(1 share) - weights(2 shares)| = {d:.3g}")
        print(f"validation predictions: max difference {result['val_prediction_max_diff']:.3g}")


if __name__ == "__main__":
    main()
