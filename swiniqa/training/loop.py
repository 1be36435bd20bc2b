"""The per-worker training loop (one process per Ray Train worker, or in-process).

:func:`train_worker` is ``setup`` → :func:`restore_state` → per epoch :func:`train_one_epoch` and
:func:`end_of_epoch` (validate, select, report + checkpoint, log) → :func:`final_test`. Each epoch trains
on this rank's share of every global batch (one plan for any number of workers, so the optimisation does
not depend on it; :func:`train_step`) and evaluates the validation split (sharded, predictions gathered once); TensorBoard
scalars are written on rank 0 after the checkpoint is committed (so a restarted run never logs an epoch
twice). After the last epoch the best weights are evaluated once on the test split; selection never looks
at the test set. :func:`train_step` is the one optimisation step (``benchmarks/train_step.py`` times it).

Scoring is :mod:`swiniqa.evaluation.inference`'s; running the loop without Ray is
:func:`swiniqa.training.local.train_in_process`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist

from swiniqa.config import TrainConfig
from swiniqa.data.loader import Batch, ImageCache, TrainPatches
from swiniqa.data.records import Record
from swiniqa.data.staging import localise_splits
from swiniqa.errors import TrainingError
from swiniqa.evaluation.inference import evaluate_split
from swiniqa.models import build_model, unwrap
from swiniqa import checkpoints as ckio
from swiniqa.training.batch_noise import step_generator, step_masks, use_global_batch_masks
from swiniqa.training.optim import make_optimizer, make_schedule
from swiniqa.layout import checkpoint_dir_name
from swiniqa.training.session import CHECKPOINT_SCORE, MID_EPOCH_SCORE, RaySession, Session, checkpoint_score
from swiniqa.training.worker_input import WorkerInput

#: Per-epoch values kept for the run's ``history.csv`` / ``curves.png``.
HISTORY_KEYS = ("epoch", "train_loss", "val_srcc", "val_plcc", "lr_backbone", "lr_head", "epoch_time_s", "workers")
#: Scalars written to TensorBoard each epoch.
_TB_KEYS = ("train_loss", "val_srcc", "val_plcc", "lr_backbone", "lr_head", "train_patches_per_s")


def _records(rows: list) -> list[Record]:
    return [r if isinstance(r, Record) else Record(*r) for r in rows]


def _device(cfg: TrainConfig, session: Session) -> torch.device:
    if cfg.use_gpu and torch.cuda.is_available():
        if session.under_ray:
            import ray.train.torch

            return ray.train.torch.get_device()
        return torch.device("cuda")
    return torch.device("cpu")


def loader_threads(cfg: TrainConfig, device: torch.device, cpus: int) -> int:
    """Decode threads of a worker given ``cpus`` CPUs: ``cfg.loader_threads`` when set; else one beside
    CPU training (the model step uses every core), and all but one core beside a GPU."""
    if cfg.loader_threads > 0:
        return cfg.loader_threads
    return max(1, cpus - 1) if device.type == "cuda" else 1


def _clone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in unwrap(model).state_dict().items()}


def rank_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pairwise hinge on score order within the batch (zero when the order is right)."""
    dp = pred[:, None] - pred[None, :]
    dt = torch.sign(target[:, None] - target[None, :])
    return torch.relu(-dp * dt).mean()


def color_jitter(x: torch.Tensor, draws: torch.Tensor, strength: float = 0.2) -> torch.Tensor:
    """Brightness/contrast/saturation jitter of a float [0,1] NCHW batch; ``draws`` (B, 3) in [0, 1) are
    the patches' own (from the epoch plan), so a patch is jittered alike on any rank and worker count."""
    f = (1 + (draws.t().to(x.device, x.dtype) * 2 - 1) * strength)[:, :, None, None, None]
    x = x * f[0]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * f[1] + mean
    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - grey) * f[2] + grey
    return x.clamp_(0, 1)


