"""Dropout and drop-path masks are drawn for the global batch: a patch gets the same mask on any rank split.

The oracle is an independent draw with torch (``torch.rand`` of the whole global batch from a generator seeded
alike, call after call) and, for the model, one worker's forward pass of the whole batch: each rank's share,
wherever ``split_batch`` put its patches, must get that draw's rows.
"""

from __future__ import annotations

import pytest
import torch
from timm.layers import DropPath
from torch import nn

from swiniqa import TrainConfig, build_model
from swiniqa.data.loader import split_batch
from swiniqa.training.batch_noise import (GlobalBatchDropout, GlobalBatchDropPath, step_generator, step_masks,
                                          use_global_batch_masks)

G = 7  # global batch; split 4 + 3 over two ranks, and 3 + 2 + 2 over three
KEY = 12345


def _shares(world: int) -> list[torch.Tensor]:
    images = torch.tensor([5, 2, 2, 7, 1, 4, 3])  # record index of each patch: shares are not contiguous
    return [torch.from_numpy(p) for p in split_batch(images.numpy(), world)]


class Probe(nn.Module):
    """A dropout and a drop-path in sequence, like the hyper head after a Swin block."""

    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.3)
        self.path = DropPath(0.2)

    def forward(self, x):
        return self.path(self.drop(x))


@pytest.mark.core
@pytest.mark.parametrize("world", [1, 2, 3])
def test_each_rank_gets_its_rows_of_one_independent_global_draw(world):
    probe = Probe()
    assert use_global_batch_masks(probe) == 2
    gen = torch.Generator().manual_seed(KEY)  # the oracle: the whole batch's draws, in call order
    drop = (torch.rand((G, 5, 3), generator=gen) < 0.7) / 0.7
    path = (torch.rand((G, 1, 1), generator=gen) < 0.8) / 0.8
    expected = drop * path
    parts = _shares(world)
    assert sorted(torch.cat(parts).tolist()) == list(range(G)) and (world == 1 or len(parts[0]) < G)
    for rows in parts:
        with step_masks(step_generator(KEY, torch.device("cpu")), rows, G):
            got = probe(torch.ones(len(rows), 5, 3))
        torch.testing.assert_close(got, expected[rows], rtol=0, atol=0)


@pytest.mark.core
def test_outside_a_step_the_modules_are_the_originals_and_eval_is_identity():
    x = torch.randn(6, 4, 5)
    for ours, theirs in ((GlobalBatchDropout(0.3), nn.Dropout(0.3)), (GlobalBatchDropPath(0.2), DropPath(0.2))):
        outs = []
        for m in (ours, theirs):
            torch.manual_seed(3)
            outs.append(m(x))
        torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)  # train mode, torch's global generator
        assert not torch.equal(outs[0], x)
        with step_masks(step_generator(KEY, torch.device("cpu")), torch.arange(6), 6):
            assert torch.equal(ours.eval()(x), x)


@pytest.mark.core
def test_a_module_that_does_not_see_the_batch_on_dim_0_raises():
    with step_masks(step_generator(KEY, torch.device("cpu")), torch.tensor([0, 2]), 4), \
            pytest.raises(RuntimeError, match="dim 0"):
        GlobalBatchDropout(0.5)(torch.ones(3, 2))


@pytest.fixture(scope="module")
def models():
    """A nano SMART-IQA with the paper's dropout 0.3 and drop-path 0.2, as built and as swapped."""
    cfg = TrainConfig(model_size="nano", pretrained=False, patch_size=64, dropout=0.3, drop_path=0.2)
    torch.manual_seed(0)
    plain = build_model(cfg)
    torch.manual_seed(0)
    swapped = build_model(cfg)
    n = use_global_batch_masks(swapped)
    return plain, swapped, n


@pytest.mark.core
def test_swapping_changes_no_state_and_leaves_no_original_with_a_rate(models):
    plain, swapped, n = models
    a, b = plain.state_dict(), swapped.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)  # checkpoints stay compatible
    originals = [m for m in plain.modules() if (type(m) is nn.Dropout and m.p > 0)
                 or (type(m) is DropPath and m.drop_prob > 0)]
    assert n == len(originals) > 4  # the head's two dropouts and the Swin blocks' drop-paths
    assert not [m for m in swapped.modules() if (type(m) is nn.Dropout and m.p > 0) or type(m) is DropPath]


@pytest.mark.core
def test_rank_shares_of_the_model_equal_rows_of_the_one_worker_forward(models, one_torch_thread):
    """Every dropout and drop-path of the model in train mode: 2 ranks' outputs are the 1-worker rows."""
    _, model, _ = models
    model.train()
    x = torch.rand(G, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        with step_masks(step_generator(KEY, torch.device("cpu")), None, G):
            whole = model(x, raw=True)
        with step_masks(step_generator(KEY + 1, torch.device("cpu")), None, G):
            assert (model(x, raw=True) - whole).abs().max() > 1e-3  # the masks matter at this size
        for rows in _shares(2):
            with step_masks(step_generator(KEY, torch.device("cpu")), rows, G):
                torch.testing.assert_close(model(x[rows], raw=True), whole[rows], rtol=1e-5, atol=1e-5)
