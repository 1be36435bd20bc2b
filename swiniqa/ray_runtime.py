"""The one place swiniqa talks to Ray's runtime: start or join Ray, quiet its logs, name lost nodes.

Every entry point that needs Ray (``train``, ``tune``, ``score``, ``serve``, the benchmarks, the tests'
session fixture) starts it through :func:`ensure_ray`; a failed Ray Train run becomes one typed line through
:func:`worker_error`. Base layer: imports no swiniqa module but ``config`` and ``errors``, and Ray only
inside the functions.
"""

from __future__ import annotations

import logging
import os
import re
from typing import TYPE_CHECKING, Any, Optional

from swiniqa.errors import CheckpointError, ConfigError, DataError, SwiniqaError, TrainingError

if TYPE_CHECKING:
    from swiniqa.config import TrainConfig

QUIET_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_DEDUP_LOGS": "1",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "0",
}


#: Ray's loggers in the driver that print INFO lines of their own (Serve's "Started Serve in namespace",
#: "Connecting to existing Serve app", "Application ... is ready"; Ray Data's execution plans): shown with
#: ``--debug`` only.
QUIET_LOGGERS = ("ray", "ray.serve", "ray.data", "ray.train", "ray.tune")

log = logging.getLogger("swiniqa.ray")


def ensure_ray(num_cpus: Optional[int] = None) -> None:
    """Connect to ``RAY_ADDRESS`` when set, else start this process's *own* quiet local Ray (dashboard on,
    loopback only: Tune's early stopping needs the state API to free stopped trials' workers).

    Without ``RAY_ADDRESS`` a Ray already running on the machine (``ray start --head``, someone else's) is never
    joined (``address="local"``; Ray's default would attach to it and run our actors under its resources and
    lifetime): a note names it and says how to use it. Ray's Python loggers (Serve's and Ray Data's INFO lines)
    are quieted unless ``--debug`` (``SWINIQA_RAY_LOGS``); the C++ core worker's lines, written straight to file
    descriptor 2, are filtered by :class:`NativeStderrFilter`, which the CLI installs. A SIGTERM handler
    set by the caller (the CLI's: stop like Ctrl-C, exit 143) is kept: ``ray.init`` replaces it, and the C++
    core worker installs a handler that aborts with a stack dump."""
    import ray

    if ray.is_initialized():
        return
    debug = bool(os.environ.get("SWINIQA_RAY_LOGS"))
    for k, v in QUIET_ENV.items():
        if k == "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER" and os.environ.get("RAY_ADDRESS"):
            continue  # a cluster's reclaim notices (spot) reach the workers through Ray Train's watcher
        os.environ.setdefault(k, v)
    kwargs: dict[str, Any] = dict(log_to_driver=debug, logging_level="ERROR", configure_logging=True)
    with _keeping_sigterm_handler():
        if os.environ.get("RAY_ADDRESS"):
            ray.init(address=os.environ["RAY_ADDRESS"], **kwargs)
        else:
            _note_running_cluster()
            ray.init(address="local", num_cpus=num_cpus, dashboard_host="127.0.0.1", dashboard_port=dashboard_port(),
                     **kwargs)
    if not debug:
        _quiet_raylet_errors()
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)


def running_cluster() -> Optional[str]:
    """The address of a Ray cluster started on this machine with ``ray start`` and still running, or None.

    ``ray start`` records its address in ``<temp dir>/ray/ray_current_cluster``; it counts as running when a
    process of that cluster (its GCS, raylet) is alive with that address."""
    try:
        from ray._private.services import find_bootstrap_address, find_gcs_addresses

        address = find_bootstrap_address(None)
        if not address:
            return None
        find_gcs_addresses.cache_clear()
        return address if address in find_gcs_addresses() else None
    except Exception:  # noqa: BLE001 - only used for a note
        return None


def _note_running_cluster() -> None:
    address = running_cluster()
    if address:
        log.warning("note: a Ray cluster is running on this machine at %s; this command starts its own local Ray "
                    "instead. To run on that cluster, set RAY_ADDRESS=%s", address, address)


