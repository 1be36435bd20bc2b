"""DDP workers train one model, and the model one worker trains on the same global batches.

Two real Ray Train workers (gloo, on this CPU) run the loop's own ``setup`` and ``train_one_epoch`` for one
epoch of three optimizer steps whose global batches of 7 patches split 4 + 3 over the ranks; each rank saves
its weights. The test then trains the same input in this process on one worker and compares: the ranks must
hold identical weights (DDP's averaged gradients, the same optimizer update), equal to the one-worker
weights within float tolerance. Uneven shares, the ranking term over the whole batch, colour jitter and
content augmentation (Swin), BatchNorm over the global batch (a ResNet) and the paper's dropout 0.3 and
drop-path 0.2 (masks drawn for the whole global batch, each rank keeping its rows) are all in play.

Measured here (2026-12-03, ``pytest -s``): max |2 workers - 1 worker| over every weight after 3 steps
1.2e-7 (Swin, also with dropout and drop-path) and 4.8e-7 (ResNet, BatchNorm running statistics);
``TOLERANCE`` is 4x that. Mutations it was run against (each in a scratch copy): the model not wrapped by
DDP (the ranks' weights differ), each rank's loss not multiplied by the number of ranks (1.1e-2 from one
worker), every rank training the whole global batch (2.4e-5 in a BatchNorm running variance), the ranking
term taken per rank (1.3e-2), BatchNorm statistics per rank instead of global (8.9e-3), dropout and drop-path
drawn per rank from torch's generator seeded with the rank (the loop before ``training/batch_noise.py``:
4.7e-2).
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

from learnable_data import noise_config, write_noise_dataset

#: Largest |difference| allowed between the 2-worker and the 1-worker weights (float32 summation order).
TOLERANCE = 2e-6
SGD_LR = 0.05

CASES = {
    # the model: ranking term over the whole global batch, colour jitter and content augmentation from the plan
    "swin": dict(loss="l1+rank", rank_weight=1.0, color_jitter=True, content_aug=True, patch_size=64),
    # the ResNet baselines' BatchNorm takes the statistics of the whole global batch
    "resnet-bn": dict(backbone="resnet10t", multiscale=False, attention=False, patch_size=64),
    # the paper's dropout and drop-path: masks drawn for the whole global batch, each rank keeps its rows
    "swin-dropout": dict(dropout=0.3, drop_path=0.2, patch_size=64),
}


def _train_one_epoch(inputs: dict, session) -> dict[str, dict[str, torch.Tensor]]:
    from swiniqa.models import unwrap
    from swiniqa.training.loop import setup, train_one_epoch

    out = {}
    for name, inp in inputs.items():
        run = setup(inp, session)
        # Plain SGD instead of the run's AdamW: Adam's first steps move every weight by about lr * sign(grad),
        # so float noise on a near-zero gradient flips a whole lr step (measured: 1.1e-3 at lr 2e-3), and
        # Adam cannot see a gradient's scale (a sum instead of a mean passes). SGD shows both.
        run.opt = torch.optim.SGD([p for g in run.opt.param_groups for p in g["params"]], lr=SGD_LR)
        run.sched = torch.optim.lr_scheduler.LambdaLR(run.opt, lambda step: 1.0)
        train_one_epoch(run, 0)
        out[name] = {k: v.detach().cpu().clone() for k, v in unwrap(run.model).state_dict().items()}
    return out


def _ray_worker(config: dict) -> None:
    from swiniqa.training.session import RaySession

    session = RaySession()
    states = _train_one_epoch(config["inputs"], session)
    torch.save(states, os.path.join(config["out"], f"rank{session.rank}.pt"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from swiniqa.training.trainer import worker_input

    root, _ = write_noise_dataset(tmp_path_factory.mktemp("ddp") / "data", n=24, size=72)
    out = {}
    for name, over in CASES.items():
        cfg = noise_config(root, batch_size=7, train_patches=2, epochs=1, num_workers=2, **over)
        out[name] = worker_input(cfg, check=False)
        n = len(out[name].splits["train"]) * cfg.train_patches
        assert n // 7 >= 3 and 7 % 2 == 1  # at least three steps, shares of 4 and 3 patches
    return out


def test_ddp_ranks_hold_one_model_equal_to_one_worker_on_the_same_global_batches(ray_session, inputs, tmp_path):
    import ray.cloudpickle
    import ray.train
    from ray.train.torch import TorchTrainer

    from swiniqa.training.session import LocalSession

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    trainer = TorchTrainer(_ray_worker, train_loop_config={"inputs": inputs, "out": str(tmp_path)},
                           scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
                           run_config=ray.train.RunConfig(storage_path=str(tmp_path / "ray"), name="ddp-probe"))
    result = trainer.fit()
    assert result.error is None, result.error
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    single = _train_one_epoch(inputs, LocalSession())
    worst = {}
    for name in CASES:
        init = {k: v for k, v in single[name].items()}
        assert ranks[0][name].keys() == init.keys()
        for key, one in init.items():
            a, b = ranks[0][name][key], ranks[1][name][key]
            assert torch.equal(a, b), f"{name}: the ranks' {key} differ: DDP did not average their gradients"
            diff = float((a.double() - one.double()).abs().max()) if one.is_floating_point() else float((a != one).sum())
            assert diff <= TOLERANCE, f"{name}: 2 workers vs 1 worker differ in {key} by {diff:.3g}"
            worst[name] = max(worst.get(name, 0.0), diff)
    print(f"max |2 workers - 1 worker| per case: {worst}")
