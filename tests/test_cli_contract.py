"""The README's `swiniqa data` and `import-weights` verbs, called as a user calls them (a subprocess of
``python -m swiniqa.cli``, the console script's entry point), checked against what the README says.

Training and tuning through the CLI are in test_train_e2e.py and test_tune.py (they need Ray).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys


def swiniqa(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "swiniqa.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def last_json(r: subprocess.CompletedProcess) -> dict:
    return json.loads(r.stdout.strip().splitlines()[-1])


def one_error_line(r: subprocess.CompletedProcess) -> str:
    err = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr and len(err) == 1 and err[0].startswith("swiniqa: error:"), r.stderr[-1500:]
    return err[0]


def test_console_script_is_installed():
    exe = shutil.which("swiniqa", path=os.path.dirname(sys.executable))
    assert exe, "the `swiniqa` console script is not installed beside this Python"
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0
    for verb in ("train", "config", "data", "eval", "predict", "complexity", "import-weights", "tune", "report",
                 "pull"):
        assert verb in r.stdout, verb


def test_data_demo_writes_1134_images_split_672_294_168(demo_root):
    """`swiniqa data demo --out DIR --json` (on the session's generated copy: idempotent), and the demo preset's
    split by source photo: 672 / 294 / 168 images, no photo on two sides."""
    from swiniqa.config import preset
    from swiniqa.data import read_dataset
    from swiniqa.data.splits import split_dataset

    r = swiniqa("data", "demo", "--out", str(demo_root), "--json")
    assert r.returncode == 0, r.stderr[-1500:]
    s = last_json(r)
    assert s["images"] == 1134 and s["groups"] == 13 and os.path.samefile(s["root"], demo_root)
    assert len(os.listdir(os.path.join(demo_root, "images"))) == 1134
    cfg = preset("demo")
    split = split_dataset(read_dataset("demo", str(demo_root)), cfg.seed, cfg.val_fraction, cfg.test_fraction)
    assert [len(split[k]) for k in ("train", "val", "test")] == [672, 294, 168]
    photos = {k: {r.group for r in v} for k, v in split.items()}
    assert not (photos["train"] & photos["val"]) and not (photos["train"] & photos["test"])
    assert not (photos["val"] & photos["test"])


def _small_csv_dataset(demo_root, dest, n: int = 6):
    import csv

    img = dest / "imgs"
    img.mkdir(parents=True)
    with open(os.path.join(demo_root, "labels.csv"), newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    for row in rows:
        shutil.copy(os.path.join(demo_root, "images", row["image"]), img / row["image"])
    with open(dest / "scores.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "mos"])
        w.writerows((row["image"], row["mos"]) for row in rows)
    return img, dest / "scores.csv", [row["image"] for row in rows]


def test_data_check_json_and_exit_code_1_when_broken(demo_root, tmp_path, monkeypatch):
    """README: `swiniqa data check --dataset csv --labels scores.csv --images imgs/ --score-col mos`; `--json`;
    exit code 1 naming each broken file, 0 when all decode."""
    img, labels, names = _small_csv_dataset(demo_root, tmp_path)
    base = ["data", "check", "--dataset", "csv", "--labels", str(labels), "--images", str(img), "--score-col", "mos",
            "--patch-size", "64", "--json"]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the check cache, not the user's
    ok = swiniqa(*base)
    assert ok.returncode == 0, ok.stderr[-1500:]
    rep = last_json(ok)
    assert rep["ok"] is True and rep["images"] == len(names) and rep["errors"] == []
    data = (img / names[1]).read_bytes()
    (img / names[1]).write_bytes(data[: len(data) // 2])  # truncated
    (img / names[3]).write_text("not an image\n")
    (img / names[4]).unlink()  # missing
    bad = swiniqa(*base)
    assert bad.returncode == 1, bad.stderr[-1500:]
    rep = last_json(bad)
    assert rep["ok"] is False and rep["images"] == len(names)
    why = {os.path.basename(e["image"]): e["why"] for e in rep["errors"]}
    assert set(why) == {names[1], names[3], names[4]}
    assert "truncated" in why[names[1]] and "not an image" in why[names[3]] and why[names[4]] == "file not found"
    human = swiniqa(*base[:-1])  # without --json: a readable report, same exit code
    assert human.returncode == 1 and all(n in human.stdout for n in (names[1], names[3], names[4]))


def test_import_weights_cli_round_trip_and_refuses_code(tmp_path):
    """`swiniqa import-weights FILE --preset P --out DIR`: a foreign .pth state dict becomes a checkpoint folder
    that loads the same weights (and predicts the same); a pickle that would run code is refused, not run."""
    import pickle

    import torch

    from swiniqa import build_model
    from swiniqa.config import preset
    from swiniqa.models import loading

    torch.manual_seed(3)
    cfg = preset("demo").replace(patch_size=64)
    src = build_model(cfg).eval()
    sd = {f"module.{k}": v for k, v in src.state_dict().items() if not k.startswith("score_")}  # as DDP saves it
    torch.save({"state_dict": sd}, tmp_path / "w.pth")
    r = swiniqa("import-weights", str(tmp_path / "w.pth"), "--preset", "demo", "--set", "patch_size=64",
                "--out", str(tmp_path / "ck"), "--json")
    assert r.returncode == 0, r.stderr[-1500:]
    out = last_json(r)
    assert os.path.samefile(out["checkpoint"], tmp_path / "ck")
    model, loaded = loading.load_model(str(tmp_path / "ck"))
    assert loaded.patch_size == 64 and loaded.model_size == "nano"
    got = model.state_dict()
    for k, v in src.state_dict().items():
        assert torch.equal(got[k], v), k
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), src(x))

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"state_dict": Evil()}, f)
    r = swiniqa("import-weights", str(tmp_path / "evil.pth"), "--preset", "demo", "--out", str(tmp_path / "ck2"))
    assert r.returncode in (1, 2), (r.returncode, r.stderr[-1500:])  # a user/data error, not a crash
    assert "evil.pth" in one_error_line(r)
    assert not marker.exists() and not (tmp_path / "ck2" / "model.safetensors").exists()
