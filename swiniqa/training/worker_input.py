"""What the driver hands each training worker: one typed, picklable record (no dict read with ``.get``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from swiniqa.config import TrainConfig, config_from_dict


@dataclass
class WorkerInput:
    """Everything a worker needs, built once on the driver (:func:`swiniqa.training.trainer.worker_input`).

    Records travel as ``(path, score, group)`` tuples and the config as a dict, so the record pickles
    small and a worker rebuilds both in its own process.
    """

    #: The run's :class:`TrainConfig` as a dict (:meth:`TrainConfig.to_dict`).
    config: dict[str, Any]
    #: ``{"train", "val", "test"}`` -> rows ``(path, score, group)`` with the driver's local paths.
    splits: dict[str, list[tuple]]
    #: ``(mean, std)`` of the training scores: the network learns standardised scores.
    label_stats: tuple[float, float]
    #: What the driver staged from object storage (:func:`swiniqa.data.staging.staged_for_workers`).
    staged: list[dict[str, Any]] = field(default_factory=list)
    #: Folder rank 0 writes TensorBoard events to, and the remote URI they are copied to (or None).
    tensorboard: Optional[str] = None
    tensorboard_remote: Optional[str] = None
    #: A Ray queue rank 0 puts each epoch's metrics on (the driver's progress lines), or None.
    progress: Any = None
    #: Torch threads per worker (its CPUs); None: torch's default.
    torch_threads: Optional[int] = None
    #: Identifies one ``fit()``: resuming a checkpoint of the same fit is a restart.
    fit_id: str = ""
    #: The dataset fingerprint (``dataset.json``, :func:`swiniqa.provenance.dataset_fingerprint`).
    dataset: Optional[dict[str, Any]] = None
    #: The run folder (local or a URI): rank 0 writes ``environment.json`` and ``dataset.json`` there.
    run_dir: Optional[str] = None

    def train_config(self) -> TrainConfig:
        return config_from_dict(self.config)