def _gathered_rank_term(pred: torch.Tensor, y: torch.Tensor, batch: Batch, rank: int) -> tuple:
    """The ranking term over the whole global batch when it is split over ranks.

    Every rank gathers all predictions and labels (values only, before the backward pass, so no collective
    runs inside DDP's), computes the batch's rank loss and its gradient with respect to every prediction,
    and returns ``(value, surrogate)``: ``surrogate``'s gradient is ``world`` times the true one for this
    rank's predictions, which DDP's averaging over ``world`` ranks turns into the one-worker gradient."""
    world = len(batch.sizes)
    width = max(batch.sizes)
    mine = torch.zeros(width, 2, device=pred.device, dtype=torch.float32)
    mine[:len(y), 0], mine[:len(y), 1] = pred.detach().float(), y
    parts = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(parts, mine)
    every = torch.cat([q[:n] for q, n in zip(parts, batch.sizes)])
    preds = every[:, 0].clone().requires_grad_(True)
    value = rank_loss(preds, every[:, 1])
    (grad,) = torch.autograd.grad(value, preds)
    start = sum(batch.sizes[:rank])
    return value.detach(), (pred.float() * grad[start:start + len(y)]).sum() * world


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any, batch: Batch, cfg: TrainConfig,
               device: torch.device, label_stats: tuple[float, float], amp: bool, rank: int = 0,
               masks: Optional[torch.Generator] = None) -> torch.Tensor:
    """One optimisation step on this rank's share of a global batch: the loop's and the benchmark's.

    Each patch's loss is weighted by ``1 / batch.total`` whichever rank holds it, and the rank's loss is
    multiplied by the number of ranks, so DDP's average of the ranks' gradients is the gradient of the
    whole global batch's mean loss: the step one worker would take on the same batch (uneven shares
    included). The ranking term is taken over the whole global batch (:func:`_gathered_rank_term`).

    Args:
        model: the model in train mode (DDP/compile-wrapped is fine).
        opt, sched: the optimizer and its per-step schedule (stepped here).
        batch: this rank's share (uint8 NCHW patches, labels in dataset units, colour-jitter draws).
        cfg: ``loss``, ``rank_weight``, ``grad_clip``, ``color_jitter``.
        device, amp: where it runs; bf16 autocast.
        label_stats: ``(shift, scale)`` that standardise the labels.
        rank: this worker's rank (``batch.sizes`` gives the number of ranks).
        masks: the step's generator for dropout and drop-path (:mod:`swiniqa.training.batch_noise`): the masks
            of the whole global batch are drawn from it and this rank keeps its rows (``batch.positions``), so
            they do not depend on the number of ranks. None: torch's global generator.

    Returns:
        This rank's part of the global batch's loss (detached, on ``device``; no host sync): the ranks'
        parts sum to the batch's mean loss.
    """
    shift, scale = label_stats
    world = len(batch.sizes)
    x = batch.patches.to(device, non_blocking=True)
    if cfg.color_jitter:
        x = color_jitter(x.float().div_(255.0), batch.jitter)
    y = ((batch.scores.to(device, non_blocking=True) - shift) / scale).float()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp), \
            step_masks(masks, batch.positions, batch.total):
        pred = model(x, raw=True)
    part = torch.nn.functional.l1_loss(pred.float(), y, reduction="sum") / batch.total
    loss, reported = part * world, part.detach()
    if cfg.loss == "l1+rank" and cfg.rank_weight > 0:
        if world == 1:
            term = rank_loss(pred.float(), y)
            loss, reported = loss + cfg.rank_weight * term, reported + cfg.rank_weight * term.detach()
        else:
            value, surrogate = _gathered_rank_term(pred, y, batch, rank)
            loss, reported = loss + cfg.rank_weight * surrogate, reported + cfg.rank_weight * value / world
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    sched.step()
    return reported


@dataclass
class Run:
    """What one worker trains with (built once by :func:`setup`)."""

    cfg: TrainConfig
    session: Session
    splits: dict[str, list[Record]]
    label_stats: tuple[float, float]
    device: torch.device
    amp: bool
    threads: int
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    cache: ImageCache
    train: TrainPatches
    inp: WorkerInput
    #: What made these weights (rank 0): ``{environment.json: ..., dataset.json: ...}`` for every checkpoint.
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class RunState:
    """Progress carried from epoch to epoch and through restarts (in the checkpoint's state)."""

    start_epoch: int = 0
    restarts: int = 0
    best: dict[str, float] = field(default_factory=lambda: {"val_srcc": -math.inf, "epoch": -1})
    best_state: Optional[dict[str, torch.Tensor]] = None
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    #: Resuming mid-epoch (from a reclaim notice's checkpoint): global batches of ``start_epoch`` already
    #: trained, and their loss summed over every patch of every rank, and their patch count.
    start_step: int = 0
    partial: tuple[float, int] = (0.0, 0)
    #: Every resume from a checkpoint so far, ``{"epoch", "step", "from", "to", "why"}`` (1-based epoch; ``why``:
    #: reclaim notice, node lost, capacity back, restart, resumed); the resizes are those whose size changed.
    resumes: list[dict[str, Any]] = field(default_factory=list)
    #: The reclaim notice this attempt received (``{"deadline_ms", "nodes"}``), None before one.
    notice: Optional[dict[str, Any]] = None

    def take_resume_point(self, epoch: int) -> tuple[int, float, int]:
        """(first global batch, loss sum, patches) of ``epoch``: where a mid-epoch checkpoint left it, once."""
        if epoch != self.start_epoch or not self.start_step:
            return 0, 0.0, 0
        point = (self.start_step, *self.partial)
        self.start_step, self.partial = 0, (0.0, 0)
        return point


