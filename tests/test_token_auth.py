"""Ray 2.59+ token authentication on: a real (tiny) `swiniqa train` against a Ray that enforces a token.

The Ray is started in its own process with ``RAY_AUTH_MODE=token``; the test first shows that the cluster
really refuses a wrong token (so auth is on, not silently off), then trains through it with the right one.
"""

import json
import os
import secrets
import signal
import subprocess
import sys

HOLD = """
import sys, time, ray
ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
print(ray.get_runtime_context().gcs_address, flush=True)
try:
    while True:
        time.sleep(0.5)
except KeyboardInterrupt:
    ray.shutdown()
"""
PROBE = "import ray; ray.init(address='{addr}', logging_level='ERROR'); print('CONNECTED', ray.cluster_resources())"


def test_train_runs_with_ray_token_auth_on(demo_root, tmp_path):
    token = secrets.token_hex(32)
    base = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    server_home, client_home = tmp_path / "server-home", tmp_path / "client-home"
    server_home.mkdir()
    client_home.mkdir()
    server_env = {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "HOME": str(server_home)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=server_env)
    try:
        addr = holder.stdout.readline().strip()
        assert addr, holder.stderr.read()[-2000:] if holder.poll() is not None else "no address"
        client = {**base, "RAY_AUTH_MODE": "token", "HOME": str(client_home), "RAY_ADDRESS": addr}

        # auth is on: a wrong token is refused, by the GCS, for that reason (3 connect attempts, not Ray's 20)
        wrong = subprocess.run([sys.executable, "-c", PROBE.format(addr=addr)], capture_output=True, text=True,
                               env={**client, "RAY_AUTH_TOKEN": secrets.token_hex(32),
                                    "RAY_gcs_server_port_wait_time_s": "3"}, timeout=120)
        assert wrong.returncode != 0 and "CONNECTED" not in wrong.stdout, wrong.stdout[-500:]
        assert "InvalidAuthToken" in wrong.stderr, wrong.stderr[-2000:]

        # and the right token trains through the CLI, without echoing the token
        cmd = [sys.executable, "-m", "swiniqa.cli", "train", "--preset", "demo", "--set", f"data_root={demo_root}",
               "--epochs", "1", "--set", "train_patches=1", "--set", "test_patches=1", "--set", "batch_size=8",
               "--set", "max_images=24", "--output", str(tmp_path / "runs"), "--name", "auth", "--json", "--quiet"]
        r = subprocess.run(cmd, capture_output=True, text=True, env={**client, "RAY_AUTH_TOKEN": token}, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert out["epochs"] == 1 and os.path.isdir(out["checkpoint"])
        assert token not in r.stdout + r.stderr
    finally:
        holder.send_signal(signal.SIGINT)  # ray.shutdown() in the holder stops the Ray it started
        try:
            holder.wait(timeout=60)
        except subprocess.TimeoutExpired:
            holder.kill()
