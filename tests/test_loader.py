import os

import numpy as np
import pytest
import torch
from PIL import Image

from swiniqa.data.loader import EvalPatches, ImageCache, TrainPatches, fixed_crop_positions, random_crops
from swiniqa.data.records import Record


@pytest.fixture()
def flat_records(tmp_path):
    """Images whose every pixel encodes their index, so each patch names its source."""
    recs = []
    for i in range(30):
        p = tmp_path / f"{i}.png"
        Image.fromarray(np.full((140, 150, 3), i * 8, np.uint8)).save(p)
        recs.append(Record(str(p), float(i * 8), f"g{i}"))
    return recs


def test_train_batches_pair_each_patch_with_its_own_score(flat_records):
    tp = TrainPatches(flat_records, patch_size=128, patches_per_image=3, batch_size=8, seed=0,
                      cache=ImageCache(min_side=128))
    seen = 0
    for x, y, *_ in tp.epoch(0):
        assert x.dtype == torch.uint8 and x.shape[1:] == (3, 128, 128)
        assert torch.equal(x[:, 0, 0, 0].float(), y)
        seen += len(y)
    assert seen == len(tp) * 8 == (30 * 3 // 8) * 8


def test_eval_crops_are_distinct_fixed_and_cover_every_image(flat_records):
    pos = fixed_crop_positions(300, 400, 20, 224, seed=5)
    assert len(set(pos)) == 20 and pos == fixed_crop_positions(300, 400, 20, 224, seed=5)
    assert fixed_crop_positions(224, 224, 20, 224, seed=5) == [(0, 0)]  # only one position exists
    ev = EvalPatches(flat_records, patch_size=128, patches_per_image=4, batch_size=16, seed=0,
                     cache=ImageCache(min_side=128))
    owners = torch.cat([o for _, o in ev])
    assert sorted(set(owners.tolist())) == list(range(30))
    assert all((owners == i).sum() == 4 for i in range(30))


def _coordinate_image() -> np.ndarray:
    """40 x 50 RGB image whose pixel (y, x) encodes y * 50 + x in its R and G channels."""
    img = np.arange(40 * 50, dtype=np.int64).reshape(40, 50)
    return np.stack([img % 256, img // 256, np.zeros_like(img)], -1).astype(np.uint8)


def _assert_uniform_crops_and_flips(crops: np.ndarray) -> None:
    """(N, 32, 32, 3) crops of the coordinate image: every position about equally likely, p(flip) = 0.5."""
    def value(col):
        return crops[:, 0, col, 0].astype(int) + 256 * crops[:, 0, col, 1].astype(int)

    vals = value(0)
    ys, xs = vals // 50, vals % 50
    flipped = vals > value(1)
    xs = np.where(flipped, xs - 31, xs)
    assert abs(flipped.mean() - 0.5) < 0.03
    assert ys.min() == 0 and ys.max() == 8 and xs.min() == 0 and xs.max() == 18
    counts = np.bincount(ys * 19 + xs, minlength=9 * 19)
    assert counts.min() > 0 and counts.max() < 3 * counts.mean()


def test_random_crops_match_uniform_crop_and_flip_statistics():
    """Same sample distribution as torchvision's RandomCrop + RandomHorizontalFlip."""
    _assert_uniform_crops_and_flips(random_crops(_coordinate_image(), 4000, 32, np.random.default_rng(0), hflip=True))


def test_train_batches_have_the_naive_pipelines_crop_and_flip_statistics(tmp_path):
    """What training actually sees (plan, shuffle, cut per batch, flip in torch) vs torchvision's
    RandomCrop(32) + RandomHorizontalFlip on the same image: both uniform over the same positions."""
    import torchvision.transforms.v2 as T

    img = _coordinate_image()
    path = tmp_path / "coords.png"
    Image.fromarray(img).save(path)
    recs = [Record(str(path), float(i), f"g{i}") for i in range(40)]
    tp = TrainPatches(recs, patch_size=32, patches_per_image=100, batch_size=50, seed=3,
                      cache=ImageCache(min_side=32))
    ours = np.concatenate([b.patches.permute(0, 2, 3, 1).numpy() for b in tp.epoch(0)])
    assert len(ours) == 4000
    _assert_uniform_crops_and_flips(ours)
    torch.manual_seed(0)
    naive = T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(32)])
    t = torch.from_numpy(img).permute(2, 0, 1)
    _assert_uniform_crops_and_flips(np.stack([naive(t).permute(1, 2, 0).numpy() for _ in range(4000)]))


def test_cache_respects_its_budget(flat_records):
    c = ImageCache(min_side=128, budget_bytes=140 * 150 * 3 * 2)
    for r in flat_records[:5]:
        c.get(r.path)
    assert len(c._store) == 2


@pytest.mark.core
@pytest.mark.parametrize("world", [2, 3, 5])
def test_ranks_shares_partition_each_global_batch_of_the_one_worker_plan(flat_records, world):
    """Worker-count invariance: with ``world`` ranks the epoch has the same optimizer steps, and the ranks'
    shares of each step together hold exactly the patches one worker's batch holds (same image, crop,
    flip), each rank within one patch of the others; no patch is trained twice or dropped."""
    cache = ImageCache(min_side=32)
    kw = dict(patch_size=32, patches_per_image=3, batch_size=8, seed=4, cache=cache, content_aug=True)
    one = TrainPatches(flat_records, **kw)
    ranks = [TrainPatches(flat_records, rank=r, world=world, **kw) for r in range(world)]
    assert {len(t) for t in ranks} == {len(one)} == {30 * 3 // 8}
    for ep in (0, 1):
        whole = list(one.epoch(ep))
        shares = list(zip(*[t.epoch(ep) for t in ranks]))
        assert len(shares) == len(whole) == len(one)
        for batch, parts in zip(whole, shares):
            sizes = [len(p.scores) for p in parts]
            assert sum(sizes) == batch.total == 8 and max(sizes) - min(sizes) <= 1
            assert all(p.sizes == tuple(sizes) and p.total == 8 for p in parts)
            # the same multiset of (pixels, score, jitter draws): compare sorted rows independently of order
            def rows(ps, ys, js):
                return sorted(zip([bytes(x.contiguous().numpy()) for x in ps], ys.tolist(), js.numpy().round(6).tolist()))
            got = rows(torch.cat([p.patches for p in parts]), torch.cat([p.scores for p in parts]),
                       torch.cat([p.jitter for p in parts]))
            assert got == rows(batch.patches, batch.scores, batch.jitter)
            # each share says where its patches sit in the global batch (the dropout masks' rows)
            assert batch.positions.tolist() == list(range(8))
            assert sorted(torch.cat([p.positions for p in parts]).tolist()) == list(range(8))
            for p in parts:
                assert torch.equal(p.patches, batch.patches[p.positions])
                assert torch.equal(p.jitter, batch.jitter[p.positions])


@pytest.mark.core
def test_a_global_batch_smaller_than_the_workers_is_refused(flat_records):
    with pytest.raises(ValueError, match="cannot be split over 9 workers"):
        TrainPatches(flat_records[:2], patch_size=32, patches_per_image=2, batch_size=8, seed=0,
                     cache=ImageCache(min_side=32), rank=0, world=9)
