"""Score a whole image collection on Ray Data: decoding on CPU tasks, the model in an actor pool.

    from swiniqa.serving.score import score_collection
    summary = score_collection("runs/e6/best", ["photos/", "more/*.jpg", "list.txt", "s3://bucket/shots/"],
                               "scores.parquet")
    # {"output": "scores.parquet", "images": 120000, "scored": 119998, "errors": 2, "skipped": 0, ...}

Pipeline: the image list -> ``map_batches(_prepare_batch)`` as CPU tasks (read, decode, cut predict's
crops: :func:`swiniqa.serving.runtime.image_crops`) -> ``map_batches(BatchScorer)`` in an actor pool (one
model per actor; ``num_gpus`` per actor on a GPU cluster) -> rows ``image, score, error`` streamed back
to the driver. GPUs never wait on JPEG decoding, and the scores are predict's (same crops, same
preprocessing, same averaging). A file that cannot be read gets an ``error`` and no score; it never
stops the run.

Resumable: rows are journalled to ``OUTPUT.parts/`` as they arrive; a rerun with the same output reads
the output and the journal, skips every image that already has a score (failed ones are retried) and
writes the merged file (input order) at the end.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from swiniqa.errors import DataError
from swiniqa.storage import is_remote

log = logging.getLogger("swiniqa.serving.score")

LIST_SUFFIXES = (".txt", ".lst", ".csv")
OUTPUT_SUFFIXES = (".csv", ".parquet")
#: Images per decoding task.
DECODE_BATCH = 8
#: Rows per journal part (also written at least every ``JOURNAL_SECONDS``).
JOURNAL_ROWS = 256
JOURNAL_SECONDS = 10.0
#: Memory reserved per decoding task (bytes).
DECODE_MEMORY = 256 << 20


# --------------------------------------------------------------------------------------------- inputs
def _list_remote(uri: str) -> list[str]:
    """Image objects under an ``s3://``/``gs://`` prefix (or the one object it names)."""
    import pyarrow.fs as pafs

    from swiniqa.evaluation.predict import is_image_name

    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        info = fs.get_file_info(path)
        scheme = uri.split("://", 1)[0]
        if info.type == pafs.FileType.File:
            return [uri]
        infos = fs.get_file_info(pafs.FileSelector(path.rstrip("/"), recursive=True, allow_not_found=True))
    except Exception as e:  # noqa: BLE001 - pyarrow raises OSError/ArrowInvalid for bad URIs or credentials
        raise DataError(f"cannot list {uri}: {str(e).splitlines()[0][:200]}") from None
    return sorted(f"{scheme}://{i.path}" for i in infos if i.type == pafs.FileType.File and is_image_name(i.path))


def _read_list_file(path: str) -> list[str]:
    """Paths in a text list (one per line, ``#`` comments) or a CSV (column ``image``/``path``/``file``, else
    the first); relative paths are taken relative to the list's folder."""
    import pandas as pd

    base = os.path.dirname(os.path.abspath(path))
    try:
        if path.lower().endswith(".csv"):
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
            col = next((c for c in df.columns if c.strip().lower() in ("image", "path", "file", "filename")),
                       df.columns[0] if len(df.columns) else None)
            entries = [] if col is None else df[col].tolist()
        else:
            with open(path, encoding="utf-8") as f:
                entries = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(f"cannot read the image list {path}: {e}; give one path per line or a CSV with an "
                        "'image' column") from None
    out = []
    for e in (str(x).strip() for x in entries):
        if e:
            out.append(e if is_remote(e) or os.path.isabs(e) else os.path.normpath(os.path.join(base, e)))
    return out


def collect_inputs(inputs: Sequence[str], recursive: bool = False,
                   order: Optional[list[str]] = None) -> tuple[list[str], list[dict[str, str]]]:
    """Expand folders, globs, list files (``.txt``/``.lst``/``.csv``) and ``s3://``/``gs://`` prefixes into
    image paths (input order, duplicates dropped).

    Args:
        order: when given, filled with every row's ``image`` in input order: the found paths *and* the
            inputs that name nothing, each where it was listed (the output's row order).

    Returns:
        ``(paths, errors)``: errors are ``{"image": input, "why": reason}`` for inputs naming nothing.

    Raises:
        DataError: a list file or a remote prefix cannot be read.
    """
    from swiniqa.evaluation.predict import collect_images

    paths: list[str] = []
    errors: list[dict[str, str]] = []
    seen: set[str] = set()
    order = order if order is not None else []

    def add(found: list[str], errs: Sequence[dict[str, str]] = ()) -> None:
        for p in found:
            key = p if is_remote(p) else os.path.normpath(os.path.abspath(p))
            if key not in seen:
                seen.add(key)
                paths.append(p)
                order.append(p)
        for e in errs:
            errors.append(e)
            order.append(e["image"])

    for raw in inputs:
        item = str(raw)
        if is_remote(item):
            found = _list_remote(item)
            add(found, [] if found else [{"image": item, "why": "no image object under this prefix"}])
        elif item.lower().endswith(LIST_SUFFIXES) and os.path.isfile(item):
            for entry in _read_list_file(item):  # one entry at a time: rows keep the list's order
                add([entry]) if is_remote(entry) else add(*collect_images([entry], recursive=recursive))
        else:
            add(*collect_images([item], recursive=recursive))
    return paths, errors


