"""Tiny copies of the official IQA release layouts (see shared DATASETS.md), for reader and data-check tests.

``make_fixtures(out_dir, n=6)`` writes ``koniq10k``, ``spaq``, ``kadid10k``, ``agiqa3k``, ``livec`` and
``tid2013`` under ``out_dir`` with the exact file names, headers, sheets and .mat variables of the
releases, and small real images whose degradation (blur + noise) tracks the score, so a model or
metric has something to rank. Returns ``{name: root}``. Deterministic.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = (320, 240)  # width, height: landscape, above the 224 patch size


def make_image(seed: int, quality: float, size: tuple[int, int] = SIZE) -> Image.Image:
    """A deterministic synthetic photo-like image of content ``seed``; ``quality`` in [0, 1] (1 = clean)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([(xx / w) * 200 * rng.random() + 30, (yy / h) * 200 * rng.random() + 30,
                     ((xx + yy) / (w + h)) * 200 * rng.random() + 30], axis=-1)
    im = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        x1, y1 = x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([x0, y0, x1, y1], fill=color)
    q = float(np.clip(quality, 0.0, 1.0))
    if q < 1.0:
        im = im.filter(ImageFilter.GaussianBlur(radius=(1.0 - q) * 4.0))
        noise = rng.normal(0.0, (1.0 - q) * 40.0, (h, w, 3))
        im = Image.fromarray((np.asarray(im, dtype=np.float32) + noise).clip(0, 255).astype(np.uint8))
    return im


def _qualities(n: int, seed: int) -> np.ndarray:
    """n distinct qualities in (0.05, 0.95), shuffled."""
    q = np.linspace(0.05, 0.95, n)
    np.random.default_rng(seed).shuffle(q)
    return q


