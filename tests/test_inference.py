"""The one inference path (swiniqa.evaluation.inference) and the loop's exported train step. Nano model, no Ray."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from fixtures_datasets import make_image  # noqa: E402

from swiniqa.config import TrainConfig  # noqa: E402
from swiniqa.data.loader import ImageCache  # noqa: E402
from swiniqa.data.records import Record  # noqa: E402
from swiniqa.evaluation.inference import evaluate_split, score_records  # noqa: E402
from swiniqa.models import build_model  # noqa: E402

PATCH = 64


@pytest.fixture(scope="module")
def model_cfg():
    cfg = TrainConfig(model_size="nano", pretrained=False, patch_size=PATCH, resize=None, test_patches=2,
                      dropout=0.0, drop_path=0.0, dataset="csv", batch_size=4)
    torch.manual_seed(0)
    model = build_model(cfg)
    model.set_label_scale(50.0, 20.0)
    return model.eval(), cfg


def test_predict_same_bytes_under_two_names_same_score(tmp_path, model_cfg):
    """A score depends on the pixels, not the file name (crops are seeded by content)."""
    from swiniqa.evaluation.predict import predict_images

    model, cfg = model_cfg
    make_image(7, 0.4, size=(200, 150)).save(tmp_path / "a.png")
    shutil.copy(tmp_path / "a.png", tmp_path / "copy_with_another_name.png")
    make_image(8, 0.9, size=(200, 150)).save(tmp_path / "b.png")
    rows = predict_images((model, cfg), [str(tmp_path / "a.png"), str(tmp_path / "copy_with_another_name.png"),
                                         str(tmp_path / "b.png")], progress=False, device="cpu", patches=1)
    a, copy, b = (r["score"] for r in rows)
    assert copy == pytest.approx(a, rel=1e-6, abs=1e-5)  # batch composition moves the last float bits only
    assert b != pytest.approx(a, rel=1e-6, abs=1e-5)


def test_eval_scores_are_the_training_loops_split_scores(tmp_path, model_cfg):
    """``eval``'s scoring (score_records) and the loop's validation/test (evaluate_split) use the same crops."""
    model, cfg = model_cfg
    records = []
    for i in range(5):
        make_image(20 + i, 0.2 * i, size=(160 + 8 * i, 120)).save(tmp_path / f"i{i}.png")
        records.append(Record(str(tmp_path / f"i{i}.png"), float(10 * i), str(i)))
    cache = ImageCache(None, None, PATCH, budget_bytes=0)
    metrics, pred = evaluate_split(model, records, cfg, cache, torch.device("cpu"))
    again = score_records(model, records, patch_size=PATCH, patches=cfg.test_patches, batch_size=3,
                          device="cpu", seed=cfg.seed, threads=1)
    np.testing.assert_allclose(pred, again, rtol=1e-5)
    assert metrics["n_images"] == 5


def test_train_step_steps_the_schedule_and_uses_rank_loss_and_jitter(model_cfg):
    from swiniqa.data.loader import Batch
    from swiniqa.training.loop import rank_loss, train_step
    from swiniqa.training.optim import make_optimizer, make_schedule

    _, base = model_cfg
    x = torch.randint(0, 256, (4, 3, PATCH, PATCH), dtype=torch.uint8)
    y = torch.tensor([10.0, 80.0, 40.0, 60.0])
    losses = {}
    for name, over in {"l1": {}, "rank": dict(loss="l1+rank", rank_weight=5.0), "jitter": dict(color_jitter=True)
                       }.items():
        cfg = base.replace(warmup_epochs=1, epochs=2, **over)
        torch.manual_seed(1)
        model = build_model(cfg).train()
        model.set_label_scale(50.0, 20.0)
        opt = make_optimizer(*model.param_groups(), cfg, torch.device("cpu"))
        sched = make_schedule(opt, cfg, steps_per_epoch=4)
        lr0 = opt.param_groups[0]["lr"]
        batch = Batch(x, y, torch.rand(4, 3, generator=torch.Generator().manual_seed(3)), 4, (4,))
        losses[name] = float(train_step(model, opt, sched, batch, cfg, torch.device("cpu"), (50.0, 20.0), False))
        assert sched.last_epoch == 1 and opt.param_groups[0]["lr"] > lr0  # warm-up advanced one step
    # rank loss adds a non-negative term; dropout is off, so the l1 part is the same forward pass
    assert losses["rank"] > losses["l1"] and losses["jitter"] != losses["l1"]
    assert float(rank_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))) > 0


def test_unwrap_sees_through_compile_and_ddp_style_wrappers():
    from swiniqa.models import unwrap

    inner = torch.nn.Linear(2, 1)

    class Wrapper(torch.nn.Module):  # DDP keeps the model in ``.module``
        def __init__(self, m):
            super().__init__()
            self.module = m

    assert unwrap(torch.compile(Wrapper(inner))) is inner
    assert unwrap(inner) is inner
    assert list(unwrap(torch.compile(inner)).state_dict()) == ["weight", "bias"]
