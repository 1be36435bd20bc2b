"""Driver side of one training run: validate data, build the TorchTrainer, show progress, summarise.

Everything that can fail because of the user's input (config, dataset, output folder, broken images)
is checked here, before a single worker starts.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from typing import Any, Optional

import numpy as np

from swiniqa.config import TrainConfig
from swiniqa.data.records import Record, read_config_dataset
from swiniqa.data.staging import staged_for_workers
from swiniqa.data.splits import split_dataset, split_size_notes
from swiniqa.errors import DataError, SwiniqaError
from swiniqa.layout import TENSORBOARD_DIR
from swiniqa.ray_runtime import dead_nodes, driver_pinned_actor_options, ensure_ray, lost_node_line
from swiniqa.ray_runtime import worker_error
from swiniqa.resources import alive_node_resources, fitting_cpus_per_worker, require_resources
from swiniqa.storage import ensure_writable, is_remote, with_scheme
from swiniqa.training.session import CHECKPOINT_SCORE
from swiniqa.training.spot import failure_config, resizes, scaling_config, workers_text
from swiniqa.training.worker_input import WorkerInput


def prepare_splits(cfg: TrainConfig, check: bool = True, progress: bool = True) -> tuple[dict[str, list[Record]], dict]:
    """Read the dataset, split it by content and (optionally) decode-check every image.

    Returns the splits and a data report (images, skipped files). Broken files stop here, by name,
    unless ``cfg.skip_bad_images``.
    """
    info = read_config_dataset(cfg)
    report: dict[str, Any] = {"dataset": cfg.dataset, "images": len(info.records), "skipped": [],
                              "notes": list(info.notes)}
    if check:
        from swiniqa.data.check import check_dataset

        rep = check_dataset(info, resize=cfg.resize, resize_short=cfg.resize_short, min_side=cfg.patch_size,
                            threads=cfg.loader_threads or min(8, os.cpu_count() or 1), progress=progress)
        report["notes"] += rep.warnings
        if rep.errors:
            if not cfg.skip_bad_images:
                names = "; ".join(f"{e['image']} ({e['why']})" for e in rep.errors[:5])
                more = f" and {len(rep.errors) - 5} more" if len(rep.errors) > 5 else ""
                raise DataError(f"{len(rep.errors)} broken image(s) in {info.root}: {names}{more}; fix them, "
                                "see `swiniqa data check`, or pass --skip-bad-images to train on the rest")
            bad = {e["image"] for e in rep.errors}
            info.records = [r for r in info.records if r.path not in bad]
            report["skipped"] = sorted(bad)
    splits = split_dataset(info, cfg.seed, cfg.val_fraction, cfg.test_fraction)
    if cfg.max_images:
        rng = np.random.default_rng(cfg.seed)
        splits = {k: [v[i] for i in sorted(rng.permutation(len(v))[:cfg.max_images])] for k, v in splits.items()}
    if not splits["train"] or not splits["val"]:
        raise DataError(f"dataset {cfg.dataset} at {info.root}: the split left no training or validation images")
    report.update({k: len(v) for k, v in splits.items()})
    report["images"] = sum(len(v) for v in splits.values())  # what the run uses: after skipping and max_images
    report["notes"] += split_size_notes(report)  # a 1-image validation split is refused here, before any worker
    from swiniqa.provenance import dataset_fingerprint

    report["fingerprint"] = dataset_fingerprint(cfg.dataset, info.root, [r.path for v in splits.values() for r in v],
                                                info.label_files)
    if progress and check:
        from swiniqa.data.check import log_data_report

        log_data_report(report)  # reader notes, check warnings, skipped files: before the run, not after
    return splits, report


def label_stats(train: list[Record]) -> tuple[float, float]:
    """Mean and std of the training scores: the network learns standardised scores."""
    s = np.array([r.score for r in train], dtype=np.float64)
    std = float(s.std())
    return float(s.mean()), std if std > 0 else 1.0


def worker_input(cfg: TrainConfig, splits=None, tensorboard: Optional[str] = None,
                 tensorboard_remote: Optional[str] = None, progress=None, torch_threads: Optional[int] = None,
                 check: bool = True, dataset: Optional[dict[str, Any]] = None,
                 run_dir: Optional[str] = None) -> WorkerInput:
    """Everything a worker needs (:class:`WorkerInput`); reads and splits the dataset when ``splits`` is
    None. ``dataset`` is the data report's fingerprint (computed from the splits when not given)."""
    if splits is None:
        splits, report = prepare_splits(cfg, check=check, progress=False)
        dataset = dataset or report.get("fingerprint")
    paths = [r.path for v in splits.values() for r in v]
    if dataset is None:
        from swiniqa.provenance import dataset_fingerprint

        dataset = dataset_fingerprint(cfg.dataset, os.path.commonpath(paths) if paths else None, paths)
    return WorkerInput(
        config=cfg.to_dict(),
        splits={k: [(r.path, r.score, r.group) for r in v] for k, v in splits.items()},
        staged=staged_for_workers(paths),
        label_stats=label_stats(splits["train"]),
        tensorboard=tensorboard,
        tensorboard_remote=tensorboard_remote,
        progress=progress,
        torch_threads=torch_threads,
        fit_id=uuid.uuid4().hex,
        dataset=dataset,
        run_dir=run_dir,
    )


