"""Placement groups a sweep leaks: Train worker groups of trials Tune stopped, released from the driver."""

from __future__ import annotations

import logging
import time

import ray.tune

from swiniqa.config import TrainConfig

log = logging.getLogger("swiniqa.tune")


_JANITOR_WARNED: list[int] = []


def release_leaked_placement_groups(bundle: dict[str, float], workers: int | tuple[int, int],
                                    unused_since: dict[str, float], grace_s: float = 30.0) -> int:
    """Remove Train worker placement groups (``workers`` x ``bundle``, unnamed) that no live actor has used
    for ``grace_s`` seconds; returns how many were removed. ``workers`` = (min, max) for elastic trials, whose
    groups hold any number of bundles in between.

    Ray Train's detached ``PlacementGroupCleaner`` frees the workers' placement group of a trial that Tune
    stopped, but it finds its cluster through the state API *without an address*: with two local Ray
    instances on one machine it fails ("Found multiple active Ray instances") and the CPUs/GPUs stay
    reserved, so later trials (and the post-hoc tests) wait forever. This does the same from the driver,
    which knows its cluster.
    """
    import ray
    from ray.util.placement_group import PlacementGroup, remove_placement_group
    from ray.util.state import list_actors, list_placement_groups

    try:
        addr = ray.get_runtime_context().gcs_address
        job = ray.get_runtime_context().get_job_id()
        pgs = list_placement_groups(address=addr, filters=[("state", "=", "CREATED")], detail=True, limit=10000,
                                    raise_on_missing_output=False)
        # detail=True: placement_group_id is only filled in detailed rows
        actors = list_actors(address=addr, filters=[("state", "!=", "DEAD")], detail=True, limit=10000,
                             raise_on_missing_output=False)
    except Exception as e:  # noqa: BLE001 - state API unavailable: try again later
        if not _JANITOR_WARNED:
            _JANITOR_WARNED.append(1)
            log.warning(f"swiniqa: warning: cannot list placement groups ({str(e).splitlines()[0][:200]}); stopped "
                        "trials' workers may keep their CPUs/GPUs")
        return 0
    used = {a.placement_group_id for a in actors if getattr(a, "placement_group_id", None)}
    one = {k: float(v) for k, v in bundle.items() if v}
    lo, hi = workers if isinstance(workers, tuple) else (workers, workers)
    now = time.monotonic()
    removed = 0
    seen = set()
    for pg in pgs:
        pg_id = pg.placement_group_id
        seen.add(pg_id)
        bundles = [{k: float(v) for k, v in (b.get("unit_resources") or {}).items() if v} for b in (pg.bundles or [])]
        shaped = lo <= len(bundles) <= hi and all(b == one for b in bundles)
        if pg.name or pg.is_detached or pg_id in used or not shaped or (pg.creator_job_id or job) != job:
            unused_since.pop(pg_id, None)
            continue
        first = unused_since.setdefault(pg_id, now)
        if now - first >= grace_s:
            try:
                remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg_id))))
                removed += 1
            except Exception:  # noqa: BLE001 - already gone
                pass
            unused_since.pop(pg_id, None)
    for pg_id in list(unused_since):
        if pg_id not in seen:
            unused_since.pop(pg_id)
    return removed


class PlacementGroupJanitor(ray.tune.Callback):
    """Every ``every_s`` seconds of the sweep: :func:`release_leaked_placement_groups`."""

    def __init__(self, bundle: dict[str, float], workers: int | tuple[int, int], every_s: float = 5.0,
                 grace_s: float = 15.0):
        self.bundle, self.workers, self.every_s, self.grace_s = dict(bundle), workers, every_s, grace_s
        self._unused: dict[str, float] = {}
        self._last = 0.0
        self.removed = 0

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.removed += release_leaked_placement_groups(self.bundle, self.workers, self._unused, self.grace_s)


def worker_counts(cfg: TrainConfig) -> tuple[int, int]:
    """(fewest, most) workers of a trial: an elastic trial's group holds any number in between."""
    return cfg.min_workers or cfg.num_workers, cfg.num_workers


def worker_bundle(cfg: TrainConfig) -> dict[str, float]:
    from swiniqa.training.trainer import cpus_per_worker

    b = {"CPU": float(cpus_per_worker(cfg))}
    if cfg.use_gpu:
        b["GPU"] = 1.0
    return b


__all__ = ["release_leaked_placement_groups", "PlacementGroupJanitor", "worker_bundle", "worker_counts"]
