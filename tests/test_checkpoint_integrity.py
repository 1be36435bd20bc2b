"""A checkpoint is complete only when every file is whole (issue #11 item 4): each file renamed into place,
``manifest.json`` (sizes + sha256) written last; resume, resolve, eval/predict (``load_model``) skip or
refuse incomplete folders by name."""

import errno
import json
import logging
import os

import pytest
import torch

from swiniqa.config import preset
from swiniqa.errors import CheckpointError
from swiniqa.models import build_model
from swiniqa import checkpoints
from swiniqa import layout
from swiniqa.models import loading
from swiniqa.training.session import LocalSession


@pytest.fixture(scope="module")
def cfg():
    return preset("demo").replace(model_size="nano", target_in=112, target_hidden=(56, 28, 14, 7),
                                  hyper_in_channels=56)


@pytest.fixture(scope="module")
def weights(cfg):
    torch.manual_seed(0)
    return build_model(cfg).state_dict()


def _write(path, weights, cfg, epoch, srcc, **kw):
    return checkpoints.write_checkpoint(path, weights, cfg, {"epoch": epoch, "val_srcc": srcc}, **kw)


def _truncate(path, keep=100):
    with open(path, "r+b") as f:
        f.truncate(keep)


def test_manifest_lists_every_file_with_size_and_sha256(tmp_path, cfg, weights):
    d = _write(tmp_path / "ck", weights, cfg, 1, 0.5, state={"epoch": 0}, best_state=weights)
    manifest = json.loads((d / layout.MANIFEST).read_text())["files"]
    on_disk = sorted(n for n in os.listdir(d) if n != layout.MANIFEST)
    assert sorted(manifest) == on_disk
    assert {layout.WEIGHTS, layout.BEST_WEIGHTS, layout.CONFIG, layout.METRICS, layout.STATE} <= set(manifest)
    for name, entry in manifest.items():
        assert entry["size"] == (d / name).stat().st_size
        assert entry["sha256"] == checkpoints.sha256_file(d / name)
    assert checkpoints.verify_checkpoint(d) == [] and checkpoints.is_complete(d)
    assert not [n for n in os.listdir(d) if n.startswith(".")]  # no temp files left behind


def test_truncated_weights_are_named_and_refused(tmp_path, cfg, weights):
    good = _write(tmp_path / "run" / "checkpoint_epoch0001", weights, cfg, 1, 0.2)
    bad = _write(tmp_path / "run" / "checkpoint_epoch0002", weights, cfg, 2, 0.9)
    _truncate(bad / layout.WEIGHTS)
    problems = checkpoints.verify_checkpoint(bad)
    assert problems and "model.safetensors has 100 bytes" in problems[0]
    assert not checkpoints.is_complete(bad)
    # A run folder: the truncated (better-scored) checkpoint is skipped; picked: the complete one.
    assert checkpoints.resolve_checkpoint(tmp_path / "run") == good
    assert checkpoints.find_checkpoints(tmp_path / "run") == [good]
    # Named directly: refused by name, by resolve and by load_model (what eval and predict call).
    with pytest.raises(CheckpointError, match="checkpoint_epoch0002 is incomplete"):
        checkpoints.resolve_checkpoint(bad)
    with pytest.raises(CheckpointError, match="incomplete or damaged"):
        loading.load_model(bad)


def test_skipped_incomplete_checkpoint_is_logged_by_name(tmp_path, cfg, weights, caplog):
    _write(tmp_path / "run" / "a", weights, cfg, 1, 0.2)
    bad = _write(tmp_path / "run" / "b", weights, cfg, 2, 0.9)
    (bad / layout.METRICS).unlink()
    with caplog.at_level(logging.WARNING, logger="swiniqa"):
        assert checkpoints.resolve_checkpoint(tmp_path / "run").name == "a"
    assert any("skipping incomplete checkpoint" in r.getMessage() and str(bad) in r.getMessage()
               for r in caplog.records)