def cpus_per_worker(cfg: TrainConfig) -> float:
    """``cpus_per_worker`` when given; else for CPU training the cluster's CPUs split over the workers as
    far as they fit node by node (:func:`swiniqa.resources.fitting_cpus_per_worker`), for GPU training 4
    (loader threads + the training process)."""
    if cfg.cpus_per_worker > 0:
        return cfg.cpus_per_worker
    if cfg.use_gpu:
        return 4.0
    import ray

    nodes = [float(n.get("CPU", 0.0)) for n in alive_node_resources()]
    return fitting_cpus_per_worker(nodes or [ray.cluster_resources().get("CPU", 1.0)], cfg.num_workers)


def _progress_line(m: dict[str, Any], epochs: int) -> str:
    return (f"epoch {m['epoch']:>3}/{epochs}  loss {m['train_loss']:.4f}  val SRCC {m['val_srcc']:.4f}  "
            f"PLCC {m['val_plcc']:.4f}  best {m['best_val_srcc']:.4f}@{m['best_epoch']}  "
            f"{m['epoch_time_s']:.1f}s  {m['train_patches_per_s']:.0f} patches/s"
            + (f"  restarts {m['restarts']}" if m.get("restarts") else ""))


def tensorboard_dirs(location: str, name: str) -> tuple[str, Optional[str]]:
    """(local dir rank 0 writes, remote URI it is copied to each epoch or None) for TensorBoard logs."""
    if is_remote(location):
        import tempfile

        return tempfile.mkdtemp(prefix=f"swiniqa-tb-{name}-"), location
    return location, None


def _train_worker(loop_config: dict[str, Any]) -> dict[str, Any]:
    """What each Ray Train worker runs: :func:`swiniqa.training.loop.train_worker`, imported there.

    Ray pickles this function by reference, so the process that builds the trainer (the CLI, a Tune
    trial's actor) imports only this light module; the loop's imports (timm, torchvision, the model,
    ~3 s of CPU) are paid on the workers, which need them anyway.
    """
    from swiniqa.training.loop import train_worker
    from swiniqa.training.session import RaySession

    inp: WorkerInput = loop_config["input"]
    return train_worker(inp, RaySession(inp.train_config().inject_failure_at_epoch, inp.fit_id))


