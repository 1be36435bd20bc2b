"""One typed config for a run: the single source of truth for every number.

``TrainConfig`` holds every knob of the reference run. Presets (:data:`PRESETS`) are plain override
dicts on top of the dataclass defaults; YAML/JSON files and ``--set key=value`` overrides go through
:func:`apply_overrides`, which parses strings by the field's declared type and names the key on error.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from swiniqa.errors import ConfigError, did_you_mean
from swiniqa.parsing import parse_bool, parse_hw

log = logging.getLogger("swiniqa.config")

#: Swin sizes from timm plus narrow, shallow sizes for CPU work. Values are timm constructor
#: arguments (not channel tables: the head reads widths from ``feature_info``).
SWIN_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(timm_name="swin_tiny_patch4_window7_224"),
    "small": dict(timm_name="swin_small_patch4_window7_224"),
    "base": dict(timm_name="swin_base_patch4_window7_224"),
    # CPU sizes: timm's SwinTransformer with other dims; they stand in for tiny/small/base in demos.
    "nano": dict(embed_dim=24, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8)),
    "micro": dict(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8)),
    "mini": dict(embed_dim=48, depths=(2, 2, 2, 2), num_heads=(2, 4, 8, 16)),
}
#: Which CPU size stands in for which paper size in ``--preset demo`` studies.
CPU_STAND_INS = {"tiny": "nano", "small": "micro", "base": "mini"}
#: "swin" sizes come from SWIN_SIZES; ResNets are timm names (resnet50 = original HyperIQA baseline,
#: smaller ones are CPU stand-ins).
BACKBONES = ("swin", "resnet50", "resnet18", "resnet10t")
LOSSES = ("l1", "l1+rank")
SCHEDULES = ("cosine", "constant")


@dataclass
class TrainConfig:
    """Every knob of a SMART-IQA training run (defaults = the reference best run, E6)."""

    # --- model -------------------------------------------------------------------------------
    backbone: str = "swin"
    model_size: str = "base"
    multiscale: bool = True
    attention: bool = True
    pretrained: bool = True
    pretrained_path: Optional[str] = None
    drop_path: float = 0.2
    dropout: float = 0.3
    lda_out: int = 16
    hyper_in_channels: int = 112
    target_in: int = 224
    target_hidden: tuple[int, ...] = (112, 56, 28, 14)
    feature_size: int = 7
    # --- data --------------------------------------------------------------------------------
    dataset: str = "koniq10k"
    data_root: Optional[str] = None
    #: Resize every image to (height, width) before cropping; None keeps the size. KonIQ's 1024x768
    #: landscape becomes (384, 512): the reference's Resize((512, 384)) squashed it to portrait.
    resize: Optional[tuple[int, int]] = (384, 512)
    #: Resize so the shorter side has this length (for mixed-size sets like SPAQ); wins over resize.
    resize_short: Optional[int] = None
    patch_size: int = 224
    train_patches: int = 20
    test_patches: int = 20
    hflip: bool = True
    #: Also rotate by multiples of 90 degrees and permute colour channels (content augmentation for
    #: small from-scratch runs; off for the paper's protocol).
    content_aug: bool = False
    color_jitter: bool = False
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    skip_bad_images: bool = False
    #: Use at most this many images per split (seeded pick; 0 = all): smoke tests and quick looks.
    max_images: int = 0
    #: The one dataset interface (flags --labels --images --score-col --image-col --group-col
    #: --lower-is-better on every verb): reader options, mainly for ``dataset: csv``. Relative paths
    #: given on the command line mean the current directory.
    labels: Optional[str] = None
    images: Optional[str] = None
    score_col: Optional[str] = None
    image_col: Optional[str] = None
    group_col: Optional[str] = None
    lower_is_better: bool = False
    #: Largest image (width x height) decoded; 0 = Pillow's decompression-bomb limit (89,478,485).
    max_image_pixels: int = 0
    # --- optimisation ------------------------------------------------------------------------
    lr: float = 5e-7
    lr_ratio: float = 10.0
    weight_decay: float = 2e-4
    schedule: str = "cosine"
    #: Cosine floor as a fraction of each group's base lr (the reference used an absolute 1e-6 floor,
    #: above its 5e-7 base lr, so its backbone lr rose during training).
    min_lr_ratio: float = 0.01
    warmup_epochs: int = 0
    epochs: int = 10
    #: The GLOBAL batch: every optimizer step takes this many patches, split over the workers, so a run
    #: is the same optimisation on 1 or N workers (the reference's per-GPU 32 on 1 GPU).
    batch_size: int = 32
    loss: str = "l1"
    rank_weight: float = 0.0
    #: Max global grad norm; 0 disables. L1 gradients do not grow with the label scale.
    grad_clip: float = 10.0
    patience: int = 3
    amp: bool = True
    compile: bool = False
    # --- run ---------------------------------------------------------------------------------
    seed: int = 0
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 0.0  # 0 = auto: CPU training splits the cluster's CPUs over the workers; GPU: 4
    loader_threads: int = 0  # 0 = auto: 1 beside CPU training, the worker's other CPUs beside a GPU
    #: GiB of decoded, resized images each worker keeps between epochs (0 = derived; see cache_bytes).
    cache_gb: float = 0.0
    max_failures: int = 0
    #: Elastic runs: the fewest workers the run trains on (0 = a fixed ``num_workers``). With ``min_workers``
    #: set, ``num_workers`` is the most: the run starts once ``min_workers`` fit, continues on the survivors
    #: of a lost node and grows back when capacity returns (``--num-workers MIN-MAX`` sets both).
    min_workers: int = 0
    #: Seconds between an elastic run's checks for room to grow (Ray's ``elastic_resize_monitor_interval_s``).
    resize_check_s: float = 60.0
    #: Restarts after reclaim notices (spot preemption) allowed, counted apart from ``max_failures``;
    #: -1 = Ray's default (unlimited).
    max_preemptions: int = -1
    #: Training steps between asks whether a worker's node is about to be reclaimed (a barrier over the
    #: workers); on a notice the run checkpoints mid-epoch at once. 0 = never ask.
    preemption_check_steps: int = 10
    inject_failure_at_epoch: int = -1
    output: str = "runs"
    name: Optional[str] = None

    # ------------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}

    def replace(self, **changes: Any) -> "TrainConfig":
        return apply_overrides(self, changes)

    @property
    def head_lr(self) -> float:
        return self.lr * self.lr_ratio

    def model_config(self) -> "ModelConfig":
        """The architecture keys of this run (what ``build_model`` and a checkpoint's ``model.json`` use)."""
        return ModelConfig.from_train(self)

    def cache_bytes(self, workers_on_node: int = 1) -> int:
        """Byte budget of one worker's image cache: ``cache_gb`` when set, else derived.

        Why derived: the cache keeps decoded, resized uint8 images so that epochs after the first skip
        JPEG decoding. A fixed size either wastes memory on a small set or thrashes on a large one
        (KonIQ's training split at 512x384 is ~4 GB). A quarter of the memory available now leaves room
        for the model, the optimizer, the loader's batches and Ray's object store; every worker on the
        machine keeps its own cache, so the quarter is split among them.

        Args:
            workers_on_node: training workers sharing this machine's memory.
        Returns:
            The budget in bytes (0 disables caching).
        """
        if self.cache_gb > 0:
            return int(self.cache_gb * (1 << 30))
        return int(available_memory_bytes() * CACHE_MEMORY_FRACTION / max(1, workers_on_node))


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


#: Share of the available memory the image caches of one machine's workers may fill (``cache_gb=0``).
CACHE_MEMORY_FRACTION = 0.25


def available_memory_bytes() -> int:
    """Memory this process can still use: ``MemAvailable``, capped by a cgroup (container) limit."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 2 << 30
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            avail = min(avail, max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return int(avail)


# --- the model's architecture ----------------------------------------------------------------------
@dataclass(frozen=True)
class ModelConfig:
    """The architecture of a SMART-IQA model: exactly the keys ``swiniqa.models.build_model`` needs.

    Why apart from :class:`TrainConfig`: checkpoints are read back through this alone, so renaming or
    dropping a training-only key can never make an old checkpoint unloadable. The defaults are
    TrainConfig's (one source of truth). Build one with ``cfg.model_config()`` or :meth:`from_dict`.
    Whether ImageNet weights are loaded is not architecture: ``build_model(..., pretrained=)``.
    """

    backbone: str = TrainConfig.backbone
    model_size: str = TrainConfig.model_size
    patch_size: int = TrainConfig.patch_size
    multiscale: bool = TrainConfig.multiscale
    attention: bool = TrainConfig.attention
    drop_path: float = TrainConfig.drop_path
    dropout: float = TrainConfig.dropout
    lda_out: int = TrainConfig.lda_out
    hyper_in_channels: int = TrainConfig.hyper_in_channels
    target_in: int = TrainConfig.target_in
    target_hidden: tuple[int, ...] = TrainConfig.target_hidden
    feature_size: int = TrainConfig.feature_size

    def __post_init__(self) -> None:
        for key, hint in typing.get_type_hints(ModelConfig).items():
            v = getattr(self, key)
            want = typing.get_origin(hint) or hint
            if want is tuple:
                ok = isinstance(v, tuple) and all(type(x) is int for x in v)
            elif want is float:
                ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            else:
                ok = type(v) is want
            if not ok:
                raise ConfigError(f"model config key '{key}' = {v!r}: expected {want.__name__}")
        validate_model(self)

    @classmethod
    def from_train(cls, cfg: TrainConfig) -> "ModelConfig":
        """The architecture keys of a run config."""
        return cls(**{k: getattr(cfg, k) for k in MODEL_KEYS})

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model config",
                  note_level: int = logging.WARNING) -> "ModelConfig":
        """Rebuild from a saved dict: a checkpoint's ``model.json``, or an old one's whole ``config.json``.

        Only the architecture keys are read; a missing one takes the default (as old checkpoints always
        did). Other keys are ignored, never fatal: keys this version does not know at all are logged at
        ``note_level`` with ``source``; the training keys of a ``config.json`` are skipped silently.

        Raises:
            ConfigError: an architecture value that does not parse or is invalid.
        """
        unknown = sorted(k for k in data if k not in MODEL_KEYS and k not in type_hints())
        if unknown:
            log.log(note_level, "%s: ignoring key(s) this version does not know: %s", source, ", ".join(unknown))
        hints = typing.get_type_hints(ModelConfig)
        return cls(**{k: _parse_value(k, data[k], hints[k]) for k in MODEL_KEYS if k in data})

    def to_dict(self) -> dict[str, Any]:
        return {k: _jsonable(getattr(self, k)) for k in MODEL_KEYS}

    def differences(self, other: "ModelConfig") -> list[str]:
        """``"key: mine vs other"`` for every architecture key that differs."""
        return [f"{k} {getattr(self, k)!r} vs {getattr(other, k)!r}" for k in MODEL_KEYS
                if getattr(self, k) != getattr(other, k)]


#: The keys of :class:`TrainConfig` that define the network. A checkpoint stores exactly these
#: (``model.json``) and is rebuilt from them alone; every other key is about data or training.
MODEL_KEYS = tuple(f.name for f in fields(ModelConfig))


def validate_model(m: Any) -> None:
    """Check the architecture keys of a :class:`ModelConfig` or :class:`TrainConfig`.

    Raises:
        ConfigError: naming the key, its value and the fix.
    """

    def bad(key: str, why: str) -> None:
        raise ConfigError(f"config key '{key}' = {getattr(m, key)!r}: {why}")

    if m.backbone not in BACKBONES:
        bad("backbone", f"choose one of {', '.join(BACKBONES)}")
    if m.backbone == "swin" and m.model_size not in SWIN_SIZES:
        bad("model_size", f"choose one of {', '.join(SWIN_SIZES)}")
    if m.backbone == "swin" and m.model_size in SWIN_SIZES:
        if "timm_name" in SWIN_SIZES[m.model_size] and m.patch_size != 224:
            bad("patch_size", f"Swin-{m.model_size} (window 7) takes 224 px patches")
        if m.patch_size % 32:
            bad("patch_size", "must be a multiple of 32 (the Swin stages downsample 32x)")
    for key in ("patch_size", "feature_size", "hyper_in_channels", "target_in", "lda_out"):
        if not getattr(m, key) > 0:
            bad(key, "must be > 0")
    for key in ("drop_path", "dropout"):
        if not 0 <= getattr(m, key) < 1:
            bad(key, "must be in [0, 1)")
    if m.target_in <= 3 * m.lda_out:
        bad("target_in", "must exceed 3 * lda_out (the last LDA head fills the rest)")
    if not m.target_hidden or min(m.target_hidden) < 1:
        bad("target_hidden", "give one or more positive widths, e.g. 112,56,28,14")
    sizes = (m.target_in, *m.target_hidden)
    cells = m.feature_size ** 2
    if any(i * o % cells for i, o in zip(sizes[:-1], sizes[1:])):
        bad("target_hidden", f"each product of consecutive widths (target_in, *target_hidden) must be a "
                             f"multiple of feature_size**2 = {cells} (the hyper-network emits them as maps)")


PRESETS: dict[str, dict[str, Any]] = {
    # The reference best run (REFERENCE_RESULTS.md, E6) on KonIQ-10k, one GPU per worker.
    "paper": dict(use_gpu=True, max_failures=2, pretrained=True),
    # Fits a 2-core CPU in minutes: CPU-size Swin from scratch on the embedded demo data.
    "demo": dict(
        dataset="demo",
        model_size="nano",
        pretrained=False,
        # The demo tiles are 160 px; 128 px patches see most of a tile and cost a third of 224 px ones.
        patch_size=128,
        resize=None,
        drop_path=0.0,
        dropout=0.0,
        lr=1e-3,
        lr_ratio=1.0,
        val_fraction=0.22,
        test_fraction=0.15,
        weight_decay=1e-4,
        warmup_epochs=1,
        epochs=18,  # 4 min 52 s on the 2-core dev CPU (val SRCC 0.874); 24 epochs gained nothing
        batch_size=32,
        train_patches=2,
        test_patches=4,
        content_aug=True,
        patience=100,
        use_gpu=False,
        amp=False,
        max_failures=0,
    ),
}
#: What ``swiniqa tune --preset demo`` changes on top of the demo preset: a sweep of 10 trials must
#: finish in ~20 minutes on a 2-core CPU, so trials are cheaper than ``swiniqa train --preset demo``:
#: 96-pixel patches, one training patch per image per epoch, 2 test patches, 6 epochs, 0.9 CPU per
#: worker so that two trials (and their 0.01-CPU drivers) fit on 2 cores.
DEMO_TUNE_OVERRIDES: dict[str, Any] = dict(
    model_size="nano", patch_size=96, train_patches=1, test_patches=2, epochs=6, batch_size=32, patience=3,
    cpus_per_worker=0.9, loader_threads=1,
)
#: The base of a demo study (``swiniqa config --preset demo-tune`` shows it).
PRESETS["demo-tune"] = {**PRESETS["demo"], **DEMO_TUNE_OVERRIDES}


def type_hints() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _parse_value(key: str, raw: Any, hint: Any) -> Any:
    """Coerce ``raw`` (string from the CLI, or a YAML/JSON value) to the field's declared type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]
        inner = [a for a in args if a is not type(None)][0]
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("none", "null", "")):
            return None
        return _parse_value(key, raw, inner)
    if origin is tuple and key == "resize":
        return parse_hw(raw, f"config key '{key}'", ConfigError)
    if origin is tuple:
        if isinstance(raw, str):
            parts = [p for p in raw.replace("x", ",").strip("()[] ").split(",") if p.strip()]
        elif isinstance(raw, (list, tuple)):
            parts = list(raw)
        else:
            raise ConfigError(f"config key '{key}': expected a list like 384,512, got {raw!r}")
        return tuple(_parse_value(key, p, args[0]) for p in parts)
    if hint is bool:
        return parse_bool(raw, f"config key '{key}'", ConfigError)
    if hint is int:
        if isinstance(raw, bool):
            raise ConfigError(f"config key '{key}': expected an integer, got {raw!r}")
        try:
            f = float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}': expected an integer, got {raw!r}") from None
        if f != int(f):
            raise ConfigError(f"config key '{key}': expected an integer, got {raw!r}")
        return int(f)
    if hint is float:
        if isinstance(raw, bool):
            raise ConfigError(f"config key '{key}': expected a number, got {raw!r}")
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}': expected a number, got {raw!r}") from None
    if hint is str:
        if not isinstance(raw, (str, int, float)):
            raise ConfigError(f"config key '{key}': expected a string, got {raw!r}")
        return str(raw)
    return raw