# --------------------------------------------------------------------------------------------- workers
def _read_crops(path: str, spec) -> np.ndarray:
    from swiniqa.serving.runtime import bytes_crops, image_crops

    if not is_remote(path):
        return image_crops(path, spec)
    import pyarrow.fs as pafs

    try:
        fs, p = pafs.FileSystem.from_uri(path)
        with fs.open_input_stream(p) as f:
            data = f.read()
    except Exception as e:  # noqa: BLE001 - pyarrow's errors for missing objects / credentials
        raise DataError(f"cannot read {path}: {str(e).splitlines()[0][:200]}") from None
    return bytes_crops(data, spec, name=path)


def _prepare_batch(batch: dict[str, np.ndarray], spec) -> dict[str, np.ndarray]:
    """CPU task: predict's crops of every image of the batch; an unreadable one gets blank crops and an error."""
    images = [str(x) for x in batch["image"]]
    crops = np.zeros((len(images), spec.patches, spec.patch_size, spec.patch_size, 3), np.uint8)
    errors = []
    for i, path in enumerate(images):
        try:
            crops[i] = _read_crops(path, spec)
            errors.append("")
        except DataError as e:
            errors.append(getattr(e, "why", None) or str(e))
        except Exception as e:  # noqa: BLE001 - one odd file must not fail the collection
            errors.append(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300])
    return {"image": np.array(images, dtype=object), "crops": crops, "error": np.array(errors, dtype=object)}


class BatchScorer:
    """Actor: one model (CPU or one GPU); scores the readable images of each batch in one forward pass."""

    def __init__(self, model_ref, device: str, threads: int):
        import ray
        import torch

        if device == "cpu":
            torch.set_num_threads(max(1, int(threads)))
        self.model, _ = ray.get(model_ref[0]) if isinstance(model_ref, list) else model_ref
        self.device = device

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from swiniqa.serving.runtime import crop_scores

        errors = np.array([str(e) for e in batch["error"]], dtype=object)
        scores = np.full(len(errors), np.nan)
        ok = np.flatnonzero(errors == "")
        if len(ok):
            scores[ok] = crop_scores(self.model, [batch["crops"][i] for i in ok], self.device)
        return {"image": batch["image"], "score": scores, "error": errors}


# --------------------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class ActorPlan:
    """How many model actors and what each reserves."""

    actors: int
    num_cpus: float
    num_gpus: float
    device: str