def make_trainer(cfg: TrainConfig, name: str, output: str, splits: dict[str, list[Record]],
                 callbacks: Optional[list] = None, progress=None, tensorboard: Optional[str] = None,
                 dataset: Optional[dict[str, Any]] = None):
    """The Ray ``TorchTrainer`` for one configuration (also what each Tune trial runs); ``dataset`` is the
    data report's fingerprint, written into every checkpoint.

    Returns (trainer, tensorboard location). ``name`` + ``output`` identify the run: reusing them
    resumes it from its latest checkpoint.
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    run_uri = f"{output.rstrip('/')}/{name}"
    tb_local, tb_remote = tensorboard_dirs(tensorboard or f"{run_uri}/{TENSORBOARD_DIR}", name)
    cpus = cpus_per_worker(cfg)
    inp = worker_input(cfg, splits, tensorboard=tb_local, tensorboard_remote=tb_remote, progress=progress,
                       torch_threads=max(1, int(cpus)), dataset=dataset, run_dir=run_uri)
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"input": inp},
        scaling_config=scaling_config(cfg, cpus),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=output,
            checkpoint_config=ray.train.CheckpointConfig(
                # Ray 2.60 keeps the num_to_keep best by score *plus* the latest (never deleted): 1 keeps
                # exactly the best epoch's folder and the latest, one folder when they coincide.
                num_to_keep=1, checkpoint_score_attribute=CHECKPOINT_SCORE, checkpoint_score_order="max"),
            failure_config=failure_config(cfg),
            callbacks=callbacks or None,
            worker_runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore"}},
        ),
    )
    return trainer, tb_remote or tb_local


def run_provenance(run_uri: str) -> dict[str, Any]:
    """The short provenance of a run folder (environment id, dataset fingerprint, commit), as rank 0 wrote
    it; empty when the run wrote none (it failed before its workers started)."""
    from swiniqa.layout import DATASET_FINGERPRINT, ENVIRONMENT
    from swiniqa.provenance import short
    from swiniqa.storage import read_json

    def load(name: str) -> Optional[dict[str, Any]]:
        try:
            return read_json(f"{run_uri.rstrip('/')}/{name}")
        except Exception:  # noqa: BLE001 - missing or unreadable: say nothing rather than fail the summary
            return None

    return short(load(ENVIRONMENT), load(DATASET_FINGERPRINT))


def summarize(result, name: str, run_uri: str, tensorboard: str, data_report: dict, cfg: TrainConfig,
              t_start: float) -> dict[str, Any]:
    """The run summary (``--json``): best validation metrics, test metrics of the selected weights."""
    if result.error is not None:
        raise worker_error(result.error)
    final = dict(result.return_value or {})
    history = final.pop("history", [])
    try:
        best = result.get_best_checkpoint(CHECKPOINT_SCORE, "max")
    except Exception:  # noqa: BLE001 - no checkpoint with a finite score
        best = None
    best = best or result.checkpoint
    df = result.metrics_dataframe
    from swiniqa.training.curves import write_history

    figures = write_history(run_uri, history, f"{name}: {cfg.backbone}/{cfg.model_size}")
    return {
        "name": name,
        "run_dir": run_uri,
        "srcc": final.get("best_val_srcc"),
        "plcc": final.get("best_val_plcc"),
        "best_epoch": final.get("best_epoch"),
        "test_srcc": final.get("test_srcc"),
        "test_plcc": final.get("test_plcc"),
        "test_krcc": final.get("test_krcc"),
        "checkpoint": with_scheme(best.path, run_uri) if best else None,
        "tensorboard": tensorboard,
        "curves": figures[1] if figures else None,
        "epochs": final.get("epochs_run", int(df["epoch"].max()) if df is not None and len(df) else 0),
        "stopped_early": final.get("stopped_early", False),
        "restarts": final.get("restarts", 0),
        "resumes": final.get("resumes", []),
        **({"resizes": resizes(final.get("resumes", []))} if cfg.min_workers else {}),
        "workers": cfg.num_workers,
        "provenance": run_provenance(run_uri),
        "data": data_report,
        "wall_time_s": round(time.time() - t_start, 1),
        "config": cfg.to_dict(),
    }


def run_training(cfg: TrainConfig, progress: bool = True, callbacks: Optional[list] = None,
                 check_data: bool = True) -> dict[str, Any]:
    """Train one configuration through Ray Train and return the summary (also what ``--json`` prints)."""
    t_start = time.time()
    name = cfg.name or time.strftime("train-%Y%m%d-%H%M%S")
    output = ensure_writable(cfg.output)
    splits, data_report = prepare_splits(cfg, check=check_data, progress=progress)
    if cfg.use_gpu:
        import torch

        if not torch.cuda.is_available() and not os.environ.get("RAY_ADDRESS"):
            raise SwiniqaError("--gpu was given but this machine has no CUDA GPU; drop --gpu, or submit to a GPU "
                               "cluster (RAY_ADDRESS)")
    ensure_ray()
    # refuse now, or say it waits; an elastic run starts once its fewest workers fit
    require_resources(cfg.min_workers or cfg.num_workers, cpus_per_worker(cfg), cfg.use_gpu)
    import ray
    from ray.util.queue import Queue

    run_uri = f"{output.rstrip('/')}/{name}"
    queue = Queue(actor_options=driver_pinned_actor_options()) if progress else None
    dead_before = dead_nodes()
    trainer, tb = make_trainer(cfg, name, output, splits, callbacks=callbacks, progress=queue,
                               dataset=data_report.get("fingerprint"))
    if progress:
        print(f"training {name}: {cfg.backbone}/{cfg.model_size} multiscale={cfg.multiscale} "
              f"attention={cfg.attention} on {data_report['train']} train / {data_report['val']} val / "
              f"{data_report['test']} test images, {workers_text(cfg)} worker(s)", file=sys.stderr, flush=True)
    box: dict[str, Any] = {}

    def fit():
        try:
            box["result"] = trainer.fit()
        except BaseException as e:  # noqa: BLE001 - re-raised below as one line
            box["error"] = e

    th = threading.Thread(target=fit, daemon=True)
    th.start()
    shown = 0

    def drain():
        nonlocal shown
        while queue is not None and not queue.empty():
            m = queue.get_nowait()
            if "event" in m:  # a resize, a reclaim notice, a mid-epoch resume
                print(m["event"], file=sys.stderr, flush=True)
            elif m["epoch"] > shown or m.get("restarts"):
                print(_progress_line(m, cfg.epochs), file=sys.stderr, flush=True)
                shown = m["epoch"]

    while th.is_alive():
        th.join(timeout=0.5)
        drain()
    drain()
    if queue is not None:
        ray.kill(queue.actor)
    if "error" in box:
        if os.environ.get("SWINIQA_DEBUG"):
            raise box["error"]
        raise worker_error(box["error"], lost_node_line(dead_before, cfg, name, output)) from None
    result = box["result"]
    if result.error is not None:
        raise worker_error(result.error, lost_node_line(dead_before, cfg, name, output)) from None
    return summarize(result, name, run_uri, tb, data_report, cfg, t_start)
