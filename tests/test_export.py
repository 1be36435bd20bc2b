"""``swiniqa export --format onnx``: the exported graph scores real images like torch, with any batch size,
and ``predict`` runs the .onnx file with predict's own crops."""

from __future__ import annotations

import glob

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def exported(demo_root, tmp_path_factory):
    """A nano checkpoint (random weights, a label scale so scores are in 'MOS' units) and its ONNX export."""
    from swiniqa.config import preset
    from swiniqa.models import build_model
    from swiniqa.serving.export import export_onnx
    from swiniqa.checkpoints import write_checkpoint

    d = tmp_path_factory.mktemp("export")
    cfg = preset("demo").replace(model_size="nano", patch_size=128, test_patches=3, data_root=str(demo_root))
    torch.manual_seed(3)
    m = build_model(cfg)
    m.set_label_scale(50.0, 12.0)
    ckpt = write_checkpoint(d / "ckpt", m.state_dict(), cfg, {"val_srcc": 0.5, "epoch": 0})
    images = sorted(glob.glob(str(demo_root / "images" / "*.png")))
    info = export_onnx(ckpt, d / "model.onnx", verify_images=images[:4])
    return {"ckpt": str(ckpt), "onnx": info["onnx"], "info": info, "images": images, "dir": d}


def test_onnx_matches_torch_on_real_images_at_any_batch_size(exported):
    from swiniqa.data.loader import to_tensor
    from swiniqa.models.loading import OnnxModel, load_scorer
    from swiniqa.serving.runtime import crop_spec, image_crops

    assert exported["info"]["max_abs_diff"] <= 1e-4
    model, cfg = load_scorer(exported["ckpt"])
    spec = crop_spec(cfg)
    crops = np.concatenate([image_crops(p, spec) for p in exported["images"][100:105]])  # not the verify images
    with torch.no_grad():
        ref = model(to_tensor(crops)).numpy()
    assert ref.std() > 1e-3  # distinct scores, so agreement means something
    ort_model = OnnxModel(exported["onnx"])
    for b in (1, 4, len(crops)):  # the batch dimension is dynamic
        got = np.concatenate([ort_model(to_tensor(np.ascontiguousarray(crops[i:i + b]))).numpy()
                              for i in range(0, len(crops), b)])
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def test_onnx_file_carries_the_runs_preprocessing(exported):
    from swiniqa.models.loading import load_scorer

    _, cfg = load_scorer(exported["onnx"])
    assert (cfg.patch_size, cfg.test_patches, cfg.model_size) == (128, 3, "nano")


def test_predict_runs_an_onnx_file_with_the_checkpoints_scores(exported, capsys):
    from swiniqa.cli import main
    from swiniqa.evaluation.predict import predict_images

    imgs = exported["images"][:6]
    a = predict_images(exported["ckpt"], imgs, progress=False)
    b = predict_images(exported["onnx"], imgs, progress=False)
    assert [r["image"] for r in a] == [r["image"] for r in b]
    np.testing.assert_allclose([r["score"] for r in b], [r["score"] for r in a], atol=1e-4, rtol=0)
    assert main(["predict", "--checkpoint", exported["onnx"], imgs[0], "--json", "--quiet"]) == 0
    import json

    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["predictions"][0]["score"] == pytest.approx(a[0]["score"], abs=1e-4)


def test_export_errors_are_one_line(exported, tmp_path, capsys):
    from swiniqa.cli import main
    from swiniqa.errors import CheckpointError
    from swiniqa.models.loading import load_scorer

    assert main(["export", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "checkpoint not found" in err
    assert main(["export", "--checkpoint", exported["ckpt"], "--out", str(tmp_path / "m.txt")]) == 2
    assert ".onnx" in capsys.readouterr().err
    assert main(["export", "--checkpoint", exported["ckpt"], "--format", "tflite", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "only onnx" in capsys.readouterr().err
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf")
    with pytest.raises(CheckpointError, match="not an ONNX model|not written by `swiniqa export`"):
        load_scorer(str(junk))


def test_score_runs_an_onnx_file_on_ray_data(ray_session, exported, tmp_path):
    """The exported model travels to the Ray Data actors (pickled as its bytes) and scores like the checkpoint."""
    import pandas as pd

    from swiniqa.evaluation.predict import predict_images
    from swiniqa.serving.score import score_collection

    imgs = exported["images"][300:304]
    res = score_collection(exported["onnx"], imgs, tmp_path / "s.csv", progress=False)
    assert res["scored"] == 4 and res["errors"] == []
    got = pd.read_csv(tmp_path / "s.csv")["score"].to_numpy()
    want = [r["score"] for r in predict_images(exported["ckpt"], imgs, progress=False)]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_onnx_scores_are_the_mean_of_onnxruntimes_outputs_on_each_images_crops(exported):
    """Oracle (tests/oracles.py): `predict` on the .onnx gives each image the mean over its distinct crops (seeded
    by its bytes, cut by hand) of onnxruntime's own outputs, one crop per run, not predict's shared averaging."""
    import sys
    from pathlib import Path

    import onnxruntime as ort

    from swiniqa.evaluation.predict import predict_images
    from swiniqa.models.loading import load_scorer

    sys.path.insert(0, str(Path(__file__).parent))
    import oracles

    sess = ort.InferenceSession(exported["onnx"], providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def forward(crop):
        return float(sess.run(None, {name: np.ascontiguousarray(crop.transpose(2, 0, 1))[None]})[0][0])

    _, cfg = load_scorer(exported["onnx"])
    imgs = exported["images"][200:203]
    rs = tuple(cfg.resize) if cfg.resize else None
    want = oracles.file_scores(forward, imgs, cfg.test_patches, cfg.patch_size, cfg.seed, rs, cfg.resize_short)
    got = [r["score"] for r in predict_images(exported["onnx"], imgs, progress=False)]
    np.testing.assert_allclose(got, want, atol=oracles.ATOL, rtol=0)
