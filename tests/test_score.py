"""``swiniqa score`` on Ray Data (the session's local Ray, no mocks): predict's scores, unreadable files as
``error`` rows, list-file inputs, resuming from an interrupted run's journal."""

from __future__ import annotations

import glob
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch


@pytest.fixture(scope="module")
def ckpt(demo_root, tmp_path_factory):
    """A nano checkpoint with random weights and a label scale (scores in 'MOS' units, distinct per image)."""
    from swiniqa.config import preset
    from swiniqa.models import build_model
    from swiniqa.checkpoints import write_checkpoint

    cfg = preset("demo").replace(model_size="nano", patch_size=128, test_patches=3, data_root=str(demo_root))
    torch.manual_seed(5)
    m = build_model(cfg)
    m.set_label_scale(50.0, 12.0)
    return str(write_checkpoint(tmp_path_factory.mktemp("score") / "ckpt", m.state_dict(), cfg, {"val_srcc": 0.5}))


def _demo_images(demo_root, n, start=0):
    return sorted(glob.glob(str(demo_root / "images" / "*.png")))[start:start + n]


def test_plan_actors_follows_the_cluster():
    from swiniqa.serving.score import plan_actors

    gpu = plan_actors({"CPU": 32, "GPU": 4})
    assert (gpu.actors, gpu.num_gpus, gpu.device) == (4, 1.0, "cuda")
    assert plan_actors({"CPU": 32, "GPU": 4}, gpus_per_actor=0).device == "cpu"
    assert plan_actors({"CPU": 32, "GPU": 4}, gpus_per_actor=0.5).actors == 8
    small, big = plan_actors({"CPU": 2}), plan_actors({"CPU": 16})
    assert (small.actors, small.num_cpus, small.device) == (1, 1.0, "cpu")
    assert (big.actors, big.num_cpus) == (2, 4.0)  # half the CPUs stay free for decoding


