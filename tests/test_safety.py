"""Checkpoints are data: a pickle that would run code is refused, never executed."""

import os
import pickle

import pytest
import torch

from swiniqa.config import preset
from swiniqa.errors import CheckpointError
from swiniqa.models import build_model
from swiniqa import checkpoints
from swiniqa.models import loading


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_file(tmp_path, name="evil.pth"):
    marker = tmp_path / "pwned"
    path = tmp_path / name
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Evil(str(marker))}, f)
    return path, marker


def test_malicious_pickle_is_refused_by_predict_and_runs_nothing(tmp_path, capsys):
    from PIL import Image

    from swiniqa.cli import main

    evil, marker = _evil_file(tmp_path)
    img = tmp_path / "x.png"
    Image.new("RGB", (300, 300), (120, 30, 40)).save(img)
    rc = main(["predict", "--checkpoint", str(evil), str(img), "--json"])
    err = capsys.readouterr().err
    assert rc != 0 and "refusing to load" in err and "Traceback" not in err
    assert not marker.exists()


@pytest.mark.parametrize("name", ["evil.pth", "evil.pkl", "evil.pt"])
def test_import_weights_refuses_code(tmp_path, name):
    evil, marker = _evil_file(tmp_path, name)
    with pytest.raises(CheckpointError, match="refusing"):
        loading.import_weights(evil, preset("demo").replace(model_size="nano"), tmp_path / "out")
    assert not marker.exists()


def test_import_weights_converts_a_plain_state_dict(tmp_path):
    cfg = preset("demo").replace(model_size="nano")
    m = build_model(cfg)
    torch.save({"model": {f"module.{k}": v for k, v in m.state_dict().items()}}, tmp_path / "ref.pth")
    out = loading.import_weights(tmp_path / "ref.pth", cfg, tmp_path / "ck")
    model, cfg2 = loading.load_model(out)
    assert cfg2.model_size == "nano"
    for k, v in m.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    cfg = preset("demo").replace(model_size="nano")
    m = build_model(cfg.replace(model_size="micro"))
    checkpoints.write_checkpoint(tmp_path / "ck", m.state_dict(), cfg, {"val_srcc": 0.1, "epoch": 1})
    with pytest.raises(CheckpointError, match="does not fit"):
        loading.load_model(tmp_path / "ck")
    torch.save(m.state_dict(), tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="does not match"):
        loading.import_weights(tmp_path / "w.pth", cfg, tmp_path / "out")


def test_incomplete_checkpoint_folder_is_never_picked(tmp_path):
    cfg = preset("demo").replace(model_size="nano")
    m = build_model(cfg)
    checkpoints.write_checkpoint(tmp_path / "run" / "a", m.state_dict(), cfg, {"val_srcc": 0.2, "epoch": 1})
    checkpoints.write_checkpoint(tmp_path / "run" / "b", m.state_dict(), cfg, {"val_srcc": 0.9, "epoch": 2})
    os.remove(tmp_path / "run" / "b" / "metrics.json")  # as if the writer died before the last rename
    assert checkpoints.resolve_checkpoint(tmp_path / "run").name == "a"
