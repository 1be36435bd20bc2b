"""Decoding images to uint8 RGB arrays, resized once, ready for cropping.

One function for every path that reads pixels (training, evaluation, prediction, data check) so
they all accept and refuse the same files.

Accepted: any format Pillow identifies by its content (a PNG named ``.jpg`` is fine), grayscale,
palette, alpha (composited on white), CMYK, 16-bit and float images (scaled to 8 bits), EXIF
orientation (applied). Refused with :class:`DataError` naming the file: missing, empty, not an
image, truncated or otherwise undecodable files, and images above ``max_image_pixels``. Truncation is
detected because Pillow's default ``ImageFile.LOAD_TRUNCATED_IMAGES = False`` is left alone. Pillow's
``DecompressionBombWarning`` is silenced (our limit refuses those images by name instead), and its
``MAX_IMAGE_PIXELS`` is raised only by an explicit :func:`set_max_image_pixels`.
"""

from __future__ import annotations

import os
import warnings
from typing import Optional

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from swiniqa.errors import DataError

_EXIF_ORIENTATION = 0x0112
#: Pillow's decompression-bomb limit when swiniqa was imported: the default ``max_image_pixels``.
PIL_DEFAULT_MAX_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
#: Largest image decoded (``max_image_pixels``); larger ones are refused by name, not with a raw warning.
_max_pixels = int(os.environ.get("SWINIQA_MAX_IMAGE_PIXELS") or 0) or PIL_DEFAULT_MAX_PIXELS
# Our own limit replaces Pillow's warning between 1x and 2x its limit (it names the file and the key).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def set_max_image_pixels(n: int) -> int:
    """Decode images up to ``n`` pixels (0 = Pillow's default); returns the limit in force.

    Pillow's own hard limit (2x its ``MAX_IMAGE_PIXELS``) is raised to match when ``n`` exceeds it. The
    value is also put in ``SWINIQA_MAX_IMAGE_PIXELS`` so processes started later (local Ray workers) inherit it.
    """
    global _max_pixels
    _max_pixels = int(n) if n and int(n) > 0 else PIL_DEFAULT_MAX_PIXELS
    Image.MAX_IMAGE_PIXELS = max(PIL_DEFAULT_MAX_PIXELS, _max_pixels)
    os.environ["SWINIQA_MAX_IMAGE_PIXELS"] = str(_max_pixels)
    return _max_pixels


def _too_large(w: int, h: int) -> str:
    return (f"{w}x{h} = {w * h / 1e6:.1f} MP is above max_image_pixels={_max_pixels} (a decompression-bomb "
            f"guard); if the image is genuine, allow it with --max-image-pixels {w * h} (config key max_image_pixels)")


def target_size(w: int, h: int, resize: Optional[tuple[int, int]], resize_short: Optional[int],
                min_side: int) -> tuple[int, int]:
    """(width, height) after resizing: fixed (h, w), or shorter side = ``resize_short``; images whose
    shorter side is below ``min_side`` (the patch size) are scaled up to it."""
    if resize_short:
        s = resize_short / min(w, h)
        w, h = max(1, round(w * s)), max(1, round(h * s))
    elif resize:
        h, w = resize
    if min_side and min(w, h) < min_side:
        s = min_side / min(w, h)
        w, h = max(min_side, round(w * s)), max(min_side, round(h * s))
    return w, h


def image_error(path: str, why: str) -> DataError:
    """A :class:`DataError` for an image, with ``.path`` and ``.why`` attributes for reports."""
    err = DataError(f"cannot decode image {path}: {why}")
    err.path, err.why = path, why  # type: ignore[attr-defined]
    return err


def load_rgb(path: str, resize: Optional[tuple[int, int]] = None, resize_short: Optional[int] = None,
             min_side: int = 1) -> np.ndarray:
    """Decode ``path`` to an (H, W, 3) uint8 array, EXIF-oriented, resized as asked.

    ``resize`` is (height, width); ``resize_short`` scales the shorter side to that many pixels;
    images whose shorter side ends below ``min_side`` are scaled up to it. JPEGs are decoded with
    DCT scaling (``draft``) when that lands at or above the target size.
    Raises :class:`DataError` naming the file when it cannot be decoded.
    """
    return decode_image(path, resize, resize_short, min_side)[0]


