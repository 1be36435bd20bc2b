"""Write N photo-like 1024x768 JPEGs (KonIQ-10k's size) for the input-pipeline benchmark.

Content comes from the photographs bundled with scikit-image (no download): each image is a random
crop of a random source photo, rescaled to 1024x768, randomly flipped, colour-shifted and given mild
sensor-like noise, then saved at JPEG quality 90 (4:2:0), so the entropy-coded data and therefore
the decode cost are those of a real camera photo, not of a flat synthetic picture.

    python benchmarks/make_images.py --out /tmp/bench-images --count 64
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

#: Colour photographs (and a few greyscale ones, converted) shipped inside the scikit-image wheel.
SOURCES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg", "ihc.png",
           "motorcycle_left.png", "retina.jpg", "camera.png", "coins.png", "brick.png", "grass.png",
           "gravel.png", "moon.png")
WIDTH, HEIGHT = 1024, 768


def _sources() -> list[Image.Image]:
    import skimage

    d = Path(skimage.__file__).parent / "data"
    out = []
    for name in SOURCES:
        p = d / name
        if p.is_file():
            with Image.open(p) as im:
                out.append(im.convert("RGB"))
    if not out:
        raise SystemExit(f"no source photos found in {d}; is scikit-image installed?")
    return out


def make_image(src: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One 1024x768 photo-like image from a random crop of ``src``."""
    w, h = src.size
    aspect = WIDTH / HEIGHT
    # random crop with the target aspect ratio covering 50-100% of the largest such crop
    cw_max = min(w, int(h * aspect))
    cw = max(16, int(cw_max * rng.uniform(0.5, 1.0)))
    ch = max(12, int(cw / aspect))
    x = int(rng.integers(0, w - cw + 1))
    y = int(rng.integers(0, h - ch + 1))
    im = src.crop((x, y, x + cw, y + ch)).resize((WIDTH, HEIGHT), Image.BICUBIC)
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    a = np.asarray(im, dtype=np.float32)
    a = a * rng.uniform(0.85, 1.15, 3) + rng.uniform(-12, 12, 3)  # per-channel gain/offset
    a = a + rng.normal(0.0, rng.uniform(2.0, 5.0), a.shape)  # sensor-like noise: realistic entropy
    return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8))


def write_images(out: str | os.PathLike, count: int, seed: int = 0, quality: int = 90) -> list[Path]:
    """Write ``count`` JPEGs ``img_00000.jpg``... into ``out`` (existing files of that name are kept)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    srcs = _sources()
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        p = out / f"img_{i:05d}.jpg"
        # draw for every image even when the file exists, so image i is the same whatever count is
        src = srcs[int(rng.integers(len(srcs)))]
        sub = np.random.default_rng([seed, i])
        if not p.is_file():
            make_image(src, sub).save(p, "JPEG", quality=quality, subsampling="4:2:0")
        paths.append(p)
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder to write into (created)")
    ap.add_argument("--count", type=int, default=64, help="number of images (default 64)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quality", type=int, default=90)
    args = ap.parse_args(argv)
    paths = write_images(args.out, args.count, args.seed, args.quality)
    mb = sum(p.stat().st_size for p in paths) / 1e6
    print(f"{len(paths)} images {WIDTH}x{HEIGHT} in {args.out} ({mb:.1f} MB, {mb / max(1, len(paths)) * 1000:.0f} kB each)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
