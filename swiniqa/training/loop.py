"""The per-worker training loop (one process per Ray Train worker, or in-process).

Each epoch: train on this rank's shard, evaluate the validation split (sharded, predictions gathered
once), report metrics + checkpoint, write TensorBoard scalars on rank 0 after the checkpoint is
committed (so a restarted run never logs an epoch twice). After the last epoch the best weights are
evaluated once on the test split; selection never looks at the test set.
"""

from __future__ import annotations

import math
import os
import signal
import tempfile
import time
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist

from swiniqa.config import TrainConfig, config_from_dict
from swiniqa.data.loader import EvalPatches, ImageCache, TrainPatches
from swiniqa.data.records import Record
from swiniqa.errors import TrainingError
from swiniqa.evaluation.metrics import all_metrics
from swiniqa.models import build_model
from swiniqa.training import checkpoint as ckio
from swiniqa.training.optim import make_optimizer, make_schedule
from swiniqa.training.session import LocalSession, RaySession, Session


def _records(rows: list) -> list[Record]:
    return [r if isinstance(r, Record) else Record(*r) for r in rows]


def _device(cfg: TrainConfig, session: Session) -> torch.device:
    if cfg.use_gpu and torch.cuda.is_available():
        if session.under_ray:
            import ray.train.torch

            return ray.train.torch.get_device()
        return torch.device("cuda")
    return torch.device("cpu")


def _gather(obj: Any, world: int) -> list[Any]:
    if world == 1 or not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


@torch.no_grad()
def predict_images(model: torch.nn.Module, loader: EvalPatches, device: torch.device, amp: bool) -> dict[int, float]:
    """Mean score per image index over its fixed test crops."""
    model.eval()
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    for patches, owner in loader:
        x = patches.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            y = model(x).float().cpu().numpy()
        for i, v in zip(owner.tolist(), y.tolist()):
            sums[i] = sums.get(i, 0.0) + v
            counts[i] = counts.get(i, 0) + 1
    return {i: sums[i] / counts[i] for i in sums}


def loader_threads(cfg: TrainConfig, device: torch.device, cpus: int) -> int:
    """Decode threads of a worker given ``cpus`` CPUs: ``cfg.loader_threads`` when set; else one beside
    CPU training (the model step uses every core), and all but one core beside a GPU."""
    if cfg.loader_threads > 0:
        return cfg.loader_threads
    return max(1, cpus - 1) if device.type == "cuda" else 1


def evaluate_split(model, records: list[Record], cfg: TrainConfig, cache: ImageCache, device, session: Session,
                   amp: bool, threads: int = 1) -> tuple[dict[str, float], np.ndarray]:
    loader = EvalPatches(records, patch_size=cfg.patch_size, patches_per_image=cfg.test_patches,
                         batch_size=max(cfg.batch_size, cfg.test_patches) * 2, seed=cfg.seed, cache=cache,
                         rank=session.rank, world=session.world, threads=threads)
    local = predict_images(model, loader, device, amp)
    merged: dict[int, float] = {}
    for part in _gather(local, session.world):
        merged.update(part)
    idx = sorted(merged)
    pred = np.array([merged[i] for i in idx])
    mos = np.array([records[i].score for i in idx])
    return all_metrics(pred, mos), pred


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def _clone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in _unwrap(model).state_dict().items()}


