"""``swiniqa serve`` on Ray Serve, for real on loopback (the session's Ray, an HTTP client, no mocks):
predict's scores for uploads, a 4xx with one line for every bad request, a bounded concurrent load with
zero errors."""

from __future__ import annotations

import glob
import socket
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from helpers import free_port

requests = pytest.importorskip("requests")


@pytest.fixture(scope="module")
def server(ray_session, demo_root, tmp_path_factory):
    from ray import serve

    from swiniqa.config import preset
    from swiniqa.models import build_model
    from swiniqa.serving.serve import start_server
    from swiniqa.checkpoints import write_checkpoint

    cfg = preset("demo").replace(model_size="nano", patch_size=128, test_patches=3, data_root=str(demo_root))
    torch.manual_seed(7)
    m = build_model(cfg)
    m.set_label_scale(50.0, 12.0)
    ckpt = str(write_checkpoint(tmp_path_factory.mktemp("serve") / "ckpt", m.state_dict(), cfg, {"val_srcc": 0.5}))
    url = start_server(ckpt, port=free_port(), max_body_bytes=1 << 20, max_batch=8)
    images = sorted(glob.glob(str(demo_root / "images" / "*.png")))[::97][:6]
    yield {"url": url, "ckpt": ckpt, "images": images}
    serve.shutdown()


def _bytes(p):
    with open(p, "rb") as f:
        return f.read()


def test_uploads_get_predicts_scores(server):
    from swiniqa.evaluation.predict import predict_images

    url, imgs = server["url"], server["images"]
    want = [r["score"] for r in predict_images(server["ckpt"], imgs, progress=False)]
    assert np.std(want) > 1e-3
    health = requests.get(url + "/healthz", timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    got = [requests.post(url + "/score", data=_bytes(p), timeout=60).json()["score"] for p in imgs[:3]]
    np.testing.assert_allclose(got, want[:3], atol=1e-5, rtol=0)
    files = [("file", (f"upload{i}.png", _bytes(p), "image/png")) for i, p in enumerate(imgs)]
    r = requests.post(url + "/score", files=files, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["names"] == [f"upload{i}.png" for i in range(len(imgs))]
    np.testing.assert_allclose(r.json()["scores"], want, atol=1e-5, rtol=0)


def test_bad_requests_get_a_4xx_with_one_line(server):
    url, img = server["url"], _bytes(server["images"][0])
    cases = [
        (requests.post, "/score", {"data": b"GIF89a but not really an image"}, 400, "cannot decode the upload"),
        (requests.post, "/score", {"data": img[: len(img) // 2]}, 400, "truncated"),
        (requests.post, "/score", {"data": b""}, 400, "empty"),
        (requests.post, "/score", {"files": [("a", ("ok.png", img)), ("b", ("bad.jpg", b"\xff\xd8junk"))]}, 400,
         "bad.jpg"),
        (requests.post, "/score", {"data": b"\0" * (2 << 20)}, 413, "over the limit"),
        (requests.get, "/score", {}, 405, "POST /score"),
        (requests.post, "/healthz", {}, 405, "GET /healthz"),
        (requests.get, "/predict", {}, 404, "no route"),
    ]
    for method, path, kwargs, status, text in cases:
        r = method(url + path, timeout=60, **kwargs)
        assert r.status_code == status, (path, status, r.status_code, r.text)
        err = r.json()["error"]
        assert text in err and "\n" not in err, err


def test_bounded_concurrent_load_has_zero_errors(server):
    url, imgs = server["url"], server["images"][:3]
    bodies = [_bytes(p) for p in imgs]
    first = [requests.post(url + "/score", data=b, timeout=60).json()["score"] for b in bodies]

    def one(i):
        r = requests.post(url + "/score", data=bodies[i % 3], timeout=120)
        return i, r.status_code, r.json().get("score")

    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(one, range(40)))
    assert [s for _, s, _ in results] == [200] * 40
    for i, _, score in results:  # batched with other requests, still the image's own score
        assert score == pytest.approx(first[i % 3], abs=1e-5)


def test_serve_cli_refuses_bad_arguments_in_one_line(server, tmp_path, capsys):
    from swiniqa.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["serve", "--checkpoint", server["ckpt"], "--port", str(port)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"127.0.0.1:{port}" in err[0] and "--port" in err[0]
    assert main(["serve", "--checkpoint", str(tmp_path / "missing"), "--port", str(free_port())]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint not found" in err[0]


def test_upload_scores_are_the_crop_means_computed_by_hand(server):
    """Oracle (tests/oracles.py): an upload's score is the mean of the model's outputs on the image's distinct
    crops (seeded by its bytes), cut and averaged by hand, not through predict's shared averaging."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import oracles

    model, cfg = oracles.load_model(server["ckpt"])
    imgs = server["images"][:3]
    rs = tuple(cfg.resize) if cfg.resize else None
    want = oracles.file_scores(model, imgs, cfg.test_patches, cfg.patch_size, cfg.seed, rs, cfg.resize_short)
    got = [requests.post(server["url"] + "/score", data=_bytes(p), timeout=60).json()["score"] for p in imgs]
    np.testing.assert_allclose(got, want, atol=oracles.ATOL, rtol=0)
    files = [("file", (f"u{i}.png", _bytes(p), "image/png")) for i, p in enumerate(imgs)]
    np.testing.assert_allclose(requests.post(server["url"] + "/score", files=files, timeout=60).json()["scores"],
                               want, atol=oracles.ATOL, rtol=0)
