"""What a new user still trips on (issue #20): each item's reproduction, made small.

The module's first half starts no Ray; the Ray tests at the end use the session's Ray (``ray_session``) or,
for the foreign-cluster and signal tests, real separate processes.
"""

from __future__ import annotations

import io
import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

from swiniqa.cli import main

sys.path.insert(0, os.path.dirname(__file__))
from test_dataset_interface import make_csv_dataset  # noqa: E402


@pytest.fixture(autouse=True)
def _no_debug_leak(monkeypatch):
    """``main([... "--debug"])`` sets SWINIQA_DEBUG/SWINIQA_RAY_LOGS for Ray workers: undone after each test."""
    for k in ("SWINIQA_DEBUG", "SWINIQA_RAY_LOGS", "SWINIQA_MAX_IMAGE_PIXELS"):
        monkeypatch.setenv(k, "")


def _jpeg(color=(120, 60, 30), size=(64, 48)) -> bytes:
    rng = np.random.default_rng(sum(color))
    a = np.clip(np.array(color) + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def nano_ckpt(tmp_path_factory):
    """A nano checkpoint with random weights (3 crops of 64 px): enough to export and score."""
    import torch

    from swiniqa.config import preset
    from swiniqa.models import build_model
    from swiniqa.checkpoints import write_checkpoint

    cfg = preset("demo").replace(model_size="nano", patch_size=64, test_patches=3)
    torch.manual_seed(3)
    m = build_model(cfg)
    m.set_label_scale(50.0, 12.0)
    return str(write_checkpoint(tmp_path_factory.mktemp("n20") / "ckpt", m.state_dict(), cfg, {"val_srcc": 0.5}))


# ----------------------------------------------------------------------------- 2: outputs proven first
def _outputs(tmp_path, ckpt):
    """(argv, flag) of every verb's output flag, pointed at a place that cannot take a file."""
    (tmp_path / "afile").write_text("x")
    d = tmp_path / "d"
    make_csv_dataset(d)
    img = d / "images" / "im0.png"
    cases = []
    for bad in ("/proc/nonexistent/p", "/proc/p", str(tmp_path / "afile" / "sub" / "p")):
        cases += [
            (["eval", "--checkpoint", ckpt, "--dataset", "csv", "--data-root", str(d), "--predictions", bad + ".csv"],
             "--predictions"),
            (["export", "--checkpoint", ckpt, "--out", bad + ".onnx"], "--out"),
            (["score", "--checkpoint", ckpt, str(img), "--output", bad + ".csv"], "--output"),
            (["train", "--preset", "demo", "--dataset", "csv", "--data-root", str(d), "--output", bad], "--output"),
            (["tune", "lr", "--preset", "demo", "--output", bad], "--output"),
            (["pull", ckpt, "--dest", bad], "--dest"),
            (["import-weights", str(tmp_path / "afile"), "--out", bad], "--out"),
            (["data", "demo", "--out", bad], "--out"),
        ]
    return cases


def test_every_output_flag_is_refused_before_any_work(tmp_path, nano_ckpt, capsys, monkeypatch):
    """/proc takes no new file (even for root, where os.access says yes): each verb refuses its output flag in
    one line before reading data, loading the model or starting Ray, and creates nothing."""
    import swiniqa.serving.runtime as runtime
    import swiniqa.models.loading as loading

    def no_work(*a, **k):
        raise AssertionError("work started before the output was checked")

    monkeypatch.setattr(loading, "load_model", no_work)
    monkeypatch.setattr(runtime, "load_scorer", no_work)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    before = sorted(os.listdir(tmp_path))
    for argv, flag in _outputs(tmp_path, nano_ckpt):
        rc = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2, (argv, err)
        assert err[-1].startswith(f"swiniqa: error: {flag} ") and "internal error" not in err[-1], (argv, err)
    assert not os.path.exists("/proc/nonexistent")
    assert not (tmp_path / "afile").is_dir() and sorted(os.listdir(tmp_path)) == sorted(before + ["afile", "d"])


def test_failed_export_removes_the_folders_it_created(tmp_path, nano_ckpt, capsys, monkeypatch):
    """``--out new/dir/x.onnx`` where the export fails late: no file and no ``new/`` left behind."""
    from swiniqa.serving import export

    def broken(model, example, out, opset, config):
        with open(out, "wb") as f:
            f.write(b"half a graph")
        raise OSError(28, "No space left on device", out)

    monkeypatch.setattr(export, "_write_graph", broken)
    out = tmp_path / "new" / "dir" / "x.onnx"
    rc = main(["export", "--checkpoint", nano_ckpt, "--out", str(out), "--json"])
    cap = capsys.readouterr()
    assert rc == 2 and "No space left" in cap.err or "no space left" in cap.err, cap.err
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- 3: score rows in input order
def test_score_rows_follow_the_input_list_when_a_file_is_missing(tmp_path):
    """A list file ``good, missing, gray`` (and a remote entry between them): the merged rows follow the list,
    whatever order the actors finish in. The expectation is the list itself."""
    import pandas as pd

    from swiniqa.serving.score import _merge, collect_inputs

    for n in ("good.jpg", "gray.jpg", "z.jpg"):
        (tmp_path / n).write_bytes(_jpeg())
    listed = ["good.jpg", "missing.jpg", "s3://bucket/a.jpg", "gray.jpg"]
    (tmp_path / "list.txt").write_text("\n".join(listed) + "\n")
    order: list[str] = []
    paths, errors = collect_inputs([str(tmp_path / "list.txt"), str(tmp_path / "z.jpg")], order=order)
    expected = [p if "://" in p else str(tmp_path / p) for p in listed] + [str(tmp_path / "z.jpg")]
    assert order == expected
    assert [e["image"] for e in errors] == [str(tmp_path / "missing.jpg")]
    # the actors return rows in completion order (last first here)
    done = pd.DataFrame({"image": paths[::-1], "score": np.arange(len(paths), dtype=float), "error": None})
    merged = _merge([done], order, errors)
    assert merged["image"].tolist() == expected
    assert merged.set_index("image").loc[str(tmp_path / "missing.jpg"), "error"] == "file not found"


# ----------------------------------------------------------------------------- 6: --json on every outcome
def _last_stdout_json(capsys) -> tuple[dict, str]:
    cap = capsys.readouterr()
    return json.loads(cap.out.strip().splitlines()[-1]), cap.err


def test_json_failure_is_a_json_object_on_stdout(tmp_path, capsys, monkeypatch):
    import socket

    import swiniqa.cli as cli

    assert main(["predict", "--checkpoint", str(tmp_path / "nonexistent"), "x.jpg", "--json"]) == 2
    obj, err = _last_stdout_json(capsys)
    assert obj["exit_code"] == 2 and "nonexistent" in obj["error"] and err.strip().endswith(obj["error"])

    with socket.socket() as s:  # serve on a busy port: refused before Ray starts
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", "--checkpoint", str(tmp_path), "--port", str(port), "--json"]) == 2
    obj, _ = _last_stdout_json(capsys)
    assert obj["exit_code"] == 2 and f"127.0.0.1:{port}" in obj["error"]

    with pytest.raises(SystemExit) as e:  # a usage error (argparse) under --json
        main(["--json", "train", "--epochs", "many"])
    assert e.value.code == 2
    obj, _ = _last_stdout_json(capsys)
    assert obj["exit_code"] == 2 and "--epochs" in obj["error"]

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_config", interrupted)
    assert main(["config", "--json"]) == 130
    assert _last_stdout_json(capsys)[0] == {"error": "interrupted", "exit_code": 130}


# ----------------------------------------------------------------------------- 7: did you mean
@pytest.mark.parametrize("argv, needle", [
    (["config", "--set", "bach_size=4"], "unknown config key 'bach_size' (did you mean batch_size"),
    (["config", "--preset", "dmeo"], "unknown preset 'dmeo'; did you mean demo?"),
    (["tune", "lrr", "--dry-run"], "invalid choice: 'lrr'; did you mean lr?"),
    (["trian"], "invalid choice: 'trian'; did you mean train?"),
    (["export", "--checkpoint", "x", "--out", "x.onnx", "--format", "onxx"], "did you mean onnx?"),
    (["pull", "PULLSRC", "--dest", "DEST", "--metric", "val_src"], "did you mean val_srcc"),
    (["eval", "--checkpoint", "x", "--suite", "cros", "--roots", "r.yaml"], "did you mean cross?"),
])
def test_mistyped_names_get_a_did_you_mean(argv, needle, tmp_path, capsys):
    if "PULLSRC" in argv:
        import torch

        from swiniqa.config import preset
        from swiniqa.checkpoints import write_checkpoint

        write_checkpoint(tmp_path / "run" / "checkpoint_epoch0001", {"w": torch.zeros(3)}, preset("demo"),
                         {"epoch": 1, "val_srcc": 0.5})
        argv = [str(tmp_path / "run") if a == "PULLSRC" else str(tmp_path / "dest") if a == "DEST" else a
                for a in argv]
    if "r.yaml" in argv:
        (tmp_path / "r.yaml").write_text(f"spaq: {tmp_path}\n")
        argv = [str(tmp_path / "r.yaml") if a == "r.yaml" else a for a in argv]
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and needle in err[-1], err


# ----------------------------------------------------------------------------- 10: error wording
def test_truncated_upload_and_a_file_in_the_way_read_as_plain_sentences(tmp_path, capsys):
    from swiniqa.errors import DataError
    from swiniqa.serving.runtime import CropSpec, bytes_crops

    data = _jpeg(size=(256, 192))
    spec = CropSpec(patch_size=64, patches=2, resize=None, resize_short=None, seed=0)
    with pytest.raises(DataError) as e:
        bytes_crops(data[: len(data) // 2], spec, "the upload")
    msg = str(e.value)
    assert msg.startswith("cannot decode the upload: truncated") and "whole file again" in msg
    assert "image the upload" not in msg and "bytes not processed" not in msg

    (tmp_path / "list.txt").write_text("x")  # a file where the export needs a folder
    assert main(["export", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "list.txt" / "x.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"swiniqa: error: --out {tmp_path}/list.txt/x.onnx: {tmp_path}/list.txt is a file, not a folder; "
                   "pick another path or move the file")

    from swiniqa.storage import os_error_text

    try:
        os.makedirs(tmp_path / "list.txt" / "a" / "b")
    except OSError as err_:
        text = os_error_text(err_, str(tmp_path / "list.txt" / "a" / "b"))
    assert text.startswith(f"{tmp_path}/list.txt is a file") and "File exists" not in text
