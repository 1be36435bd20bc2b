"""Several Ray nodes and object storage, on this machine: Ray's own simulated multi-node cluster
(tests/multinode_cluster.py, a 0-CPU head + one-CPU worker nodes) and a local S3 server (moto).

The swiniqa commands run as subprocesses through the console script with ``RAY_ADDRESS``, exactly as on
a real cluster; this test process never joins the cluster (the rest of the suite shares one local Ray).
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import free_port, local_s3, s3_bucket, upload_tree


# ------------------------------------------------------------------ harness: local S3 + simulated cluster
ROOT = Path(__file__).parents[1]
SWINIQA = str(Path(sys.executable).with_name("swiniqa"))
BUCKET = "swiniqa-mn"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A local S3 server (moto) on 127.0.0.1 with one bucket; yields (env for subprocesses, boto3 client).
    The env gives the driver and every simulated node its own dataset cache folder."""
    with local_s3() as endpoint:
        yield s3_bucket(endpoint, BUCKET, tmp_path_factory.mktemp("caches"))


class SimCluster:
    """tests/multinode_cluster.py in its own process (see there): address, node ids, add/remove nodes."""

    def __init__(self, env: dict, workers: int, log: Path):
        self._log = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "multinode_cluster.py"), str(workers)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     env=env)
        info = json.loads(self.proc.stdout.readline() or "{}")
        assert info.get("address"), f"cluster did not start, see {log}"
        self.address, self.head, self.workers = info["address"], info["head"], info["workers"]
        self.caches = dict(info["caches"])

    def add(self) -> str:
        r = self.ask("add")
        self.caches[r["node"]] = r["cache"]
        return r["node"]

    def ask(self, line: str) -> dict:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def train_worker_nodes(self) -> list[str]:
        return self.ask("actors RayTrainWorker")["nodes"]

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except Exception:  # noqa: BLE001 - never leave a cluster behind
            self.proc.kill()
        self._log.close()


@pytest.fixture(scope="module")
def cluster(s3, tmp_path_factory):
    """A 0-CPU head ({"TRAIN_DRIVER": 4}) and 3 one-CPU worker nodes; the S3 endpoint is in every node's env."""
    env, _ = s3
    # the nodes' environment as on a real cluster: Ray Train's preemption watcher not turned off (conftest.py
    # turns it off for this process and the runs it starts, unless a test says otherwise)
    env = {k: v for k, v in env.items() if k != "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"}
    # ... polling the GCS drain state every second (Ray's default: 5 s), so a reclaim notice reaches the workers of
    # a Tune trial (whose Train controller takes its node's environment) well inside a short epoch
    env["RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S"] = "1"
    c = SimCluster(env, 3, tmp_path_factory.mktemp("cluster") / "cluster.log")
    yield c
    c.close()


@pytest.fixture(scope="module")
def s3_demo(s3, small_demo):
    """The small demo dataset in the bucket: s3://BUCKET/data/demo (labels.csv + images/)."""
    return upload_tree(s3[1], BUCKET, small_demo, "data/demo")


def _staged_copies(cache: str) -> list[Path]:
    return sorted(Path(cache).glob("*/.swiniqa-staged.json")) if cache else []


def _train_args(data_root, output: str, name: str, epochs: int, *extra: str) -> list[str]:
    return [SWINIQA, "train", "--preset", "demo", "--data-root", str(data_root), "--epochs", str(epochs),
            "--num-workers", "2", "--set", "max_images=24", "--set", "train_patches=1", "--set", "test_patches=1",
            "--set", "batch_size=8", "--set", "warmup_epochs=0", "--output", output, "--name", name, "--json",
            *extra]


def _keys(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for p in pages for o in p.get("Contents", [])]


def _wait_first_checkpoint(client, proc, prefix: str, timeout: float = 240) -> bool:
    """Until the first checkpoint is registered by Train (its snapshot written) and TensorBoard events are in
    S3, while ``proc`` runs; False if the run ended first."""
    t0 = time.time()
    while proc.poll() is None and time.time() - t0 < timeout:
        keys = _keys(client, prefix)
        if (any(k.endswith("checkpoint_manager_snapshot.json") for k in keys)
                and any("/tensorboard/" in k and "tfevents" in k for k in keys)):
            return True
        time.sleep(0.3)
    return False


