"""Can the Ray cluster hold the workers a run asks for? Refuse at once locally; say so while waiting on a cluster.

Ray Train waits silently, forever, for a placement group that does not fit: ``--num-workers 4`` on a
2-CPU machine printed nothing for minutes. On a local Ray nothing will ever add resources, so a run
that does not fit is a user error with the numbers. On a cluster (``RAY_ADDRESS``) the autoscaler may
add nodes, so the run waits, and a line saying what it asked and what the cluster has is logged now and
every ``interval_s`` until the resources are free.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Optional

from swiniqa.errors import SwiniqaError

log = logging.getLogger("swiniqa.resources")


def worker_needs(num_workers: int, cpus_per_worker: float, use_gpu: bool) -> dict[str, float]:
    """Total resources of a run's Train workers: ``{"CPU": n x cpus[, "GPU": n]}``."""
    need = {"CPU": float(num_workers) * float(cpus_per_worker)}
    if use_gpu:
        need["GPU"] = float(num_workers)
    return need


def alive_node_resources() -> list[dict[str, float]]:
    """Total resources of each alive node of the connected Ray (a worker's bundle must fit one of them)."""
    import ray

    return [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]


def fitting_cpus_per_worker(node_cpus: list[float], num_workers: int) -> float:
    """The most whole CPUs per worker with which ``num_workers`` workers fit on these nodes (at least 1).

    A worker cannot span nodes: splitting the cluster's *total* over the workers asked a 1-worker run on
    three 1-CPU nodes for 3 CPUs, a placement group no node can hold, and Ray Train waited for it forever.

    Args:
        node_cpus: CPUs of each alive node (0 for a CPU-less head).
        num_workers: Train workers of the run.
    Returns:
        CPUs per worker; 1 when even 1 does not fit (the resource check then says so).
    """
    cpus = max(1, int(sum(node_cpus) // max(num_workers, 1)))
    while cpus > 1 and sum(int(float(n) // cpus) for n in node_cpus) < num_workers:
        cpus -= 1
    return float(cpus)


def _short(need: dict[str, float]) -> str:
    return " + ".join(f"{v:g} {k}" for k, v in need.items())


def shortfall(need: dict[str, float], have: dict[str, Any]) -> dict[str, float]:
    """Resources in ``need`` that ``have`` lacks (empty when the run fits)."""
    return {k: v for k, v in need.items() if float(have.get(k, 0.0)) + 1e-9 < v}


def _refuse_if_short(num_workers: int, cpus_per_worker: float, use_gpu: bool, total: dict[str, Any]) -> None:
    """SwiniqaError with the numbers and a fix when ``total`` cannot hold the workers."""
    need = worker_needs(num_workers, cpus_per_worker, use_gpu)
    short = shortfall(need, total)
    if not short:
        return
    have = ", ".join(f"{float(total.get(k, 0.0)):g} {k}" for k in need)
    fixes = []
    if "CPU" in short:
        fit = int(float(total.get("CPU", 0.0)) // max(cpus_per_worker, 1e-9))
        fixes.append(f"--num-workers {max(fit, 1)}" if fit >= 1 else "fewer CPUs per worker")
        fixes.append(f"--set cpus_per_worker={float(total.get('CPU', 0.0)) / num_workers:g}")
    if "GPU" in short:
        if not total.get("GPU"):
            raise SwiniqaError("--gpu was given but this machine has no GPU; drop --gpu, or submit to a GPU "
                               "cluster (RAY_ADDRESS)")
        fixes = [f"--num-workers {int(float(total.get('GPU', 0.0)))}"]
    raise SwiniqaError(f"{num_workers} worker(s) x {cpus_per_worker:g} CPU{' + 1 GPU' if use_gpu else ''} "
                       f"need {_short(need)} but this machine has {have}; use {' or '.join(fixes)}")


def require_resources(num_workers: int, cpus_per_worker: float, use_gpu: bool, *,
                      cluster: Optional[bool] = None, interval_s: float = 30.0) -> Optional[threading.Thread]:
    """Refuse (local Ray) or announce the wait (cluster) when the workers do not fit now.

    Args:
        num_workers: Train workers of the run.
        cpus_per_worker: CPUs each worker asks for (already derived).
        use_gpu: one GPU per worker.
        cluster: True when connected to a cluster (default: ``RAY_ADDRESS`` is set).
        interval_s: seconds between "still waiting" lines on a cluster.
    Returns:
        the daemon thread logging the waiting line (cluster, resources short now), else None.
    Raises:
        SwiniqaError: on a local Ray whose total resources cannot hold the workers, with the numbers.
    """
    import ray

    need = worker_needs(num_workers, cpus_per_worker, use_gpu)
    cluster = bool(os.environ.get("RAY_ADDRESS")) if cluster is None else cluster
    if not cluster:
        _refuse_if_short(num_workers, cpus_per_worker, use_gpu, ray.cluster_resources())
    else:
        _say_if_no_node_holds_a_worker(cpus_per_worker, use_gpu)
    if not shortfall(need, ray.available_resources()):
        return None
    return _watch(need, interval_s)


def _say_if_no_node_holds_a_worker(cpus_per_worker: float, use_gpu: bool) -> None:
    """A worker runs on one node: when no node is big enough, the cluster's totals can look ample while
    Ray Train waits forever for a placement group. Say so (an autoscaler may still add such a node)."""
    bundle = worker_needs(1, cpus_per_worker, use_gpu)
    try:
        nodes = alive_node_resources()
    except Exception:  # noqa: BLE001 - a hint only: never the reason a run fails
        return
    if not nodes or any(not shortfall(bundle, n) for n in nodes):
        return
    most = max(float(n.get("CPU", 0.0)) for n in nodes)
    log.warning("no node of the cluster can hold one worker (%s); the largest has %g CPU: the run waits for the "
                "autoscaler to add such a node (Ctrl-C to give up), or pass --set cpus_per_worker=%g",
                _short(bundle), most, max(most, 1.0))


def check_local_capacity(num_workers: int, cpus_per_worker: float, use_gpu: bool) -> None:
    """Before Ray starts: refuse a run a local Ray started now could never hold (no cluster, no Ray yet).

    ``cpus_per_worker=0`` (derived) asks for at least 1 CPU per worker, 4 beside a GPU. Cheap: no data is
    read and no Ray started, so ``--num-workers 4`` on a 2-CPU laptop fails in a second.

    Raises:
        SwiniqaError: with the numbers, as :func:`require_resources` does.
    """
    import sys

    if os.environ.get("RAY_ADDRESS") or ("ray" in sys.modules and sys.modules["ray"].is_initialized()):
        return
    cpw = float(cpus_per_worker) if cpus_per_worker > 0 else (4.0 if use_gpu else 1.0)
    have = {"CPU": float(_local_cpus())}
    if use_gpu:
        have["GPU"] = float(_local_gpus())
        if not have["GPU"]:
            return  # no GPU at all: training says so after the data check, as it always has
    _refuse_if_short(num_workers, cpw, use_gpu, have)


def _local_cpus() -> int:
    """CPUs a local Ray would see: the process's CPU affinity (containers pin it), else the count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _local_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no torch/CUDA: no GPU
        return 0


def _watch(need: dict[str, float], interval_s: float) -> threading.Thread:
    """Log the waiting line now and every ``interval_s`` until the cluster has ``need`` free."""
    import ray

    stop = threading.Event()

    def line() -> bool:
        try:
            free, total = ray.available_resources(), ray.cluster_resources()
        except Exception:  # noqa: BLE001 - Ray shut down: nothing left to wait for
            return False
        if not shortfall(need, free):
            return False
        has = ", ".join(f"{float(free.get(k, 0.0)):g} of {float(total.get(k, 0.0)):g} {k} free" for k in need)
        log.warning("waiting for resources: the run asks for %s; the cluster has %s (the autoscaler may add "
                    "nodes; Ctrl-C to give up)", _short(need), has)
        return True

    def run() -> None:
        while not stop.wait(interval_s) and line():
            pass

    line()
    th = threading.Thread(target=run, name="swiniqa-resource-wait", daemon=True)
    th.stop = stop  # type: ignore[attr-defined]
    th.start()
    return th


__all__ = ["require_resources", "check_local_capacity", "worker_needs", "shortfall"]
