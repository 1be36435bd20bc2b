"""What a new user still trips on (issue #20): each item's reproduction, made small.

The module's first half starts no Ray; the Ray tests at the end use the session's Ray (``ray_session``) or,
for the foreign-cluster and signal tests, real separate processes.
"""

from __future__ import annotations

import io
import json
import os
import signal
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
    import swiniqa.models.loading as loading

    def no_work(*a, **k):
        raise AssertionError("work started before the output was checked")

    monkeypatch.setattr(loading, "load_model", no_work)
    monkeypatch.setattr(loading, "load_scorer", no_work)
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


# ----------------------------------------------------------------------------- 11: best + latest, no more
def test_a_run_keeps_exactly_the_best_and_the_latest_checkpoint(ray_session, tmp_path):
    """A real Ray Train run with the run config ``swiniqa train`` builds (``make_trainer``) and the loop's own
    ``RaySession.report``: val SRCC improves at epochs 1 and 2, not at 3, then at 4. After epoch 3 the run
    folder holds epoch 2 (best) and 3 (latest), not epoch 1 too; after epoch 4, which is both, one folder."""
    import time

    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    from swiniqa.config import preset
    from swiniqa.data.records import Record
    from swiniqa.training.trainer import make_trainer

    cfg = preset("demo").replace(cpus_per_worker=1, num_workers=1)
    splits = {k: [Record(str(tmp_path / f"{k}{i}.png"), float(i), f"{k}{i}") for i in range(3)]
              for k in ("train", "val", "test")}
    template, _ = make_trainer(cfg, "keep", str(tmp_path / "runs"), splits)
    run_dir = str(tmp_path / "runs" / "keep")

    def loop(config):
        from swiniqa.layout import checkpoint_dir_name
        from swiniqa.training.session import CHECKPOINT_SCORE, RaySession, checkpoint_score

        session, seen = RaySession(), {}
        for epoch, srcc, improved in ((1, 0.5, True), (2, 0.6, True), (3, 0.55, False), (4, 0.7, True)):
            if epoch == 4:  # Ray deletes evicted folders as it registers a report: wait for epoch 1's to go
                deadline = time.monotonic() + 30
                while (os.path.isdir(os.path.join(config["run_dir"], checkpoint_dir_name(1)))
                       and time.monotonic() < deadline):
                    time.sleep(0.2)
                seen["after_3"] = sorted(n for n in os.listdir(config["run_dir"]) if n.startswith("checkpoint_epoch"))
            metrics = {"epoch": epoch, "val_srcc": srcc, CHECKPOINT_SCORE: checkpoint_score(srcc, improved)}
            session.report(metrics, lambda d, e=epoch: open(os.path.join(d, "epoch.txt"), "w").write(str(e)))
        return seen

    trainer = TorchTrainer(loop, train_loop_config={"run_dir": run_dir},
                           scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
                           run_config=template.run_config)
    result = trainer.fit()
    assert result.error is None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        final = sorted(n for n in os.listdir(run_dir) if n.startswith("checkpoint_epoch"))
        if len(final) <= 1:
            break
        time.sleep(0.2)
    assert result.return_value["after_3"] == ["checkpoint_epoch0002", "checkpoint_epoch0003"]
    assert final == ["checkpoint_epoch0004"]


# ----------------------------------------------------------------------------- 8: numbers that mean nothing
def _stop_before_ray(monkeypatch):
    import swiniqa.training.trainer as trainer

    class RayWouldStart(Exception):
        pass

    def stop(*a, **k):
        raise RayWouldStart

    monkeypatch.setattr(trainer, "ensure_ray", stop)
    return RayWouldStart