def decode_image(path: str, resize: Optional[tuple[int, int]] = None, resize_short: Optional[int] = None,
                 min_side: int = 1) -> tuple[np.ndarray, tuple[int, int]]:
    """Like :func:`load_rgb` but also returns the oriented size (width, height) before resizing."""
    path = os.fspath(path)
    try:
        if os.path.getsize(path) == 0:
            raise image_error(path, "file is empty (0 bytes)")
    except FileNotFoundError:
        err = DataError(f"image not found: {path}")
        err.path, err.why = path, "file not found"  # type: ignore[attr-defined]
        raise err from None
    except OSError as e:
        raise image_error(path, f"cannot read file ({e.strerror or e})") from None
    if os.path.isdir(path):
        raise image_error(path, "is a directory, not an image file")
    try:
        with Image.open(path) as im:
            orient = _orientation(im)
            w0, h0 = im.size
            if w0 * h0 > _max_pixels:
                raise image_error(path, _too_large(w0, h0))
            if orient in (5, 6, 7, 8):
                w0, h0 = h0, w0
            tw, th = target_size(w0, h0, resize, resize_short, min_side)
            if im.format == "JPEG" and im.mode in ("RGB", "L", "CMYK", "YCbCr"):
                # draft() keeps the decoded size >= the requested one, in stored (unrotated) axes.
                dw, dh = (th, tw) if orient in (5, 6, 7, 8) else (tw, th)
                im.draft("RGB", (dw, dh))
            im.load()  # decodes fully: truncated/corrupt data raises here
            if orient != 1:
                try:
                    im = ImageOps.exif_transpose(im)
                except Exception:  # noqa: BLE001 - a broken EXIF block must not reject the pixels
                    pass
            im = to_rgb(im)
            if im.size != (tw, th):
                im = im.resize((tw, th), Image.BILINEAR, reducing_gap=None)
            arr = np.asarray(im, dtype=np.uint8)
    except DataError:
        raise
    except UnidentifiedImageError:
        raise image_error(path, "not an image file (format not recognised)") from None
    except Image.DecompressionBombError as e:
        raise image_error(path, f"image too large ({e}); allow it with --max-image-pixels N") from None
    except Exception as e:  # noqa: BLE001 - PIL raises many types for broken files
        msg = str(e).splitlines()[0] if str(e) else ""
        if "truncated" in msg or "incomplete" in msg.lower():
            why = "truncated: the image data ends before the picture does; copy or upload the whole file again"
        else:
            why = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
        raise image_error(path, why) from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise image_error(path, f"decoded to shape {arr.shape}, expected H x W x 3")
    return np.ascontiguousarray(arr), (w0, h0)


def _orientation(im: Image.Image) -> int:
    """EXIF orientation 1..8 (1 when absent or unreadable)."""
    try:
        o = int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - corrupt EXIF: treat as unrotated
        return 1
    return o if 1 <= o <= 8 else 1


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; alpha is composited on white, 16-bit/float scaled to 8-bit."""
    if im.mode == "RGB":
        return im
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if a.ndim != 2:
            raise DataError(f"unsupported {im.mode} image layout {a.shape}")
        if im.mode.startswith("I;16"):
            hi = 65535.0
        elif im.mode == "F" and np.nanmax(a, initial=0.0) <= 1.0:
            hi = 1.0
        else:  # "I" (32-bit; Pillow uses it for some 16-bit files) or float in 0..255/65535
            hi = 65535.0 if np.nanmax(a, initial=0.0) > 255 else 255.0
        a = np.nan_to_num(a, nan=0.0)
        return Image.fromarray(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") \
            or (im.mode in ("P", "L") and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, im).convert("RGB")
    if im.mode == "1":
        return im.convert("L").convert("RGB")
    return im.convert("RGB")