def _stderr_of(proc) -> str:
    """The end of a run's stderr for a failure message; a run still going (stuck) is killed first."""
    if proc.poll() is None:
        proc.kill()
    return proc.communicate(timeout=60)[1][-3000:]


def _remove_a_train_worker_node(cluster: SimCluster, workers: int = 2) -> str:
    nodes = cluster.train_worker_nodes()
    assert len(nodes) == workers, nodes  # 0-CPU head, one-CPU nodes: one worker per node
    assert cluster.ask(f"remove {nodes[0]}")["removed"] == nodes[0]
    return nodes[0]


def _download(client, prefix: str, dest: Path) -> Path:
    for k in _keys(client, prefix):
        if k.endswith("/"):  # a folder marker
            continue
        p = dest / k[len(prefix):].lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(BUCKET, k, str(p))
    return dest


def _tb_steps(logdir: Path, tag: str = "val/srcc") -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(logdir))
    ea.Reload()
    return [e.step for e in ea.Scalars(tag)]


# ------------------------------------------------------------------ item 2 + 3: S3 output, a lost node survived
def test_train_from_and_to_s3_survives_losing_a_worker_node(s3, cluster, s3_demo, tmp_path):
    """Dataset, checkpoints, history, curves and TensorBoard all in S3; a node hosting a Train worker is
    killed after the first checkpoint reached S3; the run resumes on the nodes left and finishes."""
    env, client = s3
    run_env = {**env, "RAY_ADDRESS": cluster.address}
    proc = subprocess.Popen(_train_args(s3_demo, f"s3://{BUCKET}/runs", "spot", 5, "--max-failures", "1"),
                            env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_first_checkpoint(client, proc, "runs/spot/"), _stderr_of(proc)
        # the driver's progress queue lives on the driver's node (the head), never on a node that can vanish
        assert cluster.ask("actors _QueueActor")["nodes"] == [cluster.head]
        worker_nodes = cluster.train_worker_nodes()
        lost = _remove_a_train_worker_node(cluster)
        out, err = proc.communicate(timeout=400)
    finally:
        proc.kill()
    cluster.add()  # back to 3 worker nodes for the next tests
    assert proc.returncode == 0, err[-3000:]
    s = json.loads(out.strip().splitlines()[-1])
    assert s["restarts"] >= 1 and s["epochs"] == 5, (lost, s)
    run = f"s3://{BUCKET}/runs/spot"
    assert s["run_dir"] == run and s["tensorboard"] == f"{run}/tensorboard" and s["curves"] == f"{run}/curves.png"
    assert s["checkpoint"].startswith(f"{run}/checkpoint_epoch"), s["checkpoint"]
    keys = set(_keys(client, "runs/spot/"))
    ck = s["checkpoint"][len(f"s3://{BUCKET}/"):]
    assert {f"{ck}/model.safetensors", f"{ck}/config.json", f"{ck}/metrics.json"} <= keys
    assert {"runs/spot/history.csv", "runs/spot/curves.png"} <= keys
    tb = _download(client, "runs/spot/tensorboard/", tmp_path / "tb")
    assert _tb_steps(tb) == [1, 2, 3, 4, 5]  # resumed, and no epoch twice in the curves
    hist = tmp_path / "history.csv"
    client.download_file(BUCKET, "runs/spot/history.csv", str(hist))
    assert [int(float(r["epoch"])) for r in csv.DictReader(open(hist))] == [1, 2, 3, 4, 5]
    # the dataset was staged once on the driver's node and once on each node that ran a Train worker
    assert [json.load(open(m))["uri"] for m in _staged_copies(env["SWINIQA_DATA_CACHE"])] == [s3_demo]
    data_local = _staged_copies(env["SWINIQA_DATA_CACHE"])[0].parent
    assert all(len(_staged_copies(cluster.caches[n])) == 1 for n in worker_nodes), worker_nodes
    # eval and predict take the S3 run: its best checkpoint is copied once, verified, then used
    # (at the same time: the copy is made once under a lock, whichever comes first)
    pngs = [str(p) for p in sorted(data_local.glob("images/*.png"))[:3]]
    ev, pr = (subprocess.Popen(a, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for a in (
        [SWINIQA, "eval", "--checkpoint", run, "--dataset", "demo", "--data-root", s3_demo, "--json"],
        [SWINIQA, "predict", "--checkpoint", run, *pngs, "--json"]))
    (ev_out, ev_err), (pr_out, pr_err) = ev.communicate(timeout=300), pr.communicate(timeout=300)
    assert ev.returncode == 0, ev_err[-2000:]
    e = json.loads(ev_out.strip().splitlines()[-1])
    assert -1 <= e["srcc"] <= 1 and e["checkpoint"].startswith(env["SWINIQA_DATA_CACHE"])
    assert pr.returncode == 0, pr_err[-2000:]
    assert json.loads(pr_out.strip().splitlines()[-1])["n_images"] == 3
    copies = [json.load(open(m))["uri"] for m in _staged_copies(env["SWINIQA_DATA_CACHE"])]
    assert copies.count(run) == 1  # one copy of the run, shared by eval and predict


def test_lost_node_without_max_failures_is_one_line(s3, cluster, small_demo):
    env, client = s3
    run_env = {**env, "RAY_ADDRESS": cluster.address}
    proc = subprocess.Popen(_train_args(small_demo, f"s3://{BUCKET}/runs", "nofail", 5, "--num-workers", "1"),
                            env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_first_checkpoint(client, proc, "runs/nofail/"), _stderr_of(proc)
        lost = _remove_a_train_worker_node(cluster, workers=1)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    cluster.add()
    assert proc.returncode == 3, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"swiniqa: error: lost node {lost[:12]} "), err[-3000:]
    assert f"--name nofail --output s3://{BUCKET}/runs" in last and "--max-failures" in last
    assert "Traceback" not in err
    # --json: the last stdout line is the same error as a JSON object, with the exit code
    assert json.loads(out.strip().splitlines()[-1]) == {"error": last.removeprefix("swiniqa: error: "), "exit_code": 3}


# ------------------------------------------------------------------ item 4: a study sweep across nodes, S3 storage
def _sweep_args(data_root, name: str) -> list[str]:
    """`swiniqa tune augment` (2 trials: colour jitter off/on, both at once) of elastic 1-2 worker trials, 2
    epochs of 128 global batches of 4 patches (an epoch outlasts a 5 s reclaim deadline), reclaim notices heard
    at every step, no ASHA (with two trials at once its stops depend on which result arrives first);
    ``--max-failures 1``: one lost node.

    The trials start together on a fresh autoscaling coordinator (:func:`_forget_finished_elastic_requests`):
    one after the other, the second sometimes started on 1 worker because the first one's request was still
    held (measured in a clean-clone CI run), and the sizes of the two sweeps must match to compare them."""
    return [SWINIQA, "tune", "augment", "--preset", "demo", "--seeds", "1", "--data-root", str(data_root), "--epochs",
            "2", "--no-early-stop", "--num-workers", "1-2", "--max-failures", "1", "--set", "max_images=16",
            "--set", "train_patches=32", "--set", "batch_size=4", "--set", "preemption_check_steps=1",
            "--max-concurrent", "2", "--output", f"s3://{BUCKET}/studies", "--name", name, "--json"]


def _read(client, key: str):
    return json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def _sweep_nodes(cluster: SimCluster, env: dict) -> None:
    """5 one-CPU nodes (2 trials x 2 workers and a spare) and a fresh autoscaling coordinator."""
    while len(cluster.ask("nodes")["nodes"]) < 5:
        cluster.add()
    _forget_finished_elastic_requests(cluster, env)


def _back_to_three_nodes(cluster: SimCluster) -> None:
    nodes = cluster.ask("nodes")["nodes"]
    for n in nodes[3:]:
        cluster.ask(f"remove {n}")
    while len(cluster.ask("nodes")["nodes"]) < 3:
        cluster.add()


def _run_nodes(client, prefix: str, cluster: SimCluster) -> list[str]:
    """Node ids of the workers of a Train run's current attempt (its rank 0's environment.json names them)."""
    try:
        workers = _read(client, f"{prefix}environment.json")["worker_list"]
    except client.exceptions.NoSuchKey:
        return []
    short = [w["node"].rsplit("/", 1)[-1] for w in workers]
    return [n for s_ in short for n in cluster.ask("nodes")["nodes"] if n.startswith(s_)]


@pytest.fixture(scope="module")
def undisturbed(s3, cluster, small_demo):
    """The sweep of :func:`_sweep_args` on 5 nodes (2 trials x 2 workers + a spare, as the disturbed sweep has),
    nothing disturbed: (summary, nodes its Train workers ran on, stderr)."""
    env, _ = s3
    _sweep_nodes(cluster, env)
    proc = subprocess.Popen(_sweep_args(small_demo, "undisturbed"), env={**env, "RAY_ADDRESS": cluster.address},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    nodes: set[str] = set()
    deadline = time.time() + 600
    try:
        while proc.poll() is None:
            assert time.time() < deadline, "the sweep did not finish in 600 s: " + _stderr_of(proc)
            nodes.update(cluster.train_worker_nodes())
            time.sleep(1.0)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        _back_to_three_nodes(cluster)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1]), nodes, err


def test_tune_sweep_across_nodes_to_s3_report_and_pull(s3, cluster, undisturbed, tmp_path):
    """`swiniqa tune augment` (its 2 trials, each on 2 of the 3 nodes) with S3 storage, then report, pull and
    TensorBoard from S3. The code path is the same for every study, so the suite runs this small one."""
    env, client = s3
    s, nodes, _ = undisturbed
    exp = f"s3://{BUCKET}/studies/undisturbed"
    assert s["experiment"] == exp
    assert len(nodes) >= 2, nodes  # trials ran on several worker nodes (never the 0-CPU head)
    assert cluster.head not in nodes
    keys = set(_keys(client, "studies/undisturbed/"))
    assert "studies/undisturbed/results.json" in keys
    report = sorted(k for k in keys if k.startswith("studies/undisturbed/report/"))
    assert any(k.endswith(".png") for k in report) and any(k.endswith(".md") for k in report), report
    # `swiniqa report` rebuilds the report from S3 alone
    client.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in report]})
    r = subprocess.run([SWINIQA, "report", exp, "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(k for k in _keys(client, "studies/undisturbed/report/")) == report
    # `swiniqa pull` copies the best checkpoint, verified
    dest = tmp_path / "best"
    r = subprocess.run([SWINIQA, "pull", exp, "--dest", str(dest), "--json"], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert list(dest.rglob("model.safetensors")) and list(dest.rglob("pulled.json"))
    # scripts/tensorboard.sh syncs the study's event files from S3 and serves its curves
    port = free_port()
    tb = subprocess.Popen(["bash", str(ROOT / "scripts" / "tensorboard.sh"), exp, "--port", str(port), "--cache",
                           str(tmp_path / "tbcache")],
                          env={**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"},
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        tags = _get_json(f"http://127.0.0.1:{port}/data/plugin/scalars/tags", tb)
    finally:
        if tb.poll() is None:
            os.killpg(tb.pid, signal.SIGTERM)
        tb.wait(timeout=30)
    runs_with_val = [r for r, t in tags.items() if "val/srcc" in t]
    assert len(runs_with_val) == 2, tags  # one curve per trial of the grid


def _get_json(url: str, proc, timeout: float = 120):
    import urllib.request

    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            time.sleep(1.0)
    raise AssertionError(f"nothing served at {url}")


# ------------------------------------------------------------------ issue 19: spot-ready training
def _history(client, prefix: str, tmp_path: Path) -> list[dict]:
    hist = tmp_path / f"{prefix.strip('/').replace('/', '-')}-history.csv"
    client.download_file(BUCKET, f"{prefix}history.csv", str(hist))
    return list(csv.DictReader(open(hist)))


def _latest_checkpoint_workers(client, prefix: str) -> int:
    """Workers of the run's newest epoch checkpoint in S3 (its metrics.json), 0 before the first."""
    names = [k for k in _keys(client, prefix) if k.endswith("/metrics.json") and "_step" not in k]
    if not names:
        return 0
    newest = max(names, key=lambda k: k.split("/")[-2])
    return int(json.loads(client.get_object(Bucket=BUCKET, Key=newest)["Body"].read())["workers"])


def _wait(what, proc, timeout: float = 300, every: float = 0.5):
    """Poll ``what()`` until it is truthy while ``proc`` runs; its last value (falsy on timeout / exit)."""
    t0 = time.time()
    while proc.poll() is None and time.time() - t0 < timeout:
        got = what()
        if got:
            return got
        time.sleep(every)
    return None


def test_elastic_run_shrinks_on_a_lost_node_and_grows_back(s3, cluster, small_demo, tmp_path):
    """``--num-workers 1-2`` on exactly two free one-CPU nodes: after the first checkpoint one worker's node is
    killed; the run continues on the survivor (1 worker, from the S3 checkpoint); a node is added and at the
    next resize check (5 s) the run grows back to 2 workers; it finishes every epoch once and says when and why
    its size changed (progress lines, ``resizes`` in the summary, ``workers`` in history.csv)."""
    env, client = s3
    EPOCHS = 10
    _forget_finished_elastic_requests(cluster, env)  # the elastic sweep before this test: start on 2 workers
    spare = [n for n in cluster.ask("nodes")["nodes"]][0]
    cluster.ask(f"remove {spare}")  # two worker nodes left: a lost one cannot be replaced at once
    # 16 patches an image: epochs of seconds even on an idle machine, so the run is still going when the node
    # comes back (with 1 patch an idle machine finished all epochs, 0.5 s each, before the resize check)
    args = _train_args(small_demo, f"s3://{BUCKET}/runs", "elastic", EPOCHS, "--num-workers", "1-2", "--max-failures",
                       "1", "--set", "resize_check_s=5", "--set", "train_patches=16")
    t0 = time.time()
    proc = subprocess.Popen(args, env={**env, "RAY_ADDRESS": cluster.address}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    times = {}
    try:
        assert _wait_first_checkpoint(client, proc, "runs/elastic/"), _stderr_of(proc)
        assert len(cluster.train_worker_nodes()) == 2
        lost = _remove_a_train_worker_node(cluster)
        times["lost"] = time.time()
        # an epoch checkpointed by the 1-worker group (an alive-actor count would also see the old group's survivor)
        assert _wait(lambda: _latest_checkpoint_workers(client, "runs/elastic/") == 1, proc), _stderr_of(proc)
        times["shrunk"] = time.time()
        cluster.add()
        times["added"] = time.time()
        assert _wait(lambda: _latest_checkpoint_workers(client, "runs/elastic/") == 2, proc), _stderr_of(proc)
        times["grown"] = time.time()
        out, err = proc.communicate(timeout=400)
    finally:
        proc.kill()
        while len(cluster.ask("nodes")["nodes"]) < 3:
            cluster.add()  # back to 3 worker nodes for the next tests
    print(f"elastic: first 1-worker epoch checkpointed {times['shrunk'] - times['lost']:.0f} s after the loss, first "
          f"2-worker one {times['grown'] - times['added']:.0f} s after the node came; run {time.time() - t0:.0f} s")
    assert proc.returncode == 0, err[-3000:]
    s = json.loads(out.strip().splitlines()[-1])
    assert s["epochs"] == EPOCHS and s["restarts"] >= 2, s
    whys = [(r["from"], r["to"], r["why"]) for r in s["resizes"]]
    assert whys == [(2, 1, "node lost"), (1, 2, "capacity back")], (lost, s["resizes"])
    assert "workers 2 -> 1 (node lost): resuming at epoch" in err and "workers 1 -> 2 (capacity back)" in err
    hist = _history(client, "runs/elastic/", tmp_path)
    assert [int(r["epoch"]) for r in hist] == list(range(1, EPOCHS + 1))  # every epoch once
    workers = [int(r["workers"]) for r in hist]
    assert workers[0] == 2 and 1 in workers and workers[-1] == 2, workers


def test_reclaim_notice_checkpoints_mid_epoch_and_the_restart_resumes_from_that_step(s3, cluster, small_demo,
                                                                                    tmp_path):
    """A node of a 2-worker run is drained for preemption with a deadline (Ray's reclaim notice, as the
    autoscaler sends for a spot instance) once the workers train, then killed after the deadline as the cloud
    would. The workers hear of it at their next step, write a checkpoint of that step of the epoch to S3 and keep
    training; at the deadline Ray restarts them (on the preemption budget: ``--max-failures 0``) and the run
    continues from that step, not from the epoch's start, and finishes its one epoch."""
    env, client = s3
    deadline_s = 8
    # one long epoch (~150 global batches of 2 patches) that outlasts the deadline
    args = _train_args(small_demo, f"s3://{BUCKET}/runs", "reclaim", 1, "--set", "max_images=60", "--set",
                       "train_patches=6", "--set", "batch_size=2", "--set", "preemption_check_steps=1")
    # Ray Train's preemption watcher is on by default on a cluster (swiniqa keeps it off only for its own local
    # Ray; tests/conftest.py turns it off for the suite); it polls the GCS drain state every second here (5 s
    # by default) so the deadline can be short. Ray Train passes both from the driver to its controller.
    run_env = {**env, "RAY_ADDRESS": cluster.address, "RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S": "1"}
    run_env.pop("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", None)
    proc = subprocess.Popen(args, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # rank 0 writes environment.json into the run folder when its setup is done, right before training
        assert _wait(lambda: "runs/reclaim/environment.json" in _keys(client, "runs/reclaim/"), proc), _stderr_of(proc)
        node = cluster.train_worker_nodes()[-1]
        t0 = time.time()
        d = cluster.ask(f"drain {node} {deadline_s}")
        assert d["accepted"], d
        mid = _wait(lambda: [k for k in _keys(client, "runs/reclaim/") if "_step" in k], proc,
                    timeout=deadline_s + 30, every=0.2)
        seen = time.time() - t0
        assert mid, _stderr_of(proc)
        time.sleep(max(0.0, d["deadline_ms"] / 1000 - time.time()) + 1.0)
        cluster.ask(f"remove {node}")  # the instance goes away after its deadline
        out, err = proc.communicate(timeout=400)
    finally:
        proc.kill()
        while len(cluster.ask("nodes")["nodes"]) < 3:
            cluster.add()
    print(f"reclaim: mid-epoch checkpoint in S3 {seen:.1f} s after the notice (deadline {deadline_s} s); "
          + " | ".join(ln for ln in err.splitlines() if "reclaim" in ln or "resuming" in ln))
    assert proc.returncode == 0, err[-3000:]
    s = json.loads(out.strip().splitlines()[-1])
    assert s["epochs"] == 1 and s["restarts"] >= 1, s
    folder = mid[0][len("runs/reclaim/"):].split("/")[0]  # checkpoint_epoch0001_stepSSSSS
    assert folder.startswith("checkpoint_epoch0001_step"), mid
    step = int(folder.split("_step")[1])
    assert step > 0 and f"checkpoint of epoch 1 step {step}/" in err, err[-3000:]
    assert f"resuming at epoch 1 step {step} on 2 worker(s) after a reclaim notice" in err, err[-3000:]
    hist = _history(client, "runs/reclaim/", tmp_path)
    assert [int(r["epoch"]) for r in hist] == [1]


# ------------------------------------------------------------------ issue 19 item 3: a sweep of elastic trials
def _ckpt_dirs(client, prefix: str, mid_epoch: bool) -> list[str]:
    """Checkpoint folders (names) under a Train run's prefix with their metrics.json in S3: mid-epoch ones
    (``checkpoint_epochNNNN_stepSSSSS``) or epoch ones."""
    names = {k[len(prefix):].split("/")[0] for k in _keys(client, prefix) if k.endswith("/metrics.json")}
    return sorted(n for n in names if n.startswith("checkpoint_") and ("_step" in n) == mid_epoch)


def _snapshot(client, prefix: str) -> str:
    """Ray Train's checkpoint manager snapshot of a run (the checkpoints it registered), as text."""
    try:
        return client.get_object(Bucket=BUCKET, Key=f"{prefix}checkpoint_manager_snapshot.json")["Body"].read().decode()
    except client.exceptions.NoSuchKey:
        return ""


def _recorded_epochs(client, prefix: str) -> list[int]:
    """Epochs of a sweep trial's record (``trial.json``: written by the driver as Tune gets each result)."""
    try:
        return [int(e["epoch"]) for e in _read(client, f"{prefix}trial.json")["epochs"]]
    except client.exceptions.NoSuchKey:
        return []


def _forget_finished_elastic_requests(cluster: SimCluster, env: dict) -> None:
    """Restart Ray's autoscaling coordinator (a detached actor: it comes back empty), as if 180 s had passed.

    Elastic Train runs ask it for their MAX workers and it reserves nodes among the requests it holds; a run
    that ended as its sweep's driver exited can leave its request there until it expires (180 s), and the next
    elastic run then starts on the nodes left over (measured here: 1 worker of 2, growing at its resize check).
    The sweeps compared below must both start their trials on 2 workers."""
    code = ("import ray\nray.init(address=%r, logging_level='ERROR')\ntry:\n"
            "    a = ray.get_actor('AutoscalingCoordinator', namespace='AutoscalingCoordinator')\n"
            "except ValueError:\n    a = None  # no elastic run yet\n"
            "if a is not None:\n    ray.kill(a, no_restart=False)\n" % cluster.address)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


#: Seconds from the reclaim notice to the node's end in the sweep test (real clouds: 30 s to 2 min).
RECLAIM_DEADLINE_S = 5


def _same(a, b, rel: float = 2e-6) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], rel) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return a == pytest.approx(b, rel=rel, abs=rel, nan_ok=True)
    return a == b


def test_elastic_sweep_survives_a_reclaimed_and_a_lost_node_and_reports_as_undisturbed(s3, cluster, small_demo,
                                                                                     undisturbed):
    """The sweep of ``undisturbed`` again, one of its trials disturbed twice while the other runs (5 nodes: a
    spare): a node of the trial's 2 workers is drained
    for preemption with a 5 s deadline (a reclaim notice) mid-epoch, and goes away after the deadline (the
    workers checkpoint that step at once; at the deadline Ray restarts them on the spare node and the trial
    resumes from that step; the autoscaler's replacement joins); after the next epoch's result a node of the
    trial is killed without notice (it resumes from that epoch). ``--max-failures 1`` holds both only because
    the reclaim draws on the preemption budget. A spare node is there at each restart, so the trial keeps its 2
    workers and its steps are those of the undisturbed sweep: the report must be the same (2e-6; measured equal).
    A trial that shrinks takes the same steps too (test_spot_ddp.py), but AdamW turns their float-order noise
    into whole-lr differences (docs/cluster.md §8), so a shrunk trial's report cannot be held to this."""
    env, client = s3
    run_env = {k: v for k, v in env.items() if k != "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"}
    _sweep_nodes(cluster, env)
    proc = subprocess.Popen(_sweep_args(small_demo, "disturbed"), env={**run_env, "RAY_ADDRESS": cluster.address},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    train = "studies/disturbed/train/"
    run = "jitter-off-seed0"
    prefix = f"{train}{run}/"
    try:
        # the trial's rank 0 wrote environment.json: its 2 workers are set up and start training
        first = _wait(lambda: [n for n in _run_nodes(client, prefix, cluster)], proc, every=0.2)
        assert first and len(first) == 2, (first, _stderr_of(proc))
        reclaimed = first[-1]
        drain = cluster.ask(f"drain {reclaimed} {RECLAIM_DEADLINE_S}")
        assert drain["accepted"], drain
        # the step's checkpoint is registered by Ray Train (in its snapshot), not only uploaded
        mid = _wait(lambda: [d for d in _ckpt_dirs(client, prefix, mid_epoch=True) if d in _snapshot(client, prefix)],
                    proc, timeout=RECLAIM_DEADLINE_S + 30, every=0.2)
        assert mid and not _ckpt_dirs(client, prefix, mid_epoch=False), (mid, _stderr_of(proc))
        # at the deadline Ray Train restarts the workers away from the drained node; the instance goes after it
        time.sleep(max(0.0, drain["deadline_ms"] / 1000 - time.time()) + 1.0)
        cluster.ask(f"remove {reclaimed}")
        cluster.add()  # the replacement: a spare node for the restart after the loss below
        # the resumed attempt's first epoch result reached Tune (its checkpoint registered), then a node of the
        # trial is lost without notice
        assert _wait(lambda: _recorded_epochs(client, prefix), proc), _stderr_of(proc)
        now = _run_nodes(client, prefix, cluster)
        assert len(now) == 2 and reclaimed not in now, (first, now)
        lost = now[0]
        cluster.ask(f"remove {lost}")
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
        _back_to_three_nodes(cluster)
    assert proc.returncode == 0, err[-3000:]
    step = int(mid[0].split("_step")[1])
    rec = _read(client, f"{prefix}trial.json")
    assert rec["status"] == "completed" and rec["final"], (rec, err[-3000:])
    print(f"disturbed sweep: {run} reclaimed at epoch 1 step {step}, node {lost[:12]} lost; resumes "
          f"{rec['final'].get('resumes')}")
    assert rec["final"]["restarts"] == 2, rec
    (e1, s1, *r1), (e2, s2, *r2) = [(r["epoch"], r["step"], r["from"], r["to"], r["why"])
                                    for r in rec["final"]["resumes"]]
    assert (e1, s1, r1, s2, r2) == (1, step, [2, 2, "reclaim notice"], 0, [2, 2, "restart"]) and e2 >= 2, rec["final"]
    assert [int(r["workers"]) for r in csv.DictReader(io.StringIO(client.get_object(
        Bucket=BUCKET, Key=f"{prefix}history.csv")["Body"].read().decode()))] == [2, 2]
    # the report: every trial's row (status, epochs, best validation, test metrics) and curves as undisturbed
    ours = {r["run"]: r for r in _read(client, "studies/disturbed/results.json")}
    ref = {r["run"]: r for r in _read(client, "studies/undisturbed/results.json")}
    assert set(ours) == set(ref) and len(ours) == 2
    skip = {"wall_time_s", "time_total_s", "trial_id", "experiment", "checkpoint", "run_dir", "restarts", "resumes",
            "environment_id", "config"}
    diffs = {(name, k): (ours[name].get(k), v) for name, row in ref.items() for k, v in row.items()
             if k not in skip and not _same(ours[name].get(k), v)}
    diffs.update({(name, "config", k): (ours[name]["config"].get(k), v) for name, row in ref.items()
                  for k, v in row["config"].items()
                  if k not in ("name", "output") and not _same(ours[name]["config"].get(k), v)})
    assert not diffs, diffs
    summary, ref_summary = json.loads(out.strip().splitlines()[-1]), undisturbed[0]
    for key in ("cells", "comparisons"):  # the tables' numbers: means, spreads, intervals, the jitter off->on CI
        a, b = summary[key], ref_summary[key]
        assert len(a) == len(b) and all(_same(x.get(k), v) for x, y in zip(a, b) for k, v in y.items()), (key, a, b)
    for name in ref:
        a = _read(client, f"studies/disturbed/train/{name}/trial.json")["epochs"]
        b = _read(client, f"studies/undisturbed/train/{name}/trial.json")["epochs"]
        keys = ("epoch", "train_loss", "val_srcc", "val_plcc")
        assert len(a) == len(b) and all(_same(x[k], y[k]) for x, y in zip(a, b) for k in keys), (name, a, b)
