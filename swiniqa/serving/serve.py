"""An HTTP endpoint for a checkpoint on Ray Serve, with dynamic batching.

    from swiniqa.serving.serve import start_server
    url = start_server("runs/e6/best", port=8000)        # http://127.0.0.1:8000; serve.shutdown() stops it

    curl --data-binary @photo.jpg http://127.0.0.1:8000/score          -> {"score": 61.2}
    curl -F a=@a.jpg -F b=@b.png http://127.0.0.1:8000/score           -> {"scores": [61.2, 48.9], "names": ["a.jpg", "b.png"]}
    curl http://127.0.0.1:8000/healthz                                 -> {"status": "ok", ...}

An upload is scored exactly as ``swiniqa predict`` scores the same file (the bytes are decoded as a file
and cut into the same content-seeded crops: :func:`swiniqa.serving.runtime.bytes_crops`). Decoding runs in
a thread beside the event loop; the model runs in ``@serve.batch`` batches, so concurrent requests share
one forward pass. Every problem with a request is a 4xx with ``{"error": one line}``: an empty, broken or
non-image body (400), a body over the size limit (413), a wrong method (405) or path (404).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from email.message import Message
from typing import Any, Optional

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from swiniqa.errors import ConfigError, DataError

log = logging.getLogger("swiniqa.serving.serve")

#: Default request body limit (bytes): a 12-megapixel JPEG is ~5 MB.
MAX_BODY_BYTES = 32 << 20
APP_NAME = "swiniqa"


class RequestError(Exception):
    """A request the client must fix: HTTP ``status`` and one line."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (never read whole first)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"body of {int(declared)} bytes is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _header_param(value: str, param: str, header: str = "content-type") -> Optional[str]:
    m = Message()
    m[header] = value
    v = m.get_param(param, header=header)
    return v if isinstance(v, str) else None