#: A line of Ray's C++ logging: ``[2026-12-03 07:44:59,369 W 4898 4898] core_worker.cc:123: ...``.
_NATIVE_LINE = re.compile(rb"^(\x1b\[[0-9;]*m)?(\(\w+(, [^)]*)?\)(\x1b\[0m)? )?"
                          rb"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [DIWEF] \d+ \d+\] ")


class NativeStderrFilter:
    """Keep Ray's C++ log lines off this process's stderr: file descriptor 2 becomes a pipe, and a thread
    forwards everything else to the real stderr at once (progress redraws included) and sends lines in Ray's
    C++ log format (the core worker's warnings such as "Actor with class name: 'MapWorker(...)' ... has
    constructor arguments in the object store and max_restarts > 0") to the ``swiniqa.ray`` debug log.

    The CLI installs it for a whole command unless ``--debug``, and calls :meth:`close` before exiting, which
    restores descriptor 2 and forwards what is left."""

    def __init__(self) -> None:
        import sys
        import threading

        sys.stderr.flush()
        self._end = f"swiniqa-stderr-end-{os.getpid()}-{id(self)}\n".encode()
        self._drained = threading.Event()
        self._real = os.dup(2)
        r, w = os.pipe()
        os.dup2(w, 2)
        os.close(w)
        self._thread = threading.Thread(target=self._pump, args=(r,), name="swiniqa-stderr", daemon=True)
        self._thread.start()

    def _pump(self, r: int) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(r, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._line(line + b"\n")
            if pending and not pending.lstrip(b"\r").startswith((b"[", b"\x1b", b"(")):
                self._write(pending)  # a partial line that cannot be Ray's (a progress redraw): show it now
                pending = b""
        if pending:
            self._line(pending)
        os.close(r)

    def _line(self, line: bytes) -> None:
        if line.endswith(self._end):  # close()'s marker: everything written before it has been forwarded
            if line[: -len(self._end)]:
                self._write(line[: -len(self._end)])
            self._drained.set()
        elif _NATIVE_LINE.match(line.lstrip(b"\r")):
            log.debug("%s", line.decode(errors="replace").rstrip())
        else:
            self._write(line)

    def _write(self, data: bytes) -> None:
        try:
            os.write(self._real, data)
        except OSError:
            pass

    def close(self) -> None:
        """Forward what is still in the pipe (a marker line says when: Ray's processes started meanwhile hold
        the pipe too, so it never ends), then restore descriptor 2; waits up to 2 s."""
        import sys

        try:
            sys.stderr.flush()
            os.write(2, self._end)
        except (OSError, ValueError):
            pass
        self._drained.wait(timeout=2.0)
        os.dup2(self._real, 2)  # the pump keeps filtering what Ray's child processes still write into the pipe


class _keeping_sigterm_handler:
    """Restore the caller's Python SIGTERM handler after ``ray.init`` (main thread only); with none, re-install
    Ray's own Python handler (a clean ``sys.exit``) over the C++ one that aborts with a dump."""

    def __enter__(self):
        import signal
        import threading

        self.on_main = threading.current_thread() is threading.main_thread()
        self.before = signal.getsignal(signal.SIGTERM) if self.on_main else None
        return self

    def __exit__(self, *exc) -> None:
        import signal

        if not self.on_main:
            return
        own = self.before if callable(self.before) else signal.getsignal(signal.SIGTERM)
        if callable(own):
            signal.signal(signal.SIGTERM, own)


def _quiet_raylet_errors() -> None:
    """Send Ray's raylet error dumps (e.g. 20 lines of a lost node's log, printed on the driver's *stdout*)
    to the debug log: a lost node is explained in one line by :func:`lost_node_line`, and ``--json`` keeps
    stdout clean. ``--debug`` keeps Ray's own printing."""
    import ray._private.worker as rw

    original = getattr(rw, "print_to_stdstream", None)
    if original is None or getattr(original, "_swiniqa_quiet", False):
        return

    def print_to_stdstream(data, ignore_prefix: bool):
        if data.get("pid") == "raylet":
            logging.getLogger("swiniqa.ray").debug("%s", "\n".join(data.get("lines", [])))
            return
        original(data, ignore_prefix)

    print_to_stdstream._swiniqa_quiet = True  # type: ignore[attr-defined]
    rw.print_to_stdstream = print_to_stdstream


def dashboard_port(preferred: int = 8265) -> int:
    """``preferred`` when free on 127.0.0.1, else a free port: a second local Ray on this machine (a
    ``train`` while a ``tune`` runs, two users) would otherwise fail to bind its dashboard, and without
    the dashboard the state API that Tune's early stopping relies on is gone."""
    import socket

    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    return 0


def _typed_failure(e: BaseException) -> Optional[SwiniqaError]:
    """The first worker's own :class:`SwiniqaError`, as raised (Ray 2.60 keeps it typed in
    ``WorkerGroupError.worker_failures``; a ``ControllerError`` carries ``controller_failure``)."""
    seen: set[int] = set()
    todo: list[BaseException] = [e]
    while todo:
        x = todo.pop(0)
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, SwiniqaError):
            return x
        failures = getattr(x, "worker_failures", None) or {}
        todo.extend(failures[k] for k in sorted(failures))
        todo.extend([getattr(x, "controller_failure", None), x.__cause__])
    return None