def test_same_size_corruption_is_caught_by_sha256(tmp_path, cfg, weights):
    d = _write(tmp_path / "ck", weights, cfg, 1, 0.5)
    size = (d / layout.WEIGHTS).stat().st_size
    with open(d / layout.WEIGHTS, "r+b") as f:
        f.seek(size - 8)
        f.write(b"\x00\x01\x02\x03\x04\x05\x06\x07")
    assert checkpoints.verify_checkpoint(d, hashes=False) == []  # sizes match ...
    assert checkpoints.verify_checkpoint(d) == ["model.safetensors differs from the manifest (sha256)"]
    with pytest.raises(CheckpointError, match="sha256"):
        loading.load_model(d)


def test_checkpoint_without_manifest_is_incomplete(tmp_path, cfg, weights):
    d = _write(tmp_path / "ck", weights, cfg, 1, 0.5)
    (d / layout.MANIFEST).unlink()  # every other file whole: still unfinished, since model.json says "new format"
    assert checkpoints.verify_checkpoint(d) == ["no manifest.json: the checkpoint was not finished writing"]
    assert not checkpoints.is_complete(d)


def test_old_format_folder_with_empty_config_is_incomplete(tmp_path, cfg, weights):
    d = _write(tmp_path / "ck", weights, cfg, 1, 0.5)
    (d / layout.MANIFEST).unlink()
    (d / layout.MODEL).unlink()  # as written before manifests and model.json
    assert checkpoints.verify_checkpoint(d) == []
    (d / layout.CONFIG).write_text("")  # the 0-byte config.json a full disk left (issue #11 item 4)
    assert any("config.json is empty or not valid JSON" in p for p in checkpoints.verify_checkpoint(d))
    assert not checkpoints.is_complete(d)


def test_failed_write_leaves_no_folder(tmp_path, cfg, weights, monkeypatch):
    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints, "save_config", full_disk)
    with pytest.raises(OSError):
        _write(tmp_path / "run" / "checkpoint_epoch0001", weights, cfg, 1, 0.5)
    assert not (tmp_path / "run" / "checkpoint_epoch0001").exists()


def test_failed_rewrite_leaves_the_folder_incomplete(tmp_path, cfg, weights, monkeypatch):
    d = _write(tmp_path / "ck", weights, cfg, 1, 0.5)
    monkeypatch.setattr(checkpoints, "save_config", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError):
        _write(d, weights, cfg, 2, 0.6)
    assert not (d / layout.MANIFEST).exists() and not checkpoints.is_complete(d)


def test_resume_skips_an_incomplete_latest_checkpoint(tmp_path, cfg, weights):
    first = _write(tmp_path / "run" / "checkpoint_epoch0001", weights, cfg, 1, 0.2)
    second = _write(tmp_path / "run" / "checkpoint_epoch0002", weights, cfg, 2, 0.3)
    assert LocalSession(str(tmp_path / "run")).latest_checkpoint() == str(second)
    _truncate(second / layout.METRICS, keep=3)
    assert LocalSession(str(tmp_path / "run")).latest_checkpoint() == str(first)


@pytest.mark.parametrize("verb", ["predict", "eval"])
def test_cli_refuses_an_incomplete_checkpoint_in_one_line(tmp_path, cfg, weights, capsys, verb):
    from PIL import Image

    from swiniqa.cli import main

    bad = _write(tmp_path / "run" / "checkpoint_epoch0001", weights, cfg, 1, 0.5)
    _truncate(bad / layout.WEIGHTS)
    img = tmp_path / "x.png"
    Image.new("RGB", (160, 160), (120, 30, 40)).save(img)
    args = ["predict", "--checkpoint", str(bad), str(img)] if verb == "predict" else \
        ["eval", "--checkpoint", str(bad), "--dataset", "csv", "--labels", str(tmp_path / "l.csv"),
         "--images", str(tmp_path)]
    if verb == "eval":
        (tmp_path / "l.csv").write_text("image,mos\nx.png,3.0\n")
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "checkpoint_epoch0001 is incomplete" in err and "model.safetensors has 100 bytes" in err