def _place_model(cfg: TrainConfig, session: Session, device: torch.device, label_stats) -> tuple:
    model = build_model(cfg)
    model.set_label_scale(*label_stats)
    use_global_batch_masks(model)  # dropout/drop-path masks of the global batch (no state added)
    ddp = session.under_ray and session.world > 1
    if ddp:  # the ResNet baselines' BatchNorm: statistics of the global batch (before the optimizer sees them)
        from swiniqa.training.global_bn import synchronise_batchnorm

        model, _ = synchronise_batchnorm(model, device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    backbone_params, head_params = model.param_groups()
    if ddp:
        import ray.train.torch

        model = ray.train.torch.prepare_model(model, parallel_strategy_kwargs=dict(bucket_cap_mb=50))
    else:
        model = model.to(device)
    if cfg.compile:
        model = torch.compile(model)
    return model, backbone_params, head_params


def _provenance(inp: WorkerInput, session: Session, device: torch.device) -> dict[str, dict[str, Any]]:
    """Rank 0's ``environment.json`` (with every worker's node and device) and ``dataset.json``; every rank
    takes part in the gather, only rank 0 keeps the result (it alone writes checkpoints)."""
    import socket

    node = socket.gethostname()
    if session.under_ray:  # Ray's node id: distinct for every node, also where host names repeat
        import ray

        node = f"{node}/{ray.get_runtime_context().get_node_id()[:12]}"
    me = {"rank": session.rank, "node": node, "device": str(device)}
    if device.type == "cuda":
        me["device_name"] = torch.cuda.get_device_name(device)
    workers = [me]
    if session.world > 1 and dist.is_initialized():
        workers = [None] * session.world
        dist.all_gather_object(workers, me)
    if session.rank != 0:
        return {}
    from swiniqa.layout import DATASET_FINGERPRINT, ENVIRONMENT
    from swiniqa.provenance import environment

    out = {ENVIRONMENT: environment(workers)}
    if inp.dataset:
        out[DATASET_FINGERPRINT] = dict(inp.dataset)
    if inp.run_dir:  # the run folder says what made it too (the latest attempt; each checkpoint keeps its own)
        from swiniqa.storage import join, write_json

        for name, obj in out.items():
            write_json(join(inp.run_dir, name), obj)
    return out


def setup(inp: WorkerInput, session: Session) -> Run:
    """Seed, pick the device and threads, build the model, optimizer, schedule and training loader."""
    cfg = inp.train_config()
    splits = {k: _records(v) for k, v in localise_splits(inp.splits, inp.staged).items()}  # s3://: per node
    label_stats = tuple(inp.label_stats)
    if cfg.max_image_pixels:  # the config travels to every node; the driver's environment does not
        from swiniqa.data.images import set_max_image_pixels

        set_max_image_pixels(cfg.max_image_pixels)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = _device(cfg, session)
    cpus = max(1, int(inp.torch_threads or torch.get_num_threads()))
    if device.type == "cpu":
        torch.set_num_threads(cpus)
    threads = loader_threads(cfg, device, cpus)
    model, backbone_params, head_params = _place_model(cfg, session, device, label_stats)
    cache = ImageCache(cfg.resize, cfg.resize_short, cfg.patch_size,
                       budget_bytes=cfg.cache_bytes(workers_on_node=session.world))
    train = TrainPatches(splits["train"], patch_size=cfg.patch_size, patches_per_image=cfg.train_patches,
                         batch_size=cfg.batch_size, seed=cfg.seed, cache=cache, rank=session.rank,
                         world=session.world, hflip=cfg.hflip, threads=threads, content_aug=cfg.content_aug)
    opt = make_optimizer(backbone_params, head_params, cfg, device)
    sched = make_schedule(opt, cfg, max(1, len(train)))
    return Run(cfg, session, splits, label_stats, device, cfg.amp and device.type == "cuda", threads, model, opt,
               sched, cache, train, inp, _provenance(inp, session, device))


def restore_state(run: Run) -> RunState:
    """Load weights, optimizer, schedule and progress from the session's latest checkpoint, if any.

    A restart of the same fit (same ``fit_id``) counts in ``restarts``."""
    resume_dir = run.session.latest_checkpoint()
    if not resume_dir:
        return RunState()
    ckio.check_resume(resume_dir, run.cfg)  # complete, and the model this run asks for (else: one clear line)
    st = ckio.read_state(resume_dir) or {}
    unwrap(run.model).load_state_dict(ckio.read_weights(resume_dir))
    if "optimizer" in st:
        run.opt.load_state_dict(st["optimizer"])
        run.sched.load_state_dict(st["scheduler"])
    best = {"val_srcc": float(st.get("best_val_srcc", -math.inf)), "epoch": int(st.get("best_epoch", -1)),
            **{k: float(v) for k, v in st.get("best_metrics", {}).items()}}
    restarts = int(st.get("restarts", 0)) + (1 if st.get("fit_id") == run.inp.fit_id else 0)
    mid = st.get("mid_epoch") or {}
    state = RunState(start_epoch=int(st.get("epoch", -1)) + 1, restarts=restarts, best=best,
                     best_state=ckio.read_weights(resume_dir, best=True) if best["epoch"] >= 0 or not mid else None,
                     bad_epochs=int(st.get("bad_epochs", 0)), history=list(st.get("history", [])),
                     start_step=int(mid.get("step", 0)), partial=(float(mid.get("loss_sum", 0.0)),
                                                                  int(mid.get("patches", 0))),
                     # checkpoints written before resumes were recorded kept their resizes only
                     resumes=list(st.get("resumes") or st.get("resizes") or []))
    from swiniqa.training.spot import resume_event

    event, line = resume_event(st, state.start_epoch, state.start_step, run.session.world,
                               same_fit=st.get("fit_id") == run.inp.fit_id)
    state.resumes.append(event)
    if line:
        _progress(run, {"event": line})
    return state


def _seed_step(run: Run, epoch: int, step: int) -> torch.Generator:
    """The step's generator for dropout and drop-path masks, seeded by (seed, epoch, step) and not the rank:
    every rank draws the whole global batch's masks and keeps its rows, so a patch's masks are the same at
    any worker count, and a run resumed from any checkpoint, mid-epoch ones included, draws exactly what the
    uninterrupted run drew (rank 0 alone writes checkpoints, so generator states could not be saved). Torch's
    global generator (anything else random) is seeded per rank too. Colour jitter and crops come from the
    epoch's plan."""
    key = (run.cfg.seed * 1_000_003 + epoch) * 1_000_033 + step
    torch.manual_seed((key * 7919 + run.session.rank) % (1 << 63))
    return step_generator(key, run.device)


def _check_reclaim(run: Run, state: RunState, epoch: int, step: int, loss_sum: torch.Tensor, n_seen: int) -> None:
    """Ask Ray whether a worker's node is about to be reclaimed (a barrier: every rank asks after the same
    steps); on a notice, checkpoint this point of the epoch at once, so the restarted run continues from
    global batch ``step`` instead of the epoch's start. Training goes on until Ray restarts the workers."""
    notice = run.session.preemption_notice()
    if notice is None:
        return
    state.notice = notice
    total = loss_sum.detach().clone()
    if run.session.world > 1 and dist.is_initialized():
        dist.all_reduce(total)  # every rank's part: the loss summed over every patch so far
    mid = {"epoch": epoch, "step": step, "loss_sum": float(total.item()), "patches": n_seen}
    ck_state = {**_checkpoint_state(run, state, epoch - 1), "mid_epoch": mid}
    metrics = {"epoch": epoch, "mid_epoch_step": step, "steps_per_epoch": len(run.train),
               "train_loss": mid["loss_sum"] / max(1, n_seen), "best_val_srcc": state.best["val_srcc"],
               "best_epoch": state.best["epoch"] + 1, "restarts": state.restarts, "workers": run.session.world,
               CHECKPOINT_SCORE: MID_EPOCH_SCORE}

    def write(d: str) -> None:
        ckio.write_checkpoint(d, unwrap(run.model).state_dict(), run.cfg, metrics, ck_state, state.best_state,
                              provenance=run.provenance)

    t0 = time.perf_counter()
    run.session.report(metrics, write, dir_name=f"{checkpoint_dir_name(epoch + 1)}_step{step:05d}")
    from swiniqa.training.spot import notice_line

    _progress(run, {"event": notice_line(notice, epoch, step, len(run.train), time.perf_counter() - t0)})


def train_one_epoch(run: Run, epoch: int, state: Optional[RunState] = None) -> tuple[float, int, float]:
    """Train on this rank's share of every global batch of the epoch (from a mid-epoch checkpoint's
    step when ``state`` resumes there; with ``state``, reclaim notices are checked for).

    Returns:
        ``(train_loss, patches, seconds)``: the mean loss over every patch of the epoch (all ranks), the
        epoch's patch count (all ranks), train time.

    Raises:
        TrainingError: the loss is not finite.
    """
    t0 = time.perf_counter()
    run.model.train()
    # Resumed mid-epoch: skip the global batches already trained; rank 0 carries the loss summed so far.
    start, done_sum, n_seen = state.take_resume_point(epoch) if state is not None else (0, 0.0, 0)
    loss_sum = torch.full((), done_sum if run.session.rank == 0 else 0.0, device=run.device, dtype=torch.float64)
    every = run.cfg.preemption_check_steps if state is not None else 0
    for step, batch in enumerate(run.train.epoch(epoch, start), start):
        masks = _seed_step(run, epoch, step)
        part = train_step(run.model, run.opt, run.sched, batch, run.cfg, run.device, run.label_stats, run.amp,
                          run.session.rank, masks)
        loss_sum += part.double() * batch.total
        n_seen += batch.total
        if every and state.notice is None and (step + 1) % every == 0:
            _check_reclaim(run, state, epoch, step + 1, loss_sum, n_seen)
    if run.session.world > 1 and dist.is_initialized():
        dist.all_reduce(loss_sum)
    train_loss = float(loss_sum.item()) / max(1, n_seen)  # one host sync per epoch
    train_time = time.perf_counter() - t0
    if not math.isfinite(train_loss):
        raise TrainingError(f"non-finite training loss at epoch {epoch + 1} (lr={run.cfg.lr:g}); "
                            "lower lr or enable grad_clip")
    return train_loss, n_seen, train_time


def _select(run: Run, state: RunState, epoch: int, val: dict[str, float]) -> bool:
    """Keep the weights when validation SRCC improved; count bad epochs otherwise. True if improved."""
    improved = math.isfinite(val["srcc"]) and val["srcc"] > state.best["val_srcc"]
    if improved:
        state.best = {"val_srcc": val["srcc"], "epoch": epoch, "val_plcc": val["plcc"], "val_krcc": val["krcc"]}
        state.best_state = _clone_state(run.model)
        state.bad_epochs = 0
    else:
        state.bad_epochs += 1
    return improved


def _checkpoint_state(run: Run, state: RunState, epoch: int) -> dict[str, Any]:
    best = state.best
    return {"history": state.history, "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(),
            "epoch": epoch, "best_val_srcc": best["val_srcc"], "best_epoch": best["epoch"],
            "best_metrics": {k: v for k, v in best.items() if k not in ("epoch", "val_srcc")},
            "bad_epochs": state.bad_epochs, "restarts": state.restarts,
            "fit_id": run.inp.fit_id, "workers": run.session.world, "resumes": state.resumes,
            "reclaim_notice": state.notice}


def end_of_epoch(run: Run, state: RunState, epoch: int, train_loss: float, n_seen: int, t0: float,
                 train_time: float, writer: Any = None) -> bool:
    """Validate, select, report the metrics with a checkpoint, then log. Returns True when patience ran out."""
    session = run.session
    val, _ = evaluate_split(run.model, run.splits["val"], run.cfg, run.cache, run.device, run.amp, run.threads,
                            rank=session.rank, world=session.world)
    improved = _select(run, state, epoch, val)
    best = state.best
    lrs = [g["lr"] for g in run.opt.param_groups]
    metrics = {
        "epoch": epoch + 1, "train_loss": train_loss, "val_srcc": val["srcc"], "val_plcc": val["plcc"],
        "val_krcc": val["krcc"], "val_plcc_fit": val["plcc_fit"], "best_val_srcc": best["val_srcc"],
        "best_epoch": best["epoch"] + 1, "lr_backbone": lrs[0], "lr_head": lrs[1], "restarts": state.restarts,
        "epoch_time_s": time.perf_counter() - t0, "train_time_s": train_time,
        "train_patches_per_s": n_seen / max(train_time, 1e-9), "workers": session.world,
        CHECKPOINT_SCORE: checkpoint_score(val["srcc"], improved),
    }
    state.history.append({k: int(metrics[k]) if k in ("epoch", "workers") else float(metrics[k])
                          for k in HISTORY_KEYS})
    ck_state = _checkpoint_state(run, state, epoch)

    def write(d: str, _state=ck_state, _metrics=metrics, _best=None if improved else state.best_state):
        ckio.write_checkpoint(d, unwrap(run.model).state_dict(), run.cfg, _metrics, _state, _best,
                              provenance=run.provenance)

    session.report(metrics, write)
    _log(run, metrics, writer)
    return state.bad_epochs >= run.cfg.patience


def _open_writer(run: Run, start_epoch: int) -> Any:
    """Rank 0's TensorBoard writer, if asked for. Drop any events a dead attempt wrote past the checkpoint
    we start from (none when it died before its first checkpoint), so no epoch appears twice in the curves."""
    if run.session.rank != 0 or not run.inp.tensorboard:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(run.inp.tensorboard, flush_secs=5,
                         purge_step=start_epoch + 1)


def _log(run: Run, metrics: dict[str, Any], writer: Any) -> None:
    """TensorBoard scalars (copied to remote storage when the run lives there) and the progress queue."""
    inp = run.inp
    if writer is not None:
        for k in _TB_KEYS:
            writer.add_scalar(k if k.startswith("lr") else f"{k.split('_')[0]}/{k.split('_', 1)[1]}",
                              metrics[k], global_step=metrics["epoch"])
        writer.flush()
        if inp.tensorboard_remote:
            from swiniqa.storage import copy_dir

            copy_dir(inp.tensorboard, inp.tensorboard_remote)
    _progress(run, metrics)


def _progress(run: Run, message: dict[str, Any]) -> None:
    """Rank 0 puts an epoch's metrics, or ``{"event": line}``, on the driver's progress queue."""
    progress = run.inp.progress
    if progress is not None and run.session.rank == 0:
        try:
            progress.put_nowait(message)
        except Exception:  # noqa: BLE001 - progress display must never stop training
            pass


def final_test(run: Run, state: RunState, epochs_run: int, stopped_early: bool) -> dict[str, Any]:
    """The run's summary; the test split is scored once, with the weights selected on validation."""
    best = state.best
    final = {"best_val_srcc": best["val_srcc"], "best_val_plcc": best.get("val_plcc", float("nan")),
             "best_epoch": best["epoch"] + 1, "epochs_run": epochs_run, "stopped_early": stopped_early,
             "restarts": state.restarts, "history": state.history, "resumes": state.resumes}
    if run.splits.get("test"):
        if state.best_state is not None:
            unwrap(run.model).load_state_dict(state.best_state)
        test, _ = evaluate_split(run.model, run.splits["test"], run.cfg, run.cache, run.device, run.amp,
                                 run.threads, rank=run.session.rank, world=run.session.world)
        final.update({f"test_{k}": v for k, v in test.items()})
    return final


def train_worker(inp: WorkerInput, session: Optional[Session] = None) -> dict[str, Any]:
    """Train one configuration on this worker.

    Args:
        inp: built by :func:`swiniqa.training.trainer.worker_input` (config, splits, label stats,
            TensorBoard folders, progress queue, fit id, dataset fingerprint).
        session: where the loop runs (default: inside Ray Train).

    Returns:
        On every rank, the final summary: best validation metrics, test metrics of the best weights,
        ``epochs_run``, ``stopped_early``, ``restarts`` and the per-epoch ``history``.

    Raises:
        TrainingError: the training loss became non-finite.
    """
    session = session or RaySession()
    run = setup(inp, session)
    state = restore_state(run)
    writer = _open_writer(run, state.start_epoch)
    stopped_early = False
    epoch = state.start_epoch - 1
    for epoch in range(state.start_epoch, run.cfg.epochs):
        session.before_epoch(epoch)
        t0 = time.perf_counter()
        train_loss, n_seen, train_time = train_one_epoch(run, epoch, state)
        if end_of_epoch(run, state, epoch, train_loss, n_seen, t0, train_time, writer):
            stopped_early = epoch + 1 < run.cfg.epochs
            break
    final = final_test(run, state, epoch + 1, stopped_early)
    if writer is not None:
        writer.close()
    return final
