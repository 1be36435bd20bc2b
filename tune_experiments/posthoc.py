"""After the sweep: the test split scored with the best-validation checkpoint of every trial ASHA stopped (such
a trial never reached its own test evaluation). Same code as the worker's test (``evaluate_split``); the
result goes into the trial's record (``posthoc``)."""

from __future__ import annotations

import math
import sys
from typing import Any

from swiniqa.config import TrainConfig, config_from_dict
from swiniqa.storage import is_remote, write_json
from tune_experiments.experiment import read_trial, trial_record_uri


def posthoc_test(config: dict[str, Any], test_rows: list, checkpoint: str, cpus: float = 1.0) -> dict[str, Any]:
    """Test metrics of one checkpoint folder's weights (runs as a Ray task with the trial's resources)."""
    import torch

    from swiniqa.data.loader import ImageCache
    from swiniqa.data.records import Record
    from swiniqa.evaluation.inference import evaluate_split
    from swiniqa.models.loading import load_model

    cfg = config_from_dict(config).replace(pretrained=False, pretrained_path=None)
    if is_remote(checkpoint):
        from swiniqa.data.staging import fetch_checkpoint

        checkpoint = fetch_checkpoint(checkpoint)  # copied once into this node's cache, verified
    torch.set_num_threads(max(1, int(cpus)))  # the task's CPUs (cpus_per_worker may be 0 = derived)
    device = torch.device("cuda" if cfg.use_gpu and torch.cuda.is_available() else "cpu")
    model, _ = load_model(checkpoint, device=str(device))
    records = [Record(*r) for r in test_rows]
    cache = ImageCache(cfg.resize, cfg.resize_short, cfg.patch_size)
    metrics, _ = evaluate_split(model, records, cfg, cache, device, cfg.amp and device.type == "cuda")
    return {f"test_{k}": float(v) for k, v in metrics.items()}


def _needs_test(row: dict[str, Any]) -> bool:
    try:
        tested = math.isfinite(float(row.get("test_srcc")))
    except (TypeError, ValueError):
        tested = False
    return (row.get("status") == "early_stopped" and bool(row.get("checkpoint")) and not tested
            and "test_error" not in row)


def run_posthoc_tests(exp_uri: str, rows: list[dict[str, Any]], splits: dict[int, dict], base: TrainConfig,
                      progress: bool = True) -> dict[str, dict[str, Any]]:
    """Score on the test split the best-validation checkpoint of every ASHA-stopped trial not tested yet; each
    result (or its error) is written into the trial's record. Returns {run: result}."""
    import ray

    from swiniqa.training.trainer import cpus_per_worker

    todo = [r for r in rows if _needs_test(r)]
    cpus = cpus_per_worker(base)
    task = ray.remote(posthoc_test).options(num_cpus=cpus, num_gpus=1 if base.use_gpu else 0, max_retries=2)
    refs = {}
    for r in todo:
        test = [(x.path, x.score, x.group) for x in splits[int(r["seed"])]["test"]]
        if test:
            refs[r["run"]] = (task.remote(r["config"], test, r["checkpoint"], cpus), r["checkpoint"])
    if progress and refs:
        print(f"testing the best checkpoint of {len(refs)} early-stopped trial(s)", file=sys.stderr, flush=True)
    done: dict[str, dict[str, Any]] = {}
    for run, (ref, ckpt) in refs.items():
        try:
            done[run] = {**ray.get(ref), "checkpoint": ckpt}
        except Exception as e:  # noqa: BLE001 - recorded, the table shows the gap
            done[run] = {"error": str(e).strip().splitlines()[-1][:300], "checkpoint": ckpt}
        record = read_trial(exp_uri, run)
        if record is not None:
            write_json(trial_record_uri(exp_uri, run), {**record, "posthoc": done[run]})
    return done


__all__ = ["run_posthoc_tests", "posthoc_test"]
