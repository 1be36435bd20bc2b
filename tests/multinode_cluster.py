"""A simulated multi-node Ray cluster in its own process, driven over stdin/stdout (test helper).

``python tests/multinode_cluster.py WORKERS`` starts Ray's own ``ray.cluster_utils.Cluster``: a head with
0 CPUs and ``{"TRAIN_DRIVER": 4}`` (as ``cluster.yaml``'s head) and WORKERS one-CPU nodes, then prints one
JSON line ``{"address", "dashboard", "head", "workers": [node ids]}`` and answers one JSON line per command:

* ``add``                  -> ``{"node": id, "cache": dir}``  another one-CPU node

With ``SWINIQA_MN_CACHE_BASE`` set, every worker node gets its own ``SWINIQA_DATA_CACHE`` under it (the
raylet's environment, inherited by its workers), so staging a dataset really happens once per node.
* ``remove NODE_ID``       -> ``{"removed": id}`` the node's processes are SIGKILLed (a lost spot instance)
* ``actors CLASS``         -> ``{"nodes": [node ids of alive actors whose class name is CLASS]}``
* ``nodes``                -> ``{"nodes": [ids of the worker nodes this helper started and did not remove]}``
* ``drain NODE_ID SECONDS`` -> ``{"drained": id, "accepted": bool, "deadline_ms": ms}`` a reclaim notice: the GCS
  marks the node draining for preemption with a deadline SECONDS from now (what the autoscaler does for a
  spot instance); the node keeps running until ``remove``
* ``quit``                 -> shuts the cluster down

It runs in its own process so the test process never connects to it: the rest of the suite shares one
local ``ray.init`` (tests/conftest.py), and ``Cluster.shutdown`` resets process-global Ray state.
Environment (``AWS_ENDPOINT_URL`` of the local S3 server, credentials) is inherited by every raylet.
"""

from __future__ import annotations

import json
import sys

from helpers import free_port


def _alive_actor_nodes(dashboard: str, class_name: str) -> list[str]:
    from ray.util.state import list_actors

    actors = list_actors(address=dashboard, filters=[("state", "=", "ALIVE"), ("class_name", "=", class_name)],
                         limit=1000, raise_on_missing_output=False)
    return sorted({a.node_id for a in actors})


def _add(cluster, caches: dict):
    """One one-CPU node with its own dataset cache folder (node-local, as on a real cluster)."""
    import os

    base = os.environ.get("SWINIQA_MN_CACHE_BASE")
    env = {"SWINIQA_DATA_CACHE": os.path.join(base, f"node-{len(caches)}")} if base else None
    n = cluster.add_node(num_cpus=1, env_vars=env)
    caches[n.node_id] = (env or {}).get("SWINIQA_DATA_CACHE")
    return n


def _drain(cluster, node_id: str, seconds: float) -> dict:
    """Ray's own preemption drain (``ray drain-node --reason DRAIN_NODE_REASON_PREEMPTION``), through the GCS."""
    import time

    import ray._raylet
    from ray.core.generated import autoscaler_pb2

    deadline_ms = time.time_ns() // 1_000_000 + int(seconds * 1000)
    reason = autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_PREEMPTION")
    accepted, why = ray._raylet.GcsClient(address=cluster.address).drain_node(node_id, reason, "reclaimed", deadline_ms)
    return {"drained": node_id, "accepted": bool(accepted), "why": why, "deadline_ms": deadline_ms}


def main(workers: int) -> None:
    from ray._common.utils import reset_ray_address
    from ray.cluster_utils import Cluster

    dash_port = free_port()
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={
        "num_cpus": 0, "resources": {"TRAIN_DRIVER": 4}, "dashboard_host": "127.0.0.1",
        "dashboard_port": dash_port, "include_dashboard": True})
    # Cluster writes /tmp/ray/ray_current_cluster, which a plain ray.init() anywhere on this machine would
    # then join: forget it, everything here connects through RAY_ADDRESS.
    reset_ray_address()
    nodes, caches = {}, {}
    for _ in range(workers):
        n = _add(cluster, caches)
        nodes[n.node_id] = n
    cluster.wait_for_nodes()
    dashboard = f"http://127.0.0.1:{dash_port}"
    print(json.dumps({"address": cluster.address, "dashboard": dashboard, "head": cluster.head_node.node_id,
                      "workers": list(nodes), "caches": caches}), flush=True)
    try:
        for line in sys.stdin:
            cmd, _, arg = line.strip().partition(" ")
            if cmd == "add":
                n = _add(cluster, caches)
                nodes[n.node_id] = n
                reply = {"node": n.node_id, "cache": caches[n.node_id]}
            elif cmd == "remove":
                cluster.remove_node(nodes.pop(arg), allow_graceful=False)
                reply = {"removed": arg}
            elif cmd == "nodes":
                reply = {"nodes": list(nodes)}
            elif cmd == "drain":
                node_id, seconds = arg.split()
                reply = _drain(cluster, node_id, float(seconds))
            elif cmd == "actors":
                reply = {"nodes": _alive_actor_nodes(dashboard, arg)}
            elif cmd == "quit":
                break
            else:
                reply = {"error": f"unknown command {cmd!r}"}
            print(json.dumps(reply), flush=True)
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
