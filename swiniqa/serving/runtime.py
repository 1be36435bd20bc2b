"""One way to cut an image: what ``score`` and ``serve`` share with ``predict``.

    from swiniqa.models.loading import load_scorer
    from swiniqa.serving.runtime import crop_spec, image_crops, crop_scores
    model, cfg = load_scorer("runs/e6/best")            # a checkpoint folder/run folder, or an exported .onnx
    spec = crop_spec(cfg)                                # the checkpoint's preprocessing and test_patches
    scores = crop_scores(model, [image_crops(p, spec) for p in ["a.jpg", "b.png"]])

The pieces are predict's own: images are decoded by :func:`swiniqa.data.images.load_rgb` with the
preprocessing :func:`swiniqa.evaluation.evaluate.preprocessing` picks, cut by
:func:`swiniqa.data.loader.fixed_crops` with the seed :func:`swiniqa.evaluation.inference.content_seed`
derives from the file's bytes, and averaged by :func:`swiniqa.evaluation.inference.mean_scores`. So a
file scored here, by ``score`` on Ray Data, or uploaded to ``serve`` gets predict's score.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class CropSpec:
    """How one image becomes model input: decode size and crops (predict's defaults from the config)."""

    patch_size: int
    patches: int
    resize: Optional[tuple[int, int]]
    resize_short: Optional[int]
    seed: int


def crop_spec(cfg, patches: Optional[int] = None, resize: Any = "default",
              resize_short: Optional[int] = None) -> CropSpec:
    """The :class:`CropSpec` predict uses for a checkpoint of config ``cfg``.

    Args:
        cfg: the checkpoint's :class:`~swiniqa.config.TrainConfig`.
        patches: crops per image (default ``cfg.test_patches``).
        resize, resize_short: overrides, as for ``predict`` (``"default"``: the checkpoint's own).

    Raises:
        DataError: ``patches`` < 1 or a resize below the patch size.
    """
    from swiniqa.errors import DataError
    from swiniqa.evaluation.evaluate import preprocessing

    n = int(patches or cfg.test_patches)
    if n < 1:
        raise DataError(f"patches={n}; give --patches >= 1")
    rs, rshort = preprocessing(cfg, "", resize, resize_short)
    return CropSpec(int(cfg.patch_size), n, tuple(rs) if rs else None, rshort, int(cfg.seed))


def image_crops(path: str, spec: CropSpec) -> np.ndarray:
    """``spec.patches`` fixed crops of the image file ``path``: (patches, P, P, 3) uint8.

    Raises:
        DataError: the file cannot be decoded (``.why`` says why).
    """
    from swiniqa.data.images import load_rgb
    from swiniqa.data.loader import fixed_crops
    from swiniqa.evaluation.inference import content_seed

    img = load_rgb(path, spec.resize, spec.resize_short, spec.patch_size)
    return fixed_crops(img, spec.patches, spec.patch_size, content_seed(spec.seed, path))


def bytes_crops(data: bytes, spec: CropSpec, name: str = "upload") -> np.ndarray:
    """:func:`image_crops` of an in-memory file (an upload, an object-store read): the bytes go to a
    temporary file so decoding and the content seed are exactly a file's.

    Raises:
        DataError: the bytes are not a decodable image; the message names ``name``.
    """
    from swiniqa.errors import DataError

    fd, tmp = tempfile.mkstemp(prefix="swiniqa-", suffix=".img")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            return image_crops(tmp, spec)
        except DataError as e:
            why = getattr(e, "why", None) or str(e)
            what = name if name.startswith("the ") else f"image {name}"  # "the upload" reads as it is
            err = DataError(f"cannot decode {what}: {why}")
            err.path, err.why = name, why  # type: ignore[attr-defined]
            raise err from None
    finally:
        os.unlink(tmp)


def crop_scores(model: torch.nn.Module, crops: Sequence[np.ndarray], device: Optional[str] = None) -> list[float]:
    """Mean score of each image's crops (one forward pass for all of them), in order.

    Args:
        model: a loaded model (:func:`load_scorer`).
        crops: per image, a (patches, P, P, 3) uint8 array (:func:`image_crops`).
        device: where the forward pass runs (default: CUDA when available); bf16 autocast on CUDA as in predict.
    """
    from swiniqa.data.loader import to_tensor
    from swiniqa.evaluation.inference import default_device, mean_scores

    if not crops:
        return []
    dev = default_device(device)
    owner = np.concatenate([np.full(len(c), i) for i, c in enumerate(crops)])
    batch = (to_tensor(np.ascontiguousarray(np.concatenate(crops))), torch.from_numpy(owner))
    means = mean_scores(model.to(dev), [batch], dev, dev.type == "cuda")
    return [float(means[i]) for i in range(len(crops))]


__all__ = ["CropSpec", "crop_spec", "image_crops", "bytes_crops", "crop_scores"]