def plan_actors(resources: dict[str, float], actors: Optional[int] = None, gpus_per_actor: Optional[float] = None,
                cpus_per_actor: Optional[float] = None) -> ActorPlan:
    """Actor pool from the cluster's resources: one actor per GPU (``gpus_per_actor`` each) on a GPU cluster;
    on CPUs, one actor per 8 CPUs, each given a quarter of them, so half the CPUs stay free for decoding.

    ``gpus_per_actor=0`` forces CPU actors on a GPU cluster; ``actors``/``cpus_per_actor`` override.
    """
    gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 1))
    if gpus >= 1 and gpus_per_actor != 0:
        g = float(gpus_per_actor or 1)
        return ActorPlan(int(actors or max(1, gpus // g)), float(cpus_per_actor or 1), g, "cuda")
    n = int(actors or max(1, cpus // 8))
    return ActorPlan(n, float(cpus_per_actor or max(1, int(cpus // (2 * n)))), 0.0, "cpu")


# --------------------------------------------------------------------------------------------- output
def _check_output(output: str) -> str:
    """``output`` proven writable now (:func:`swiniqa.storage.check_output`, which leaves nothing behind); its
    folder is created when the first rows are journalled."""
    from swiniqa.storage import check_output

    out = os.fspath(output)
    if not out.lower().endswith(OUTPUT_SUFFIXES):
        raise DataError(f"--output {out}: give a .csv or .parquet file")
    check_output(out, "--output")
    return out


def _read_table(path: str):
    import pandas as pd

    try:
        df = pd.read_csv(path, keep_default_na=True) if path.lower().endswith(".csv") else pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - a broken previous output: say which and how to fix
        raise DataError(f"cannot read the existing output {path} to resume ({str(e).splitlines()[0][:160]}); "
                        "move it away to start over") from None
    if "image" not in df.columns or "score" not in df.columns:
        raise DataError(f"{path} has no image/score columns: not a `swiniqa score` output; pick another --output")
    return _plain(df["image"], pd.to_numeric(df["score"], errors="coerce"),
                  df["error"] if "error" in df.columns else [None] * len(df))


def previous_rows(output: str):
    """Rows of an earlier run into ``output``: the finished file and its journal ``OUTPUT.parts/``."""
    import pandas as pd

    frames = [_read_table(output)] if os.path.isfile(output) else []
    parts = f"{output}.parts"
    if os.path.isdir(parts):
        for name in sorted(os.listdir(parts)):
            if name.endswith(".parquet"):
                try:
                    frames.append(_read_table(os.path.join(parts, name)))
                except DataError:
                    log.warning("ignoring unreadable journal part %s (its images are scored again)", name)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["image", "score", "error"])


class _Journal:
    """Appends result rows to ``OUTPUT.parts/part-NNNNN.parquet`` every few hundred rows or seconds."""

    def __init__(self, output: str):
        self.dir = f"{output}.parts"
        os.makedirs(self.dir, exist_ok=True)  # the output's folder too (checked writable before any work)
        self.n = len([f for f in os.listdir(self.dir) if f.endswith(".parquet")])
        self.buf: list[Any] = []
        self.rows, self.last = 0, time.monotonic()

    def add(self, df) -> None:
        self.buf.append(df)
        self.rows += len(df)
        if self.rows >= JOURNAL_ROWS or time.monotonic() - self.last >= JOURNAL_SECONDS:
            self.flush()

    def flush(self) -> None:
        import pandas as pd

        if not self.buf:
            return
        part = os.path.join(self.dir, f"part-{self.n:05d}.parquet")
        pd.concat(self.buf, ignore_index=True).to_parquet(part + ".tmp", index=False)
        os.replace(part + ".tmp", part)
        self.n += 1
        self.buf, self.rows, self.last = [], 0, time.monotonic()


def write_output(df, output: str) -> None:
    """Write the rows (``image, score, error``) to ``output`` (.csv or .parquet) atomically."""
    from swiniqa.storage import write_atomic

    if output.lower().endswith(".csv"):
        write_atomic(output, lambda tmp: df.to_csv(tmp, index=False, float_format="%.10g"))
    else:
        write_atomic(output, lambda tmp: df.to_parquet(tmp, index=False))


# --------------------------------------------------------------------------------------------- run
def _dataset(todo: list[str], spec, model_ref, plan: ActorPlan, images_per_batch: int):
    """The lazy pipeline: paths -> crops (CPU tasks) -> scores (actor pool)."""
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # one progress line of our own, with images/s
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ds = ray.data.from_items([{"image": p} for p in todo])
    # The memory reservation (a few decoded photos and their crops) also keeps Ray Data from fusing decoding
    # into the model actors (ops with different resource requests are not fused): fused, the actors would
    # decode and the GPUs would wait on JPEGs.
    ds = ds.map_batches(_prepare_batch, fn_kwargs={"spec": spec}, batch_size=DECODE_BATCH, num_cpus=1,
                        memory=DECODE_MEMORY, batch_format="numpy")
    return ds.map_batches(BatchScorer, fn_constructor_kwargs={"model_ref": [model_ref], "device": plan.device,
                                                              "threads": max(1, int(plan.num_cpus))},
                          batch_size=images_per_batch, compute=ray.data.ActorPoolStrategy(size=plan.actors),
                          num_cpus=plan.num_cpus, num_gpus=plan.num_gpus, batch_format="numpy")


def _plain(images, scores, errors):
    """Rows as plain numpy/object columns: Arrow-backed doubles keep NaN as a value, not as missing."""
    import pandas as pd

    score = np.asarray([np.nan if s is None else float(s) for s in scores], dtype=np.float64)
    error = [e if isinstance(e, str) and e and s != s else None for e, s in zip(errors, score)]
    return pd.DataFrame({"image": [str(i) for i in images], "score": score, "error": pd.Series(error, dtype=object)})


def _stream(ds, output: str, total: int, progress: bool) -> list[Any]:
    """Pull result rows as the actors finish them; journal them; one progress line with images/s."""
    from swiniqa.evaluation.evaluate import Progress

    journal, frames = _Journal(output), []
    bar = Progress("score", total, enabled=progress, bar=True)
    try:
        for df in ds.iter_batches(batch_size=None, batch_format="pandas"):
            df = _plain(df["image"], df["score"], df["error"])
            journal.add(df)
            frames.append(df)
            bar.step(len(df))
    finally:
        journal.flush()
        bar.close()
    return frames


def _merge(frames: list[Any], paths: list[str], input_errors: list[dict[str, str]]):
    """One row per image: a scored row wins over a failed one, a later one over an earlier one; input order
    (``paths``: every row's image in input order, inputs naming nothing included)."""
    import pandas as pd

    errs = pd.DataFrame([{"image": e["image"], "score": np.nan, "error": e["why"]} for e in input_errors],
                        columns=["image", "score", "error"])
    df = pd.concat([f for f in [*frames, errs] if len(f)], ignore_index=True)
    if not len(df):
        return pd.DataFrame(columns=["image", "score", "error"])
    df["score"] = pd.to_numeric(df["score"], errors="coerce")
    df["_ok"], df["_seq"] = df["score"].notna(), np.arange(len(df))
    df = df.sort_values(["_ok", "_seq"]).drop_duplicates("image", keep="last")
    order = {p: i for i, p in enumerate(paths)}
    df["_order"] = [order.get(p, len(order) + s) for p, s in zip(df["image"], df["_seq"])]
    df = df.sort_values("_order")
    return _plain(df["image"], df["score"], df["error"])


def score_collection(checkpoint: str | os.PathLike, inputs: Sequence[str], output: str | os.PathLike, *,
                     patches: Optional[int] = None, resize: Any = "default", resize_short: Optional[int] = None,
                     recursive: bool = False, batch_size: int = 64, actors: Optional[int] = None,
                     gpus_per_actor: Optional[float] = None, cpus_per_actor: Optional[float] = None,
                     progress: bool = True) -> dict[str, Any]:
    """Score every image ``inputs`` name on Ray Data into ``output`` (.csv or .parquet); resumable.

    Args:
        checkpoint: a checkpoint folder, a run/experiment folder (its best) or an exported ``.onnx``.
        inputs: files, folders, glob patterns, list files (.txt/.lst/.csv) and s3:// / gs:// prefixes.
        output: the result file; an existing one (and its ``.parts`` journal) is resumed.
        patches, resize, resize_short: as for ``predict`` (default: the checkpoint's).
        recursive: scan sub-folders of folder inputs.
        batch_size: crops per forward pass (whole images: ``batch_size // patches`` per actor call).
        actors, gpus_per_actor, cpus_per_actor: override :func:`plan_actors`.
        progress: one stderr line with images/s.

    Returns:
        ``{"output", "images", "scored", "errors", "skipped", "seconds", "images_per_s", "actors", "device"}``;
        ``errors`` lists ``{"image", "why"}`` (unreadable files and inputs naming nothing).

    Raises:
        DataError: nothing to score, an unreadable list/prefix/previous output, an unwritable output.
        CheckpointError: the model cannot be loaded (checked before any worker starts).
    """
    from swiniqa.models.loading import load_scorer
    from swiniqa.serving.runtime import crop_spec

    output = _check_output(output)
    order: list[str] = []
    paths, input_errors = collect_inputs(inputs, recursive=recursive, order=order)
    if not paths:
        listed = "; ".join(f"{e['image']}: {e['why']}" for e in input_errors[:5]) or "no inputs given"
        raise DataError(f"score: no image to score ({listed}); give image files, folders, patterns or lists")
    model, cfg = load_scorer(checkpoint)
    spec = crop_spec(cfg, patches, resize, resize_short)
    prev = previous_rows(output)
    done = set(prev.loc[prev["score"].notna(), "image"].astype(str))
    todo = [p for p in paths if p not in done]
    t0, frames, plan = time.monotonic(), [], None
    if todo:
        import ray

        from swiniqa.ray_runtime import ensure_ray

        ensure_ray()
        plan = plan_actors(ray.cluster_resources(), actors, gpus_per_actor, cpus_per_actor)
        log.info("score: %d images (%d already scored), %d model actor(s) on %s", len(todo), len(paths) - len(todo),
                 plan.actors, plan.device)
        ds = _dataset(todo, spec, ray.put((model, cfg)), plan, max(1, batch_size // spec.patches))
        frames = _stream(ds, output, len(todo), progress)
    seconds = time.monotonic() - t0
    df = _merge([prev, *frames], order, input_errors)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    write_output(df, output)
    shutil.rmtree(f"{output}.parts", ignore_errors=True)
    bad = df[df["score"].isna()]
    return {"output": output, "images": int(len(df)), "scored": int(df["score"].notna().sum()),
            "errors": [{"image": str(i), "why": str(w)} for i, w in zip(bad["image"], bad["error"])],
            "skipped": len(paths) - len(todo), "seconds": round(seconds, 2),
            "images_per_s": round(len(todo) / seconds, 2) if todo and seconds > 0 else None,
            "actors": plan.actors if plan else 0, "device": plan.device if plan else None}


__all__ = ["score_collection", "collect_inputs", "plan_actors", "ActorPlan", "previous_rows", "write_output",
           "BatchScorer"]