def worker_error(e: BaseException, lost: Optional[str] = None) -> SwiniqaError:
    """Turn a Ray Train failure into one line: a worker's own error keeps its class and exit code;
    a lost node says which and how to resume (``lost``); else the text, matched as a fallback."""
    typed = _typed_failure(e)
    if typed is not None:
        return typed
    if lost:
        return TrainingError(lost)
    text = str(e)
    m = re.findall(r"(?:swiniqa\.errors\.)?(TrainingError|DataError|ConfigError|CheckpointError): (.+)", text)
    if m:
        cls = {"DataError": DataError, "ConfigError": ConfigError, "CheckpointError": CheckpointError}
        return cls.get(m[-1][0], TrainingError)(m[-1][1].strip())
    last = [ln for ln in text.splitlines() if ln.strip()]
    return TrainingError(f"training failed: {last[-1][:300] if last else type(e).__name__} "
                         "(rerun with --debug for the worker traceback)")


def driver_pinned_actor_options() -> dict[str, Any]:
    """Options for a helper actor the driver keeps calling (the progress queue): 0 CPUs, on the driver's
    own node. Unpinned, Ray may put it on a worker node; when that node is lost the driver's next call
    fails and ends a run Train could have restarted. Ray pins its Train controller the same way."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    return {"num_cpus": 0, "scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False)}


def dead_nodes() -> dict[str, str]:
    """Node id -> address of every node that is dead or whose raylet no longer answers.

    The cluster marks a vanished node dead only after its health checks time out (15 s or more), later
    than Train reports the failure, so a raylet port that refuses or times out counts as lost too."""
    import socket

    import ray

    try:
        nodes = ray.nodes()
    except Exception:  # noqa: BLE001 - only used to explain a failure
        return {}
    out = {}
    for n in nodes:
        addr = n.get("NodeManagerAddress", "?")
        if not n.get("Alive"):
            out[n["NodeID"]] = addr
            continue
        try:
            socket.create_connection((addr, int(n["NodeManagerPort"])), timeout=3).close()
        except (OSError, KeyError, ValueError, TypeError):
            out[n["NodeID"]] = addr
    return out


def lost_node_line(before: dict[str, str], cfg: TrainConfig, name: str, output: str) -> Optional[str]:
    """One line naming the node(s) lost since ``before`` and how to resume, or None if none was lost."""
    lost = {k: v for k, v in dead_nodes().items() if k not in before}
    if not lost:
        return None
    nodes = ", ".join(f"{k[:12]} ({v})" for k, v in sorted(lost.items()))
    retry = (f"it had already restarted {cfg.max_failures} time(s) (--max-failures {cfg.max_failures})"
             if cfg.max_failures else "--max-failures is 0")
    return (f"lost node {nodes} mid-run and {retry}; resume from the last checkpoint with the same "
            f"--name {name} --output {output}, and pass --max-failures 2 (or more) so a lost node only "
            "restarts the workers on the nodes left")
