"""Decoding (images.load_rgb) and the data check (check.check_dataset) on broken and awkward files."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from fixtures_datasets import make_fixtures, make_image  # noqa: E402

from swiniqa.data import DatasetInfo, Record, read_dataset  # noqa: E402
from swiniqa.data.check import CheckReport, check_dataset, default_cache_file, format_report  # noqa: E402
from swiniqa.data.images import load_rgb  # noqa: E402
from swiniqa.errors import DataError  # noqa: E402

pytestmark = pytest.mark.core

BROKEN = ["truncated.jpg", "empty.jpg", "text.jpg", "missing.jpg", "truncated.png"]
AWKWARD = ["gray.jpg", "rgba.png", "la.png", "palette_transparent.png", "cmyk.jpg", "png16.png", "tiff16.tif",
           "exif_rotated.jpg", "png_named.jpg", "tiny.png", "bilevel.png"]


def _jpeg_bytes(im: Image.Image, **kw) -> bytes:
    b = io.BytesIO()
    im.save(b, "JPEG", quality=90, **kw)
    return b.getvalue()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("imgs")
    photo = make_image(7, 0.7, (320, 240))
    data = _jpeg_bytes(photo)
    (d / "good.jpg").write_bytes(data)
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.jpg").write_text("this is not an image\n")
    png = io.BytesIO()
    photo.save(png, "PNG")
    (d / "truncated.png").write_bytes(png.getvalue()[: len(png.getvalue()) * 2 // 3])
    (d / "png_named.jpg").write_bytes(png.getvalue())
    photo.convert("L").save(d / "gray.jpg", quality=90)
    rgba = photo.convert("RGBA")
    alpha = np.full((240, 320), 255, np.uint8)
    alpha[:, :160] = 0  # left half fully transparent -> white
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(d / "rgba.png")
    photo.convert("LA").save(d / "la.png")
    pal = photo.convert("P", palette=Image.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    pal.save(d / "palette_transparent.png", transparency=0)
    photo.convert("CMYK").save(d / "cmyk.jpg", quality=90)
    g16 = (np.asarray(photo.convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(g16).save(d / "png16.png")
    Image.fromarray(g16).save(d / "tiff16.tif")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    photo.save(d / "exif_rotated.jpg", quality=90, exif=exif)
    make_image(8, 0.9, (100, 80)).save(d / "tiny.png")
    photo.convert("1").save(d / "bilevel.png")
    return d


def _info(folder: Path, names, scores=None) -> DatasetInfo:
    scores = scores or [float(i) for i in range(len(names))]
    return DatasetInfo("test", str(folder), [Record(str(folder / n), s, n) for n, s in zip(names, scores)])


# ----------------------------------------------------------------------------- load_rgb

@pytest.mark.parametrize("name", AWKWARD + ["good.jpg"])
def test_load_rgb_accepts_awkward_files(folder, name):
    a = load_rgb(str(folder / name))
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3 and a.flags["C_CONTIGUOUS"]


def test_load_rgb_details(folder):
    assert load_rgb(str(folder / "good.jpg")).shape == (240, 320, 3)
    assert load_rgb(str(folder / "exif_rotated.jpg")).shape == (320, 240, 3)  # EXIF orientation applied
    assert load_rgb(str(folder / "exif_rotated.jpg"), resize_short=120).shape == (160, 120, 3)
    rgba = load_rgb(str(folder / "rgba.png"))
    assert (rgba[:, :150] == 255).all()  # transparent part composited on white
    g16 = load_rgb(str(folder / "png16.png")).astype(int)
    g8 = load_rgb(str(folder / "gray.jpg")).astype(int)
    assert abs(g16.mean() - g8.mean()) < 3  # 16-bit scaled to 8 bits, not clipped
    assert np.abs(load_rgb(str(folder / "cmyk.jpg")).astype(int) - load_rgb(str(folder / "good.jpg"))).mean() < 12
    assert load_rgb(str(folder / "tiny.png"), min_side=224).shape == (224, 280, 3)
    assert load_rgb(str(folder / "good.jpg"), resize=(384, 512)).shape == (384, 512, 3)
    assert load_rgb(str(folder / "good.jpg"), resize_short=60).shape == (60, 80, 3)  # JPEG draft path
    assert load_rgb(folder / "png_named.jpg").shape == (240, 320, 3)  # PathLike accepted


def test_load_rgb_pixel_values_of_alpha_palette_and_16_bit_files(folder):
    """Not just shapes: what the decoded pixels are (the fixture's photo is regenerated here)."""
    photo = np.asarray(make_image(7, 0.7, (320, 240)))
    grey = np.asarray(make_image(7, 0.7, (320, 240)).convert("L"))
    grey3 = np.repeat(grey[:, :, None], 3, axis=2)
    # RGBA: transparent left half composited on white, opaque right half exactly the photo
    rgba = load_rgb(str(folder / "rgba.png"))
    assert (rgba[:, :160] == 255).all() and np.array_equal(rgba[:, 160:], photo[:, 160:])
    # LA (opaque) and 16-bit greyscale PNG / TIFF (L * 257): the grey values on all three channels, not
    # clipped to 255 nor cut to the low byte
    assert np.array_equal(load_rgb(str(folder / "la.png")), grey3)
    for name in ("png16.png", "tiff16.tif"):
        a = load_rgb(str(folder / name)).astype(int)
        assert np.abs(a - grey3).max() <= 1, name
    # palette with a transparent index: that index white, every other pixel its palette colour
    pal = Image.open(folder / "palette_transparent.png")
    idx = np.asarray(pal)
    want = np.asarray(pal.convert("RGB")).copy()
    want[idx == 0] = 255
    got = load_rgb(str(folder / "palette_transparent.png"))
    assert (idx == 0).any() and (idx != 0).any()
    assert np.array_equal(got, want)
    # greyscale JPEG: three equal channels; bilevel: only black and white
    g = load_rgb(str(folder / "gray.jpg"))
    assert np.array_equal(g[..., 0], g[..., 1]) and np.array_equal(g[..., 1], g[..., 2])
    assert set(np.unique(load_rgb(str(folder / "bilevel.png")))) <= {0, 255}


@pytest.mark.parametrize("name", BROKEN)
def test_load_rgb_refuses_broken_files(folder, name):
    with pytest.raises(DataError, match=name.replace(".", r"\.")) as e:
        load_rgb(str(folder / name))
    assert "\n" not in str(e.value)


def test_truncated_is_reported_as_truncated(folder):
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # nothing global was switched on
    with pytest.raises(DataError, match="truncated"):
        load_rgb(str(folder / "truncated.jpg"), resize_short=60)  # also through the draft path


# ----------------------------------------------------------------------------- check_dataset

def test_check_names_every_broken_file(folder, tmp_path, capsys):
    names = sorted(BROKEN + AWKWARD + ["good.jpg"])
    rep = check_dataset(_info(folder, names), cache_dir=tmp_path, progress=False)
    assert isinstance(rep, CheckReport)
    assert rep.images == len(names) and not rep.ok
    assert sorted(os.path.basename(e["image"]) for e in rep.errors) == sorted(BROKEN)
    why = {os.path.basename(e["image"]): e["why"] for e in rep.errors}
    assert why["missing.jpg"] == "file not found"
    assert "empty" in why["empty.jpg"]
    assert "not an image" in why["text.jpg"]
    assert "truncated" in why["truncated.jpg"] and "truncated" in why["truncated.png"]
    assert any("tiny.png" in w and "scaled up" in w for w in rep.warnings)
    text = format_report(rep)
    assert all(n in text for n in BROKEN) and "FAILED" in text
    d = rep.to_dict()
    assert d["ok"] is False and json.loads(json.dumps(d))["images"] == len(names)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""  # progress=False: silent


def test_check_accepts_awkward_files(folder, tmp_path):
    rep = check_dataset(_info(folder, AWKWARD + ["good.jpg"]), cache_dir=tmp_path, progress=False)
    assert rep.ok, rep.errors
    assert [w for w in rep.warnings if "scaled up" in w] and "tiny.png (100x80)" in " ".join(rep.warnings)
    big = check_dataset(_info(folder, ["good.jpg", "exif_rotated.jpg"]), cache_dir=tmp_path, progress=False,
                        min_side=224, resize_short=None)
    assert big.ok and big.warnings == []


def test_check_progress_line(folder, tmp_path, capsys):
    check_dataset(_info(folder, ["good.jpg", "gray.jpg", "cmyk.jpg"]), cache_dir=tmp_path, progress=True)
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.endswith("data check: 3/3 images\n") and out.err.count("\n") == 1


def test_check_cache_skips_unchanged_files(folder, tmp_path):
    import shutil

    work = tmp_path / "ds"
    shutil.copytree(folder, work)
    info = _info(work, ["good.jpg", "gray.jpg", "rgba.png", "truncated.jpg"])
    first = check_dataset(info, cache_dir=tmp_path / "cache", progress=False)
    assert first.cached == 0 and len(first.errors) == 1
    cache_file = default_cache_file(info, tmp_path / "cache")
    assert cache_file.is_file()
    cached = json.loads(cache_file.read_text())["files"]
    assert set(map(os.path.basename, cached)) == {"good.jpg", "gray.jpg", "rgba.png"}  # never the broken one
    second = check_dataset(info, cache_dir=tmp_path / "cache", progress=False)
    assert second.cached == 3 and second.errors == first.errors
    # a changed file is decoded again: break gray.jpg
    data = (work / "gray.jpg").read_bytes()
    (work / "gray.jpg").write_bytes(data[: len(data) // 3])
    third = check_dataset(info, cache_dir=tmp_path / "cache", progress=False)
    assert third.cached == 2
    assert sorted(os.path.basename(e["image"]) for e in third.errors) == ["gray.jpg", "truncated.jpg"]
    nocache = check_dataset(info, cache_dir=tmp_path / "cache", progress=False, use_cache=False)
    assert nocache.cached == 0


def test_check_cache_survives_garbage(folder, tmp_path):
    info = _info(folder, ["good.jpg"])
    cache_file = default_cache_file(info, tmp_path)
    cache_file.write_text("{not json")
    assert check_dataset(info, cache_dir=tmp_path, progress=False).ok
    assert json.loads(cache_file.read_text())["version"] == 1


def test_check_label_warnings(folder, tmp_path):
    recs = [Record(str(folder / "good.jpg"), 3.0, "a"), Record(str(folder / "good.jpg"), 3.0, "a"),
            Record(str(folder / "gray.jpg"), 3.0, "b")]
    rep = check_dataset(DatasetInfo("x", str(folder), recs), cache_dir=tmp_path, progress=False)
    assert rep.ok
    assert any("more than once" in w for w in rep.warnings)
    assert any("all 3 scores equal 3" in w for w in rep.warnings)
    out = DatasetInfo("kadid10k", str(folder), [Record(str(folder / "good.jpg"), 4.0, "a"),
                                                 Record(str(folder / "gray.jpg"), 40.0, "b")], score_column="dmos")
    rep = check_dataset(out, cache_dir=tmp_path, progress=False)
    assert any("outside the expected dmos range [1, 5]" in w for w in rep.warnings)
    nan = DatasetInfo("x", str(folder), [Record(str(folder / "good.jpg"), float("nan"), "a")])
    rep = check_dataset(nan, cache_dir=tmp_path, progress=False)
    assert not rep.ok and "score" in rep.errors[0]["why"]
    empty = check_dataset(DatasetInfo("x", str(folder), []), cache_dir=tmp_path, progress=False)
    assert not empty.ok


def test_check_all_missing_hints_at_root(tmp_path):
    info = _info(tmp_path, ["a.jpg", "b.jpg"])
    rep = check_dataset(info, cache_dir=tmp_path / "c", progress=False)
    assert len(rep.errors) == 2 and "data root" in format_report(rep)


def test_check_fixture_datasets(tmp_path):
    roots = make_fixtures(tmp_path / "fx", n=4)
    for name, root in roots.items():
        rep = check_dataset(read_dataset(name, root), resize_short=256, cache_dir=tmp_path / "c", progress=False)
        assert rep.ok and rep.images == 4 and rep.warnings == [], (name, rep)
