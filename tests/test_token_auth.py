"""Ray 2.59+ token authentication on: a real (tiny) `swiniqa train` in its own process and Ray."""

import json
import os
import secrets
import subprocess
import sys


def test_train_runs_with_ray_token_auth_on(demo_root, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "HOME": str(home)}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "swiniqa.cli", "train", "--preset", "demo", "--set", f"data_root={demo_root}",
           "--epochs", "1", "--set", "train_patches=1", "--set", "test_patches=1", "--set", "batch_size=8",
           "--set", "max_images=24", "--output", str(tmp_path / "runs"), "--name", "auth", "--json", "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["epochs"] == 1 and os.path.isdir(out["checkpoint"])
    assert "RAY_AUTH_TOKEN" not in r.stdout + r.stderr and env["RAY_AUTH_TOKEN"] not in r.stdout + r.stderr
