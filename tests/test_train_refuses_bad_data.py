"""Training refuses a dataset with broken files by name before any Ray worker starts;
``--skip-bad-images`` is the explicit opt-out."""

import numpy as np
import pytest
from PIL import Image

from swiniqa.cli import main


@pytest.fixture()
def messy_root(tmp_path):
    root = tmp_path / "messy"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["image_name,MOS"]
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)).save(root / "images" / f"ok{i}.png")
        rows.append(f"ok{i}.png,{1 + i / 3:.2f}")
    good = (root / "images" / "ok0.png").read_bytes()
    (root / "images" / "cut.png").write_bytes(good[: len(good) // 3])  # truncated
    (root / "images" / "notes.jpg").write_text("not an image")          # non-image behind a .jpg name
    rows += ["cut.png,2.0", "notes.jpg,3.0"]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_train_names_broken_files_before_starting_ray(messy_root, tmp_path, capsys, monkeypatch):
    import swiniqa.training.trainer as trainer

    def no_ray():
        raise AssertionError("Ray must not start for a broken dataset")

    monkeypatch.setattr(trainer, "ensure_ray", no_ray)
    rc = main(["train", "--preset", "demo", "--dataset", "csv", "--data-root", str(messy_root),
               "--output", str(tmp_path / "runs"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "2 broken image(s)" in err and "cut.png" in err and "notes.jpg" in err and "--skip-bad-images" in err


def test_skip_bad_images_trains_on_the_rest_and_reports_them(messy_root):
    from swiniqa.config import preset
    from swiniqa.training.trainer import prepare_splits

    cfg = preset("demo").replace(dataset="csv", data_root=str(messy_root), skip_bad_images=True,
                                 val_fraction=0.25, test_fraction=0.0)
    splits, report = prepare_splits(cfg, progress=False)
    assert sorted(p.rsplit("/", 1)[-1] for p in report["skipped"]) == ["cut.png", "notes.jpg"]
    kept = [r.path for part in splits.values() for r in part]
    assert len(kept) == 12 and not any(p.endswith(("cut.png", "notes.jpg")) for p in kept)