def test_score_equals_predict_and_reports_unreadable_files(ray_session, ckpt, demo_root, tmp_path, capsys):
    from swiniqa.cli import main
    from swiniqa.evaluation.predict import predict_images

    folder = tmp_path / "photos"
    folder.mkdir()
    imgs = _demo_images(demo_root, 7)
    for p in imgs:
        shutil.copy(p, folder)
    shutil.copy(imgs[0], folder / "zz_same_bytes_other_name.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "empty.jpg").write_bytes(b"")
    listed = tmp_path / "list.txt"
    listed.write_text("# two more, relative to this file\nphotos/../extra.png\n")
    shutil.copy(_demo_images(demo_root, 1, start=200)[0], tmp_path / "extra.png")

    out = tmp_path / "scores.csv"
    code = main(["score", "--checkpoint", ckpt, str(folder), str(listed), "--output", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "broken.png" in err[0] and "empty.jpg" in err[0]
    df = pd.read_csv(out)
    scored = df[df["score"].notna()]
    expected = {r["image"]: r["score"] for r in predict_images(ckpt, [str(folder), str(tmp_path / "extra.png")],
                                                               progress=False) if r.get("score") is not None}
    assert len(scored) == 9 and set(scored["image"]) == set(expected)
    np.testing.assert_allclose(scored["score"].to_numpy(), [expected[i] for i in scored["image"]], atol=1e-5, rtol=0)
    same = df.set_index("image")["score"]
    assert same[str(folder / "zz_same_bytes_other_name.png")] == pytest.approx(same[str(folder / os.path.basename(imgs[0]))], abs=1e-6)
    bad = df[df["score"].isna()].set_index("image")["error"]
    assert "not an image" in bad[str(folder / "broken.png")] or "truncated" in bad[str(folder / "broken.png")]
    assert "empty" in bad[str(folder / "empty.jpg")]


def test_score_resumes_from_an_interrupted_runs_journal(ray_session, ckpt, demo_root, tmp_path):
    from swiniqa.serving.score import score_collection

    imgs = _demo_images(demo_root, 5, start=400)
    out = str(tmp_path / "scores.parquet")
    # what an interrupted run leaves: a journal part with two scored images and one that had failed
    os.makedirs(out + ".parts")
    pd.DataFrame({"image": imgs[:3], "score": [123.0, 456.0, np.nan], "error": [None, None, "was unreadable"]}
                 ).to_parquet(out + ".parts/part-00000.parquet")
    res = score_collection(ckpt, imgs, out, progress=False)
    assert res["skipped"] == 2 and res["scored"] == 5 and res["errors"] == []
    df = pd.read_parquet(out).set_index("image")
    assert list(df.index) == imgs  # input order
    assert df.loc[imgs[0], "score"] == 123.0 and df.loc[imgs[1], "score"] == 456.0  # not scored again
    assert np.isfinite(df.loc[imgs[2], "score"]) and df.loc[imgs[2], "score"] != 123.0  # the failed one retried
    assert not os.path.exists(out + ".parts")
    again = score_collection(ckpt, imgs, out, progress=False)
    assert again["skipped"] == 5 and again["actors"] == 0  # nothing left: no Ray work at all


def test_score_refuses_bad_arguments_in_one_line(ckpt, demo_root, tmp_path, capsys):
    from swiniqa.cli import main

    cases = [(["--output", str(tmp_path / "x.xlsx"), str(tmp_path)], ".csv or .parquet"),
             (["--output", str(tmp_path / "x.csv"), str(tmp_path / "nothing-here")], "no image to score")]
    for extra, want in cases:
        assert main(["score", "--checkpoint", ckpt, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and want in err[0], err
    other = tmp_path / "someone_elses.csv"  # an existing file that is not a score output is never overwritten
    other.write_text("a,b\n1,2\n")
    assert main(["score", "--checkpoint", ckpt, *_demo_images(demo_root, 1), "--output", str(other)]) == 2
    assert "not a `swiniqa score` output" in capsys.readouterr().err
    assert other.read_text() == "a,b\n1,2\n"


def test_score_json_summary(ray_session, ckpt, demo_root, tmp_path, capsys):
    from swiniqa.cli import main

    img = _demo_images(demo_root, 1, start=600)
    out = tmp_path / "s.parquet"
    pd.DataFrame({"image": img, "score": [7.5], "error": [None]}).to_parquet(out)
    assert main(["score", "--checkpoint", ckpt, *img, "--output", str(out), "--json", "--quiet"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (s["images"], s["scored"], s["skipped"], s["errors"]) == (1, 1, 1, [])


def test_s3_prefix_inputs_are_listed_and_cut_like_local_files(ckpt, demo_root, monkeypatch):
    """An s3:// prefix (a local moto server) is listed and each object cut into the local file's crops."""
    pytest.importorskip("moto.server")
    import pyarrow.fs as pafs

    from helpers import S3_CREDENTIALS, local_s3
    from swiniqa.models.loading import load_scorer
    from swiniqa.serving.runtime import crop_spec, image_crops
    from swiniqa.serving.score import _prepare_batch, collect_inputs

    with local_s3() as endpoint:
        for k, v in {**S3_CREDENTIALS, "AWS_ENDPOINT_URL_S3": endpoint}.items():
            monkeypatch.setenv(k, v)
        fs = pafs.S3FileSystem(endpoint_override=endpoint[len("http://"):], scheme="http", access_key="testing",
                               secret_key="testing", region="us-east-1", allow_bucket_creation=True)
        fs.create_dir("bucket")
        imgs = _demo_images(demo_root, 2, start=300)
        for i, p in enumerate(imgs):
            with open(p, "rb") as f, fs.open_output_stream(f"bucket/shots/sub/{i}.png") as o:
                o.write(f.read())
        with fs.open_output_stream("bucket/shots/notes.txt") as o:
            o.write(b"not an image name: not listed")
        paths, errors = collect_inputs(["s3://bucket/shots/", "s3://bucket/empty/"])
        assert paths == ["s3://bucket/shots/sub/0.png", "s3://bucket/shots/sub/1.png"]
        assert errors == [{"image": "s3://bucket/empty/", "why": "no image object under this prefix"}]
        spec = crop_spec(load_scorer(ckpt)[1])
        out = _prepare_batch({"image": np.array(paths + ["s3://bucket/shots/missing.png"], dtype=object)}, spec)
        assert list(out["error"][:2]) == ["", ""] and "cannot read" in out["error"][2]
        for k, p in enumerate(imgs):
            np.testing.assert_array_equal(out["crops"][k], image_crops(p, spec))