def test_skipped_images_are_not_counted_and_a_tiny_split_is_warned(tmp_path, capsys, monkeypatch):
    """12 labelled images, 4 broken, --skip-bad-images: the report counts the 8 used, and the 2-image
    validation split is warned about (stderr before training, and in the report ``--json`` carries)."""
    from swiniqa.config import preset
    from swiniqa.training.trainer import prepare_splits

    make_csv_dataset(tmp_path / "d", n=12, size=(40, 40))
    for i in (2, 3, 8, 9):  # two whole content groups: 4 groups of 2 images are left
        (tmp_path / "d" / "images" / f"im{i}.png").write_bytes(b"not a png")
    cfg = preset("demo").replace(dataset="csv", data_root=str(tmp_path / "d"), skip_bad_images=True, patch_size=32)
    splits, report = prepare_splits(cfg, progress=False)
    used = sum(len(v) for v in splits.values())
    assert used == 8 and report["images"] == 8 and len(report["skipped"]) == 4
    assert report["val"] < 10
    assert any(n.startswith(f"the validation split holds only {report['val']} images, too few for its SRCC")
               for n in report["notes"]), report["notes"]

    _stop_before_ray(monkeypatch)
    main(["train", "--preset", "demo", "--dataset", "csv", "--data-root", str(tmp_path / "d"), "--skip-bad-images",
          "--set", "patch_size=32", "--output", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert f"note: the validation split holds only {report['val']} images" in err and "RayWouldStart" in err


def test_one_image_validation_split_is_refused_before_ray(tmp_path, capsys, monkeypatch):
    """A 1-image validation split made an SRCC of NaN and a best of -inf, silently: refused now, in one line."""
    make_csv_dataset(tmp_path / "d", n=12, size=(40, 40))
    _stop_before_ray(monkeypatch)
    rc = main(["train", "--preset", "demo", "--dataset", "csv", "--data-root", str(tmp_path / "d"), "--set",
               "max_images=1", "--set", "patch_size=32", "--output", str(tmp_path / "runs"), "--json"])
    cap = capsys.readouterr()
    assert rc == 2 and cap.err.strip().splitlines()[-1].startswith("swiniqa: error: the validation split holds 1 image")
    assert json.loads(cap.out.strip().splitlines()[-1])["exit_code"] == 2


def test_srcc_interval_matches_the_threshold_reasoning():
    from swiniqa.data.splits import MIN_MEANINGFUL_SPLIT, srcc_interval

    lo, hi = srcc_interval(0.8, MIN_MEANINGFUL_SPLIT)
    assert hi - lo > 0.6 and srcc_interval(0.8, 3) == (-1.0, 1.0)
    lo, hi = srcc_interval(0.8, 1000)
    assert hi - lo < 0.06


# ----------------------------------------------------------------------------- Ray: real processes
SWINIQA_LINE = ("note: ", "swiniqa: ", "serving ", "scored ", "score: ", "score [")


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SWINIQA_DEBUG", "SWINIQA_RAY_LOGS")}
    env.update({"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONWARNINGS": "ignore"}, **extra)
    return env


class _Stderr:
    """A subprocess's stderr read line by line in a thread (so the test can wait for a line)."""

    def __init__(self, proc):
        import threading

        self.lines: list[str] = []
        self._t = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._t.start()

    def _read(self, proc):
        for line in proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, prefix: str, proc, timeout: float) -> bool:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if any(ln.split("\r")[-1].startswith(prefix) for ln in self.lines):
                return True
            time.sleep(0.5)
        return any(ln.split("\r")[-1].startswith(prefix) for ln in self.lines)

    def join(self):
        self._t.join(timeout=30)

    def final_lines(self) -> list[str]:
        """Every non-empty line once the process ended, each as last drawn (progress redraws with \\r)."""
        self.join()
        return [ln.split("\r")[-1] for ln in self.lines if ln.strip()]


def _sigterm(proc) -> int:
    """Send SIGTERM as a process manager would; the exit code."""
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=120)


def _pids_mentioning(text: str) -> dict[int, str]:
    out = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd and int(pid) != os.getpid():
                out[int(pid)] = cmd
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def foreign_ray():
    """A real `ray start --head` in its own short temp dir (RAY_TMPDIR, so no other Ray on the machine sees its
    address file); its processes are killed by pid afterwards (never `ray stop`, which stops every Ray here)."""
    import shutil
    import subprocess
    import tempfile
    import time

    tmp = tempfile.mkdtemp(prefix="rf", dir="/tmp")
    port = _free_port()
    env = _env(RAY_TMPDIR=tmp)
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    r = subprocess.run([ray_cli, "start", "--head", "--port", str(port), "--num-cpus", "1",
                        "--include-dashboard=false", "--disable-usage-stats"], env=env, capture_output=True, text=True,
                       timeout=300)
    try:
        assert r.returncode == 0, r.stderr[-2000:]
        session = os.path.basename(os.path.realpath(os.path.join(tmp, "ray", "session_latest")))
        yield {"tmp": tmp, "env": env, "port": port, "session": session}
    finally:
        for pid in _pids_mentioning(tmp):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(1)
        shutil.rmtree(tmp, ignore_errors=True)