def _koniq(root: Path, n: int) -> dict:
    img_dir = root / "1024x768"
    img_dir.mkdir(parents=True)
    q = _qualities(n, 1)
    names = sorted(f"{10004473376 + 7919 * i}.jpg" for i in range(n))
    sets = ["training"] * n
    if n >= 3:
        sets[-2], sets[-1] = "validation", "test"
    with open(root / "koniq10k_scores_and_distributions.csv", "w", newline="") as f, \
            open(root / "koniq10k_distributions_sets.csv", "w", newline="") as g:
        a, b = csv.writer(f), csv.writer(g)
        a.writerow(["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "MOS_zscore"])
        b.writerow(["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "set"])
        for i, name in enumerate(names):
            mos = 1.2 + 3.0 * q[i]
            z = 27.82 * mos - 29.23
            counts = np.random.default_rng(i).multinomial(120, np.ones(5) / 5)
            a.writerow([name, *counts.tolist(), 120, f"{mos:.6f}", "0.6", f"{z:.6f}"])
            b.writerow([name, *[f"{c / 120:.4f}" for c in counts], 120, f"{z:.6f}", "0.6", sets[i]])
            make_image(100 + i, q[i]).save(img_dir / name, "JPEG", quality=90)
    return {"images": n, "score": "MOS_zscore", "sets": {s: sets.count(s) for s in set(sets)}}


def _spaq(root: Path, n: int) -> dict:
    import openpyxl

    (root / "Annotations").mkdir(parents=True)
    (root / "TestImage").mkdir()
    q = _qualities(n, 2)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(["Image name", "MOS", "Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness"])
    for i in range(n):
        name = f"{i + 1:05d}.jpg"
        mos = round(5 + 90 * q[i], 2)
        ws.append([name, mos, 50.0, 50.0, 50.0, mos, mos])
        make_image(200 + i, q[i]).save(root / "TestImage" / name, "JPEG", quality=90)
    wb.save(root / "Annotations" / "MOS and Image attribute scores.xlsx")
    return {"images": n, "score": "MOS"}


def _kadid(root: Path, n: int) -> dict:
    img_dir = root / "images"
    img_dir.mkdir(parents=True)
    n_refs = max(2, -(-n // 3))
    for r in range(1, n_refs + 1):
        make_image(300 + r, 1.0).save(img_dir / f"I{r:02d}.png")
    q = _qualities(n, 3)
    with open(root / "dmos.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dist_img", "ref_img", "dmos", "var"])
        for i in range(n):
            r, k = i % n_refs + 1, i // n_refs
            name = f"I{r:02d}_{k % 25 + 1:02d}_{k // 25 + 1:02d}.png"
            w.writerow([name, f"I{r:02d}.png", f"{1.0 + 3.9 * q[i]:.2f}", "0.496"])
            make_image(300 + r, q[i]).save(img_dir / name)
    return {"images": n, "refs": n_refs, "score": "dmos"}


def _agiqa(root: Path, n: int, image_dir: str = "images") -> dict:
    img_dir = root / image_dir if image_dir else root
    img_dir.mkdir(parents=True, exist_ok=True)
    q = _qualities(n, 4)
    gens = ["AttnGAN_normal", "DALLE2_lowstep", "glide_highcorr", "midjourney_normal", "sd1.5_lowcorr", "xl2.2_normal"]
    with open(root / "data.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(["name", "prompt", "adj1", "adj2", "style", "mos_quality", "std_quality", "mos_align", "std_align"])
        for i in range(n):
            name = f"{gens[i % len(gens)]}_{i:03d}.jpg"
            prompt = "a cat sitting on a sofa, anime style" if i % 2 == 0 else "a lighthouse at dusk"
            style = "anime style" if i % 2 == 0 else ""
            w.writerow([name, prompt, "", "", style, f"{0.2 + 4.2 * q[i]:.4f}", "0.5", "3.1", "0.4"])
            make_image(400 + i, q[i]).save(img_dir / name, "JPEG", quality=90)
    return {"images": n, "score": "mos_quality", "image_dir": image_dir}


def _livec(root: Path, n: int) -> dict:
    from scipy.io import savemat

    data, imgs = root / "Data", root / "Images"
    (imgs / "trainingImages").mkdir(parents=True)
    data.mkdir()
    names, mos = [], []
    for t in range(1, 8):
        names.append(f"t{t}.bmp")
        mos.append(50.0 + t)
        make_image(500 + t, 0.8, (200, 200)).save(imgs / "trainingImages" / f"t{t}.bmp")
    q = _qualities(n, 5)
    for i in range(n):
        name = f"{i + 3}.bmp" if i % 2 == 0 else f"{i + 3}.JPG"
        names.append(name)
        mos.append(round(5.0 + 85.0 * q[i], 4))
        im = make_image(510 + i, q[i], (250, 250))
        im.save(imgs / name, "BMP" if name.endswith(".bmp") else "JPEG")
    cell = np.empty((len(names), 1), dtype=object)
    for i, nm in enumerate(names):
        cell[i, 0] = nm
    savemat(data / "AllImages_release.mat", {"AllImages_release": cell})
    savemat(data / "AllMOS_release.mat", {"AllMOS_release": np.array([mos], dtype=np.float64)})
    savemat(data / "AllStdDev_release.mat", {"AllStdDev_release": np.full((1, len(names)), 15.0)})
    return {"images": n, "training_entries": 7, "score": "AllMOS_release"}


def _tid2013(root: Path, n: int) -> dict:
    ref_dir, dist_dir = root / "reference_images", root / "distorted_images"
    ref_dir.mkdir(parents=True)
    dist_dir.mkdir()
    n_refs = max(2, -(-n // 3))
    for r in range(1, n_refs + 1):
        make_image(600 + r, 1.0).save(ref_dir / (f"I{r:02d}.BMP" if r < 25 else f"i{r:02d}.bmp"), "BMP")
    q = _qualities(n, 6)
    lines = []
    for i in range(n):
        r, k = i % n_refs + 1, i // n_refs
        name = f"i{r:02d}_{k % 24 + 1:02d}_{k // 24 + 1}.bmp"
        lines.append(f"{0.3 + 6.8 * q[i]:.5f} {name}")
        on_disk = name if i != n - 1 else "I" + name[1:-4] + ".BMP"  # some copies spell names upper-case
        make_image(600 + r, q[i]).save(dist_dir / on_disk, "BMP")
    (root / "mos_with_names.txt").write_text("\n".join(lines) + "\n")
    (root / "mos.txt").write_text("\n".join(ln.split()[0] for ln in lines) + "\n")
    return {"images": n, "refs": n_refs, "score": "MOS"}


def make_fixtures(out_dir: Union[str, os.PathLike], n: int = 6) -> dict[str, str]:
    """Write every fixture layout under ``out_dir``; return ``{dataset name: root}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    makers = {"koniq10k": _koniq, "spaq": _spaq, "kadid10k": _kadid, "agiqa3k": _agiqa, "livec": _livec,
              "tid2013": _tid2013}
    roots, manifest = {}, {}
    for name, fn in makers.items():
        root = out / name
        manifest[name] = fn(root, n)
        roots[name] = str(root)
    (out / "fixtures_manifest.json").write_text(json.dumps(manifest, indent=1))
    return roots


if __name__ == "__main__":  # python tests/fixtures_datasets.py OUT_DIR [n]
    import sys

    print(json.dumps(make_fixtures(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 6), indent=1))