def rank_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pairwise hinge on score order within the batch (zero when the order is right)."""
    dp = pred[:, None] - pred[None, :]
    dt = torch.sign(target[:, None] - target[None, :])
    return torch.relu(-dp * dt).mean()


def color_jitter(x: torch.Tensor, gen: torch.Generator, strength: float = 0.2) -> torch.Tensor:
    """Batched brightness/contrast/saturation jitter on a float [0,1] NCHW batch, one draw per patch."""
    B = x.shape[0]
    f = 1 + (torch.rand(3, B, 1, 1, 1, generator=gen, device="cpu") * 2 - 1).to(x.device) * strength
    x = x * f[0]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * f[1] + mean
    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - grey) * f[2] + grey
    return x.clamp_(0, 1)


def train_worker(loop_config: dict[str, Any], session: Optional[Session] = None) -> dict[str, Any]:
    """Train one configuration on this worker. ``loop_config`` is built by ``trainer.loop_config``.

    Returns (on every rank) the final summary: best validation metrics and test metrics of the best
    weights.
    """
    session = session or RaySession()
    cfg: TrainConfig = config_from_dict(loop_config["config"])
    splits = {k: _records(v) for k, v in loop_config["splits"].items()}
    shift, scale = loop_config["label_stats"]
    progress = loop_config.get("progress")
    fit_id = loop_config.get("fit_id", "")

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = _device(cfg, session)
    cpus = max(1, int(loop_config.get("torch_threads") or torch.get_num_threads()))
    if device.type == "cpu":
        torch.set_num_threads(cpus)
    threads = loader_threads(cfg, device, cpus)
    amp = cfg.amp and device.type == "cuda"

    model = build_model(cfg)
    model.set_label_scale(shift, scale)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    backbone_params, head_params = model.param_groups()
    if session.under_ray:
        import ray.train.torch

        model = ray.train.torch.prepare_model(model, parallel_strategy_kwargs=dict(bucket_cap_mb=50)) \
            if session.world > 1 else model.to(device)
    else:
        model = model.to(device)
    if cfg.compile:
        model = torch.compile(model)

    cache = ImageCache(cfg.resize, cfg.resize_short, cfg.patch_size,
                       budget_bytes=int(loop_config.get("cache_gb", 2.0) * (1 << 30)))
    train = TrainPatches(splits["train"], patch_size=cfg.patch_size, patches_per_image=cfg.train_patches,
                         batch_size=cfg.batch_size, seed=cfg.seed, cache=cache, rank=session.rank,
                         world=session.world, hflip=cfg.hflip, threads=threads,
                         content_aug=cfg.content_aug)
    steps_per_epoch = max(1, len(train))
    opt = make_optimizer(backbone_params, head_params, cfg, device)
    sched = make_schedule(opt, cfg, steps_per_epoch)

    start_epoch, restarts = 0, 0
    best = {"val_srcc": -math.inf, "epoch": -1}
    best_state: Optional[dict[str, torch.Tensor]] = None
    bad_epochs = 0
    history: list[dict[str, float]] = []  # per-epoch curves, carried through restarts in the checkpoint
    resume_dir = session.latest_checkpoint()
    if resume_dir:
        st = ckio.read_state(resume_dir) or {}
        _unwrap(model).load_state_dict(ckio.read_weights(resume_dir))
        if "optimizer" in st:
            opt.load_state_dict(st["optimizer"])
            sched.load_state_dict(st["scheduler"])
        start_epoch = int(st.get("epoch", -1)) + 1
        best = {"val_srcc": float(st.get("best_val_srcc", -math.inf)), "epoch": int(st.get("best_epoch", -1)),
                **{k: float(v) for k, v in st.get("best_metrics", {}).items()}}
        bad_epochs = int(st.get("bad_epochs", 0))
        history = list(st.get("history", []))
        restarts = int(st.get("restarts", 0)) + (1 if st.get("fit_id") == fit_id else 0)
        best_state = ckio.read_weights(resume_dir, best=True)

    writer = None
    if session.rank == 0 and loop_config.get("tensorboard"):
        from torch.utils.tensorboard import SummaryWriter

        # After a restart, drop any events a dead attempt wrote past the checkpoint we resumed from,
        # so no epoch appears twice in the curves.
        writer = SummaryWriter(loop_config["tensorboard"], flush_secs=5,
                               purge_step=start_epoch + 1 if start_epoch else None)

    gen = torch.Generator().manual_seed(cfg.seed * 7919 + session.rank)
    stopped_early = False
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.inject_failure_at_epoch == epoch + 1 and session.under_ray and session.rank == 0:
            _inject_failure(fit_id)
        t0 = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        n_seen = 0
        for patches, scores in train.epoch(epoch):
            x = patches.to(device, non_blocking=True)  # uint8: the model normalises it in one op
            if cfg.color_jitter:
                x = color_jitter(x.float().div_(255.0), gen)
            y = ((scores.to(device, non_blocking=True) - shift) / scale).float()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                pred = model(x, raw=True)
                loss = torch.nn.functional.l1_loss(pred.float(), y)
                if cfg.loss == "l1+rank" and cfg.rank_weight > 0:
                    loss = loss + cfg.rank_weight * rank_loss(pred.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            loss_sum += loss.detach().double() * len(scores)
            n_seen += len(scores)
        train_loss = float(loss_sum.item()) / max(1, n_seen)  # one host sync per epoch
        if session.world > 1 and dist.is_initialized():
            t = torch.tensor([train_loss], device=device, dtype=torch.float64)
            dist.all_reduce(t)
            train_loss = float(t.item()) / session.world
        train_time = time.perf_counter() - t0
        if not math.isfinite(train_loss):
            raise TrainingError(f"non-finite training loss at epoch {epoch + 1} (lr={cfg.lr:g}); "
                                "lower lr or enable grad_clip")

        val, _ = evaluate_split(model, splits["val"], cfg, cache, device, session, amp, threads)
        improved = math.isfinite(val["srcc"]) and val["srcc"] > best["val_srcc"]
        if improved:
            best = {"val_srcc": val["srcc"], "epoch": epoch, "val_plcc": val["plcc"], "val_krcc": val["krcc"]}
            best_state = _clone_state(model)
            bad_epochs = 0
        else:
            bad_epochs += 1

        lrs = [g["lr"] for g in opt.param_groups]
        metrics = {
            "epoch": epoch + 1, "train_loss": train_loss, "val_srcc": val["srcc"], "val_plcc": val["plcc"],
            "val_krcc": val["krcc"], "val_plcc_fit": val["plcc_fit"], "best_val_srcc": best["val_srcc"],
            "best_epoch": best["epoch"] + 1, "lr_backbone": lrs[0], "lr_head": lrs[1], "restarts": restarts,
            "epoch_time_s": time.perf_counter() - t0, "train_time_s": train_time,
            "train_patches_per_s": n_seen * session.world / max(train_time, 1e-9),
        }
        stop = bad_epochs >= cfg.patience
        history.append({k: float(metrics[k]) for k in HISTORY_KEYS})
        state = {"history": history, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "epoch": epoch,
                 "best_val_srcc": best["val_srcc"], "best_epoch": best["epoch"],
                 "best_metrics": {k: v for k, v in best.items() if k not in ("epoch", "val_srcc")},
                 "bad_epochs": bad_epochs, "restarts": restarts, "fit_id": fit_id}

        def write(d: str, _state=state, _metrics=metrics, _best=None if improved else best_state):
            ckio.write_checkpoint(d, _unwrap(model).state_dict(), cfg, _metrics, _state, _best)

        session.report(metrics, write)
        if writer is not None:
            for k in ("train_loss", "val_srcc", "val_plcc", "lr_backbone", "lr_head", "train_patches_per_s"):
                writer.add_scalar(k if k.startswith("lr") else f"{k.split('_')[0]}/{k.split('_', 1)[1]}",
                                  metrics[k], global_step=epoch + 1)
            writer.flush()
            if loop_config.get("tensorboard_remote"):
                from swiniqa.storage import copy_dir

                copy_dir(loop_config["tensorboard"], loop_config["tensorboard_remote"])
        if progress is not None and session.rank == 0:
            try:
                progress.put_nowait(metrics)
            except Exception:  # noqa: BLE001 - progress display must never stop training
                pass
        if stop:
            stopped_early = epoch + 1 < cfg.epochs
            break

    # Test once, with the weights selected on validation.
    final = {"best_val_srcc": best["val_srcc"], "best_val_plcc": best.get("val_plcc", float("nan")),
             "best_epoch": best["epoch"] + 1, "epochs_run": epoch + 1, "stopped_early": stopped_early,
             "restarts": restarts, "history": history}
    if splits.get("test"):
        if best_state is not None:
            _unwrap(model).load_state_dict(best_state)
        test, _ = evaluate_split(model, splits["test"], cfg, cache, device, session, amp, threads)
        final.update({f"test_{k}": v for k, v in test.items()})
    if writer is not None:
        writer.close()
    return final


#: Per-epoch values kept for the run's ``history.csv`` / ``curves.png``.
HISTORY_KEYS = ("epoch", "train_loss", "val_srcc", "val_plcc", "lr_backbone", "lr_head", "epoch_time_s")


def _inject_failure(fit_id: str) -> None:
    """Testing aid (``--inject-failure-at-epoch``): SIGKILL this worker once per run, as the OOM killer
    or a preemption would. The marker (same node) makes the restarted attempt carry on; the pause lets
    Ray Train's controller, which polls workers every 2 s, register the checkpoint reported just before."""
    marker = os.path.join(tempfile.gettempdir(), f"swiniqa-injected-{fit_id}")
    if os.path.exists(marker):
        return
    open(marker, "w").close()
    time.sleep(5.0)
    os.kill(os.getpid(), signal.SIGKILL)


def train_in_process(cfg: TrainConfig, run_dir: Optional[str] = None, splits=None, resume: bool = True
                     ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the same loop without Ray (one process): for tests, benchmarks and notebooks."""
    from swiniqa.training.trainer import loop_config

    lc = loop_config(cfg, splits=splits, tensorboard=os.path.join(run_dir, "tensorboard") if run_dir else None)
    session = LocalSession(run_dir, resume=resume)
    final = train_worker(lc, session)
    return final, session.reports