def test_serve_starts_its_own_ray_beside_a_foreign_one_and_sigterm_stops_it_cleanly(foreign_ray, nano_ckpt):
    """Item 1: with `ray start --head` running and RAY_ADDRESS unset, `serve` starts its own Ray (two GCS servers
    under the shared temp dir, not one) and says in one note how to use the other. Item 4: SIGTERM stops it like
    Ctrl-C: exit 143, one line, no `*** SIGTERM received` dump, none of its Ray processes left. Item 5: every
    stderr line is swiniqa's (no Ray Serve INFO lines)."""
    import subprocess
    import urllib.request

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "swiniqa.cli", "serve", "--checkpoint", nano_ckpt, "--port", str(port)],
                            env=foreign_ray["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = _Stderr(proc)
    try:
        assert err.wait_for("serving ", proc, timeout=400), err.lines[-30:]
        gcs = [c for c in _pids_mentioning(foreign_ray["tmp"]).values() if "gcs_server" in c]
        own = [c for c in gcs if foreign_ray["session"] not in c]
        assert len(gcs) == 2 and len(own) == 1, gcs  # joined, there would be the foreign one only
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=60) as r:
            assert json.loads(r.read())["status"] == "ok"
        rc = _sigterm(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = err.final_lines()
    assert rc == 143, lines[-30:]
    assert lines[-1] == "swiniqa: stopped (SIGTERM)" and not any("SIGTERM received" in ln for ln in lines), lines
    assert [ln for ln in lines if not ln.startswith(SWINIQA_LINE)] == [], lines
    addr = f":{foreign_ray['port']}"
    assert any(ln.startswith("note: a Ray cluster is running on this machine") and addr in ln and "RAY_ADDRESS=" in ln
               for ln in lines), lines
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = {p: c for p, c in _pids_mentioning(foreign_ray["tmp"]).items() if foreign_ray["session"] not in c}
        if not left:
            break
        time.sleep(1)
    assert not left, left


def test_score_cli_rows_in_input_order_only_swiniqa_lines_and_sigterm(ray_session, nano_ckpt, tmp_path):
    """Through the CLI on the session's Ray (RAY_ADDRESS): a list `good, missing, gray` comes out in that order
    (item 3); stderr holds swiniqa's lines only, not core_worker.cc's warning about MapWorker (item 5); a
    SIGTERM mid-collection exits 143 with one line and no dump (item 4)."""
    import shutil
    import subprocess

    import pandas as pd

    (tmp_path / "good.jpg").write_bytes(_jpeg((200, 180, 160)))
    (tmp_path / "gray.jpg").write_bytes(_jpeg((90, 90, 90)))
    (tmp_path / "list.txt").write_text("good.jpg\nmissing.jpg\ngray.jpg\n")
    env = _env(RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)
    cmd = [sys.executable, "-m", "swiniqa.cli", "score", "--checkpoint", nano_ckpt]
    r = subprocess.run([*cmd, str(tmp_path / "list.txt"), "--output", str(tmp_path / "out.csv")], env=env,
                       capture_output=True, text=True, timeout=400)
    lines = [ln.split("\r")[-1] for ln in r.stderr.splitlines() if ln.strip()]  # progress redraws with \r
    assert r.returncode == 1, lines  # one input missing
    assert pd.read_csv(tmp_path / "out.csv")["image"].tolist() == [str(tmp_path / n) for n in
                                                                   ("good.jpg", "missing.jpg", "gray.jpg")]
    assert [ln for ln in lines if not ln.startswith(SWINIQA_LINE)] == [], lines

    many = tmp_path / "many"
    many.mkdir()
    for i in range(400):
        shutil.copy(tmp_path / ("good.jpg" if i % 2 else "gray.jpg"), many / f"{i:04d}.jpg")
    proc = subprocess.Popen([*cmd, str(many), "--output", str(tmp_path / "many.csv")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = _Stderr(proc)
    try:
        assert err.wait_for("score: ", proc, timeout=300), err.lines[-30:]
        rc = _sigterm(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = err.final_lines()
    assert rc == 143 and lines[-1] == "swiniqa: stopped (SIGTERM)", lines[-20:]
    assert not any("SIGTERM received" in ln for ln in lines), lines
