"""Cluster-operation files: cluster.yaml, scripts/launch_sweep.sh, scripts/tensorboard.sh.

Fast and offline: no ray.init, no cloud calls. The cluster config is checked with the same two
steps `ray up` runs before it contacts AWS (prepare_config + validate_config, private Ray API);
the scripts run in --dry-run mode or against a fake `ray` executable.
"""

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import free_port

ROOT = Path(__file__).parents[1]
CLUSTER = ROOT / "cluster.yaml"
LAUNCH = ROOT / "scripts" / "launch_sweep.sh"
TENSORBOARD = ROOT / "scripts" / "tensorboard.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "SWINIQA_"))}
    env.update(HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path), **extra)
    (tmp_path / "home").mkdir(exist_ok=True)
    return env


def _run(script, *args, tmp_path, env=None, cwd=None):
    return subprocess.run(
        ["bash", str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd or tmp_path,
        env=env or _env(tmp_path),
    )


# --------------------------------------------------------------------------- cluster.yaml


@pytest.fixture(scope="module")
def raw_cluster():
    return yaml.safe_load(CLUSTER.read_text())


@pytest.fixture(scope="module")
def prepared_cluster(raw_cluster):
    ray = pytest.importorskip("ray")
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = prepare_config(raw_cluster)  # merges aws/defaults.yaml (no boto3 needed)
    validate_config(cfg)  # jsonschema + head_node_type + min/max workers; raises if invalid
    cfg["_ray_version"] = ray.__version__
    return cfg


def test_cluster_yaml_validates_with_ray(prepared_cluster):
    assert prepared_cluster["provider"]["type"] == "aws"
    assert prepared_cluster["provider"]["region"] == "us-west-2"
    assert prepared_cluster["idle_timeout_minutes"] > 0


def test_cluster_has_spot_gpu_workers_beside_on_demand_ones(prepared_cluster):
    """Spot GPU workers (min 0) for elastic runs, beside on-demand ones of the same instance type."""
    types = prepared_cluster["available_node_types"]
    spot = {k: v for k, v in types.items() if v["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"}
    on_demand = {k: v for k, v in types.items() if k not in spot and k != prepared_cluster["head_node_type"]}
    assert list(spot) == ["gpu_spot_worker"] and spot["gpu_spot_worker"]["min_workers"] == 0
    assert {v["node_config"]["InstanceType"] for v in spot.values()} <= \
        {v["node_config"]["InstanceType"] for v in on_demand.values()}


def test_cluster_head_has_train_driver_resource(prepared_cluster):
    head = prepared_cluster["available_node_types"][prepared_cluster["head_node_type"]]
    assert head["node_config"]["InstanceType"] == "m5.2xlarge"
    assert head["resources"]["TRAIN_DRIVER"] >= 1
    assert head["resources"]["CPU"] == 8
    assert not head["resources"].get("GPU")


def test_cluster_has_autoscaling_gpu_worker(prepared_cluster):
    head_type = prepared_cluster["head_node_type"]
    workers = {k: v for k, v in prepared_cluster["available_node_types"].items() if k != head_type}
    gpu = [
        v
        for v in workers.values()
        if re.match(r"^(g|p)\d", v["node_config"]["InstanceType"]) or v["resources"].get("GPU")
    ]
    assert gpu, "no GPU worker node type"
    assert all(v["min_workers"] == 0 for v in gpu)
    assert any(v["max_workers"] >= 1 for v in gpu)
    assert all("TRAIN_DRIVER" not in v["resources"] for v in workers.values())


def test_cluster_image_and_setup_match_installed_ray(prepared_cluster, raw_cluster):
    version = prepared_cluster["_ray_version"]
    assert prepared_cluster["docker"]["image"] == f"rayproject/ray:{version}-py311-gpu"
    setup = " ".join(raw_cluster["setup_commands"])
    assert "pip install" in setup and "-e ~/swiniqa" in setup
    assert f"=={version}" in setup
    assert raw_cluster["file_mounts"]["~/swiniqa"] == "."
    assert {".venv", "runs", ".git"} <= set(raw_cluster["rsync_exclude"])
    # the head's autoscaler needs boto3 (we override Ray's default head_setup_commands)
    assert any("boto3" in c for c in prepared_cluster["head_setup_commands"])


def test_cluster_optional_blocks_still_validate(raw_cluster):
    """Uncommenting the documented optional blocks (EFS, token auth, worker IAM, spot) stays valid."""
    pytest.importorskip("ray")
    from ray.autoscaler._private.util import prepare_config, validate_config

    text = CLUSTER.read_text().replace("initialization_commands: []\n", "")
    for pat in [r"# (- -v /data:/data)", r"# (- --env RAY_AUTH_MODE=token)", r'# ("~/\.ray/auth_token")',
                r"# (initialization_commands:)", r"# (  - sudo mkdir)", r"# (IamInstanceProfile:)",
                r"# (  Arn: arn)", r"# (InstanceMarketOptions:)", r"# (  MarketType: spot)"]:
        text, n = re.subn(pat, r"\1", text)
        assert n == 1, pat
    cfg = prepare_config(yaml.safe_load(text))
    validate_config(cfg)
    assert "--env RAY_AUTH_MODE=token" in cfg["docker"]["run_options"]
    assert cfg["available_node_types"]["gpu_worker"]["node_config"]["InstanceMarketOptions"] == {"MarketType": "spot"}


def test_cluster_yaml_has_no_credentials():
    text = CLUSTER.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{12,}", text)
    assert not re.search(r"(?i)aws_(secret_)?access_key|secret_access|RAY_AUTH_TOKEN=", text)
    assert "# CHANGE:" in text


# --------------------------------------------------------------------------- launch_sweep.sh


def test_launch_dry_run_prints_commands(tmp_path):
    r = _run(LAUNCH, "lr", "--seeds", 3, "--dry-run", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines and all(line.startswith("+ ") for line in lines), r.stdout
    assert any(re.match(r"\+ ray up -y \S*cluster\.yaml$", line) for line in lines), r.stdout
    assert any(line.startswith("+ ray dashboard ") for line in lines), r.stdout
    submit = [line for line in lines if " ray job submit " in line]
    assert len(submit) == 1, r.stdout
    submit = submit[0]
    assert "RAY_ADDRESS=http://127.0.0.1:8265" in submit
    assert "--working-dir ." in submit and "--no-wait" in submit
    assert "-- swiniqa tune lr --preset paper --seeds 3 --output s3://CHANGE-ME-bucket/swiniqa" in submit
    assert "RAY_AUTH_MODE" not in submit


def test_launch_dry_run_options_and_passthrough(tmp_path):
    env = _env(tmp_path, SWINIQA_STORAGE="s3://my-bucket/iqa")
    r = _run(LAUNCH, "ablation", "--no-up", "--seeds", 5, "--dry-run", "--resume", "--", "--epochs", "2",
             tmp_path=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "ray up" not in r.stdout
    assert ("swiniqa tune ablation --preset paper --seeds 5 --output s3://my-bucket/iqa --resume --epochs 2"
            in r.stdout)


def test_launch_token_auth_is_passed_through(tmp_path):
    env = _env(tmp_path, RAY_AUTH_MODE="token")
    (tmp_path / "home" / ".ray").mkdir(parents=True)
    (tmp_path / "home" / ".ray" / "auth_token").write_text("x" * 32)
    r = _run(LAUNCH, "size", "--dry-run", tmp_path=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "+ RAY_AUTH_MODE=token RAY_ADDRESS=http://127.0.0.1:8265 ray job submit" in r.stdout
    # no token anywhere -> usage error before anything runs
    (tmp_path / "home" / ".ray" / "auth_token").unlink()
    r = _run(LAUNCH, "size", "--output", "s3://b/p", "--no-up", tmp_path=tmp_path, env=env)
    assert r.returncode == 2 and "token" in r.stderr and r.stdout == ""


@pytest.mark.parametrize(
    "args, needle",
    [
        (["foo"], "unknown study 'foo'"),
        ([], "missing STUDY"),
        (["lr", "--cluster", "does-not-exist.yaml"], "cluster config not found"),
        (["lr", "--seeds", "zero"], "--seeds"),
        (["lr", "--no-up"], "CHANGE-ME"),  # placeholder output outside --dry-run
    ],
)
def test_launch_usage_errors_exit_2_with_one_line(tmp_path, args, needle):
    r = _run(LAUNCH, *args, tmp_path=tmp_path)
    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert needle in r.stderr


def test_launch_help(tmp_path):
    r = _run(LAUNCH, "--help", tmp_path=tmp_path)
    assert r.returncode == 0 and "Usage:" in r.stdout and "--dry-run" in r.stdout


@pytest.fixture
def fake_ray(tmp_path):
    """A `ray` executable that logs its calls; `ray dashboard` serves HTTP on 127.0.0.1:PORT."""
    log = tmp_path / "ray.log"
    fake = tmp_path / "bin" / "ray"
    fake.parent.mkdir()
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "RAY_ADDRESS=${{RAY_ADDRESS:-}} $*" >> {log}\n'
        'if [ "$1" = dashboard ]; then\n'
        f'  exec {sys.executable} -m http.server --bind 127.0.0.1 "$3"\n'
        "fi\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = _env(tmp_path, PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    yield env, log
    for pid_file in tmp_path.glob("swiniqa-dashboard-*.pid"):  # the port-forward stand-in we started
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass


def test_launch_real_run_against_fake_ray(tmp_path, fake_ray):
    """Non-dry path: up, port-forward (a local HTTP server stands in), submit, instructions."""
    env, log = fake_ray
    port = free_port()
    r = _run(LAUNCH, "lr", "--seeds", 2, "--output", "s3://b/p", "--port", port, tmp_path=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    calls = log.read_text().splitlines()
    assert calls[0].endswith(" up -y cluster.yaml")
    assert calls[1].endswith(f" dashboard --port {port} cluster.yaml")
    assert calls[2].startswith(f"RAY_ADDRESS=http://127.0.0.1:{port} job submit")
    assert "-- swiniqa tune lr --preset paper --seeds 2 --output s3://b/p" in calls[2]
    assert "ray job logs -f swiniqa-lr-" in r.stdout and "ray down -y cluster.yaml" in r.stdout
    # a second submission reuses our port-forward instead of failing on the busy port
    r = _run(LAUNCH, "lr", "--no-up", "--output", "s3://b/p", "--port", port, tmp_path=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "reusing dashboard port-forward" in r.stderr
    assert sum(" dashboard " in c for c in log.read_text().splitlines()) == 1


def test_launch_refuses_busy_dashboard_port(tmp_path, fake_ray):
    """Never submit to whatever else listens on the port (e.g. a local Ray dashboard)."""
    env, log = fake_ray
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = _run(LAUNCH, "lr", "--no-up", "--output", "s3://b/p", "--port", port, tmp_path=tmp_path, env=env)
    assert r.returncode == 2 and "already in use" in r.stderr
    assert not log.exists()


# --------------------------------------------------------------------------- tensorboard.sh


def test_tensorboard_dry_run_local_dir_binds_localhost(tmp_path):
    (tmp_path / "exp").mkdir()
    r = _run(TENSORBOARD, tmp_path / "exp", "--port", 6007, "--dry-run", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"+ tensorboard --logdir {tmp_path / 'exp'} --host 127.0.0.1 --port 6007"]


@pytest.mark.parametrize(
    "uri, sync",
    [("s3://bucket/swiniqa/lr-study", "+ aws s3 sync s3://bucket/swiniqa/lr-study "),
     ("gs://bucket/swiniqa/lr-study", "+ gsutil -m rsync -r ")],
)
def test_tensorboard_dry_run_syncs_cloud_uri_first(tmp_path, uri, sync):
    r = _run(TENSORBOARD, uri, "--dry-run", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(sync))
    cache = tmp_path / "home" / ".cache" / "swiniqa" / "tensorboard" / uri[:2] / "bucket" / "swiniqa" / "lr-study"
    assert lines[i + 1:] == [f"+ tensorboard --logdir {cache} --host 127.0.0.1 --port 6006"]


def test_tensorboard_dry_run_cluster_uses_rsync_down(tmp_path):
    r = _run(TENSORBOARD, "/data/runs/lr", "--cluster", CLUSTER, "--dry-run", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"+ ray rsync-down {CLUSTER} /data/runs/lr/ " in r.stdout
    assert "--host 127.0.0.1" in r.stdout.splitlines()[-1]


@pytest.mark.parametrize("args", [["--", "--bind_all"], ["--", "--host", "0.0.0.0"], ["http://x/y"], ["--nope"]])
def test_tensorboard_rejects_public_bind_and_bad_args(tmp_path, args):
    r = _run(TENSORBOARD, *args, "--dry-run", tmp_path=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
