"""Independent oracles for the numbers a user reads (not a test module).

Each helper computes an expected value by a route that does not call the code under test: an image's
score is the mean of the model's raw outputs on crops cut here, one crop per forward pass, at
``fixed_crop_positions`` (the promised positions), with the crop seed derived here from the file's bytes
(``zlib.crc32``) or the record's index; metrics come from scipy directly. Shared by ``test_oracles.py``,
``test_serve.py`` and ``test_export.py``.
"""

from __future__ import annotations

import zlib
from typing import Callable, Optional, Sequence

import numpy as np
import torch

#: Scoring a crop alone or inside a batch moves the last float bits; measured below 2e-5 on nano models.
ATOL = 2e-4


def content_seed_by_hand(seed: int, path: str) -> int:
    """README: the crops are seeded by the file's *bytes* (CRC-32 of the whole file)."""
    with open(path, "rb") as f:
        crc = zlib.crc32(f.read())
    return (seed * 1_000_003 + crc) % (1 << 63)


def index_seed_by_hand(seed: int, index: int) -> int:
    """A split's (or a dataset's) record ``index`` gets crops seeded by ``seed`` and its position."""
    return seed * 1_000_003 + index


def decoded(path: str, patch: int, resize=None, resize_short: Optional[int] = None) -> np.ndarray:
    from swiniqa.data.images import load_rgb

    return load_rgb(path, resize, resize_short, patch)


def torch_forward(model: torch.nn.Module) -> Callable[[np.ndarray], float]:
    """Raw score of one (P, P, 3) uint8 crop, alone in its batch."""
    model = model.eval()

    @torch.no_grad()
    def run(crop: np.ndarray) -> float:
        x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].contiguous()
        return float(model(x).float()[0])

    return run


def crop_outputs(forward: Callable[[np.ndarray], float], img: np.ndarray, n: int, patch: int, seed: int
                 ) -> np.ndarray:
    """The model's output on each of the image's ``n`` distinct crops, cut here one by one."""
    from swiniqa.data.loader import fixed_crop_positions

    h, w = img.shape[:2]
    pos = fixed_crop_positions(h, w, n, patch, seed)
    assert len(set(pos)) == len(pos) == min(n, (h - patch + 1) * (w - patch + 1)), pos  # distinct, as promised
    assert all(0 <= y <= h - patch and 0 <= x <= w - patch for y, x in pos)
    return np.array([forward(img[y:y + patch, x:x + patch]) for y, x in pos], dtype=np.float64)


def image_score(forward, img: np.ndarray, n: int, patch: int, seed: int) -> float:
    """README: an image's score is the mean over its ``n`` distinct fixed crops."""
    return float(crop_outputs(forward, img, n, patch, seed).mean())


def file_scores(model_or_forward, paths: Sequence[str], n: int, patch: int, seed: int, resize=None,
                resize_short: Optional[int] = None) -> list[float]:
    """predict / score / serve: each file's mean over crops seeded by its bytes."""
    fwd = model_or_forward if not isinstance(model_or_forward, torch.nn.Module) else torch_forward(model_or_forward)
    return [image_score(fwd, decoded(p, patch, resize, resize_short), n, patch, content_seed_by_hand(seed, p))
            for p in paths]


def record_scores(model, paths: Sequence[str], n: int, patch: int, seed: int, resize=None,
                  resize_short: Optional[int] = None) -> list[float]:
    """eval / validation / test: record ``i``'s mean over crops seeded by ``seed`` and ``i``."""
    fwd = torch_forward(model)
    return [image_score(fwd, decoded(p, patch, resize, resize_short), n, patch, index_seed_by_hand(seed, i))
            for i, p in enumerate(paths)]


def spread_of_crops(model, paths: Sequence[str], n: int, patch: int, seed: int) -> float:
    """Smallest (max - min) of the crop outputs over the images: the test's sensitivity to the averaging
    (a mean that took one crop instead would move the score by about this much)."""
    fwd = torch_forward(model)
    out = []
    for p in paths:
        c = crop_outputs(fwd, decoded(p, patch), n, patch, content_seed_by_hand(seed, p))
        out.append(float(c.max() - c.min()))
    return min(out)


def scipy_metrics(pred: Sequence[float], mos: Sequence[float]) -> dict[str, float]:
    from scipy import stats

    p, m = np.asarray(pred, np.float64), np.asarray(mos, np.float64)
    return {"srcc": float(stats.spearmanr(p, m)[0]), "plcc": float(stats.pearsonr(p, m)[0]),
            "krcc": float(stats.kendalltau(p, m)[0]), "rmse": float(np.sqrt(np.mean((p - m) ** 2)))}


def write_checkpoint(*args, **kwargs):
    """The checkpoint writer, wherever this version keeps it (it moved out of ``swiniqa.training``)."""
    try:
        from swiniqa.checkpoints import write_checkpoint as write
    except ImportError:
        from swiniqa.training.checkpoint import write_checkpoint as write
    return write(*args, **kwargs)


def load_model(*args, **kwargs):
    try:
        from swiniqa.models.loading import load_model as load
    except ImportError:
        from swiniqa.training.checkpoint import load_model as load
    return load(*args, **kwargs)
