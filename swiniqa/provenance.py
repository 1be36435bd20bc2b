"""What made a number: the software and machine (``environment.json``) and the data (``dataset.json``).

Every run folder, Tune trial and checkpoint carries both, so a figure can be traced to the install, the
CPU instruction set or GPU, the workers and the exact images it came from. Two runs with the same
``environment_id`` ran the same code (commit, dirty or not) on the same package set, Python, CPU model
and instruction set, and GPUs; two runs with the same ``fingerprint`` saw byte-identical label files and
the same images (names and sizes). :func:`compare` says which of many runs differ, and in what.

Only the standard library is imported here; torch is asked (CPU capability, CUDA) when it is already
imported or ``torch_details`` is requested (the training workers have it loaded anyway).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
from importlib import metadata
from typing import Any, Iterable, Mapping, Optional, Sequence

#: The packages whose versions change the numbers a run prints.
NUMERIC_PACKAGES = ("torch", "torchvision", "timm", "numpy", "pillow", "scipy", "ray", "safetensors",
                    "scikit-image")
#: The fields that identify an environment (``environment_id`` hashes them; :func:`compare` names them).
IDENTITY_KEYS = ("swiniqa", "git_commit", "git_dirty", "python", "packages", "packages_sha256", "cpu_model",
                 "cpu_capability", "machine", "gpus", "cuda", "cudnn", "gpu_driver", "numeric_env")
#: Environment variables that change which kernels run (and so the low bits of every result).
NUMERIC_ENV = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "DNNL_MAX_CPU_ISA", "MKL_CBWR",
               "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_TF32_OVERRIDE")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def installed_packages() -> list[str]:
    """Every installed distribution as ``name==version``, sorted (what ``pip freeze`` would list)."""
    seen = {}
    for d in metadata.distributions():
        name = (d.metadata.get("Name") or "").strip()
        if name:
            seen[name.lower().replace("_", "-")] = d.version
    return [f"{n}=={v}" for n, v in sorted(seen.items())]


def _version(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_state(path: Optional[str] = None) -> dict[str, Any]:
    """``{"git_commit", "git_dirty"}`` of the checkout holding swiniqa's source, or Nones when it is not
    one (an installed wheel) or git is missing."""
    src = path or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out: dict[str, Any] = {"git_commit": None, "git_dirty": None}
    if not shutil.which("git") or not os.path.exists(os.path.join(src, ".git")):
        return out
    try:
        run = dict(cwd=src, capture_output=True, text=True, timeout=10)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], **run)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], **run)
    except (OSError, subprocess.SubprocessError):
        return out
    if commit.returncode == 0:
        out["git_commit"] = commit.stdout.strip()
        out["git_dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    return out


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``'s ``model name``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_driver() -> Optional[str]:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else None


def torch_details() -> dict[str, Any]:
    """The instruction set torch's CPU kernels dispatch to, and the GPUs, CUDA and cuDNN it sees."""
    import torch

    out: dict[str, Any] = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "gpus": [], "cuda": None,
                           "cudnn": None, "gpu_driver": None, "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        out["cuda"] = torch.version.cuda
        out["cudnn"] = torch.backends.cudnn.version()
        out["gpu_driver"] = _gpu_driver()
    return out


def environment(workers: Optional[Sequence[Mapping[str, Any]]] = None, with_torch: bool = True) -> dict[str, Any]:
    """This process's environment as ``environment.json`` holds it.

    Args:
        workers: one entry per training worker (``rank``, ``node``, ``device``), when known.
        with_torch: import torch for the CPU instruction set and the GPUs (a driver that never loads torch
            can pass False; those fields are then None).

    Returns:
        The record, with ``environment_id``: a hash of :data:`IDENTITY_KEYS`.
    """
    packages = installed_packages()
    env: dict[str, Any] = {
        "swiniqa": _version("swiniqa"),
        **git_state(),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "packages": {name: _version(name) for name in NUMERIC_PACKAGES},
        "packages_sha256": _sha256("\n".join(packages)),
        "packages_count": len(packages),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "host": socket.gethostname(),
        "numeric_env": {k: os.environ[k] for k in NUMERIC_ENV if k in os.environ},
        "cpu_capability": None, "gpus": [], "cuda": None, "cudnn": None, "gpu_driver": None,
    }
    if with_torch:
        env.update(torch_details())
    if workers is not None:
        env["workers"] = len(workers)
        env["nodes"] = len({w.get("node") for w in workers})
        env["worker_list"] = [dict(w) for w in workers]
    env["environment_id"] = environment_id(env)
    return env


def environment_id(env: Mapping[str, Any]) -> str:
    """A short hash of the fields that change numbers (not the host name, worker count or time)."""
    return _sha256(json.dumps({k: env.get(k) for k in IDENTITY_KEYS}, sort_keys=True, default=str))[:16]