def parse_multipart(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of each part of a ``multipart/form-data`` body (file name, else field name).

    Raises:
        RequestError: 400 when the body is not well-formed multipart or holds no part.
    """
    boundary = _header_param(content_type, "boundary")
    if not boundary:
        raise RequestError(400, "multipart body without a boundary in its Content-Type")
    parts = []
    for k, section in enumerate(body.split(b"--" + boundary.encode("latin-1"))[1:]):
        if section.startswith(b"--"):
            break
        head, sep, data = section.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise RequestError(400, f"multipart part {k + 1} has no header/body separator")
        disposition = next((ln.split(b":", 1)[1].decode("latin-1").strip() for ln in head.split(b"\r\n")
                            if ln.lower().startswith(b"content-disposition:")), "")
        name = (_header_param(disposition, "filename", "content-disposition")
                or _header_param(disposition, "name", "content-disposition") or f"part{k + 1}")
        parts.append((name, data.removesuffix(b"\r\n")))
    if not parts:
        raise RequestError(400, "multipart body holds no part; send the images as form files")
    return parts


@serve.deployment(name="iqa")
class IQAEndpoint:
    """One model per replica; ``/score`` and ``/healthz`` (see the module docstring)."""

    def __init__(self, checkpoint: str, patches: Optional[int], resize: Any, resize_short: Optional[int],
                 max_body_bytes: int, device: str, threads: int, max_batch: int, batch_wait_s: float):
        import torch

        from swiniqa.models.loading import load_scorer
        from swiniqa.serving.runtime import crop_spec

        if device == "cpu":
            torch.set_num_threads(max(1, threads))
        self.model, cfg = load_scorer(checkpoint, device=device, threads=threads)
        self.spec = crop_spec(cfg, patches, resize, resize_short)
        self.device, self.max_body = device, max_body_bytes
        self.info = {"checkpoint": os.path.basename(os.path.normpath(checkpoint)), "patches": self.spec.patches,
                     "patch_size": self.spec.patch_size, "device": device}
        self._score.set_max_batch_size(max_batch)
        self._score.set_batch_wait_timeout_s(batch_wait_s)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _score(self, crops: list) -> list[float]:
        """One forward pass for the crops of every request in the batch."""
        from swiniqa.serving.runtime import crop_scores

        return await asyncio.to_thread(crop_scores, self.model, crops, self.device)

    async def _crops(self, data: bytes, name: str):
        from swiniqa.serving.runtime import bytes_crops

        if not data:
            raise RequestError(400, f"{name} is empty: POST the raw bytes of an image, or form files")
        try:
            return await asyncio.to_thread(bytes_crops, data, self.spec, name)
        except DataError as e:
            raise RequestError(400, str(e)) from None

    async def _handle_score(self, request: Request) -> dict[str, Any]:
        body = await read_body(request, self.max_body)
        ctype = request.headers.get("content-type", "")
        if ctype.lower().startswith("multipart/"):
            parts = parse_multipart(body, ctype)
            crops = await asyncio.gather(*(self._crops(data, name) for name, data in parts))
            scores = await asyncio.gather(*(self._score(c) for c in crops))
            return {"scores": scores, "names": [n for n, _ in parts]}
        return {"score": await self._score(await self._crops(body, "the upload"))}

    async def __call__(self, request: Request) -> JSONResponse:
        path = request.url.path.rstrip("/") or "/"
        try:
            if path == "/healthz":
                if request.method not in ("GET", "HEAD"):
                    raise RequestError(405, "use GET /healthz")
                return JSONResponse({"status": "ok", **self.info})
            if path == "/score":
                if request.method != "POST":
                    raise RequestError(405, "use POST /score with the image bytes (or multipart form files)")
                return JSONResponse(await self._handle_score(request))
            raise RequestError(404, f"no route {path}: use POST /score or GET /healthz")
        except RequestError as e:
            return JSONResponse({"error": str(e)}, status_code=e.status)


def check_port(host: str, port: int) -> None:
    """Fail in one line, before Serve starts, when ``host:port`` cannot be bound."""
    if not 0 < port < 65536:
        raise ConfigError(f"--port {port}: give a port between 1 and 65535")
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port/--host") from None


def build_app(checkpoint: str, *, replicas: int = 1, gpus_per_replica: float = 0.0, cpus_per_replica: float = 1.0,
              patches: Optional[int] = None, resize: Any = "default", resize_short: Optional[int] = None,
              max_body_bytes: int = MAX_BODY_BYTES, max_batch: int = 16, batch_wait_s: float = 0.01):
    """The Serve application (not started): ``replicas`` copies of :class:`IQAEndpoint`.

    Raises:
        CheckpointError / DataError: the checkpoint or the crop settings are unusable (checked here, once,
            before any replica starts).
    """
    from swiniqa.models.loading import load_scorer
    from swiniqa.serving.runtime import crop_spec

    if replicas < 1 or max_batch < 1 or max_body_bytes < 1:
        raise ConfigError("--replicas, --max-batch and --max-body-mb must be >= 1")
    _, cfg = load_scorer(checkpoint)
    crop_spec(cfg, patches, resize, resize_short)
    device = "cuda" if gpus_per_replica > 0 else "cpu"
    return IQAEndpoint.options(
        num_replicas=replicas, max_ongoing_requests=max(32, 2 * max_batch),
        ray_actor_options={"num_cpus": cpus_per_replica, "num_gpus": gpus_per_replica},
    ).bind(os.path.abspath(checkpoint), patches, resize, resize_short, max_body_bytes, device,
           max(1, int(cpus_per_replica)), max_batch, batch_wait_s)


def start_server(checkpoint: str, host: str = "127.0.0.1", port: int = 8000, **app_options: Any) -> str:
    """Start Ray (``RAY_ADDRESS`` or local), Serve's HTTP proxy on ``host:port`` and the app; returns its URL.

    ``app_options`` go to :func:`build_app`. Stop it with ``ray.serve.shutdown()``.
    """
    check_port(host, port)
    app = build_app(checkpoint, **app_options)
    from swiniqa.ray_runtime import ensure_ray

    ensure_ray()
    serve.start(http_options={"host": host, "port": port}, logging_config={"log_level": "WARNING"})
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    return f"http://{host}:{port}"


__all__ = ["IQAEndpoint", "build_app", "start_server", "parse_multipart", "read_body", "check_port", "RequestError",
           "MAX_BODY_BYTES"]