def apply_overrides(base: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Return a new config with ``overrides`` applied; unknown keys and bad values name the key."""
    hints = type_hints()
    values = {f.name: getattr(base, f.name) for f in fields(base)}
    for key, raw in overrides.items():
        key = key.replace("-", "_")
        if key == "num_workers" and isinstance(raw, str) and "-" in raw.strip().lstrip("-"):
            values["min_workers"], raw = _worker_range(raw)  # "MIN-MAX": an elastic run
        if key not in hints:
            hint = did_you_mean(key, hints)
            raise ConfigError(f"unknown config key '{key}'{' (' + hint + ')' if hint else ''}; see "
                              "`swiniqa config --preset demo` for all keys")
        values[key] = _parse_value(key, raw, hints[key])
    return TrainConfig(**values)


def _worker_range(raw: str) -> tuple[int, int]:
    """``"MIN-MAX"`` -> (MIN, MAX) workers of an elastic run; a one-line error for anything else."""
    lo, _, hi = raw.strip().partition("-")
    try:
        lo_n, hi_n = int(lo), int(hi)
    except ValueError:
        raise ConfigError(f"config key 'num_workers': expected N or MIN-MAX (e.g. 1-4), got {raw!r}") from None
    if not 1 <= lo_n <= hi_n:
        raise ConfigError(f"config key 'num_workers' = {raw!r}: MIN-MAX needs 1 <= MIN <= MAX, e.g. 1-4")
    return lo_n, hi_n


def validate(cfg: TrainConfig) -> None:
    """Check values that types alone do not; raise ConfigError naming the key and the fix."""

    def bad(key: str, why: str) -> None:
        raise ConfigError(f"config key '{key}' = {getattr(cfg, key)!r}: {why}")

    hints = type_hints()
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        h = hints[f.name]
        if h in (int, float) and (isinstance(v, bool) or not isinstance(v, (int, float))):
            bad(f.name, f"expected a number")
        if h is bool and not isinstance(v, bool):
            bad(f.name, "expected true/false")
    validate_model(cfg)
    if cfg.cache_gb < 0:
        bad("cache_gb", "must be >= 0 (0 = derived from the worker's memory)")
    if cfg.loss not in LOSSES:
        bad("loss", f"choose one of {', '.join(LOSSES)}")
    if cfg.schedule not in SCHEDULES:
        bad("schedule", f"choose one of {', '.join(SCHEDULES)}")
    for key in ("lr", "batch_size", "epochs", "patch_size", "train_patches", "test_patches",
                "num_workers", "feature_size", "hyper_in_channels", "target_in", "lda_out", "lr_ratio"):
        if not getattr(cfg, key) > 0:
            bad(key, "must be > 0")
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if hints[f.name] is float and not math.isfinite(v):
            bad(f.name, "must be a finite number")
    for key in ("weight_decay", "grad_clip", "rank_weight", "warmup_epochs", "max_failures", "loader_threads",
                "max_images", "max_image_pixels"):
        if getattr(cfg, key) < 0:
            bad(key, "must be >= 0")
    for key in ("drop_path", "dropout", "min_lr_ratio"):
        if not 0 <= getattr(cfg, key) < 1:
            bad(key, "must be in [0, 1)")
    if not (0 <= cfg.val_fraction < 1 and 0 <= cfg.test_fraction < 1 and cfg.val_fraction + cfg.test_fraction < 1):
        bad("val_fraction", "val_fraction and test_fraction must be in [0, 1) and sum to < 1")
    if cfg.min_workers < 0 or cfg.min_workers > cfg.num_workers:
        bad("min_workers", f"must be 0 (a fixed size) or at most num_workers ({cfg.num_workers}): "
                           "--num-workers MIN-MAX with MIN <= MAX")
    if cfg.max_preemptions < -1:
        bad("max_preemptions", "must be >= 0, or -1 for Ray's default (unlimited)")
    for key in ("resize_check_s", "preemption_check_steps"):
        if getattr(cfg, key) < 0:
            bad(key, "must be >= 0")
    if cfg.batch_size < cfg.num_workers:
        bad("batch_size", f"is the global batch, split over the {cfg.num_workers} workers: give at least "
                          f"{cfg.num_workers}, or fewer workers")
    if cfg.patience < 1:
        bad("patience", "must be >= 1 (use a large number to disable early stopping)")
    if cfg.resize is not None and (len(cfg.resize) != 2 or min(cfg.resize) < cfg.patch_size):
        bad("resize", f"give height,width, both >= patch_size ({cfg.patch_size}), or none")
    if cfg.resize_short is not None and cfg.resize_short < cfg.patch_size:
        bad("resize_short", f"must be >= patch_size ({cfg.patch_size})")
    if cfg.cpus_per_worker < 0:
        bad("cpus_per_worker", "must be >= 0 (0 = derived from the cluster)")
    if cfg.pretrained_path and not cfg.pretrained:
        bad("pretrained_path", "set pretrained=true too, or drop pretrained_path")


def preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        hint = did_you_mean(name, PRESETS)
        raise ConfigError(f"unknown preset '{name}'; {hint + ' ' if hint else ''}choose one of {', '.join(PRESETS)}")
    return apply_overrides(TrainConfig(), PRESETS[name])


def load_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML or JSON config file into a dict of overrides."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}; pass an existing .yaml or .json file to --config")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {p} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror or e}") from None
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"cannot parse config file {p} line {e.lineno} column {e.colno}: {e.msg}") from None
    except Exception as e:  # noqa: BLE001 - any parse error is a user error
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"cannot parse config file {p}{where}: {what}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of key: value")
    return data


def load_config(preset_name: Optional[str] = None, config_file: Optional[str] = None,
                overrides: Optional[dict[str, Any]] = None) -> TrainConfig:
    """Preset, then file, then overrides (later wins): what the CLI and notebooks both call."""
    cfg = preset(preset_name) if preset_name else TrainConfig()
    if config_file:
        cfg = apply_overrides(cfg, load_file(config_file))
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    return cfg


def parse_set(items: list[str]) -> dict[str, str]:
    """Parse ``--set key=value`` items."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    Path(path).write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Rebuild a saved config; keys from newer versions are an error that names them."""
    return apply_overrides(TrainConfig(), d)


__all__ = [
    "TrainConfig", "ModelConfig", "MODEL_KEYS", "DEMO_TUNE_OVERRIDES", "validate_model", "PRESETS", "SWIN_SIZES",
    "CPU_STAND_INS", "preset", "load_config", "apply_overrides",
    "parse_set", "save_config", "config_from_dict", "load_file", "validate",
]