def _relative(path: str, root: Optional[str]) -> str:
    if root:
        try:
            rel = os.path.relpath(path, root)
            if not rel.startswith(".."):
                return rel.replace(os.sep, "/")
        except ValueError:
            pass
    return os.path.basename(path)


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def dataset_fingerprint(name: str, root: Optional[str], image_paths: Iterable[str],
                        label_files: Iterable[str] = ()) -> dict[str, Any]:
    """``dataset.json``: hashes of the label file(s) and of the sorted image list with sizes.

    Names are relative to the dataset root, so the same release copied elsewhere (or staged from object
    storage) has the same fingerprint; a changed, added or removed image or label row changes it.

    Args:
        name: the dataset (reader) name.
        root: the dataset folder the names are made relative to.
        image_paths: the images the run used (local paths).
        label_files: the label files the reader read.

    Returns:
        ``{"dataset", "images", "images_sha256", "label_files": {name: sha256}, "fingerprint"}``.
    """
    rows = sorted(f"{_relative(p, root)}\t{os.path.getsize(p) if os.path.exists(p) else -1}" for p in image_paths)
    labels = {_relative(p, root): file_sha256(p) for p in sorted(set(label_files)) if os.path.isfile(p)}
    out = {"dataset": name, "images": len(rows), "images_sha256": _sha256("\n".join(rows)), "label_files": labels}
    out["fingerprint"] = _sha256(json.dumps({k: out[k] for k in ("images_sha256", "label_files")},
                                            sort_keys=True))[:16]
    return out


def compare(runs: Mapping[str, tuple[Optional[Mapping[str, Any]], Optional[Mapping[str, Any]]]]) -> dict[str, Any]:
    """Whether runs share one environment and one dataset.

    Args:
        runs: run name -> ``(environment, dataset fingerprint)`` as read from their folders (None: missing).

    Returns:
        ``{"one_environment", "one_dataset", "environments": {id: [runs]}, "datasets": {fingerprint: [runs]},
        "differ": [{"run", "environment_fields", "dataset"}], "missing": [runs without a record]}``: runs
        outside the most common environment (or dataset) are listed with the fields that differ from it.
    """
    envs: dict[str, list[str]] = {}
    data: dict[str, list[str]] = {}
    missing = []
    for run, (env, ds) in sorted(runs.items()):
        if env is None or ds is None:
            missing.append(run)
        if env is not None:
            envs.setdefault(str(env.get("environment_id") or environment_id(env)), []).append(run)
        if ds is not None:
            data.setdefault(str(ds.get("fingerprint")), []).append(run)
    main_env = max(envs, key=lambda k: len(envs[k])) if envs else None
    main_ds = max(data, key=lambda k: len(data[k])) if data else None
    ref = next((runs[r][0] for r in envs.get(main_env, [])), None)
    differ = []
    for run, (env, ds) in sorted(runs.items()):
        fields = [k for k in IDENTITY_KEYS if env is not None and ref is not None and env.get(k) != ref.get(k)]
        other_data = ds is not None and str(ds.get("fingerprint")) != main_ds
        if fields or other_data:
            differ.append({"run": run, "environment_fields": fields,
                           "dataset": ds.get("fingerprint") if other_data else None})
    return {"one_environment": len(envs) <= 1 and not missing, "one_dataset": len(data) <= 1 and not missing,
            "environments": envs, "datasets": data, "differ": differ, "missing": missing}


def short(env: Optional[Mapping[str, Any]], ds: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """The fingerprints a ``--json`` answer carries: environment id, dataset fingerprint, commit."""
    return {"environment_id": (env or {}).get("environment_id"), "dataset_fingerprint": (ds or {}).get("fingerprint"),
            "git_commit": (env or {}).get("git_commit"), "git_dirty": (env or {}).get("git_dirty")}


def checkpoint_fingerprint(checkpoint: str) -> dict[str, Any]:
    """What ``eval --json`` and ``predict --json`` carry about the weights they used: ``checkpoint`` (a hash
    of its manifest, which holds every file's SHA-256: the same value means the same weights and config),
    and the environment and dataset that trained it (None for checkpoints written before provenance)."""
    def load(name: str) -> Optional[dict[str, Any]]:
        try:
            with open(os.path.join(checkpoint, name)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    manifest = os.path.join(checkpoint, "manifest.json")
    digest = file_sha256(manifest)[:16] if os.path.isfile(manifest) else None
    return {"checkpoint": digest, **short(load("environment.json"), load("dataset.json"))}


__all__ = ["NUMERIC_PACKAGES", "IDENTITY_KEYS", "installed_packages", "git_state", "cpu_model", "torch_details",
           "environment", "environment_id", "dataset_fingerprint", "file_sha256", "compare", "short",
           "checkpoint_fingerprint"]
